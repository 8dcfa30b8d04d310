"""`LoggateHandler`: Python's `logging` to loggate, without ever blocking.

The application thread only appends ``(record, span context)`` to a bounded
deque (``emit``). A daemon thread (the sender) does everything else: renders
the message, converts to protobuf, batches, and pipelines requests on one
``LogStream`` call, retrying with the same record ids until each request is
answered.
"""

from __future__ import annotations

import atexit
import collections
import logging
import queue
import random
import re
import socket
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Optional, Tuple

import grpc

from . import _records
from ._channel import DEFAULT_TARGET, Endpoints, TargetArg, TlsArg
from .v1 import loggate_pb2

try:  # the active span's ids, when OpenTelemetry's API is installed
    from opentelemetry import trace as _otel_trace

    _current_span = _otel_trace.get_current_span
except ImportError:  # pragma: no cover - depends on the environment
    _current_span = None

# gRPC status codes (CallError.code carries the number).
_RETRY_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE.value[0],
        grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
        grpc.StatusCode.DEADLINE_EXCEEDED.value[0],
        grpc.StatusCode.ABORTED.value[0],
    }
)
_INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
# Codes that may pass but are not known to: a few tries, then given up.
_MAYBE_CODES = frozenset({grpc.StatusCode.UNKNOWN.value[0], grpc.StatusCode.INTERNAL.value[0]})
_MAYBE_TRIES = 3
_RECORD_INDEX = re.compile(r"^records\[(\d+)\]")
# A whole stream refused for a reason a retry cannot fix: what was in flight
# is given up on (later records still try, after a pause).
_STREAM_PERMANENT = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
# A stream that ended for these is sent again for as long as it takes (the
# gateway went away, or the wait ran out); any other ending, a few times.
_STREAM_RETRY = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

MAX_BATCH = 1000  # the gateway's default --max-batch
# Records converted between two GIL releases of the sender (~0.5 ms of work).
_CHUNK = 50


@dataclass(frozen=True)
class HandlerStats:
    """A `LoggateHandler`'s counters since it was made.

    Attributes:
        sent: records the gateway confirmed (published, or spooled).
        dropped: records `emit` dropped because the queue was full (or the
            handler was closed).
        retried: record sends repeated after a retryable failure (a broken
            stream, UNAVAILABLE, RESOURCE_EXHAUSTED…), each with its same id.
        failed: records given up on: refused by the gateway (INVALID_ARGUMENT,
            PERMISSION_DENIED, unroutable…), not convertible, or still
            undelivered when `close` timed out.
        queued: records waiting in the queue or unanswered right now.
        spooled: of `sent`, those the gateway wrote to its spool.
        reconnects: LogStream calls opened after the first.
    """

    sent: int
    dropped: int
    retried: int
    failed: int
    queued: int
    spooled: int
    reconnects: int


class _Batch:
    __slots__ = ("no", "records", "tries")

    def __init__(self, no: int, records: List[loggate_pb2.LogRecord]) -> None:
        self.no = no
        self.records = records
        self.tries = 0


class _Marker:
    """A flush barrier in the queue: set once everything before it is settled."""

    __slots__ = ("event", "upto")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.upto = -1


