"""Levels, ids, the gateway's record limits, and records made to fit them."""

from __future__ import annotations

import datetime as _dt
import enum
import logging
import math
import random as _random
import re
import time as _time
import traceback
from collections.abc import Mapping
from typing import Any, Optional, Union

from .v1 import loggate_pb2

LogRecord = loggate_pb2.LogRecord

# The gateway's rules (README, "The gRPC API"). A record that breaks one is
# refused with INVALID_ARGUMENT, so the handler makes every record fit.
MAX_MESSAGE_BYTES = 64 * 1024
MAX_ATTRIBUTES = 64
MAX_KEY_CHARS = 128
MAX_VALUE_BYTES = 8 * 1024
MAX_NODE_CHARS = 128
SERVICE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

# What was cut or dropped to make a record fit, noted in the attributes the
# gateway's own OTLP mapping (README, "OTLP") and the Node client write.
MESSAGE_TRUNCATED = "loggate.message_truncated"
ATTRIBUTES_DROPPED = "loggate.attributes_dropped"
ATTRIBUTES_TRUNCATED = "loggate.attributes_truncated"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Level(enum.IntEnum):
    """loggate's severities (the proto's ``Level``), lowest first."""

    UNSPECIFIED = 0
    TRACE = 1
    DEBUG = 2
    INFO = 3
    WARN = 4
    ERROR = 5
    FATAL = 6

    @classmethod
    def parse(cls, value: LevelArg) -> Level:
        """A `Level` from a `Level`, its number, or a name (``"warn"``,
        ``"WARNING"``, ``"critical"``, ``"LEVEL_ERROR"``; any case)."""
        if isinstance(value, Level):
            return value
        if isinstance(value, int):
            return cls(value)
        name = str(value).strip().upper()
        if name.startswith("LEVEL_"):
            name = name[len("LEVEL_") :]
        name = _LEVEL_ALIASES.get(name, name)
        try:
            return cls[name]
        except KeyError:
            raise ValueError(
                f"unknown level {value!r}: trace, debug, info, warn, error or fatal"
            ) from None


LevelArg = Union[Level, int, str]
_LEVEL_ALIASES = {"WARNING": "WARN", "CRITICAL": "FATAL", "ERR": "ERROR", "FATAL": "FATAL"}


def level_of(levelno: int) -> int:
    """The loggate level for a `logging` level number: DEBUG, INFO, WARNING,
    ERROR and CRITICAL map to DEBUG, INFO, WARN, ERROR and FATAL; anything
    below DEBUG is TRACE; other custom levels go to the nearest standard one
    (a tie to the lower: 25 is INFO, 35 WARN, 45 ERROR); above CRITICAL is
    FATAL."""
    if levelno < logging.DEBUG:
        return Level.TRACE
    if levelno >= logging.CRITICAL:
        return Level.FATAL
    # logging's standard levels are 10 apart, from DEBUG = 10.
    step = (levelno - logging.DEBUG + 4) // 10  # nearest, ties down
    return Level.DEBUG + step


