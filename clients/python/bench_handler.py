#!/usr/bin/env python3
"""Benchmark of LoggateHandler (not a test).

Prints:

1. Sustained throughput: records/s from one process through LoggateHandler
   to a gateway, from the first ``logger.info`` until the gateway confirmed
   the last record (a queue big enough that nothing is dropped).
2. The application thread's cost per ``logger.info`` call (mean, p50, p99)
   for LoggateHandler (with its sender running and delivering), a bare
   queue-put handler (``emit`` = ``queue.put_nowait(record)``) and
   NullHandler, measured side by side in interleaved rounds.

    python bench_handler.py                      # starts a gateway itself
    python bench_handler.py --target 127.0.0.1:50051
    python bench_handler.py --fake-gateway       # also: the client's own ceiling

Without ``--target`` it starts ``--loggate-bin`` (default: the release build
if present, else the debug build) in a fresh RabbitMQ vhost (guest/guest at
127.0.0.1:5672, via rabbitmqctl), and deletes the vhost afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from loggate import LoggateHandler

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


class QueuePutHandler(logging.Handler):
    """The baseline: the least a non-blocking handler can do."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: queue.Queue = queue.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        self.queue.put_nowait(record)

    def drain(self) -> None:
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return


def default_binary() -> Path:
    release = ROOT / "target" / "release" / "loggate"
    debug = ROOT / "target" / "debug" / "loggate"
    if release.exists() and (
        not debug.exists() or release.stat().st_mtime >= debug.stat().st_mtime
    ):
        return release
    return debug


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def gateway(binary: Path, extra_args: list[str] = ()):
    """A gateway in a fresh vhost; yields its address."""
    tag = uuid.uuid4().hex[:12]
    vhost = f"loggate-bench-{tag}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        with tempfile.TemporaryDirectory(prefix="loggate-bench-") as scratch:
            address_file = Path(scratch) / "address"
            log = open(Path(scratch) / "gateway.log", "wb")
            env = {k: v for k, v in os.environ.items() if not k.startswith("LOGGATE_")}
            process = subprocess.Popen(
                [
                    str(binary), "serve",
                    "--listen", "127.0.0.1:0",
                    "--address-file", str(address_file),
                    "--amqp-url", f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                    *extra_args,
                ],  # fmt: skip
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
            try:
                deadline = time.monotonic() + 30
                while not address_file.exists():
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"the gateway did not start; see {log.name}")
                    time.sleep(0.05)
                time.sleep(0.5)  # broker connections and topology
                yield address_file.read_text().strip()
            finally:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                log.close()
    finally:
        rabbitmqctl("delete_vhost", vhost)


