#!/usr/bin/env python3
"""Ship structured log records to loggate and follow them live, with the raw
gRPC stubs (`loggate.v1`): the calls any gRPC client makes. For the
convenient client and the logging handler, see README.md.

Install the package first (pip install ./clients/python: it carries the
stubs), then:

    python example.py --server 127.0.0.1:50051 --service checkout

It starts a Tail filtered to one service, logs one record with Log and three
with LogBatch, prints the ids the gateway returned, then prints the four
records as the Tail delivers them.

A gateway started with --auth-file wants a bearer token (--token or
$LOGGATE_TOKEN); one serving TLS wants --tls-ca (or --tls, to trust the
system's roots), and with --tls-client-ca also --tls-cert and --tls-key:

    python example.py --server localhost:50051 --tls-ca ca.pem \
        --token "$LOGGATE_TOKEN" --service checkout
"""

import argparse
import os
import sys

import grpc

from loggate.v1 import loggate_pb2, loggate_pb2_grpc

CALL_TIMEOUT = 10  # seconds, for Log and LogBatch
TAIL_TIMEOUT = 30  # seconds, for the whole Tail

# A W3C trace context. The gateway fills a record's empty trace_id/span_id
# from the call's `traceparent` metadata.
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


def run(stub, service, metadata=()):
    """Tails `service`, logs four records as it, and prints what comes back.

    `metadata` goes on every call: the `authorization` header when the token
    travels as plain metadata (see `open_channel`).
    """
    metadata = list(metadata)
    # Tail delivers only records published after it is attached. The gateway
    # sends the response headers once its consumer is registered, so wait for
    # them before logging.
    tail = stub.Tail(
        loggate_pb2.TailRequest(services=[service]),
        timeout=TAIL_TIMEOUT,
        metadata=metadata,
    )
    tail.initial_metadata()

    try:
        # One record, confirmed by RabbitMQ before Log returns.
        record = loggate_pb2.LogRecord(
            service=service,
            node="example-host",
            level=loggate_pb2.LEVEL_WARN,
            message="payment provider slow, retrying",
            attributes={"order_id": "A-1042", "attempt": "2"},
        )
        response = stub.Log(
            loggate_pb2.LogRequest(record=record),
            timeout=CALL_TIMEOUT,
            metadata=metadata + [("traceparent", TRACEPARENT)],
        )
        print(f"Log id: {response.id}")

        # Several records in one call, published in order.
        batch = loggate_pb2.LogBatchRequest(
            records=[
                loggate_pb2.LogRecord(
                    service=service,
                    level=loggate_pb2.LEVEL_INFO,
                    message=f"batch step {step}",
                    attributes={"step": str(step)},
                )
                for step in (1, 2, 3)
            ]
        )
        batch_response = stub.LogBatch(batch, timeout=CALL_TIMEOUT, metadata=metadata)
        print(f"LogBatch ids: {', '.join(batch_response.ids)}")

        expected = 1 + len(batch_response.ids)
        print(f"Tailed records for service {service!r}:")
        for count, event in enumerate(tail, start=1):
            print("  " + describe(event.record))
            if count == expected:
                break
        else:
            print("The tail ended before all records arrived.", file=sys.stderr)
            return 1
    finally:
        tail.cancel()
    return 0


def describe(record):
    level = loggate_pb2.Level.Name(record.level).removeprefix("LEVEL_")
    when = record.time.ToDatetime().isoformat(timespec="milliseconds")
    line = f"{when} {level:5} {record.service}: {record.message}"
    if record.attributes:
        attrs = " ".join(f"{k}={v}" for k, v in sorted(record.attributes.items()))
        line += f" [{attrs}]"
    if record.trace_id:
        line += f" trace={record.trace_id}"
    line += f" id={record.id} via {record.gateway}"
    if record.principal:  # who wrote it, when the gateway checks callers
        line += f" by {record.principal}"
    return line


def read_pem(parser, flag, path):
    if path is None:
        return None
    try:
        with open(path, "rb") as pem:
            return pem.read()
    except OSError as err:
        parser.error(f"{flag}: {err}")


def open_channel(parser, args):
    """A channel to the gateway, and the metadata every call must carry.

    With TLS the token rides on the channel as call credentials
    (`authorization: Bearer <token>` on every call). gRPC refuses call
    credentials on a plaintext channel, so there the token is returned as
    metadata for each call instead.
    """
    target = args.server
    tls = args.tls or bool(args.tls_ca or args.tls_cert)
    # Also accept the http:// and https:// forms the loggate CLI uses.
    if target.startswith("https://"):
        target, tls = target.removeprefix("https://"), True
    elif target.startswith("http://"):
        target = target.removeprefix("http://")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")

    if not tls:
        metadata = []
        if args.token:
            metadata.append(("authorization", f"Bearer {args.token}"))
        return grpc.insecure_channel(target), metadata

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read_pem(parser, "--tls-ca", args.tls_ca),
        private_key=read_pem(parser, "--tls-key", args.tls_key),
        certificate_chain=read_pem(parser, "--tls-cert", args.tls_cert),
    )
    if args.token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(args.token)
        )
    return grpc.secure_channel(target, credentials), []


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("LOGGATE_SERVER", "127.0.0.1:50051"),
        help="gateway address host:port, or https://host:port for TLS "
        "(default: $LOGGATE_SERVER or 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--service",
        default="example",
        help="service name to log as and to tail (default: example)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("LOGGATE_TOKEN"),
        help="bearer token for a gateway with --auth-file, sent as "
        "`authorization: Bearer <token>` (default: $LOGGATE_TOKEN)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="use TLS, trusting the system's root certificates "
        "(implied by --tls-ca, --tls-cert and an https:// --server)",
    )
    parser.add_argument(
        "--tls-ca",
        metavar="PEM",
        default=os.environ.get("LOGGATE_TLS_CA"),
        help="use TLS and trust the gateway's certificate if this CA signed it "
        "(default: $LOGGATE_TLS_CA)",
    )
    parser.add_argument(
        "--tls-cert",
        metavar="PEM",
        default=os.environ.get("LOGGATE_TLS_CERT"),
        help="client certificate for a gateway that requires one (mTLS); "
        "needs --tls-key (default: $LOGGATE_TLS_CERT)",
    )
    parser.add_argument(
        "--tls-key",
        metavar="PEM",
        default=os.environ.get("LOGGATE_TLS_KEY"),
        help="the private key of --tls-cert (default: $LOGGATE_TLS_KEY)",
    )
    args = parser.parse_args()

    channel, metadata = open_channel(parser, args)
    with channel:
        stub = loggate_pb2_grpc.LogGatewayStub(channel)
        try:
            return run(stub, args.service, metadata)
        except grpc.RpcError as err:
            print(
                f"loggate at {args.server}: {err.code().name}: {err.details()}",
                file=sys.stderr,
            )
            return 1


if __name__ == "__main__":
    sys.exit(main())