class _Stream:
    """One LogStream call: requests go in through a queue that gRPC's own
    thread drains; a reader thread collects the answers and wakes the
    sender."""

    def __init__(
        self,
        stub: Any,
        metadata: Sequence[Tuple[str, str]],
        wake: threading.Event,
        index: int,
    ) -> None:
        self.index = index
        self._requests: queue.SimpleQueue[Optional[loggate_pb2.LogStreamRequest]] = (
            queue.SimpleQueue()
        )
        self.answers: Deque[loggate_pb2.LogStreamResponse] = collections.deque()
        self.error: Optional[BaseException] = None
        self.done = False
        self._wake = wake
        self.call = stub.LogStream(self._iterate(), metadata=list(metadata) or None)
        self._reader = threading.Thread(
            target=self._read, name="loggate-stream-reader", daemon=True
        )
        self._reader.start()

    def _iterate(self):
        while True:
            request = self._requests.get()
            if request is None:
                return
            yield request

    def _read(self) -> None:
        try:
            for answer in self.call:
                self.answers.append(answer)
                self._wake.set()
        except BaseException as err:  # noqa: B036 - recorded for the sender
            self.error = err
        finally:
            self.done = True
            self._wake.set()

    def send(self, request: loggate_pb2.LogStreamRequest) -> None:
        self._requests.put(request)

    def finish(self) -> None:
        """Half-closes: the gateway answers what is in flight, then ends."""
        self._requests.put(None)

    def cancel(self) -> None:
        self.call.cancel()
        self._requests.put(None)

    def join(self, timeout: float) -> None:
        self._reader.join(timeout)