def serve_fake(address_file: str) -> None:
    """A stand-in gateway (run in a process of its own): answers every
    LogStream request OK at once, so that the client is all that is measured."""
    from concurrent import futures

    import grpc

    from loggate.v1 import loggate_pb2, loggate_pb2_grpc

    class Fake(loggate_pb2_grpc.LogGatewayServicer):
        def LogStream(self, requests, context):
            for request in requests:
                yield loggate_pb2.LogStreamResponse(
                    seq=request.seq, ids=[r.id for r in request.records]
                )

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    loggate_pb2_grpc.add_LogGatewayServicer_to_server(Fake(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    Path(address_file).write_text(f"127.0.0.1:{port}")
    server.wait_for_termination()


@contextlib.contextmanager
def fake_gateway():
    with tempfile.TemporaryDirectory(prefix="loggate-bench-") as scratch:
        address_file = Path(scratch) / "address"
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve-fake", str(address_file)],
            stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not address_file.exists() or not address_file.read_text():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the fake gateway did not start")
                time.sleep(0.05)
            yield address_file.read_text().strip()
        finally:
            process.terminate()
            process.wait(10)


def make_logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def throughput(target: str, records: int) -> None:
    handler = LoggateHandler("bench", target=target, queue_size=records + 1, close_timeout=120)
    logger = make_logger("bench.throughput", handler)
    # Warm up: the connection and stream are open before the clock starts.
    logger.info("warm-up")
    handler.flush(30)
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for i in range(records):
        logger.info("order %d shipped", i, extra={"order": i})
    produced = time.perf_counter() - start
    delivered = handler.flush(300)
    elapsed = time.perf_counter() - start
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    stats = handler.stats()
    handler.close()
    print(
        f"throughput: {records} records in {elapsed:.2f} s = {records / elapsed:,.0f} records/s"
        f" delivered (producer done after {produced:.2f} s = {records / produced:,.0f}/s);"
        f" flushed={delivered} sent={stats.sent} dropped={stats.dropped} failed={stats.failed}"
    )
    print(
        f"  this process used {cpu:.2f} s of CPU for it: {cpu / records * 1e6:.1f} µs per record"
        f" (application thread and sender together; {cpu / elapsed:.0%} of one core)"
    )


def per_call(target: str, calls: int, rounds: int) -> None:
    loggate_handler = LoggateHandler("bench", target=target, queue_size=calls + 1)
    queue_handler = QueuePutHandler()
    null_handler = logging.NullHandler()
    subjects = {
        "LoggateHandler": (make_logger("bench.loggate", loggate_handler), loggate_handler),
        "queue-put handler": (make_logger("bench.queue", queue_handler), queue_handler),
        "NullHandler": (make_logger("bench.null", null_handler), null_handler),
    }
    samples: dict[str, list[int]] = {name: [] for name in subjects}
    cpu_samples: dict[str, list[int]] = {name: [] for name in subjects}
    clock = time.perf_counter_ns
    cpu_clock = time.thread_time_ns
    for rnd in range(rounds + 1):  # round 0 warms up and is discarded
        for name, (logger, handler) in subjects.items():
            out = samples[name] if rnd else []
            cpu_out = cpu_samples[name] if rnd else []
            info = logger.info
            gc.collect()
            for i in range(calls // rounds):
                c0 = cpu_clock()
                t0 = clock()
                info("order %d shipped", i, extra={"order": i})
                t1 = clock()
                cpu_out.append(cpu_clock() - c0)
                out.append(t1 - t0)
            if handler is queue_handler:
                queue_handler.drain()
            elif handler is loggate_handler:
                loggate_handler.flush(30)  # its sender is not left behind between rounds
    stats = loggate_handler.stats()
    loggate_handler.close()
    # The clock's own cost, to subtract from nothing but to show.
    overhead = []
    for _ in range(10000):
        t0 = clock()
        overhead.append(clock() - t0)
    print(
        f"per logger.info call, {rounds} interleaved rounds of {calls // rounds}"
        f" (timer overhead ~{statistics.median(overhead) / 1000:.2f} µs, included):"
    )
    for title, table in [
        ("wall clock (what the caller waits, GIL hand-overs and preemption included)", samples),
        ("the application thread's CPU time (CLOCK_THREAD_CPUTIME_ID)", cpu_samples),
    ]:
        print(f" {title}:")
        base = statistics.fmean(table["queue-put handler"])
        for name, values in table.items():
            values.sort()
            mean = statistics.fmean(values)
            p50 = values[len(values) // 2]
            p99 = values[int(len(values) * 0.99) - 1]
            print(
                f"  {name:18} mean {mean / 1000:6.2f} µs  p50 {p50 / 1000:6.2f} µs"
                f"  p99 {p99 / 1000:7.2f} µs  max {values[-1] / 1000:8.1f} µs"
                f"  ({mean / base:.2f}x queue-put)"
            )
    print(f"  LoggateHandler stats: {stats}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="a running gateway (default: start one)")
    parser.add_argument("--loggate-bin", type=Path, default=None)
    parser.add_argument(
        "--gateway-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an argument for the gateway it starts (repeatable), e.g."
        " --gateway-arg=--amqp-batch-records=100",
    )
    parser.add_argument("--records", type=int, default=200_000, help="for the throughput run")
    parser.add_argument("--calls", type=int, default=50_000, help="per handler, for the cost run")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--fake-gateway",
        action="store_true",
        help="also measure throughput against a stand-in that answers at once"
        " (a Python process of its own): the client's own ceiling",
    )
    parser.add_argument("--serve-fake", metavar="ADDRESS_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake(args.serve_fake)
        return 0
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {os.getloadavg()}")
    with contextlib.ExitStack() as stack:
        target = args.target
        if target is None:
            binary = args.loggate_bin or default_binary()
            print(f"gateway: {binary} {' '.join(args.gateway_arg)}")
            target = stack.enter_context(gateway(binary, args.gateway_arg))
        per_call(target, args.calls, args.rounds)
        throughput(target, args.records)
    if args.fake_gateway:
        with fake_gateway() as fake:
            print("against the stand-in gateway:")
            throughput(fake, args.records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
