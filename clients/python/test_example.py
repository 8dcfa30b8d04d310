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

import contextlib
import datetime
import hashlib
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


def open_channel(address, credentials=None):
    if credentials is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, credentials)


def wait_serving(address_file, process, log_path, credentials):
    """The gateway's address, once it has written it and reports SERVING."""

    def failed(why):
        return RuntimeError(
            f"loggate {why}:\n" + Path(log_path).read_text(errors="replace")
        )

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


@contextlib.contextmanager
def running_gateway(*extra_args, credentials=None):
    """A gateway in a fresh vhost on a port of its own choosing.

    `extra_args` go to `loggate serve` (--auth-file, --tls-cert, ...);
    `credentials` are the channel credentials to reach it with (None:
    plaintext), used for the health check and the yielded channel.
    """
    if not os.access(LOGGATE_BIN, os.X_OK):
        pytest.fail(f"no loggate binary at {LOGGATE_BIN} (set LOGGATE_BIN)")

    tag = uuid.uuid4().hex[:12]
    vhost = f"loggate-pytest-{tag}"
    instance = f"pytest-gw-{tag}"

    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        with tempfile.TemporaryDirectory(prefix="loggate-pytest-") as scratch:
            address_file = Path(scratch) / "address"
            log_path = Path(scratch) / "gateway.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [
                        LOGGATE_BIN,
                        "serve",
                        "--listen", "127.0.0.1:0",
                        "--address-file", str(address_file),
                        "--amqp-url", f"{AMQP_BASE}/{vhost}",
                        "--exchange", f"pytest.{tag}",
                        "--history-queue", f"pytest.{tag}.history",
                        "--instance", instance,
                        "--broker-wait", "10s",
                        *extra_args,
                    ],
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
    finally:
        rabbitmqctl("delete_vhost", vhost)


def without_loggate_variables(**extra):
    """This environment minus LOGGATE_* (which would configure the gateway or
    the example behind a test's back), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGGATE_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def gateway():
    with running_gateway() as gateway:
        yield gateway


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


def run_example(*args, env=None):
    """Runs example.py with `args`, in this environment minus LOGGATE_*
    variables, plus `env`."""
    return subprocess.run(
        [sys.executable, str(HERE / "example.py"), *args],
        cwd=HERE,
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
class Pki:
    """A throwaway CA, a server certificate it signed for localhost and
    127.0.0.1, and a client certificate with CN `CLIENT_CN`. All PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_args(self):
        return ["--tls-cert", str(self.server_cert), "--tls-key", str(self.server_key)]

    def client_args(self):
        return ["--tls-cert", str(self.client_cert), "--tls-key", str(self.client_key)]

    def credentials(self, client_certificate=False):
        """Channel credentials trusting the CA (and presenting the client
        certificate, for mTLS)."""
        if not client_certificate:
            return grpc.ssl_channel_credentials(root_certificates=self.ca.read_bytes())
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.client_key.read_bytes(),
            certificate_chain=self.client_cert.read_bytes(),
        )


