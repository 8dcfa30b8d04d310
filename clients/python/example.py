#!/usr/bin/env python3
"""Ship structured log records to loggate and follow them live.

Generate the stubs first (./generate.sh), then:

    python example.py --server 127.0.0.1:50051 --service checkout

It starts a Tail filtered to one service, logs one record with Log and three
with LogBatch, prints the ids the gateway returned, then prints the four
records as the Tail delivers them.
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


def run(stub, service):
    # Tail delivers only records published after it is attached. The gateway
    # sends the response headers once its consumer is registered, so wait for
    # them before logging.
    tail = stub.Tail(
        loggate_pb2.TailRequest(services=[service]), timeout=TAIL_TIMEOUT
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
            metadata=[("traceparent", TRACEPARENT)],
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
        batch_response = stub.LogBatch(batch, timeout=CALL_TIMEOUT)
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
    return line + f" id={record.id} via {record.gateway}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("LOGGATE_SERVER", "127.0.0.1:50051"),
        help="gateway address host:port (default: $LOGGATE_SERVER or 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--service",
        default="example",
        help="service name to log as and to tail (default: example)",
    )
    args = parser.parse_args()

    with grpc.insecure_channel(args.server) as channel:
        stub = loggate_pb2_grpc.LogGatewayStub(channel)
        try:
            return run(stub, args.service)
        except grpc.RpcError as err:
            print(
                f"loggate at {args.server}: {err.code().name}: {err.details()}",
                file=sys.stderr,
            )
            return 1


if __name__ == "__main__":
    sys.exit(main())
