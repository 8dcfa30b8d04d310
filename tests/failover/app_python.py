"""A Python service under test: logs `--count` numbered records through
`loggate.LoggateHandler` at `--rate` records/s to the gateways in
`--targets`, then closes the handler (which delivers what is queued) and
prints the handler's counters as one JSON line on stdout.

Each record's message is `<service>-<n>`, so the test can tell exactly which
records reached the history."""

import argparse
import json
import logging
import time

import loggate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    args = parser.parse_args()

    handler = loggate.LoggateHandler(service=args.service, target=args.targets)
    logger = logging.getLogger(args.service)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)

    started = time.monotonic()
    calls = []
    for n in range(args.count):
        # Paced against the start, so a slow moment does not lower the rate.
        pause = started + n / args.rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        before = time.perf_counter()
        logger.info("%s-%d", args.service, n, extra={"seq": n})
        calls.append(time.perf_counter() - before)

    handler.close(timeout=120)
    stats = handler.stats()
    print(
        json.dumps(
            {
                "sent": stats.sent,
                "dropped": stats.dropped,
                "failed": stats.failed,
                "retried": stats.retried,
                "reconnects": stats.reconnects,
                "call_p99_ms": round(sorted(calls)[int(len(calls) * 0.99)] * 1000, 3),
                "call_max_ms": round(max(calls) * 1000, 3),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