def make_pki(directory):
    # Imported here: only these tests need it.
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def named(common_name):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def key_usage(ca):
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=not ca,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

    def builder(subject, issuer, public_key):
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
            )
        )

    def write(stem, certificate, key):
        cert_path = directory / f"{stem}.pem"
        key_path = directory / f"{stem}.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = named("loggate pytest CA")
    ca_cert = (
        builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, _ = write("ca", ca_cert, ca_key)
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    def leaf(stem, common_name, usage, names):
        key = ec.generate_private_key(ec.SECP256R1())
        request = (
            builder(named(common_name), ca_name, key.public_key())
            .add_extension(authority, critical=False)
            .add_extension(
                x509.BasicConstraints(ca=False, path_length=None), critical=True
            )
            .add_extension(key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            request = request.add_extension(
                x509.SubjectAlternativeName(names), critical=False
            )
        return write(stem, request.sign(ca_key, hashes.SHA256()), key)

    server_cert, server_key = leaf(
        "server",
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ],
    )
    client_cert, client_key = leaf(
        "client", CLIENT_CN, ExtendedKeyUsageOID.CLIENT_AUTH, []
    )
    return Pki(ca_path, server_cert, server_key, client_cert, client_key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class AuthFile:
    path: Path
    token: str  # the writer's bearer token


@pytest.fixture(scope="module")
def auth_file(tmp_path_factory):
    """An auth file with the writer (a fresh token from `loggate token new`,
    scoped to WRITER_SERVICES) and the certificate principal."""
    made = subprocess.run(
        [
            LOGGATE_BIN,
            "token",
            "new",
            "--name", WRITER,
            "--log", WRITER_SERVICES,
            "--tail", WRITER_SERVICES,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
        env=without_loggate_variables(),
    )
    # The output is comments, among them `# <token>` (the one that is a
    # single word), then the `[[principal]]` block. The file gets the block
    # only: the token itself goes to the caller, never into the file.
    lines = made.stdout.splitlines()
    (token,) = [
        line[2:] for line in lines if line.startswith("# ") and " " not in line[2:]
    ]
    block = "\n".join(line for line in lines if not line.startswith("#"))
    path = tmp_path_factory.mktemp("auth") / "principals.toml"
    path.write_text(
        block
        + f"""
[[principal]]
name = "{CERT_PRINCIPAL}"
cert_subject_cn = "{CLIENT_CN}"
log = ["{CERT_SERVICES}"]
tail = ["{CERT_SERVICES}"]
"""
    )
    # Only the hash is in the file, never the token.
    assert token not in path.read_text()
    assert hashlib.sha256(token.encode()).hexdigest() in path.read_text()
    return AuthFile(path=path, token=token)


@pytest.fixture(scope="module")
def auth_gateway(auth_file):
    with running_gateway("--auth-file", str(auth_file.path)) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def tls_gateway(auth_file, pki):
    with running_gateway(
        "--auth-file", str(auth_file.path),
        *pki.server_args(),
        credentials=pki.credentials(),
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def mtls_gateway(auth_file, pki):
    with running_gateway(
        "--auth-file", str(auth_file.path),
        *pki.server_args(),
        "--tls-client-ca", str(pki.ca),
        credentials=pki.credentials(client_certificate=True),
    ) as gateway:
        yield gateway


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
        "--server", auth_gateway.address,
        "--service", service,
        "--token", auth_file.token,
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
            record=loggate_pb2.LogRecord(
                service=service, message="hello", principal="someone-else"
            )
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
                    loggate_pb2.LogRecord(
                        service=unique_service("pytest-auth"), message="fine"
                    ),
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
        "--server", server,
        "--service", unique_service("pytest-auth"),
        "--tls-ca", str(pki.ca),
        "--token", auth_file.token,
    )
    for line in tailed_lines(result):
        assert line.endswith(f" by {WRITER}"), line


def test_example_over_tls_without_the_token_is_unauthenticated(tls_gateway, pki):
    result = run_example(
        "--server", tls_gateway.address,
        "--service", unique_service("pytest-auth"),
        "--tls-ca", str(pki.ca),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "UNAUTHENTICATED" in result.stderr


@pytest.mark.parametrize("trust", ["plaintext", "system roots"])
def test_example_cannot_reach_a_tls_gateway_without_trusting_its_ca(
    tls_gateway, auth_file, trust
):
    args = [
        "--server", tls_gateway.address,
        "--service", unique_service("pytest-auth"),
        "--token", auth_file.token,
    ]
    if trust == "system roots":
        args.append("--tls")
    result = run_example(*args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "UNAVAILABLE" in result.stderr
    assert "Traceback" not in result.stderr


def test_example_over_mtls_writes_as_the_certificates_principal(mtls_gateway, pki):
    result = run_example(
        "--server", mtls_gateway.address,
        "--service", unique_service("pytest-mtls"),
        "--tls-ca", str(pki.ca),
        *pki.client_args(),
    )
    for line in tailed_lines(result):
        assert line.endswith(f" by {CERT_PRINCIPAL}"), line


def test_example_without_a_client_certificate_cannot_use_an_mtls_gateway(
    mtls_gateway, auth_file, pki
):
    result = run_example(
        "--server", mtls_gateway.address,
        "--service", unique_service("pytest-auth"),
        "--tls-ca", str(pki.ca),
        "--token", auth_file.token,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "UNAVAILABLE" in result.stderr
    assert "Traceback" not in result.stderr


def test_example_refuses_a_client_certificate_without_its_key(pki):
    result = run_example(
        "--server", f"127.0.0.1:{free_port()}",
        "--tls-ca", str(pki.ca),
        "--tls-cert", str(pki.client_cert),
    )
    assert result.returncode == 2
    assert "--tls-cert and --tls-key go together" in result.stderr
