"""The gateway's OTLP logs receiver, fed by the real OpenTelemetry Python SDK.

Python's `logging` goes through the SDK's LoggingHandler, LoggerProvider and
BatchLogRecordProcessor to its OTLP/gRPC exporter (OTLPLogExporter, pointed
at the gateway's port, insecure), as the SDK's documentation sets it up. The
records are read back with the gateway's Tail (every mapped field) and with
an AMQP consumer bound to the gateway's exchange (the routing key). Partial
success is checked with the OTLP stubs the exporter itself is built on.

The gateway fixture comes from conftest.py.
"""

import logging
import time
import uuid

import grpc
import pika
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1 import (
    logs_service_pb2,
    logs_service_pb2_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from gatewaykit import (
    AMQP_BASE,
    CALL_TIMEOUT,
    attach_tail,
    running_gateway,
    take,
    unique_service,
)
from loggate.v1 import loggate_pb2


class Routed:
    """An exclusive queue bound to the gateway's exchange with `#`: what
    RabbitMQ routed, with the routing keys."""

    def __init__(self, gateway):
        # running_gateway names the vhost and exchange after the instance's tag.
        tag = gateway.instance.removeprefix("pytest-gw-")
        params = pika.URLParameters(f"{AMQP_BASE}/loggate-pytest-{tag}")
        self.connection = pika.BlockingConnection(params)
        self.channel = self.connection.channel()
        queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(queue, f"pytest.{tag}", routing_key="#")
        self.queue = queue

    def routing_keys(self, count, timeout=20):
        keys = []
        deadline = time.monotonic() + timeout
        while len(keys) < count and time.monotonic() < deadline:
            method, _, _ = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                time.sleep(0.05)
            else:
                keys.append(method.routing_key)
        return keys

    def close(self):
        self.connection.close()


def sdk_logger(gateway, resource):
    """A `logging` logger whose records go to the gateway through the
    OpenTelemetry SDK, and the provider to flush and shut down."""
    provider = LoggerProvider(resource=Resource.create(resource))
    exporter = OTLPLogExporter(endpoint=f"http://{gateway.address}", insecure=True)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logger = logging.getLogger(f"pytest.otlp.{uuid.uuid4().hex[:8]}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(LoggingHandler(level=logging.NOTSET, logger_provider=provider))
    return logger, provider


def test_python_logging_through_the_sdk_is_mapped_routed_and_tailed(gateway):
    service = unique_service("pytest-otlp")
    tail = attach_tail(gateway.stub, services=[service])
    routed = Routed(gateway)
    logger, provider = sdk_logger(
        gateway,
        {
            "service.name": service,
            "host.name": "pytest-host",
            "deployment.environment": "test",
        },
    )
    tracer = TracerProvider().get_tracer("pytest")
    before = time.time()
    try:
        with tracer.start_as_current_span("checkout") as span:
            logger.warning("disk %s almost full", "/var", extra={"used_pct": 93})
            context = span.get_span_context()
        logger.debug("cache miss")
        logger.error("payment failed")
        logger.critical("out of memory")
        logger.info("plain info")
        assert provider.force_flush(10_000)
    finally:
        provider.shutdown()

    records = take(tail, 5)
    keys = routed.routing_keys(5)
    routed.close()
    assert keys == [
        f"{service}.warn",
        f"{service}.debug",
        f"{service}.error",
        f"{service}.fatal",
        f"{service}.info",
    ]
    assert [r.level for r in records] == [
        loggate_pb2.LEVEL_WARN,
        loggate_pb2.LEVEL_DEBUG,
        loggate_pb2.LEVEL_ERROR,
        loggate_pb2.LEVEL_FATAL,
        loggate_pb2.LEVEL_INFO,
    ]
    assert [r.message for r in records] == [
        "disk /var almost full",
        "cache miss",
        "payment failed",
        "out of memory",
        "plain info",
    ]

    warning = records[0]
    assert warning.service == service
    assert warning.node == "pytest-host"
    assert warning.gateway == gateway.instance
    assert warning.id
    assert warning.trace_id == format(context.trace_id, "032x")
    assert warning.span_id == format(context.span_id, "016x")
    assert records[1].trace_id == "" and records[1].span_id == ""
    # time_unix_nano is the logging record's creation time.
    sent = warning.time.seconds + warning.time.nanos / 1e9
    assert before - 1 <= sent <= time.time() + 1

    attributes = dict(warning.attributes)
    assert attributes["used_pct"] == "93"  # an int, rendered as a string
    assert attributes["scope.name"].startswith("pytest.otlp.")
    assert attributes["resource.deployment.environment"] == "test"
    assert attributes["resource.telemetry.sdk.language"] == "python"
    assert attributes["resource.telemetry.sdk.name"] == "opentelemetry"
    assert "resource.service.name" not in attributes  # it is the service
    assert "resource.host.name" not in attributes  # it is the node
    assert any(k.startswith("code.") for k in attributes), attributes
    assert not any(k.startswith("loggate.") for k in attributes), attributes


def any_string(text):
    return common_pb2.AnyValue(string_value=text)


def test_a_bad_record_is_counted_in_partial_success_and_the_rest_published(gateway):
    service = unique_service("pytest-otlp-partial")
    tail = attach_tail(gateway.stub, services=[service])
    stub = logs_service_pb2_grpc.LogsServiceStub(gateway.channel)
    request = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource_pb2.Resource(
                    attributes=[common_pb2.KeyValue(key="service.name", value=any_string(service))]
                ),
                scope_logs=[
                    logs_pb2.ScopeLogs(
                        log_records=[
                            logs_pb2.LogRecord(body=any_string("kept 1")),
                            logs_pb2.LogRecord(body=any_string("bad"), trace_id=b"\x01" * 5),
                            logs_pb2.LogRecord(
                                body=common_pb2.AnyValue(
                                    kvlist_value=common_pb2.KeyValueList(
                                        values=[
                                            common_pb2.KeyValue(
                                                key="n",
                                                value=common_pb2.AnyValue(int_value=3),
                                            )
                                        ]
                                    )
                                )
                            ),
                        ]
                    )
                ],
            )
        ]
    )
    response = stub.Export(request, timeout=CALL_TIMEOUT)
    assert response.partial_success.rejected_log_records == 1
    assert response.partial_success.error_message == (
        "resource_logs[0].scope_logs[0].log_records[1].trace_id: 5 bytes, not 16"
    )
    records = take(tail, 2)
    assert [r.message for r in records] == ["kept 1", '{"n":3}']


def test_export_is_refused_without_credentials_on_a_gateway_with_auth(tmp_path):
    auth_file = tmp_path / "auth.toml"
    auth_file.write_text(
        '[[principal]]\nname = "someone"\n'
        f'token_sha256 = "{"0" * 64}"\nlog = ["*"]\ntail = ["*"]\n'
    )
    with running_gateway("--auth-file", str(auth_file)) as gateway:
        stub = logs_service_pb2_grpc.LogsServiceStub(gateway.channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Export(logs_service_pb2.ExportLogsServiceRequest(), timeout=CALL_TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
