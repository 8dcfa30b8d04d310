"""The tests' harness: RabbitMQ vhosts and real gateway processes.

Every gateway runs the loggate binary ($LOGGATE_BIN, default
../../target/debug/loggate) in a fresh RabbitMQ vhost that is deleted at the
end, so nothing a test declares outlives it. `running_gateway` is the one-shot
form (a vhost and a gateway on a port of its own choosing: --listen
127.0.0.1:0, read back from --address-file, then grpc.health.v1 SERVING).
`Site` is a vhost that several gateway processes share (same exchange and
history queue, so resume tokens work across them), each started, stopped,
killed (-9) and restarted on the same port at will.

Imported by conftest.py and the tests (pytest puts this directory on
sys.path; it holds no `loggate`, so that import is the installed package).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loggate.v1 import loggate_pb2, loggate_pb2_grpc

HERE = Path(__file__).resolve().parent
CLIENT_DIR = HERE.parent
LOGGATE_BIN = os.environ.get(
    "LOGGATE_BIN", str(CLIENT_DIR / ".." / ".." / "target" / "debug" / "loggate")
)
AMQP_BASE = "amqp://guest:guest@127.0.0.1:5672"

CALL_TIMEOUT = 10  # seconds, for unary calls
TAIL_TIMEOUT = 20  # seconds, for a whole Tail
STARTUP_TIMEOUT = 30  # seconds, for the gateway to report SERVING


# --- Authentication and TLS ----------------------------------------------

# The principals of the auth file. The writer gets its token from
# `loggate token new`; the certificate principal is named by the CN of the
# client certificate `pki` issues.
WRITER = "pytest-writer"
WRITER_SERVICES = "pytest-auth-*"
CERT_PRINCIPAL = "pytest-cert"
CLIENT_CN = "pytest-client"
CERT_SERVICES = "pytest-mtls-*"


@dataclass
class Gateway:
    address: str
    instance: str
    channel: grpc.Channel
    stub: loggate_pb2_grpc.LogGatewayStub


def rabbitmqctl(*args):
    subprocess.run(
        ["rabbitmqctl", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def open_channel(address, credentials=None):
    if credentials is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, credentials)


def without_loggate_variables(**extra):
    """This environment minus LOGGATE_* (which would configure the gateway or
    the example behind a test's back), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGGATE_")}
    env.update(extra)
    return env


def wait_serving(address_file, process, log_path, credentials):
    """The gateway's address, once it has written it and reports SERVING."""

    def failed(why):
        return RuntimeError(f"loggate {why}:\n" + Path(log_path).read_text(errors="replace"))

    deadline = time.monotonic() + STARTUP_TIMEOUT
    # The gateway writes the file atomically once it is listening.
    while not address_file.exists():
        if process.poll() is not None:
            raise failed(f"exited with {process.returncode} while starting")
        if time.monotonic() > deadline:
            raise failed(f"wrote no address file in {STARTUP_TIMEOUT}s")
        time.sleep(0.05)
    address = address_file.read_text().strip()

    with open_channel(address, credentials) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.poll() is not None:
                raise failed(f"exited with {process.returncode} while starting")
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return address
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise failed(f"not SERVING after {STARTUP_TIMEOUT}s")
            time.sleep(0.1)


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def require_binary():
    if not os.access(LOGGATE_BIN, os.X_OK):
        pytest.fail(f"no loggate binary at {LOGGATE_BIN} (set LOGGATE_BIN)")


@contextlib.contextmanager
def vhost(tag):
    """A fresh vhost `loggate-pytest-<tag>` that guest may use, deleted after."""
    name = f"loggate-pytest-{tag}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


def serve_args(tag, vhost_name, listen, instance):
    return [
        LOGGATE_BIN,
        "serve",
        "--listen", listen,
        "--amqp-url", f"{AMQP_BASE}/{vhost_name}",
        "--exchange", f"pytest.{tag}",
        "--history-queue", f"pytest.{tag}.history",
        "--instance", instance,
        "--broker-wait", "10s",
    ]  # fmt: skip


@contextlib.contextmanager
def running_gateway(*extra_args, credentials=None):
    """A gateway in a fresh vhost on a port of its own choosing.

    `extra_args` go to `loggate serve` (--auth-file, --tls-cert, ...);
    `credentials` are the channel credentials to reach it with (None:
    plaintext), used for the health check and the yielded channel.
    """
    require_binary()
    tag = uuid.uuid4().hex[:12]
    instance = f"pytest-gw-{tag}"
    with vhost(tag) as vhost_name:
        with tempfile.TemporaryDirectory(prefix="loggate-pytest-") as scratch:
            address_file = Path(scratch) / "address"
            log_path = Path(scratch) / "gateway.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [
                        *serve_args(tag, vhost_name, "127.0.0.1:0", instance),
                        "--address-file", str(address_file),
                        *extra_args,
                    ],  # fmt: skip
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=without_loggate_variables(),
                )
            try:
                address = wait_serving(address_file, process, log_path, credentials)
                with open_channel(address, credentials) as channel:
                    yield Gateway(
                        address=address,
                        instance=instance,
                        channel=channel,
                        stub=loggate_pb2_grpc.LogGatewayStub(channel),
                    )
            finally:
                stop(process)


