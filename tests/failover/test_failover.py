"""Two gateways in front of a 3-node RabbitMQ cluster, a Python service
(LoggateHandler) and a Node service (the winston transport) pointed at both,
and a `loggate tail` following from the first gateway, all under load. Then
kill -9 the first gateway and one broker node.

What must hold: every record the services handed over is in the history,
under one id each (a retry after a lost answer may store a record twice, with
the same id, so a consumer that deduplicates by id sees it once); the
services' logging calls never blocked; and the tail, which was on the killed
gateway, went on from the other one with exactly the history's records, in
its order: no gap, no duplicate.

The cluster is scripts/rabbitmq-cluster's (its own ports and data, stopped
and deleted at the end); the machine's default RabbitMQ is not touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import loggate

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LOGGATE_BIN = os.environ.get("LOGGATE_BIN", str(ROOT / "target" / "debug" / "loggate"))
CLUSTER = ROOT / "scripts" / "rabbitmq-cluster"
# Where run.sh installed the Node package (with winston) as a user would.
NODE_PROJECT = Path(os.environ.get("LOGGATE_NODE_PROJECT", HERE / ".node"))

RECORDS_PER_SERVICE = 6000
RATE = 1500  # records/s per service: the run lasts about 4 s
KILL_AFTER = 1.5  # seconds of load before the first gateway and a node die
DEADLINE = 180  # seconds, for anything the test waits on


def run(*args, timeout=120):
    return subprocess.run(
        args, check=True, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def cluster():
    """The cluster's AMQP URLs (comma-separated); stopped and deleted after."""
    try:
        urls = run(str(CLUSTER), "start", timeout=300).stdout.strip()
        assert urls.count(",") == 2, urls
        yield urls
    finally:
        # Also after a failed or timed-out start: no node is left running.
        subprocess.run([str(CLUSTER), "stop"], capture_output=True, timeout=300)