def new_id() -> str:
    """A fresh record id: a UUIDv7 (time-ordered, 74 random bits) as 36
    characters, the form the gateway assigns itself."""
    ms = _time.time_ns() // 1_000_000
    # The module's generator: seeded from the OS, and reseeded in a forked
    # child (so two processes do not share a sequence).
    rand = _random.getrandbits(74)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64  # version, rand_a
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))  # variant, rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def cut_utf8(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` bytes of UTF-8 on a character boundary."""
    if len(text) * 4 <= limit:
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def clean_text(text: str) -> str:
    """`text` with lone surrogates replaced: protobuf refuses to encode them."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def fit_message(message: str, limit: int = MAX_MESSAGE_BYTES) -> tuple[str, bool]:
    """`message` cut to at most `limit` bytes of UTF-8, on a character
    boundary, and whether it was cut (then the record gets the attribute
    ``loggate.message_truncated`` = ``"true"``: see `fit_attributes`)."""
    message = clean_text(message)
    if len(message) * 4 <= limit or len(message.encode("utf-8")) <= limit:
        return message, False
    return cut_utf8(message, limit), True


def fit_node(node: str) -> str:
    return _CONTROL.sub("", clean_text(node))[:MAX_NODE_CHARS]


def check_service(service: str) -> str:
    if not isinstance(service, str) or not SERVICE_RE.fullmatch(service):
        raise ValueError(f"service {service!r}: 1..64 characters of [A-Za-z0-9_-] wanted")
    return service


def fit_attributes(attributes: Mapping[str, Any], message_cut: bool = False) -> dict[str, str]:
    """`attributes` (keys and values made strings) within the gateway's
    limits, with the notes the gateway's OTLP mapping and the Node client
    write on what was lost:

    - a key that is empty or over 128 characters, or repeated (once made a
      string), is dropped; past 64 entries the rest are dropped (the first
      ones kept): counted in ``loggate.attributes_dropped``;
    - a value over 8 KiB of UTF-8 is cut on a character boundary: counted in
      ``loggate.attributes_truncated``;
    - with `message_cut`, ``loggate.message_truncated`` = ``"true"``.

    The notes take places of the 64 too: the last attributes make room for
    them (and are counted as dropped)."""
    out: dict[str, str] = {}
    cut: set[str] = set()
    dropped = 0
    for key, value in attributes.items():
        key = clean_text(key if type(key) is str else _text(key))
        if not key or len(key) > MAX_KEY_CHARS or key in out or len(out) >= MAX_ATTRIBUTES:
            dropped += 1
            continue
        text, was_cut = fit_value(value)
        out[key] = text
        if was_cut:
            cut.add(key)
    while True:
        notes = int(message_cut) + int(dropped > 0) + int(bool(cut))
        if len(out) + notes <= MAX_ATTRIBUTES:
            break
        key, _ = out.popitem()  # the last one in
        cut.discard(key)
        dropped += 1
    if message_cut:
        out[MESSAGE_TRUNCATED] = "true"
    if dropped:
        out[ATTRIBUTES_DROPPED] = str(dropped)
    if cut:
        out[ATTRIBUTES_TRUNCATED] = str(len(cut))
    return out


def _text(value: Any) -> str:
    """``str(value)``; a ``__str__`` that raises must not lose the record."""
    try:
        return str(value)
    except Exception as err:
        return f"<unprintable {type(value).__name__}: {type(err).__name__}>"


def fit_value(value: Any) -> tuple[str, bool]:
    """`value` as a string cut to 8 KiB of UTF-8, and whether it was cut."""
    value = clean_text(value if isinstance(value, str) else _text(value))
    if len(value) * 4 <= MAX_VALUE_BYTES:
        return value, False
    text = cut_utf8(value, MAX_VALUE_BYTES)
    return text, len(text) < len(value)


TimeArg = Union[_dt.datetime, float, int, None]


def set_time(record: LogRecord, when: TimeArg) -> None:
    """Sets the record's event time from a datetime (naive is local time) or
    seconds since the epoch; None leaves it to the gateway."""
    if when is None:
        return
    if isinstance(when, _dt.datetime):
        when = when.timestamp()
    set_seconds(record.time, when)


def set_seconds(stamp: Any, when: float) -> None:
    """Sets a Timestamp from epoch seconds, without float rounding of the
    whole nanosecond count (1.7e18 is past a double's exact integers)."""
    seconds = math.floor(when)
    nanos = min(999_999_999, int(round((when - seconds) * 1e9)))
    stamp.seconds, stamp.nanos = int(seconds), nanos


def make_record(
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
) -> LogRecord:
    """A `LogRecord` for `Client.log_batch` (or the raw stubs).

    ``id`` defaults to a fresh UUIDv7, so that a retry (on another gateway,
    say) carries the same id and a deduplicating consumer sees it once. The
    message and attributes are made to fit the gateway's limits, what was cut
    or dropped noted in ``loggate.*`` attributes (see `fit_message` and
    `fit_attributes`); ``service`` is checked (ValueError)."""
    message, message_cut = fit_message(message)
    record = LogRecord(
        service=check_service(service),
        node=fit_node(node) if node else "",
        level=Level.parse(level),
        message=message,
        trace_id=trace_id,
        span_id=span_id,
        id=id or new_id(),
    )
    if attributes or message_cut:
        record.attributes.update(fit_attributes(attributes or {}, message_cut))
    set_time(record, time)
    return record


# --- logging.LogRecord -> LogRecord -----------------------------------------

# Everything `logging` itself puts in a LogRecord's __dict__; the rest came
# from `extra=` (or a filter) and becomes attributes.
STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def exception_text(exc_info: Any) -> str:
    return "".join(traceback.format_exception(*exc_info)).rstrip("\n")


def exception_type(cls: Any) -> str:
    """An exception class's qualified name as its traceback's last line
    shows it: ``ValueError``, ``json.decoder.JSONDecodeError``,
    ``app.Order.Invalid`` (the module left out for ``builtins`` and
    ``__main__``)."""
    name = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", None)
    if not isinstance(name, str):
        return _text(cls)
    module = getattr(cls, "__module__", None)
    if isinstance(module, str) and module not in ("builtins", "__main__"):
        return f"{module}.{name}"
    return name


def from_logging(
    record: logging.LogRecord,
    message: str,
    service: str,
    node: str,
    span: Optional[tuple[int, int]],
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> LogRecord:
    """Converts a `logging` record whose message is already rendered.

    Attributes, in order of precedence when the limit cuts: ``logger``, then
    OpenTelemetry's ``exception.type`` (`exception_type`),
    ``exception.message`` (``str()`` of the exception) and
    ``exception.stacktrace`` (the formatted exc_info), ``stack``
    (stack_info), then the ``extra`` fields in the order they were given.
    A message over `max_message_bytes` is cut (`fit_message`); what did not
    fit is noted as `fit_attributes` says."""
    attributes: dict[str, Any] = {"logger": record.name}
    exc_info = record.exc_info
    if exc_info and exc_info[0] is not None:
        attributes["exception.type"] = exception_type(exc_info[0])
        if exc_info[1] is not None:
            attributes["exception.message"] = exc_info[1]  # str() by the fitting
        attributes["exception.stacktrace"] = record.exc_text or exception_text(exc_info)
    elif record.exc_text:  # formatted, the exception gone (a pickled record)
        attributes["exception.stacktrace"] = record.exc_text
    if record.stack_info:
        attributes["stack"] = record.stack_info
    fields = record.__dict__
    if fields.keys() - STANDARD_ATTRIBUTES:
        for key, value in fields.items():
            if key not in STANDARD_ATTRIBUTES and key not in attributes:
                attributes[key] = value
    message_cut = False
    if len(message) * 4 > max_message_bytes:
        message, message_cut = fit_message(message, max_message_bytes)
    fitted = None if message_cut else _fit_attributes_fast(attributes)
    cleaned = fitted is None
    if fitted is None:
        fitted = fit_attributes(attributes, message_cut)

    try:
        return _build(record, message, fitted, service, node, span)
    except (UnicodeError, ValueError):
        # A lone surrogate somewhere: protobuf will not encode it.
        if not cleaned:
            fitted = fit_attributes(fitted)  # cleans keys and values
        return _build(record, clean_text(message), fitted, service, node, span)


def _build(
    record: logging.LogRecord,
    message: str,
    attributes: dict[str, str],
    service: str,
    node: str,
    span: Optional[tuple[int, int]],
) -> LogRecord:
    # Field by field: quicker than the keyword constructor.
    out = LogRecord()
    out.service = service
    if node:
        out.node = node
    out.level = level_of(record.levelno)
    out.message = message
    out.id = new_id()
    stamp = out.time
    ns = getattr(record, "created_ns", None)  # 3.13+
    if ns is not None:
        stamp.seconds, stamp.nanos = divmod(ns, 1_000_000_000)
    else:
        created = record.created
        seconds = int(created)
        stamp.seconds = seconds
        stamp.nanos = int((created - seconds) * 1e9)
    if span is not None:
        out.trace_id = f"{span[0]:032x}"
        out.span_id = f"{span[1]:016x}"
    target = out.attributes
    for key, value in attributes.items():
        target[key] = value
    return out


def _fit_attributes_fast(attributes: dict[str, Any]) -> Optional[dict[str, str]]:
    """The usual few short attributes as strings, when they fit as they are
    (nothing to cut, drop or note: else None, for `fit_attributes`); lone
    surrogates are left in (the caller cleans if protobuf refuses one)."""
    if len(attributes) > MAX_ATTRIBUTES:
        return None
    out = {}
    for key, value in attributes.items():
        if type(key) is not str or not key or len(key) > MAX_KEY_CHARS:
            return None
        if type(value) is not str:
            value = _text(value)
        if (
            len(value) * 4 > MAX_VALUE_BYTES
            and len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES
        ):
            return None
        out[key] = value
    return out