@dataclass
class GatewayProcess:
    """One gateway process of a `Site`, on a fixed address once started, so
    that it can be restarted where its clients look for it."""

    site: Site
    name: str
    address: str = ""
    process: Optional[subprocess.Popen] = None
    starts: int = 0

    @property
    def instance(self):
        return f"pytest-{self.name}-{self.site.tag}"

    def start(self):
        """Starts it (again, on the same port once it has one); returns the address."""
        assert self.process is None or self.process.poll() is not None, "already running"
        scratch = Path(self.site.scratch)
        self.starts += 1
        address_file = scratch / f"{self.name}-{self.starts}.address"
        log_path = scratch / f"{self.name}-{self.starts}.log"
        listen = self.address or "127.0.0.1:0"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            with open(log_path, "wb") as log:
                self.process = subprocess.Popen(
                    [
                        *serve_args(self.site.tag, self.site.vhost, listen, self.instance),
                        "--address-file", str(address_file),
                        "--shutdown-grace", "2s",
                    ],  # fmt: skip
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=without_loggate_variables(),
                )
            try:
                self.address = wait_serving(address_file, self.process, log_path, None)
                return self.address
            except RuntimeError:
                # The old process's port may linger for a moment: try again.
                if listen == "127.0.0.1:0" or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self):
        """SIGTERM: the graceful way."""
        if self.process is not None:
            stop(self.process)

    def kill(self):
        """SIGKILL: no goodbye to anyone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def gateway(self):
        """A `Gateway` (with its own channel) for raw calls to this process."""
        channel = grpc.insecure_channel(self.address)
        return Gateway(
            address=self.address,
            instance=self.instance,
            channel=channel,
            stub=loggate_pb2_grpc.LogGatewayStub(channel),
        )


@dataclass
class Site:
    """A vhost and the gateways in front of it (they share the exchange and
    the history queue)."""

    tag: str
    vhost: str
    scratch: str
    gateways: List[GatewayProcess] = field(default_factory=list)

    def gateway(self, name=None):
        gateway = GatewayProcess(self, name or f"gw{len(self.gateways) + 1}")
        self.gateways.append(gateway)
        return gateway

    def history(self, service, timeout=TAIL_TIMEOUT):
        """Every record of `service` in the history, oldest first (a
        from_beginning, history_only Tail through a running gateway)."""
        running = [g for g in self.gateways if g.process and g.process.poll() is None]
        assert running, "no gateway running to read the history through"
        with grpc.insecure_channel(running[0].address) as channel:
            stub = loggate_pb2_grpc.LogGatewayStub(channel)
            tail = stub.Tail(
                loggate_pb2.TailRequest(services=[service], from_beginning=True, history_only=True),
                timeout=timeout,
            )
            return [event.record for event in tail if event.WhichOneof("event") == "record"]


@contextlib.contextmanager
def site() -> Iterator[Site]:
    """A fresh vhost for gateway processes that the test starts itself;
    every one still running at the end is stopped, then the vhost deleted."""
    require_binary()
    tag = uuid.uuid4().hex[:12]
    with vhost(tag) as vhost_name:
        with tempfile.TemporaryDirectory(prefix="loggate-pytest-") as scratch:
            the_site = Site(tag=tag, vhost=vhost_name, scratch=scratch)
            try:
                yield the_site
            finally:
                for gateway in the_site.gateways:
                    if gateway.process is not None:
                        stop(gateway.process)


def unique_service(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def attach_tail(stub, metadata=(), **criteria):
    """Starts a Tail and returns once the gateway has attached it."""
    tail = stub.Tail(
        loggate_pb2.TailRequest(**criteria),
        timeout=TAIL_TIMEOUT,
        metadata=list(metadata),
    )
    tail.initial_metadata()  # blocks until the consumer is registered
    return tail


def take(tail, count):
    """The next `count` records from a Tail, then cancels it."""
    records = []
    try:
        for event in tail:
            records.append(event.record)
            if len(records) == count:
                break
    finally:
        tail.cancel()
    assert len(records) == count, f"tail ended after {len(records)} of {count}"
    return records


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Polls `predicate` until true; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached in {timeout}s")
        time.sleep(interval)