class _Sender:
    """The handler's state and its sender thread. Kept apart from the handler
    so that the thread holds no reference to it (the handler can be collected;
    a finalizer then stops the thread)."""

    def __init__(
        self,
        handler: LoggateHandler,
        endpoints: Endpoints,
        service: str,
        node: str,
        queue_size: int,
        batch_size: int,
        flush_interval: float,
        pipeline: int,
        max_batch_bytes: int,
        max_backoff: float,
        answer_timeout: float,
        warn_interval: float,
        max_message_bytes: int,
    ) -> None:
        self.handler_ref = weakref.ref(handler)
        self.endpoints = endpoints
        self.service = service
        self.node = node
        self.queue: Deque[Any] = collections.deque()
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.pipeline = pipeline
        self.max_batch_bytes = max_batch_bytes
        self.max_backoff = max_backoff
        self.answer_timeout = answer_timeout
        self.warn_interval = warn_interval
        self.max_message_bytes = max_message_bytes
        self.wake = threading.Event()
        self.closed = False  # no more emits accepted
        self.stopping = False  # the thread should end once drained (or now)
        self.stop_deadline = float("inf")
        self.lock = threading.Lock()
        self.flushers = 0
        # Records taken from the queue and not settled yet (converting, in
        # flight, waiting for a retry); changed with a pop, under hold_lock,
        # so that queued() is exact.
        self.hold_lock = threading.Lock()
        self.held = 0

        self.dropped = 0  # under self.lock
        self.sent = 0
        self.retried = 0
        self.failed = 0
        self.spooled = 0
        self.reconnects = 0

        self._stream: Optional[_Stream] = None
        self._streams_opened = 0
        self._pending: Dict[int, Tuple[_Batch, float]] = {}  # seq -> (batch, sent at)
        self._retry: List[_Batch] = []  # re-sent first, lowest batch number first
        self._ready: List[_Batch] = []  # converted, not sent yet (a split batch's rest)
        self._markers: List[_Marker] = []
        self._next_no = 0
        self._next_seq = 0
        self._attempt = 0
        self._backoff_until = 0.0
        self._warned: Dict[str, float] = {}
        self._dropped_seen = 0

        self.thread = threading.Thread(
            target=self._run, name=f"loggate-handler-{service}", daemon=True
        )

    # --- called from other threads ---------------------------------------

    def count_dropped(self, n: int = 1) -> None:
        with self.lock:
            self.dropped += n

    def flush(self, timeout: Optional[float]) -> bool:
        marker = _Marker()
        with self.lock:
            self.flushers += 1
        try:
            self.queue.append(marker)  # past the bound: a marker is no record
            self.wake.set()
            return marker.event.wait(timeout)
        finally:
            with self.lock:
                self.flushers -= 1

    def queued(self) -> int:
        with self.hold_lock:
            items = list(self.queue)
            held = self.held
        return held + sum(1 for item in items if not isinstance(item, _Marker))

    def _settled(self, n: int) -> None:
        with self.hold_lock:
            self.held -= n

    def stop(self, deadline: float) -> None:
        self.closed = True
        self.stop_deadline = deadline
        self.stopping = True
        self.wake.set()

    # --- the sender thread -------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                if self._step():
                    break
            except Exception as err:  # the thread must never die
                self._warn("internal", f"loggate: the handler's sender hit {err!r}; going on")
                time.sleep(0.2)
        try:
            self.endpoints.close()
        except Exception:
            pass

    def _step(self) -> bool:
        """One round; True once the thread should end."""
        self.wake.wait(self._wait_time())
        self.wake.clear()
        now = time.monotonic()

        stream = self._stream
        if stream is not None:
            done = stream.done  # read first: every answer is in by then
            while stream.answers:
                self._answer(stream.answers.popleft())
            if done:
                self._stream_broke(stream)
            elif self._pending:
                oldest = min(sent for _, sent in self._pending.values())
                if now - oldest > self.answer_timeout:
                    self._warn(
                        "stuck",
                        f"loggate: no answer from {self.endpoints.targets[stream.index]}"
                        f" in {self.answer_timeout:.0f}s; reconnecting",
                    )
                    stream.cancel()
                    self._stream_broke(stream)

        if self.stopping and now >= self.stop_deadline:
            self._give_up()
            return True

        if now >= self._backoff_until:
            self._fill()
        self._settle_markers()
        self._report_counts()

        if (
            self.stopping
            and not self.queue
            and not self._pending
            and not self._retry
            and not self._ready
        ):
            self._shut_stream()
            return True
        return False

    def _wait_time(self) -> float:
        now = time.monotonic()
        if self._backoff_until > now:
            wait = self._backoff_until - now
        elif (self._ready or self._retry) and len(self._pending) < self.pipeline:
            return 0.0
        else:
            wait = self.flush_interval
            if self.queue and len(self._pending) < self.pipeline:
                # Wake when the oldest queued record is due.
                head = self.queue[0]
                if isinstance(head, _Marker) or self.flushers or self.stopping:
                    return 0.0
                age = time.time() - head[0].created
                wait = max(0.0, min(wait, self.flush_interval - age))
        if self._pending:
            wait = min(wait, self.answer_timeout / 4)
        if self.stopping:
            wait = min(wait, max(0.0, self.stop_deadline - now))
        return max(wait, 0.001)

    def _fill(self) -> None:
        while len(self._pending) < self.pipeline:
            if self._retry:
                batch = self._retry.pop(0)
            elif self._ready:
                batch = self._ready.pop(0)
            else:
                batch = self._take()
                if batch is None:
                    return
            if not self._send(batch):
                return

    def _take(self) -> Optional[_Batch]:
        """The next batch from the queue, converted, or None when there is
        no full batch and nothing is due yet. (A batch past max_batch_bytes
        is split; the other parts wait in _ready.)"""
        q = self.queue
        if not q:
            return None
        head = q[0]
        due = (
            len(q) >= self.batch_size
            or self.flushers
            or self.stopping
            or isinstance(head, _Marker)
            # (A negative age: the clock stepped back, or a forged `created`.)
            or not 0 <= time.time() - head[0].created < self.flush_interval
        )
        if not due:
            return None
        items = []
        marker = None
        with self.hold_lock:
            popleft = q.popleft
            while q and len(items) < self.batch_size:
                item = popleft()
                if type(item) is _Marker:
                    marker = item
                    break
                items.append(item)
            self.held += len(items)
        convert = self._convert
        records = []
        for start in range(0, len(items), _CHUNK):
            if start:
                # Let a waiting application thread have the GIL now rather
                # than after the interpreter's switch interval (5 ms).
                time.sleep(0)
            for record, span in items[start : start + _CHUNK]:
                converted = convert(record, span)
                if converted is not None:
                    records.append(converted)
        batches = []
        part: List[loggate_pb2.LogRecord] = []
        size = 0
        for record in records:
            part.append(record)
            size += record.ByteSize()
            if size >= self.max_batch_bytes:
                batches.append(part)
                part, size = [], 0
        if part:
            batches.append(part)
        made = []
        for part in batches:
            made.append(_Batch(self._next_no, part))
            self._next_no += 1
        if marker is not None:
            # Everything before the marker is in these batches or earlier.
            marker.upto = self._next_no - 1
            self._markers.append(marker)
        if not made:
            return None
        self._ready.extend(made[1:])
        return made[0]

    def _convert(self, record: logging.LogRecord, span: Any) -> Optional[loggate_pb2.LogRecord]:
        try:
            ids = None
            if span is not None and span.is_valid:
                ids = (span.trace_id, span.span_id)
            return _records.from_logging(
                record, self._render(record), self.service, self.node, ids, self.max_message_bytes
            )
        except Exception as err:
            self.failed += 1
            self._settled(1)
            self._warn("convert", f"loggate: a record could not be converted ({err!r}); dropped")
            return None

    def _render(self, record: logging.LogRecord) -> str:
        handler = self.handler_ref()
        formatter = handler.formatter if handler is not None else None
        try:
            if formatter is None:
                return record.getMessage()
            return formatter.format(record)
        except Exception as err:  # bad %-args: keep the record, say why
            return f"{record.msg!s} (args {record.args!r} did not format: {err})"

    def _send(self, batch: _Batch) -> bool:
        if self._stream is None:
            index = self.endpoints.current
            try:
                self._stream = _Stream(
                    self.endpoints.stub(index), self.endpoints.metadata, self.wake, index
                )
            except Exception as err:
                self._retry_later([batch], count=False)
                self._warn("open", f"loggate: could not open a stream: {err!r}")
                self._backoff()
                return False
            if self._streams_opened:
                self.reconnects += 1
            self._streams_opened += 1
        seq = self._next_seq
        self._next_seq += 1
        batch.tries += 1
        self._pending[seq] = (batch, time.monotonic())
        self._stream.send(loggate_pb2.LogStreamRequest(seq=seq, records=batch.records))
        return True

    def _answer(self, answer: loggate_pb2.LogStreamResponse) -> None:
        entry = self._pending.pop(answer.seq, None)
        if entry is None:
            return
        batch = entry[0]
        n = len(batch.records)
        code = answer.error.code if answer.HasField("error") else 0
        if code == 0:
            self.sent += n
            self._settled(n)
            if answer.spooled:
                self.spooled += n
            self._attempt = 0
            return
        message = answer.error.message
        if code in _RETRY_CODES or (code in _MAYBE_CODES and batch.tries < _MAYBE_TRIES):
            self._retry_later([batch])
            self._backoff()
            return
        if code == _INVALID_ARGUMENT:
            self._refused(batch, message)
            return
        self.failed += n
        self._settled(n)
        self._warn(
            f"code{code}",
            f"loggate: the gateway refused {n} records"
            f" ({_code_name(code)}: {message}); dropped",
        )

    def _refused(self, batch: _Batch, message: str) -> None:
        """INVALID_ARGUMENT: nothing of the request was published. Drop the
        record it names and send the rest again; without a name, halve the
        batch until the culprit stands alone."""
        records = batch.records
        match = _RECORD_INDEX.match(message)
        if len(records) == 1 or (match and int(match.group(1)) < len(records)):
            bad = int(match.group(1)) if match and len(records) > 1 else 0
            culprit = records[bad]
            self.failed += 1
            self._settled(1)
            _stderr(
                f"loggate: the gateway refused a record ({message});"
                f" dropped: {culprit.message[:200]!r}"
            )
            rest = records[:bad] + records[bad + 1 :]
            parts = [rest] if rest else []
        else:
            half = len(records) // 2
            parts = [records[:half], records[half:]]
        batches = []
        for part in parts:
            b = _Batch(batch.no, part)
            b.tries = batch.tries
            batches.append(b)
        self._retry_later(batches, count=False)

    def _retry_later(self, batches: List[_Batch], count: bool = True) -> None:
        for batch in batches:
            if count:
                self.retried += len(batch.records)
            self._retry.append(batch)
        self._retry.sort(key=lambda b: b.no)

    def _stream_broke(self, stream: _Stream) -> None:
        if self._stream is stream:
            self._stream = None
        pending = [batch for batch, _ in self._pending.values()]
        self._pending.clear()
        err = stream.error
        code = err.code() if isinstance(err, grpc.RpcError) else None
        if code in _STREAM_PERMANENT:
            self._give_up_on(pending, f"{_describe(err)}")
            pending = []
        elif code not in _STREAM_RETRY:
            self._give_up_on(
                [b for b in pending if b.tries >= _MAYBE_TRIES],
                f"{_describe(err)}, {_MAYBE_TRIES} times",
            )
            pending = [b for b in pending if b.tries < _MAYBE_TRIES]
        if pending:
            self._retry_later(pending)
        if pending or not isinstance(err, grpc.RpcError) or err.code() != grpc.StatusCode.OK:
            retrying = sum(len(b.records) for b in pending)
            self._warn(
                "stream",
                f"loggate: stream to {self.endpoints.targets[stream.index]} ended"
                f" ({_describe(err)})" + (f"; retrying {retrying} records" if retrying else ""),
            )
            self.endpoints.failed(stream.index)
            self._backoff()

    def _give_up_on(self, batches: List[_Batch], why: str) -> None:
        n = sum(len(b.records) for b in batches)
        if not n:
            return
        self.failed += n
        self._settled(n)
        self._warn(
            "stream-refused",
            f"loggate: the gateway refused the stream ({why}); {n} records dropped",
        )

    def _backoff(self) -> None:
        self._attempt += 1
        delay = min(self.max_backoff, 0.05 * 2 ** min(self._attempt, 16))
        self._backoff_until = time.monotonic() + delay * random.uniform(0.5, 1.0)

    def _settle_markers(self) -> None:
        if not self._markers:
            return
        waiting = [b.no for b, _ in self._pending.values()]
        waiting += [b.no for b in self._retry] + [b.no for b in self._ready]
        oldest = min(waiting) if waiting else self._next_no
        keep = []
        for marker in self._markers:
            if marker.upto < oldest:
                marker.event.set()
            else:
                keep.append(marker)
        self._markers = keep

    def _give_up(self) -> None:
        lost = self.queued()
        if lost:
            self.failed += lost
            _stderr(f"loggate: {lost} records were not delivered before close timed out")
        with self.hold_lock:
            self.queue.clear()
            self.held = 0
        self._pending.clear()
        self._retry.clear()
        self._ready.clear()
        for marker in self._markers:
            marker.event.set()
        self._markers = []
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    def _shut_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.finish()
            stream.join(min(1.0, max(0.0, self.stop_deadline - time.monotonic())))
            if not stream.done:
                stream.cancel()

    def _report_counts(self) -> None:
        dropped = self.dropped
        if dropped != self._dropped_seen:
            if self._warn(
                "dropped",
                f"loggate: queue full ({self.queue_size} records);"
                f" {dropped - self._dropped_seen} records dropped"
                f" ({dropped} since start)",
            ):
                self._dropped_seen = dropped

    def _warn(self, key: str, text: str) -> bool:
        """Prints `text` unless a warning of this kind went out within the
        warn interval. True if printed."""
        now = time.monotonic()
        last = self._warned.get(key)
        if last is not None and now - last < self.warn_interval:
            return False
        self._warned[key] = now
        _stderr(text)
        return True