class Gateway:
    """A `loggate serve` process on a port of its own choosing."""

    def __init__(self, workdir: Path, name: str, amqp_urls: str, names: dict):
        self.name = name
        address_file = workdir / f"{name}.address"
        self.log = open(workdir / f"{name}.log", "w")
        self.process = subprocess.Popen(
            [
                LOGGATE_BIN,
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--address-file",
                str(address_file),
                "--amqp-url",
                amqp_urls,
                "--exchange",
                names["exchange"],
                "--history-queue",
                names["history"],
                "--instance",
                name,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env={k: v for k, v in os.environ.items() if not k.startswith("LOGGATE_")},
        )
        deadline = time.monotonic() + 60
        while not address_file.exists():
            assert self.process.poll() is None, f"{name} exited: {self.logged()}"
            assert (
                time.monotonic() < deadline
            ), f"{name} did not listen: {self.logged()}"
            time.sleep(0.05)
        self.address = address_file.read_text().strip()
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert (
                    time.monotonic() < deadline
                ), f"{name} not SERVING: {self.logged()}"
                time.sleep(0.1)

    def logged(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


def node_of_publish_connection(gateway: Gateway) -> int:
    """Which cluster node (1, 2 or 3) holds the gateway's publish connection."""
    host = socket.gethostname().split(".")[0]
    needle = f"loggate {gateway.name} publish"
    for n in (1, 2, 3):
        listing = run(
            "rabbitmqctl",
            "-n",
            f"loggate{n}@{host}",
            "list_connections",
            "pid",
            "client_properties",
            "--no-table-headers",
        ).stdout
        for line in listing.splitlines():
            if needle in line:
                # The pid names its node: <loggate2@host.123.456.0>
                return int(
                    line.split("@")[0].strip().lstrip("<").removeprefix("loggate")
                )
    raise AssertionError(f"no connection named {needle!r} on the cluster")


def history(targets: str, timeout: float = 30) -> list:
    """Every record in the history stream, in stream order."""
    with loggate.Client(targets) as client:
        return list(
            client.tail(from_beginning=True, history_only=True, timeout=timeout)
        )


def start_services(workdir: Path, targets: str) -> dict:
    """The two services, logging at `RATE`; each prints its counters as JSON."""
    services = {}
    python_service = f"failover-py-{uuid.uuid4().hex[:6]}"
    services[python_service] = subprocess.Popen(
        [
            os.environ.get("PYTHON", "python3"),
            str(HERE / "app_python.py"),
            "--targets",
            targets,
            "--service",
            python_service,
            "--count",
            str(RECORDS_PER_SERVICE),
            "--rate",
            str(RATE),
        ],
        stdout=subprocess.PIPE,
        stderr=open(workdir / "app_python.log", "w"),
        text=True,
    )
    node_service = f"failover-node-{uuid.uuid4().hex[:6]}"
    # Beside its node_modules, as a user's app is, so `require` finds them.
    shutil.copy(HERE / "app_node.js", NODE_PROJECT / "app_node.js")
    services[node_service] = subprocess.Popen(
        [
            "node",
            "app_node.js",
            targets,
            node_service,
            str(RECORDS_PER_SERVICE),
            str(RATE),
        ],
        cwd=NODE_PROJECT,
        stdout=subprocess.PIPE,
        stderr=open(workdir / "app_node.log", "w"),
        text=True,
    )
    return services


def test_killing_a_gateway_and_a_broker_node_loses_nothing_and_the_tail_goes_on(
    cluster,
):
    if (
        shutil.which("node") is None
        or not (NODE_PROJECT / "node_modules" / "loggate").exists()
    ):
        pytest.fail(
            f"the Node package is not installed in {NODE_PROJECT} (run tests/failover/run.sh)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="loggate-failover-"))
    suffix = uuid.uuid4().hex[:8]
    names = {"exchange": f"failover-{suffix}", "history": f"failover-{suffix}.history"}
    first = Gateway(workdir, f"gw-a-{suffix}", cluster, names)
    second = Gateway(workdir, f"gw-b-{suffix}", cluster, names)
    targets = f"{first.address},{second.address}"
    tail = None
    services = {}
    try:
        # The tail starts on the first gateway (the CLI tries them in order).
        # When its gateway goes, it moves to the next at once; as a follower
        # that must outlive a broker node too, it reconnects until it can.
        tail_out = open(workdir / "tail.jsonl", "w")
        tail_err = open(workdir / "tail.log", "w")
        tail = subprocess.Popen(
            [
                LOGGATE_BIN,
                "tail",
                "--server",
                f"http://{first.address},http://{second.address}",
                "--from-start",
                "--follow-reconnect",
                "--output",
                "json",
            ],
            stdout=tail_out,
            stderr=tail_err,
            env={k: v for k, v in os.environ.items() if not k.startswith("LOGGATE_")},
        )
        services = start_services(workdir, targets)

        time.sleep(KILL_AFTER)
        victim_node = node_of_publish_connection(second)
        first.kill()
        run(str(CLUSTER), "kill-node", str(victim_node), timeout=60)

        counters = {}
        for service, process in services.items():
            out, _ = process.communicate(timeout=DEADLINE)
            logged = workdir / (
                "app_node.log" if "node" in service else "app_python.log"
            )
            assert process.returncode == 0, (service, logged.read_text())
            counters[service] = json.loads(out.strip().splitlines()[-1])
        print("services:", json.dumps(counters))

        for service, stats in counters.items():
            # The queue (10,000) never filled, so every record was handed over.
            assert stats["dropped"] == 0, (service, stats)
            assert stats["failed"] == 0, (service, stats)
            assert stats["sent"] == RECORDS_PER_SERVICE, (service, stats)

        # Every record handed over is in the history, with one id each. (A
        # replica just promoted may show the last records a moment later.)
        survivor = second.address
        deadline = time.monotonic() + DEADLINE
        while True:
            records = history(survivor)
            missing = {}
            for service in services:
                seen = {r.message for r in records if r.service == service}
                expected = {f"{service}-{n}" for n in range(RECORDS_PER_SERVICE)}
                missing[service] = len(expected - seen)
            if not any(missing.values()) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert not any(missing.values()), f"records missing from the history: {missing}"
        ids_by_message = {}
        for r in records:
            ids_by_message.setdefault(r.message, set()).add(r.id)
        assert all(
            len(ids) == 1 for ids in ids_by_message.values()
        ), "a retry made a new id"
        duplicates = len(records) - len(ids_by_message)

        # The tail prints exactly the history, in order: nothing skipped or
        # repeated across the gateway it lost.
        deadline = time.monotonic() + DEADLINE
        while True:
            tail_out.flush()
            lines = (workdir / "tail.jsonl").read_text().splitlines()
            if len(lines) >= len(records) or tail.poll() is not None:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        tailed = [json.loads(line)["id"] for line in lines]
        assert tailed == [r.id for r in records], (
            f"the tail printed {len(tailed)} records, the history holds {len(records)}; "
            f"tail stderr: {(workdir / 'tail.log').read_text()}"
        )
        assert "resuming on the next gateway" in (workdir / "tail.log").read_text()
        assert tail.poll() is None, "the tail is still following"
        print(
            f"failover: node {victim_node} and {first.name} killed; "
            f"{len(records)} records in the history ({duplicates} stored twice under one id); "
            f"the tail printed all {len(tailed)} in order"
        )
    finally:
        for process in [*services.values(), tail]:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        first.stop()
        second.stop()
        shutil.rmtree(workdir, ignore_errors=True)
