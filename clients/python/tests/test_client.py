"""loggate.Client against real gateways: log, log_batch, tail, resuming
across a restart and across gateways, TLS and tokens, and the CLI."""

import subprocess
import sys
import threading
import time

import grpc
import pytest

import gatewaykit
from gatewaykit import (
    CERT_PRINCIPAL,
    WRITER,
    attach_tail,
    free_port,
    take,
    unique_service,
    without_loggate_variables,
)
from loggate import Client, Level, LoggateError, TlsConfig, make_record


@pytest.fixture
def site():
    with gatewaykit.site() as the_site:
        yield the_site


def test_log_and_log_batch_return_ids_and_the_records_arrive(gateway):
    service = unique_service("pytest-client")
    tail = attach_tail(gateway.stub, services=[service])
    with Client(gateway.address) as client:
        one = client.log(
            service,
            "hello",
            level="warn",
            node="n1",
            attributes={"n": 1},
            time=1_700_000_000.25,
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            span_id="00f067aa0ba902b7",
        )
        mine = make_record(service, "second", level=Level.ERROR, id="pytest-own-id")
        ids = client.log_batch([mine, {"service": service, "message": "third"}])
    assert ids[0] == "pytest-own-id" and len(ids) == 2
    records = take(tail, 3)
    assert [r.id for r in records] == [one, *ids]
    first = records[0]
    assert (first.level, first.node, dict(first.attributes)) == (Level.WARN, "n1", {"n": "1"})
    assert (first.time.seconds, first.time.nanos) == (1_700_000_000, 250_000_000)
    assert first.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert records[1].level == Level.ERROR


def test_errors_carry_the_status_code(gateway):
    with Client(gateway.address) as client:
        with pytest.raises(LoggateError) as caught:
            client.log_batch([{"service": "ok", "message": "x", "trace_id": "nothex"}])
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details.startswith("records[0].trace_id"), caught.value.details
    with Client(f"127.0.0.1:{free_port()}") as client:
        with pytest.raises(LoggateError) as caught:
            client.log("svc", "nobody listens", timeout=5)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


def test_tail_from_the_beginning_yields_records_and_tokens(gateway):
    service = unique_service("pytest-client-tail")
    with Client(gateway.address) as client:
        ids = client.log_batch([{"service": service, "message": f"m{i}"} for i in range(5)])
        tail = client.tail(service, from_beginning=True, history_only=True)
        seen = []
        tokens = []
        for record in tail:
            seen.append(record.id)
            tokens.append(tail.resume_token)
        assert seen == ids and tail.caught_up
        # A token continues right after its record.
        rest = client.tail(service, resume_token=tokens[1], history_only=True)
        assert [r.id for r in rest] == ids[2:]


def writer(client, service, count, interval, errors):
    def run():
        try:
            for i in range(count):
                client.log(service, f"n {i}", timeout=20)
                time.sleep(interval)
        except Exception as err:  # surfaces in the test
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


class Reader:
    """Reads `count` records from a Tail in a thread of its own."""

    def __init__(self, tail, count):
        self.tail = tail
        self.count = count
        self.records = []
        self.error = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        try:
            for record in self.tail:
                self.records.append(record)
                if len(self.records) == self.count:
                    break
        except Exception as err:
            self.error = err

    def result(self, timeout=60):
        self.thread.join(timeout)
        self.tail.close()
        self.thread.join(5)
        assert self.error is None, self.error
        return self.records


def test_a_tail_resumes_across_its_gateways_restart_with_no_gap_and_no_duplicate(site):
    tailed, other = site.gateway(), site.gateway()
    tailed.start()
    other.start()
    service = unique_service("pytest-resume")
    count = 60
    errors = []
    with Client(tailed.address) as reader, Client(other.address) as client:
        tail = reader.tail(service)  # live, attached on `tailed` only
        reading = Reader(tail, count)
        thread = writer(client, service, count, 0.05, errors)
        gatewaykit.wait_for(lambda: len(reading.records) >= 10, 20, what="10 records tailed")
        tailed.stop()  # records keep arriving through `other` meanwhile
        time.sleep(0.5)
        tailed.start()
        records = reading.result()
        thread.join(30)
    assert not errors, errors
    assert [r.message for r in records] == [f"n {i}" for i in range(count)]
    assert tail.reconnects >= 1