def _stderr(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except Exception:
        pass


def _code_name(code: int) -> str:
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return str(code)


def _describe(err: Optional[BaseException]) -> str:
    if isinstance(err, grpc.RpcError):
        try:
            return f"{err.code().name}: {err.details()}"
        except Exception:
            pass
    return repr(err) if err is not None else "ended"


class LoggateHandler(logging.Handler):
    """A `logging.Handler` that ships records to loggate gateways.

    ``emit`` never blocks and never raises: it appends the record to a
    bounded queue, or drops it and counts it when the queue is full (with at
    most one warning on stderr per ``warn_interval``). A daemon thread renders
    and converts the records, sends them in batches of up to ``batch_size``
    (or whatever has waited ``flush_interval`` seconds) over one LogStream
    call with up to ``pipeline`` requests in flight, and retries what was not
    confirmed, with the same record ids, after UNAVAILABLE,
    RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED or a broken stream (exponential
    backoff up to ``max_backoff`` seconds, moving on to the next gateway).
    A record the gateway refuses (INVALID_ARGUMENT) is reported once on stderr
    and dropped, and the rest of its batch is sent again.

    Each record becomes a loggate record: ``record.created`` is its time, the
    level maps as in `level_of`, the message is ``record.getMessage()`` (or the
    handler's formatter's output, when one is set), and the attributes are
    ``logger`` (``record.name``), OpenTelemetry's ``exception.type``,
    ``exception.message`` and ``exception.stacktrace`` (from ``exc_info``),
    ``stack`` (``stack_info``) and every ``extra={...}`` field, as strings.
    With ``opentelemetry-api`` installed (``pip install loggate[otel]``), the
    span active at the call fills ``trace_id``/``span_id``. The record is made
    to fit the gateway's limits, so the gateway does not refuse it, and says
    what it lost as the gateway's OTLP mapping and the Node client do: a
    message over ``max_message_bytes`` is cut on a character boundary
    (``loggate.message_truncated`` = ``"true"``); keys that are empty or over
    128 characters, and attributes past 64, are dropped
    (``loggate.attributes_dropped`` = how many); values over 8 KiB are cut
    (``loggate.attributes_truncated`` = how many).

    The message is rendered in the sender thread, not in the caller: an
    argument mutated right after the logging call may show its new value.

    Args:
        service: the records' service, 1..64 characters of ``[A-Za-z0-9_-]``.
        target: gateway address(es): ``"host:port"``, several comma-separated,
            or a list; see `Client`.
        node: the records' node; ``None`` is this host's name, ``""`` none.
        token: bearer token for a gateway with ``--auth-file``.
        level: the handler's level.
        queue_size: records the queue holds before emit drops.
        batch_size: records per request (at most the gateway's --max-batch,
            1000 by default).
        flush_interval: seconds a record waits for a fuller batch.
        tls: as for `Client`.
        pipeline: requests in flight on the stream.
        close_timeout: seconds `close` (and interpreter exit) waits for the
            queue to be delivered.
        warn_interval: seconds between two warnings of one kind on stderr.
        max_batch_bytes: a request is cut short past this many bytes.
        max_backoff: the longest wait between two retries, in seconds.
        answer_timeout: a stream with a request unanswered this long is
            taken for dead and replaced.
        max_message_bytes: messages are cut to this many bytes of UTF-8
            (and marked ``loggate.message_truncated``): the gateway's
            ``--max-message-bytes`` (64 KiB by default).
        options: extra gRPC channel options.
    """

    def __init__(
        self,
        service: str,
        target: TargetArg = DEFAULT_TARGET,
        node: Optional[str] = None,
        token: Optional[str] = None,
        level: int = logging.NOTSET,
        queue_size: int = 10000,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        *,
        tls: TlsArg = None,
        pipeline: int = 4,
        close_timeout: float = 5.0,
        warn_interval: float = 10.0,
        max_batch_bytes: int = 4 * 1024 * 1024,
        max_backoff: float = 5.0,
        answer_timeout: float = 60.0,
        max_message_bytes: int = _records.MAX_MESSAGE_BYTES,
        options: Sequence[Tuple[str, Any]] = (),
    ) -> None:
        super().__init__(level)
        _records.check_service(service)
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size {batch_size}: 1..{MAX_BATCH} wanted")
        if queue_size < 1 or pipeline < 1 or flush_interval <= 0:
            raise ValueError("queue_size and pipeline must be positive, flush_interval > 0")
        if node is None:
            node = socket.gethostname()
        self.service = service
        self.close_timeout = close_timeout
        self._endpoints = Endpoints(target, token, tls, options)
        self._sender = _Sender(
            self,
            self._endpoints,
            service,
            _records.fit_node(node),
            queue_size,
            batch_size,
            flush_interval,
            pipeline,
            max_batch_bytes,
            max_backoff,
            answer_timeout,
            warn_interval,
            max_message_bytes,
        )
        # The hot path's state, bound once.
        self._queue = self._sender.queue
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._wake = self._sender.wake
        self._sender.thread.start()
        sender = self._sender
        # Collected without close(): deliver for close_timeout, then stop.
        # (Not at exit: then _close_at_exit closes it, and waits.)
        weakref.finalize(self, _stop_soon, sender, close_timeout).atexit = False
        _live_handlers.add(self)

    @property
    def targets(self) -> List[str]:
        """The gateway addresses this handler sends to."""
        return list(self._endpoints.targets)

    def handle(self, record: logging.LogRecord) -> Any:
        """Filters and emits without the handler's lock: `emit` is
        thread-safe on its own and must not wait for one."""
        rv = self.filter(record) if self.filters else True
        if rv:
            if isinstance(rv, logging.LogRecord):  # 3.12+: a filter may replace it
                record = rv
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Queues the record (never blocks); drops and counts it when the
        queue is full or the handler closed."""
        q = self._queue
        if len(q) < self._queue_size and not self._sender.closed:
            q.append((record, _current_span().get_span_context() if _current_span else None))
            if len(q) >= self._batch_size and not self._wake.is_set():
                self._wake.set()
        else:
            self._sender.count_dropped()

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Waits until every record queued before the call is settled
        (confirmed, or given up on), at most `timeout` seconds (default:
        ``close_timeout``). True if it was."""
        if self._sender.closed or not self._sender.thread.is_alive():
            return not self._sender.queued()
        return self._sender.flush(self.close_timeout if timeout is None else timeout)

    def close(self, timeout: Optional[float] = None) -> None:
        """Delivers what is queued (at most `timeout` seconds, default
        ``close_timeout``), then stops the sender and closes the channels.
        Records still undelivered then are counted as failed and reported on
        stderr. Idempotent; also run at interpreter exit."""
        try:
            sender = self._sender
            timeout = self.close_timeout if timeout is None else timeout
            deadline = time.monotonic() + timeout
            if not sender.closed:
                sender.stop(deadline)
            if sender.thread.is_alive() and threading.current_thread() is not sender.thread:
                sender.thread.join(max(0.0, sender.stop_deadline - time.monotonic()) + 1.0)
            self._endpoints.close()
            _live_handlers.discard(self)
        finally:
            super().close()

    def stats(self) -> HandlerStats:
        """The counters (see `HandlerStats`)."""
        s = self._sender
        return HandlerStats(
            sent=s.sent,
            dropped=s.dropped,
            retried=s.retried,
            failed=s.failed,
            queued=s.queued(),
            spooled=s.spooled,
            reconnects=s.reconnects,
        )

    def __repr__(self) -> str:
        return (
            f"<LoggateHandler service={self.service} targets={','.join(self.targets)}"
            f" level={logging.getLevelName(self.level)}>"
        )


_live_handlers: weakref.WeakSet[LoggateHandler] = weakref.WeakSet()


def _stop_soon(sender: _Sender, timeout: float) -> None:
    sender.stop(time.monotonic() + timeout)


@atexit.register
def _close_at_exit() -> None:
    # Registered after `logging` imported, so this runs before
    # logging.shutdown: every live handler delivers what it holds.
    for handler in list(_live_handlers):
        try:
            handler.close()
        except Exception:
            pass
