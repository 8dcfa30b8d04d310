"""Targets, TLS and the gRPC channels to one or more gateways.

Several gateways are several targets, each with a channel of its own. A
caller uses one at a time and moves to the next when a call fails with
UNAVAILABLE or a stream breaks (`Endpoints.failed`). Each channel uses the
`round_robin` policy, so one `dns:///name:port` target whose name has several
addresses also spreads over them and skips the dead ones.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Tuple, Union

import grpc

from .v1 import loggate_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50051"

#: A PEM file's path, or its contents (bytes, or a str starting "-----BEGIN").
Pem = Union[str, "os.PathLike[str]", bytes]


@dataclass(frozen=True)
class TlsConfig:
    """How to reach gateways that serve TLS.

    Attributes:
        ca: the CA certificate(s) to trust, as PEM (bytes, or a path to a
            file). ``None`` trusts the system's root certificates.
        cert: a client certificate chain (PEM or path), for gateways that
            require one (``--tls-client-ca``). Needs ``key``.
        key: the private key of ``cert`` (PEM or path).
        server_name: check the gateway's certificate against this name
            instead of the target's host (e.g. when connecting by address).
    """

    ca: Pem | None = None
    cert: Pem | None = None
    key: Pem | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("TlsConfig: cert and key go together")


#: What ``tls=`` accepts: ``None``/``False`` for plaintext, ``True`` for TLS
#: with the system's roots, a CA (path or PEM bytes), or a `TlsConfig`.
TlsArg = Union[None, bool, str, "os.PathLike[str]", bytes, TlsConfig]

#: What ``target=`` accepts: ``"host:port"``, several comma-separated, or a
#: sequence of them. ``https://host:port`` implies TLS; ``dns:///name:port``
#: (any gRPC target name) is passed through.
TargetArg = Union[str, Sequence[str]]

# Reconnect fast after a gateway restarts (gRPC's default backoff grows to
# 120 s); ping during calls so a silently dead peer is noticed.
CHANNEL_OPTIONS: Tuple[Tuple[str, object], ...] = (
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


def parse_targets(target: TargetArg) -> Tuple[list[str], bool]:
    """The list of gRPC targets, and whether any was given as ``https://``."""
    if isinstance(target, str):
        parts = target.split(",")
    else:
        parts = [p for t in target for p in str(t).split(",")]
    targets: list[str] = []
    https = False
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if part.startswith("https://"):
            https = True
            part = part[len("https://") :]
        elif part.startswith("http://"):
            part = part[len("http://") :]
        targets.append(part.rstrip("/"))
    if not targets:
        raise ValueError(f"no gateway address in target {target!r}")
    return targets, https


def _pem(value: Pem | None, what: str) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    try:
        with open(value, "rb") as file:
            return file.read()
    except OSError as err:
        raise ValueError(f"tls {what}: {err}") from err


def tls_config(tls: TlsArg, https: bool = False) -> TlsConfig | None:
    """Normalises a ``tls=`` argument; `None` means plaintext."""
    if tls is None:
        return TlsConfig() if https else None
    if tls is False:
        return None
    if tls is True:
        return TlsConfig()
    if isinstance(tls, TlsConfig):
        return tls
    if isinstance(tls, (str, bytes, os.PathLike)):
        return TlsConfig(ca=tls)
    raise TypeError(f"tls: expected None, a bool, a CA path or PEM, or TlsConfig, not {tls!r}")


class Endpoints:
    """One channel (and stub) per target, opened on first use, and which one
    to use next. Thread-safe."""

    def __init__(
        self,
        target: TargetArg = DEFAULT_TARGET,
        token: str | None = None,
        tls: TlsArg = None,
        options: Sequence[Tuple[str, object]] = (),
    ) -> None:
        self.targets, https = parse_targets(target)
        config = tls_config(tls, https)
        self.tls = config
        self._options = list(CHANNEL_OPTIONS) + list(options)
        self.metadata: Tuple[Tuple[str, str], ...] = ()
        self._credentials: grpc.ChannelCredentials | None = None
        if config is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_pem(config.ca, "ca"),
                private_key=_pem(config.key, "key"),
                certificate_chain=_pem(config.cert, "cert"),
            )
            if token:
                credentials = grpc.composite_channel_credentials(
                    credentials, grpc.access_token_call_credentials(token)
                )
            self._credentials = credentials
            if config.server_name:
                self._options.append(("grpc.ssl_target_name_override", config.server_name))
        elif token:
            # gRPC refuses call credentials on a plaintext channel: send the
            # header as metadata on each call instead.
            self.metadata = (("authorization", f"Bearer {token}"),)
        self._lock = threading.Lock()
        self._channels: list[grpc.Channel | None] = [None] * len(self.targets)
        self._stubs: list[loggate_pb2_grpc.LogGatewayStub | None] = [None] * len(self.targets)
        # Clients start at a random gateway, so that many spread over them.
        self._current = random.randrange(len(self.targets))
        self._closed = False

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def current(self) -> int:
        return self._current

    def stub(self, index: int) -> loggate_pb2_grpc.LogGatewayStub:
        with self._lock:
            if self._closed:
                raise ValueError("the client is closed")
            stub = self._stubs[index]
            if stub is None:
                channel = self._open(self.targets[index])
                self._channels[index] = channel
                stub = self._stubs[index] = loggate_pb2_grpc.LogGatewayStub(channel)
            return stub

    def _open(self, target: str) -> grpc.Channel:
        if self._credentials is None:
            return grpc.insecure_channel(target, options=self._options)
        return grpc.secure_channel(target, self._credentials, options=self._options)

    def order(self) -> list[int]:
        """Every index once, the current one first."""
        start = self._current
        n = len(self.targets)
        return [(start + i) % n for i in range(n)]

    def failed(self, index: int) -> int:
        """Moves on from `index` (if it is still the current one); returns
        the index to use now."""
        with self._lock:
            if self._current == index:
                self._current = (index + 1) % len(self.targets)
            return self._current

    def succeeded(self, index: int) -> None:
        """Sticks to `index`, which just answered."""
        self._current = index

    def close(self) -> None:
        with self._lock:
            self._closed = True
            channels, self._channels = self._channels, [None] * len(self.targets)
            self._stubs = [None] * len(self.targets)
        for channel in channels:
            if channel is not None:
                channel.close()
