"""`Client`: Log, LogBatch and a Tail that survives reconnects, over one or
more gateways."""

from __future__ import annotations

import datetime as _dt
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, List, Optional, Tuple, Union

import grpc

from ._channel import DEFAULT_TARGET, Endpoints, TargetArg, TlsArg
from ._records import Level, LevelArg, LogRecord, TimeArg, make_record, new_id, set_seconds
from .v1 import loggate_pb2

# A call that failed with one of these may succeed on another gateway (or the
# same one, later): the same request is tried there, with the same ids.
_FAILOVER = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
# A Tail that fails with one of these reconnects (by its resume token).
_TAIL_RETRY = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ABORTED,
    }
)
# How far before its first attach a live tail that has delivered nothing
# re-reads when it reconnects, for clock skew between client and gateway.
LIVE_RESUME_MARGIN = 2.0

RecordArg = Union[LogRecord, Mapping[str, Any]]


class LoggateError(Exception):
    """A call failed. ``code`` is the gRPC status (`grpc.StatusCode`),
    ``details`` the gateway's message, ``target`` the gateway that said it."""

    def __init__(self, code: grpc.StatusCode, details: str, target: str = "") -> None:
        self.code = code
        self.details = details
        self.target = target
        where = f" (at {target})" if target else ""
        super().__init__(f"{code.name}: {details}{where}")

    @classmethod
    def from_rpc(cls, err: grpc.RpcError, target: str = "") -> LoggateError:
        try:
            code, details = err.code(), err.details() or ""
        except Exception:  # not a Call: a bare RpcError
            code, details = grpc.StatusCode.UNKNOWN, repr(err)
        return cls(code, details, target)


