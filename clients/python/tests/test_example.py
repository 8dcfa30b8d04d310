"""Tests of the Python client against a real gateway and RabbitMQ.

Each gateway fixture makes a fresh RabbitMQ vhost, starts the loggate binary
($LOGGATE_BIN, default ../../target/debug/loggate) against it on a port it
picks itself (--listen 127.0.0.1:0, read back from --address-file), waits for
grpc.health.v1 SERVING, and at the end stops the gateway and deletes the
vhost, so nothing the tests declare outlives them. `gateway` is open;
`auth_gateway` checks callers (--auth-file); `tls_gateway` also serves TLS
and `mtls_gateway` requires client certificates, with certificates from a
throwaway CA the tests make (`pki`).
"""

import subprocess
import sys
import uuid

import grpc
import pytest

from gatewaykit import (
    CALL_TIMEOUT,
    CERT_PRINCIPAL,
    CLIENT_DIR,
    WRITER,
    attach_tail,
    free_port,
    take,
    unique_service,
    without_loggate_variables,
)
from loggate.v1 import loggate_pb2


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
    records = [loggate_pb2.LogRecord(service=service, message=message) for message in messages]
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
            loggate_pb2.LogRequest(record=loggate_pb2.LogRecord(service="bad.name", message="x")),
            timeout=CALL_TIMEOUT,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("record.service"), caught.value.details()


def run_example(*args, env=None):
    """Runs example.py with `args`, in this environment minus LOGGATE_*
    variables, plus `env`."""
    return subprocess.run(
        [sys.executable, str(CLIENT_DIR / "example.py"), *args],
        cwd=CLIENT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env=without_loggate_variables(**(env or {})),
    )


def tailed_lines(result, count=4):
    """The example's tailed-record lines, after checking it succeeded."""
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [l for l in result.stdout.splitlines() if l.startswith("  ")]
    assert len(lines) == count, result.stdout
    return lines


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


def bearer(token):
    return [("authorization", f"Bearer {token}")]


@pytest.mark.parametrize("token", [None, "lgt_not-a-token-the-gateway-knows"])
def test_example_without_the_right_token_is_unauthenticated(auth_gateway, token):
    service = unique_service("pytest-auth")
    args = ["--server", auth_gateway.address, "--service", service]
    if token:
        args += ["--token", token]
    result = run_example(*args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "UNAUTHENTICATED" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("via", ["flag", "environment"])
def test_example_with_the_token_writes_as_its_principal(auth_gateway, auth_file, via):
    service = unique_service("pytest-auth")
    args = ["--server", auth_gateway.address, "--service", service]
    env = {}
    if via == "flag":
        args += ["--token", auth_file.token]
    else:
        env["LOGGATE_TOKEN"] = auth_file.token
    for line in tailed_lines(run_example(*args, env=env)):
        assert line.endswith(f" by {WRITER}"), line


def test_example_outside_the_tokens_scope_is_permission_denied(auth_gateway, auth_file):
    service = unique_service("pytest-other")
    result = run_example(
        "--server",
        auth_gateway.address,
        "--service",
        service,
        "--token",
        auth_file.token,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PERMISSION_DENIED" in result.stderr
    assert service in result.stderr
    assert "Traceback" not in result.stderr


def test_tailed_records_carry_the_principal_that_wrote_them(auth_gateway, auth_file):
    service = unique_service("pytest-auth")
    metadata = bearer(auth_file.token)
    tail = attach_tail(auth_gateway.stub, metadata=metadata, services=[service])
    response = auth_gateway.stub.Log(
        loggate_pb2.LogRequest(
            record=loggate_pb2.LogRecord(service=service, message="hello", principal="someone-else")
        ),
        timeout=CALL_TIMEOUT,
        metadata=metadata,
    )
    (record,) = take(tail, 1)
    assert record.id == response.id
    assert record.principal == WRITER  # the client's value is ignored


def test_log_for_a_service_outside_the_scope_names_it(auth_gateway, auth_file):
    outside = unique_service("pytest-other")
    with pytest.raises(grpc.RpcError) as caught:
        auth_gateway.stub.LogBatch(
            loggate_pb2.LogBatchRequest(
                records=[
                    loggate_pb2.LogRecord(service=unique_service("pytest-auth"), message="fine"),
                    loggate_pb2.LogRecord(service=outside, message="not mine"),
                ]
            ),
            timeout=CALL_TIMEOUT,
            metadata=bearer(auth_file.token),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "records[1]" in caught.value.details(), caught.value.details()
    assert outside in caught.value.details(), caught.value.details()


@pytest.mark.parametrize("form", ["host:port", "https://localhost:port"])
def test_example_over_tls_with_the_ca_and_the_token(tls_gateway, auth_file, pki, form):
    server = tls_gateway.address
    if form.startswith("https://"):
        server = "https://localhost:" + server.rsplit(":", 1)[1]
    result = run_example(
        "--server",
        server,
        "--service",
        unique_service("pytest-auth"),
        "--tls-ca",
        str(pki.ca),
        "--token",
        auth_file.token,
    )
    for line in tailed_lines(result):
        assert line.endswith(f" by {WRITER}"), line


def test_example_over_tls_without_the_token_is_unauthenticated(tls_gateway, pki):
    result = run_example(
        "--server",
        tls_gateway.address,
        "--service",
        unique_service("pytest-auth"),
        "--tls-ca",
        str(pki.ca),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "UNAUTHENTICATED" in result.stderr


@pytest.mark.parametrize("trust", ["plaintext", "system roots"])
def test_example_cannot_reach_a_tls_gateway_without_trusting_its_ca(tls_gateway, auth_file, trust):
    args = [
        "--server",
        tls_gateway.address,
        "--service",
        unique_service("pytest-auth"),
        "--token",
        auth_file.token,
    ]
    if trust == "system roots":
        args.append("--tls")
    result = run_example(*args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "UNAVAILABLE" in result.stderr
    assert "Traceback" not in result.stderr


def test_example_over_mtls_writes_as_the_certificates_principal(mtls_gateway, pki):
    result = run_example(
        "--server",
        mtls_gateway.address,
        "--service",
        unique_service("pytest-mtls"),
        "--tls-ca",
        str(pki.ca),
        *pki.client_args(),
    )
    for line in tailed_lines(result):
        assert line.endswith(f" by {CERT_PRINCIPAL}"), line


def test_example_without_a_client_certificate_cannot_use_an_mtls_gateway(
    mtls_gateway, auth_file, pki
):
    result = run_example(
        "--server",
        mtls_gateway.address,
        "--service",
        unique_service("pytest-auth"),
        "--tls-ca",
        str(pki.ca),
        "--token",
        auth_file.token,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "UNAVAILABLE" in result.stderr
    assert "Traceback" not in result.stderr


def test_example_refuses_a_client_certificate_without_its_key(pki):
    result = run_example(
        "--server",
        f"127.0.0.1:{free_port()}",
        "--tls-ca",
        str(pki.ca),
        "--tls-cert",
        str(pki.client_cert),
    )
    assert result.returncode == 2
    assert "--tls-cert and --tls-key go together" in result.stderr
