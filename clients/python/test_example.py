"""Tests of the Python client against a real gateway and RabbitMQ.

The `gateway` fixture makes a fresh RabbitMQ vhost, starts the loggate binary
($LOGGATE_BIN, default ../../target/debug/loggate) against it on a free port,
waits for grpc.health.v1 SERVING, and at the end stops the gateway and deletes
the vhost, so nothing the tests declare outlives them.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loggate.v1 import loggate_pb2, loggate_pb2_grpc

HERE = Path(__file__).resolve().parent
LOGGATE_BIN = os.environ.get(
    "LOGGATE_BIN", str(HERE / ".." / ".." / "target" / "debug" / "loggate")
)
AMQP_BASE = "amqp://guest:guest@127.0.0.1:5672"

CALL_TIMEOUT = 10  # seconds, for unary calls
TAIL_TIMEOUT = 20  # seconds, for a whole Tail
STARTUP_TIMEOUT = 30  # seconds, for the gateway to report SERVING


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


def wait_serving(address, process, log_path):
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"loggate exited with {process.returncode} while starting:\n"
                    + Path(log_path).read_text(errors="replace")
                )
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"loggate not SERVING after {STARTUP_TIMEOUT}s:\n"
                    + Path(log_path).read_text(errors="replace")
                )
            time.sleep(0.1)


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def gateway():
    if not os.access(LOGGATE_BIN, os.X_OK):
        pytest.fail(f"no loggate binary at {LOGGATE_BIN} (set LOGGATE_BIN)")

    tag = uuid.uuid4().hex[:12]
    vhost = f"loggate-pytest-{tag}"
    instance = f"pytest-gw-{tag}"
    address = f"127.0.0.1:{free_port()}"

    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        with tempfile.NamedTemporaryFile(
            prefix="loggate-pytest-", suffix=".log", delete=False
        ) as log:
            log_path = log.name
            process = subprocess.Popen(
                [
                    LOGGATE_BIN,
                    "serve",
                    "--listen", address,
                    "--amqp-url", f"{AMQP_BASE}/{vhost}",
                    "--exchange", f"pytest.{tag}",
                    "--history-queue", f"pytest.{tag}.history",
                    "--instance", instance,
                    "--broker-wait", "10s",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_serving(address, process, log_path)
            with grpc.insecure_channel(address) as channel:
                yield Gateway(
                    address=address,
                    instance=instance,
                    channel=channel,
                    stub=loggate_pb2_grpc.LogGatewayStub(channel),
                )
        finally:
            stop(process)
            os.unlink(log_path)
    finally:
        rabbitmqctl("delete_vhost", vhost)


def unique_service(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def attach_tail(stub, **criteria):
    """Starts a Tail and returns once the gateway has attached it."""
    tail = stub.Tail(loggate_pb2.TailRequest(**criteria), timeout=TAIL_TIMEOUT)
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


def test_log_returns_an_id_and_tail_sees_the_record(gateway):
    service = unique_service("pytest-log")
    tail = attach_tail(gateway.stub, services=[service])

    trace_id = uuid.uuid4().hex
    span_id = uuid.uuid4().hex[:16]
    response = gateway.stub.Log(
        loggate_pb2.LogRequest(
            record=loggate_pb2.LogRecord(
                service=service,
                node="pytest-node",
                level=loggate_pb2.LEVEL_WARN,
                message="disk almost full",
                attributes={"disk": "/var", "used": "93%"},
            )
        ),
        timeout=CALL_TIMEOUT,
        metadata=[("traceparent", f"00-{trace_id}-{span_id}-01")],
    )
    assert response.id

    (record,) = take(tail, 1)
    assert record.id == response.id
    assert record.service == service
    assert record.node == "pytest-node"
    assert record.level == loggate_pb2.LEVEL_WARN
    assert record.message == "disk almost full"
    assert dict(record.attributes) == {"disk": "/var", "used": "93%"}
    assert record.trace_id == trace_id
    assert record.span_id == span_id
    assert record.gateway == gateway.instance
    assert record.HasField("time")
    assert record.HasField("received_time")


def test_log_batch_returns_ids_in_order_and_tail_sees_them_in_order(gateway):
    service = unique_service("pytest-batch")
    tail = attach_tail(gateway.stub, services=[service])

    messages = [f"step {n}" for n in range(1, 4)]
    own_id = f"pytest-{uuid.uuid4()}"
    records = [
        loggate_pb2.LogRecord(service=service, message=message)
        for message in messages
    ]
    records[1].id = own_id  # a client-chosen id comes back unchanged
    response = gateway.stub.LogBatch(
        loggate_pb2.LogBatchRequest(records=records), timeout=CALL_TIMEOUT
    )
    assert len(response.ids) == 3
    assert all(response.ids)
    assert response.ids[1] == own_id

    tailed = take(tail, 3)
    assert [r.id for r in tailed] == list(response.ids)
    assert [r.message for r in tailed] == messages
    assert all(r.level == loggate_pb2.LEVEL_INFO for r in tailed)  # UNSPECIFIED
    assert all(r.gateway == gateway.instance for r in tailed)


def test_invalid_service_is_refused_with_invalid_argument(gateway):
    with pytest.raises(grpc.RpcError) as caught:
        gateway.stub.Log(
            loggate_pb2.LogRequest(
                record=loggate_pb2.LogRecord(service="bad.name", message="x")
            ),
            timeout=CALL_TIMEOUT,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("record.service"), caught.value.details()


def run_example(*args):
    return subprocess.run(
        [sys.executable, str(HERE / "example.py"), *args],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_example_runs_against_the_gateway(gateway):
    service = unique_service("pytest-example")
    result = run_example("--server", gateway.address, "--service", service)
    assert result.returncode == 0, result.stdout + result.stderr

    lines = result.stdout.splitlines()
    log_id = next(l for l in lines if l.startswith("Log id: ")).split(": ", 1)[1]
    batch_ids = next(l for l in lines if l.startswith("LogBatch ids: "))
    batch_ids = batch_ids.split(": ", 1)[1].split(", ")
    assert log_id and len(batch_ids) == 3 and all(batch_ids)
    # Every id shows up again among the tailed records.
    tailed = [l for l in lines if l.startswith("  ")]
    assert len(tailed) == 4
    for line, record_id in zip(tailed, [log_id, *batch_ids]):
        assert f"id={record_id}" in line
        assert service in line


def test_example_reports_an_unreachable_server_without_a_traceback():
    result = run_example("--server", f"127.0.0.1:{free_port()}", "--service", "x")
    assert result.returncode != 0
    assert "UNAVAILABLE" in result.stderr
    assert "Traceback" not in result.stderr