def test_a_tail_moves_to_the_other_gateway_when_its_own_is_killed(site):
    gw1, gw2 = site.gateway(), site.gateway()
    gw1.start()
    gw2.start()
    service = unique_service("pytest-tail-failover")
    count = 60
    errors = []
    with (
        Client([gw1.address, gw2.address]) as reader,
        Client(f"{gw1.address},{gw2.address}") as client,
    ):
        tail = reader.tail(service)
        first = tail.target
        reading = Reader(tail, count)
        thread = writer(client, service, count, 0.05, errors)
        gatewaykit.wait_for(lambda: len(reading.records) >= 10, 20, what="10 records tailed")
        (gw1 if first == gw1.address else gw2).kill()
        records = reading.result()
        thread.join(30)
    assert not errors, errors  # the writer failed over too
    assert [r.message for r in records] == [f"n {i}" for i in range(count)]
    assert tail.target != first and tail.reconnects >= 1


def test_a_client_with_two_targets_keeps_logging_when_one_is_killed(site):
    gw1, gw2 = site.gateway(), site.gateway()
    gw1.start()
    gw2.start()
    service = unique_service("pytest-client-failover")
    with Client([gw1.address, gw2.address], timeout=10) as client:
        ids = [client.log(service, f"before {i}") for i in range(5)]
        current = client._endpoints.targets[client._endpoints.current]
        (gw1 if current == gw1.address else gw2).kill()
        ids += [client.log(service, f"after {i}") for i in range(20)]
    history = site.history(service)
    assert sorted(r.id for r in history) == sorted(ids)


def test_client_over_tls_with_a_ca_and_a_token(tls_gateway, auth_file, pki):
    service = unique_service("pytest-auth")
    with Client(tls_gateway.address, token=auth_file.token, tls=pki.ca) as client:
        record_id = client.log(service, "over tls")
        (record,) = list(client.tail(service, from_beginning=True, history_only=True))
    assert record.id == record_id and record.principal == WRITER
    with Client(tls_gateway.address, token=auth_file.token) as plaintext:
        with pytest.raises(LoggateError):
            plaintext.log(service, "no tls", timeout=5)


def test_client_over_mtls_writes_as_the_certificates_principal(mtls_gateway, pki):
    service = unique_service("pytest-mtls")
    tls = TlsConfig(ca=pki.ca, cert=pki.client_cert, key=pki.client_key.read_bytes())
    with Client(mtls_gateway.address, tls=tls) as client:
        client.log(service, "mtls")
        (record,) = list(client.tail(service, from_beginning=True, history_only=True))
    assert record.principal == CERT_PRINCIPAL


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "loggate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=without_loggate_variables(),
    )


def test_cli_tail_prints_escaped_lines(gateway):
    service = unique_service("pytest-cli")
    logged = run_cli(
        "log", "--target", gateway.address, "--service", service, "--level", "warn",
        "--attr", "k=v\x1b[2J", "red \x1b[31malert\x07\nforged line",
    )  # fmt: skip
    assert logged.returncode == 0, logged.stderr
    record_id = logged.stdout.strip()
    tailed = run_cli(
        "tail", "--target", gateway.address, "--service", service,
        "--from-start", "--history-only",
    )  # fmt: skip
    assert tailed.returncode == 0, tailed.stderr
    (line,) = tailed.stdout.splitlines()
    assert "\x1b" not in line and "\x07" not in line
    assert "WARN" in line and service in line and f"id={record_id}" in line
    assert "red \\x1b[31malert\\x07\\nforged line" in line
    assert "k=v\\x1b[2J" in line
    assert "--resume" in tailed.stderr


def test_cli_reports_an_unreachable_gateway_without_a_traceback():
    result = run_cli("log", "--target", f"127.0.0.1:{free_port()}", "--service", "x", "hi")
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr and "Traceback" not in result.stderr
