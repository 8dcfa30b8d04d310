"""The package as installed: its stubs match the proto, and the pieces that
need no gateway (levels, limits, ids, the CLI's escaping, a full queue)."""

import filecmp
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import loggate
from gatewaykit import CLIENT_DIR, free_port, wait_for
from loggate import Level, LoggateHandler, level_of
from loggate import _records as records
from loggate.__main__ import describe, escape
from loggate.v1 import loggate_pb2

STUBS = ["loggate_pb2.py", "loggate_pb2_grpc.py", "loggate_pb2.pyi"]


def test_the_committed_stubs_are_what_generate_sh_makes_from_the_proto(tmp_path):
    subprocess.run(
        ["bash", str(CLIENT_DIR / "generate.sh"), str(tmp_path)],
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        timeout=120,
    )
    committed = CLIENT_DIR / "src" / "loggate" / "v1"
    fresh = tmp_path / "loggate" / "v1"
    match, mismatch, errors = filecmp.cmpfiles(committed, fresh, STUBS, shallow=False)
    assert (mismatch, errors) == (
        [],
        [],
    ), "the committed stubs differ from the proto: run clients/python/generate.sh"


def test_the_installed_package_carries_the_stubs_and_py_typed():
    installed = Path(loggate.__file__).parent
    assert "site-packages" in installed.parts, installed
    for name in STUBS:
        assert (installed / "v1" / name).is_file(), name
    assert (installed / "py.typed").is_file()
    # ... and they are the committed ones.
    for name in STUBS:
        assert filecmp.cmp(installed / "v1" / name, CLIENT_DIR / "src" / "loggate" / "v1" / name)


@pytest.mark.parametrize(
    "levelno, level",
    [
        (1, Level.TRACE),
        (5, Level.TRACE),
        (9, Level.TRACE),
        (logging.DEBUG, Level.DEBUG),
        (15, Level.DEBUG),  # a tie goes to the lower
        (logging.INFO, Level.INFO),
        (25, Level.INFO),
        (26, Level.WARN),
        (logging.WARNING, Level.WARN),
        (logging.ERROR, Level.ERROR),
        (44, Level.ERROR),
        (46, Level.FATAL),
        (logging.CRITICAL, Level.FATAL),
        (99, Level.FATAL),
    ],
)
def test_logging_levels_map_to_the_nearest_loggate_level(levelno, level):
    assert level_of(levelno) == level


def test_level_parse_takes_names_numbers_and_aliases():
    assert Level.parse("warning") == Level.WARN == Level.parse("LEVEL_WARN") == Level.parse(4)
    assert Level.parse("critical") == Level.FATAL
    with pytest.raises(ValueError):
        Level.parse("loud")


def test_ids_are_distinct_uuid7_strings():
    ids = [loggate.new_id() for _ in range(10000)]
    assert len(set(ids)) == len(ids)
    pattern = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert all(pattern.fullmatch(i) for i in ids)
    assert ids == sorted(ids) or ids[0][:8] <= ids[-1][:8]  # time-ordered prefix