class Client:
    """A connection to one or more loggate gateways.

    Args:
        target: where the gateways are. ``"host:port"``; several as
            ``"gw1:50051,gw2:50051"`` or ``["gw1:50051", "gw2:50051"]``; or
            any gRPC target name, such as ``"dns:///gateways.internal:50051"``
            (every address the name resolves to, balanced round-robin).
            ``https://host:port`` implies TLS. With several targets the
            client starts at a random one and, when a call fails UNAVAILABLE
            (or RESOURCE_EXHAUSTED), tries the next, with the same record ids.
        token: a bearer token, for gateways started with ``--auth-file``.
            Over TLS it travels as call credentials; over plaintext as
            ``authorization`` metadata (use that only on a trusted network).
        tls: ``None``/``False``: plaintext. ``True``: TLS trusting the
            system's root certificates. A path to a PEM file, or PEM bytes:
            TLS trusting that CA. A `TlsConfig`: a CA, a client certificate
            and key (mTLS), and a server name to check.
        timeout: default deadline, in seconds, of `log` and `log_batch`.
        options: extra gRPC channel options.

    Use it as a context manager, or call `close`.
    """

    def __init__(
        self,
        target: TargetArg = DEFAULT_TARGET,
        token: Optional[str] = None,
        tls: TlsArg = None,
        *,
        timeout: float = 10.0,
        options: Sequence[Tuple[str, Any]] = (),
    ) -> None:
        self._endpoints = Endpoints(target, token, tls, options)
        self.timeout = timeout

    @property
    def targets(self) -> List[str]:
        """The gateways' addresses, as gRPC targets."""
        return list(self._endpoints.targets)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channels; open tails end."""
        self._endpoints.close()

    # --- writing -----------------------------------------------------------

    def log(
        self,
        service: str,
        message: str,
        *,
        level: LevelArg = Level.INFO,
        node: str = "",
        attributes: Optional[Mapping[str, Any]] = None,
        time: TimeArg = None,
        trace_id: str = "",
        span_id: str = "",
        id: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> str:
        """Publishes one record; returns its id once RabbitMQ confirmed it
        (or the gateway spooled it).

        ``level`` is a `Level` or a name (``"warn"``); ``attributes`` values
        become strings; ``time`` is a datetime or epoch seconds (default: the
        gateway's receive time); ``id`` defaults to a fresh UUIDv7, kept on a
        retry. The message and attributes are made to fit the gateway's
        default limits, what was cut or dropped noted in ``loggate.*``
        attributes (as `make_record` does). Raises `LoggateError`
        (INVALID_ARGUMENT names the bad field; UNAVAILABLE after every
        gateway was tried)."""
        record = make_record(
            service,
            message,
            level=level,
            node=node,
            attributes=attributes,
            time=time,
            trace_id=trace_id,
            span_id=span_id,
            id=id,
        )
        response = self._unary("Log", loggate_pb2.LogRequest(record=record), timeout)
        return response.id

    def log_batch(
        self, records: Iterable[RecordArg], *, timeout: Optional[float] = None
    ) -> List[str]:
        """Publishes records in order, all or none; returns their ids in
        order once every one is confirmed.

        Each record is a `LogRecord` or a mapping of `log`'s arguments
        (``{"service": "checkout", "message": "…", "level": "warn"}``).
        A record without an id gets a fresh one (the caller's messages are
        not changed). At most the gateway's ``--max-batch`` (1000) records."""
        batch = loggate_pb2.LogBatchRequest()
        for item in records:
            if isinstance(item, LogRecord):
                record = batch.records.add()
                record.CopyFrom(item)
                if not record.id:
                    record.id = new_id()
            else:
                fields = dict(item)
                batch.records.append(
                    make_record(fields.pop("service"), fields.pop("message", ""), **fields)
                )
        response = self._unary("LogBatch", batch, timeout)
        return list(response.ids)

    def _unary(self, method: str, request: Any, timeout: Optional[float]) -> Any:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        endpoints = self._endpoints
        last: Optional[LoggateError] = None
        for index in endpoints.order():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                call = getattr(endpoints.stub(index), method)
                response = call(
                    request, timeout=remaining, metadata=list(endpoints.metadata) or None
                )
            except grpc.RpcError as err:
                last = LoggateError.from_rpc(err, endpoints.targets[index])
                if last.code not in _FAILOVER:
                    raise last from None
                endpoints.failed(index)
                continue
            endpoints.succeeded(index)
            return response
        if last is None:
            last = LoggateError(grpc.StatusCode.DEADLINE_EXCEEDED, "no time left to try")
        raise last

    # --- reading -----------------------------------------------------------

    def tail(
        self,
        services: Union[str, Sequence[str], None] = None,
        *,
        min_level: Optional[LevelArg] = None,
        nodes: Sequence[str] = (),
        trace_id: str = "",
        attributes: Optional[Mapping[str, str]] = None,
        contains: str = "",
        since: Union[_dt.timedelta, float, None] = None,
        start_time: Union[_dt.datetime, float, None] = None,
        from_beginning: bool = False,
        resume_token: Optional[str] = None,
        history_only: bool = False,
        limit: int = 0,
        events: bool = False,
        reconnect: bool = True,
        timeout: Optional[float] = None,
    ) -> Tail:
        """Follows records; returns a `Tail` (an iterator, attached when this
        returns: a live tail sees every record published after it).

        Filters (all must match): ``services`` (exact names), ``min_level``,
        ``nodes``, ``trace_id``, ``attributes`` (every pair), ``contains``
        (substring of the message). Start (at most one): nothing (live from
        now), ``since`` (a timedelta or seconds ago, by arrival),
        ``start_time`` (a datetime or epoch seconds), ``from_beginning``,
        ``resume_token`` (right after the record that carried it).
        ``history_only`` (with a start) ends the iteration once the history
        as it was at the start is read; ``limit`` after that many records.

        The iterator yields `LogRecord` messages (with ``events=True``, every
        `TailResponse`: records, ``caught_up``, ``heartbeat``, ``gap``); after
        each record ``tail.resume_token`` is its token. When the stream breaks
        (UNAVAILABLE: a gateway stopped or died…) and ``reconnect`` is on, it
        attaches again, on the next gateway, right after the last record it
        yielded: no gap, no duplicate. ``timeout`` bounds the whole tail, in
        seconds (then `LoggateError` DEADLINE_EXCEEDED).
        """
        request = loggate_pb2.TailRequest(
            nodes=list(nodes),
            trace_id=trace_id,
            attributes=dict(attributes or {}),
            contains=contains,
            history_only=history_only,
            limit=limit,
        )
        if services:
            request.services.extend([services] if isinstance(services, str) else services)
        if min_level is not None:
            request.min_level = Level.parse(min_level)
        starts = [
            since is not None,
            start_time is not None,
            from_beginning,
            resume_token is not None,
        ]
        if sum(starts) > 1:
            raise ValueError("give at most one of since, start_time, from_beginning, resume_token")
        if since is not None:
            seconds = since.total_seconds() if isinstance(since, _dt.timedelta) else since
            request.since.FromNanoseconds(int(seconds * 1e9))
        elif start_time is not None:
            if isinstance(start_time, _dt.datetime):
                start_time = start_time.timestamp()
            set_seconds(request.start_time, start_time)
        elif from_beginning:
            request.from_beginning = True
        elif resume_token is not None:
            request.resume_token = resume_token
        return Tail(self._endpoints, request, events=events, reconnect=reconnect, timeout=timeout)


class Tail(Iterator[Any]):
    """An open tail: iterate it for records (see `Client.tail`).

    Attributes:
        resume_token: the token of the last record yielded (or the one it
            started from): tail again with it to continue right after.
        caught_up: True once a tail that started in the past reached the
            head of the history.
        gaps: the reasons of every ``gap`` event (records gone before the
            resume point).
        reconnects: how often it attached again after a broken stream.
        target: the gateway it is attached to now.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        request: loggate_pb2.TailRequest,
        *,
        events: bool = False,
        reconnect: bool = True,
        timeout: Optional[float] = None,
        max_backoff: float = 5.0,
    ) -> None:
        self._endpoints = endpoints
        self._request = request
        self._events = events
        self._reconnect = reconnect
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._max_backoff = max_backoff
        self.resume_token: Optional[str] = (
            request.resume_token if request.WhichOneof("start") == "resume_token" else None
        )
        self.caught_up = False
        self.gaps: List[str] = []
        self.reconnects = 0
        self.target = ""
        self._delivered = 0
        self._live = request.WhichOneof("start") is None
        self._live_since = time.time() - LIVE_RESUME_MARGIN
        self._call: Any = None
        self._index = endpoints.current
        self._attempt = 0
        self._closed = False
        self._finished = False
        self._lock = threading.Lock()
        self._last_error: Optional[LoggateError] = None
        # Attach now, so that a live tail sees what is logged after this.
        try:
            self._attach()
        except LoggateError as err:
            if not reconnect or err.code not in _TAIL_RETRY:
                raise
            self._failed(err)

    def __enter__(self) -> Tail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Ends the tail (a `next` blocked in another thread returns)."""
        with self._lock:
            self._closed = True
            call, self._call = self._call, None
        if call is not None:
            call.cancel()

    cancel = close

    def _next_request(self) -> loggate_pb2.TailRequest:
        request = loggate_pb2.TailRequest()
        request.CopyFrom(self._request)
        if self.resume_token:
            request.resume_token = self.resume_token
        elif self._live and (self.reconnects or self._attempt):
            # Nothing delivered yet: re-read from just before the first
            # attach, which cannot duplicate and leaves no gap.
            set_seconds(request.start_time, self._live_since)
        if self._request.limit:
            request.limit = max(1, self._request.limit - self._delivered)
        return request

    def _remaining(self) -> Optional[float]:
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise LoggateError(grpc.StatusCode.DEADLINE_EXCEEDED, "the tail's timeout passed")
        return left

    def _attach(self) -> None:
        index = self._endpoints.current
        target = self._endpoints.targets[index]
        request = self._next_request()
        try:
            call = self._endpoints.stub(index).Tail(
                request,
                timeout=self._remaining(),
                metadata=list(self._endpoints.metadata) or None,
            )
            with self._lock:
                if self._closed:
                    call.cancel()
                    return
                self._call = call
            call.initial_metadata()  # returns once the gateway attached it
            if call.done() and call.code() != grpc.StatusCode.OK:
                raise LoggateError(call.code(), call.details() or "", target)
        except grpc.RpcError as err:
            raise LoggateError.from_rpc(err, target) from None
        except ValueError as err:  # the client was closed
            raise LoggateError(grpc.StatusCode.CANCELLED, str(err), target) from None
        self._index = index
        self.target = target

    def _failed(self, err: LoggateError) -> None:
        """Moves to the next gateway and waits before attaching again."""
        self._last_error = err
        with self._lock:
            call, self._call = self._call, None
        if call is not None:
            call.cancel()
        self._endpoints.failed(self._index)
        self._attempt += 1
        self.reconnects += 1
        delay = min(self._max_backoff, 0.1 * 2 ** min(self._attempt - 1, 10))
        if len(self._endpoints) > 1 and self._attempt == 1:
            delay = 0.0  # another gateway is there: go now
        delay *= random.uniform(0.5, 1.0)
        if self._deadline is not None:
            delay = min(delay, max(0.0, self._deadline - time.monotonic()))
        time.sleep(delay)

    def __iter__(self) -> Tail:
        return self

    def __next__(self) -> Any:
        while True:
            if self._closed or self._finished:
                raise StopIteration
            call = self._call
            try:
                if call is None:
                    self._attach()
                    continue
                response = next(call)
            except StopIteration:
                # The gateway ended the call OK: `limit` or `history_only`.
                # A live tail without them never ends by itself: go on.
                if self._request.limit or self._request.history_only:
                    self._finished = True
                    raise
                self._failed(LoggateError(grpc.StatusCode.UNAVAILABLE, "the tail ended"))
                continue
            except (grpc.RpcError, LoggateError) as raw:
                if self._closed:
                    raise StopIteration from None
                err = (
                    raw
                    if isinstance(raw, LoggateError)
                    else LoggateError.from_rpc(raw, self.target)
                )
                if err.code == grpc.StatusCode.DEADLINE_EXCEEDED and self._deadline is not None:
                    raise err from None
                if not self._reconnect or err.code not in _TAIL_RETRY:
                    raise err from None
                self._failed(err)
                continue
            event = response.WhichOneof("event")
            if event == "record":
                self._attempt = 0
                self._delivered += 1
                self.resume_token = response.resume_token
                if not self._events:
                    return response.record
            elif event == "caught_up":
                self.caught_up = True
            elif event == "gap":
                self.gaps.append(response.gap.reason)
            elif event == "heartbeat":
                self._attempt = 0
                if (
                    self._live
                    and not self.resume_token
                    and response.heartbeat.HasField("head_time")
                ):
                    # Everything up to the head was read and none matched.
                    head = response.heartbeat.head_time.ToNanoseconds() / 1e9
                    self._live_since = max(self._live_since, head)
            if self._events:
                return response
