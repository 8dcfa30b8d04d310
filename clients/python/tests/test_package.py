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


def test_records_are_cut_to_the_gateways_limits():
    record = records.make_record(
        "svc",
        "é" * 40000,  # 80,000 bytes
        attributes={**{f"k{i}": "v" for i in range(100)}, "x" * 300: "y" * 9000, "": "empty"},
    )
    assert len(record.message.encode()) <= records.MAX_MESSAGE_BYTES
    assert record.message.endswith("[cut]")
    assert len(record.attributes) == records.MAX_ATTRIBUTES
    assert int(record.attributes["attributes_dropped"]) == 100 + 2 - 63
    assert all(1 <= len(k) <= 128 for k in record.attributes)
    assert all(len(v.encode()) <= 8192 for v in record.attributes.values())
    with pytest.raises(ValueError):
        records.make_record("bad.name", "x")
    # Lone surrogates would make protobuf refuse to encode the record.
    odd = records.make_record("svc", "a\udc80b", attributes={"k": "\ud800"})
    assert odd.SerializeToString()


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

        # More drops within the interval: no second warning.
        for i in range(100):
            logger.info("more %d", i)
        time.sleep(0.5)
        assert "records dropped" not in capsys.readouterr().err
        # After the interval: one more, counting the drops since the last.
        time.sleep(0.7)
        err = wait_for(lambda: capsys.readouterr().err, 5, what="a second warning")
        assert err.count("records dropped") == 1, err
        assert "100 records dropped" in err, err
        assert handler.stats().dropped == stats.dropped + 100
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