def test_records_are_cut_to_the_gateways_limits_and_say_what_they_lost():
    record = records.make_record(
        "svc",
        "é" * 40000,  # 80,000 bytes
        attributes={**{f"k{i}": "v" for i in range(100)}, "x" * 300: "y" * 9000, "": "empty"},
    )
    # Cut at a character boundary, within the limit, and noted: no marker.
    assert record.message == "é" * (records.MAX_MESSAGE_BYTES // 2)
    assert record.attributes["loggate.message_truncated"] == "true"
    # 100 fit; the two notes take two of the 64 places: k0..k61 are kept.
    assert len(record.attributes) == records.MAX_ATTRIBUTES
    assert {k for k in record.attributes if k.startswith("k")} == {f"k{i}" for i in range(62)}
    assert record.attributes["loggate.attributes_dropped"] == str(2 + 100 - 62)
    assert "loggate.attributes_truncated" not in record.attributes
    assert not any(k.startswith("x") for k in record.attributes)  # dropped, not cut
    with pytest.raises(ValueError):
        records.make_record("bad.name", "x")
    # Lone surrogates would make protobuf refuse to encode the record.
    odd = records.make_record("svc", "a\udc80b", attributes={"k": "\ud800"})
    assert odd.SerializeToString()


def test_long_keys_are_dropped_and_long_values_cut_and_counted():
    record = records.make_record(
        "svc",
        "short",
        attributes={"k" * 129: "x", "k" * 128: "kept", "a": "é" * 5000, "b": "y" * 9000, 1: "one"},
    )
    assert dict(record.attributes) == {
        "k" * 128: "kept",
        "a": "é" * 4096,  # 8 KiB, at a character boundary
        "b": "y" * 8192,
        "1": "one",
        "loggate.attributes_dropped": "1",
        "loggate.attributes_truncated": "2",
    }
    # A key repeated once made a string: the first is kept, the other counted.
    record = records.make_record("svc", "m", attributes={1: "int", "1": "str"})
    assert dict(record.attributes) == {"1": "int", "loggate.attributes_dropped": "1"}
    # Nothing lost, nothing noted; a message cut alone is noted alone.
    assert dict(records.make_record("svc", "m", attributes={"a": "b"}).attributes) == {"a": "b"}
    cut = records.make_record("svc", "x" * (records.MAX_MESSAGE_BYTES + 1))
    assert cut.message == "x" * records.MAX_MESSAGE_BYTES
    assert dict(cut.attributes) == {"loggate.message_truncated": "true"}


def test_the_notes_take_places_and_count_only_what_the_record_keeps():
    # 63 short values and a long one, and a cut message: the notes need
    # places, so the last attributes go; the long value is among them, so
    # no value the record keeps was cut and no attributes_truncated is said.
    attributes = {f"k{i}": "v" for i in range(63)}
    attributes["big"] = "x" * 9000
    record = records.make_record("svc", "é" * 40000, attributes=attributes)
    assert len(record.attributes) == records.MAX_ATTRIBUTES
    assert {k for k in record.attributes if k.startswith("k")} == {f"k{i}" for i in range(62)}
    assert record.attributes["loggate.attributes_dropped"] == "2"
    assert "loggate.attributes_truncated" not in record.attributes
    # Exactly 64 that fit: all kept, no note.
    full = records.make_record("svc", "m", attributes={f"k{i}": "v" for i in range(64)})
    assert dict(full.attributes) == {f"k{i}": "v" for i in range(64)}


class Declined(Exception):
    class Hard(Exception):
        pass


def logging_record(exc_info=None, **fields):
    record = logging.LogRecord("pytest.unit", logging.ERROR, __file__, 1, "failed", (), exc_info)
    record.__dict__.update(fields)
    return record


def converted(record, message="failed", limit=records.MAX_MESSAGE_BYTES):
    return records.from_logging(record, message, "svc", "", None, limit)


def test_exceptions_become_opentelemetrys_exception_attributes():
    try:
        raise Declined.Hard("card declined")
    except Declined.Hard:
        exc_info = sys.exc_info()
    out = converted(logging_record(exc_info))
    attributes = dict(out.attributes)
    assert attributes["exception.type"] == f"{__name__}.Declined.Hard"
    assert attributes["exception.message"] == "card declined"
    stacktrace = attributes["exception.stacktrace"]
    assert stacktrace.startswith("Traceback (most recent call last)")
    assert stacktrace.endswith(f"{__name__}.Declined.Hard: card declined")
    assert sorted(attributes) == [
        "exception.message",
        "exception.stacktrace",
        "exception.type",
        "logger",
    ]

    try:
        {}["missing"]
    except KeyError:
        exc_info = sys.exc_info()
    attributes = dict(converted(logging_record(exc_info)).attributes)
    assert attributes["exception.type"] == "KeyError"  # builtins: no module
    assert attributes["exception.message"] == "'missing'"  # str(exc)

    try:
        raise ValueError()
    except ValueError:
        exc_info = sys.exc_info()
    attributes = dict(converted(logging_record(exc_info)).attributes)
    assert (attributes["exception.type"], attributes["exception.message"]) == ("ValueError", "")

    # A record that lost its exception (pickled, say) keeps the formatted text.
    attributes = dict(converted(logging_record(exc_text="Traceback …\nOSError: gone")).attributes)
    assert attributes == {
        "logger": "pytest.unit",
        "exception.stacktrace": "Traceback …\nOSError: gone",
    }

    # stack_info has no OpenTelemetry name: it stays `stack`.
    attributes = dict(
        converted(logging_record(stack_info="Stack (most recent call last):")).attributes
    )
    assert attributes == {"logger": "pytest.unit", "stack": "Stack (most recent call last):"}


def test_a_logging_record_over_the_limits_is_cut_and_noted():
    extra = {"a": "é" * 5000, "k" * 129: "long key", "ok": 7}
    out = converted(logging_record(**extra), message="ü" * 600, limit=1001)
    assert out.message == "ü" * 500  # 1,000 bytes: a character boundary
    assert dict(out.attributes) == {
        "logger": "pytest.unit",
        "a": "é" * 4096,
        "ok": "7",
        "loggate.message_truncated": "true",
        "loggate.attributes_dropped": "1",
        "loggate.attributes_truncated": "1",
    }
    # Within the limits nothing is noted (the quick path).
    out = converted(logging_record(ok=7), message="ü" * 500, limit=1000)
    assert out.message == "ü" * 500
    assert dict(out.attributes) == {"logger": "pytest.unit", "ok": "7"}


def test_escape_leaves_no_control_character_for_the_terminal():
    hostile = "red \x1b[31mtext\x07 bell\r\nline2\u202eevil\\ tab\t"
    escaped = escape(hostile)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in escaped)
    assert "\u202e" not in escaped
    assert escaped == "red \\x1b[31mtext\\x07 bell\\r\\nline2\\u202eevil\\\\ tab\\t"
    record = loggate_pb2.LogRecord(
        service="s", message="a\x1bb", attributes={"k\x1b": "v\n"}, id="i"
    )
    record.time.FromSeconds(0)
    assert "\x1b" not in describe(record) and "\n" not in describe(record)


def unreachable_handler(**kwargs):
    """A handler aimed at a port nobody listens on."""
    kwargs.setdefault("target", f"127.0.0.1:{free_port()}")
    return LoggateHandler("pytest-unreachable", **kwargs)


def quiet_logger(handler):
    logger = logging.getLogger(f"pytest.{loggate.new_id()}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    return logger


def test_a_full_queue_drops_counts_and_warns_once_per_interval(capsys):
    handler = unreachable_handler(
        queue_size=100, batch_size=10, pipeline=1, warn_interval=1.0, flush_interval=0.05
    )
    logger = quiet_logger(handler)
    try:
        for i in range(1000):
            logger.info("record %d", i)
        stats = handler.stats()
        # At most a batch (pipeline 1 × 10) left the queue for the sender.
        assert stats.dropped >= 1000 - 100 - 10, stats
        assert stats.dropped + stats.queued == 1000, stats
        assert stats.sent == 0
        wait_for(lambda: "records dropped" in capsys.readouterr().err, 5, what="a drop warning")

        # More drops within the interval: no second warning. (The sender may
        # have taken one more batch meanwhile, freeing up to 10 places.)
        before = handler.stats().dropped
        for i in range(100):
            logger.info("more %d", i)
        dropped = handler.stats().dropped - before
        assert 90 <= dropped <= 100, dropped
        time.sleep(0.5)
        assert "records dropped" not in capsys.readouterr().err
        # After the interval: one more, counting the drops since the last.
        time.sleep(0.7)
        err = wait_for(lambda: capsys.readouterr().err, 5, what="a second warning")
        assert err.count("records dropped") == 1, err
        assert f"{dropped} records dropped" in err, err
    finally:
        handler.close(timeout=0.5)


def test_emit_never_blocks_when_no_gateway_answers():
    handler = unreachable_handler(queue_size=5000)
    logger = quiet_logger(handler)
    try:
        worst = 0.0
        for i in range(2000):
            start = time.perf_counter()
            logger.warning("x %s", i)
            worst = max(worst, time.perf_counter() - start)
        assert handler.stats().queued + handler.stats().dropped == 2000
        assert worst < 0.05, f"a call took {worst * 1e3:.1f} ms"
    finally:
        start = time.monotonic()
        handler.close(timeout=0.5)
        assert time.monotonic() - start < 3, "close overran its timeout"
    assert handler.stats().failed == 2000  # given up on at close


def test_a_handler_dropped_without_close_is_collected_and_its_thread_ends():
    import gc
    import weakref

    handler = unreachable_handler()
    thread = handler._sender.thread
    ref = weakref.ref(handler)
    del handler
    gc.collect()
    assert ref() is None, gc.get_referrers(ref())
    thread.join(10)  # the finalizer stopped it (after close_timeout, 5 s)
    assert not thread.is_alive()
