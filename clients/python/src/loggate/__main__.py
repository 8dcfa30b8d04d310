"""``python -m loggate``: a tiny command line.

    python -m loggate tail --service checkout [--target gw1:50051,gw2:50051]
        [--level warn] [--from-start | --since 10m | --resume TOKEN]
        [--history-only] [--limit N] [--show-token]
    python -m loggate log --service checkout [--level warn] [--attr k=v] MESSAGE

A tailed record prints as one line, ``time LEVEL service node: message
k=v… [trace=…] id=…``; every control character a record carries (and a
backslash) is escaped, so a record cannot drive the terminal. On Ctrl-C or
when the tail ends, the last resume token goes to stderr (``--resume`` it).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import List, Optional

from . import Client, Level, LoggateError, TlsConfig
from ._channel import DEFAULT_TARGET
from .v1 import loggate_pb2

# C0, DEL, C1, and the format characters that reorder or hide text (bidi
# overrides and isolates, zero-width ones, line/paragraph separators).
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group(0)
    if ch == "\\":
        return "\\\\"
    code = ord(ch)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if ch in named:
        return named[ch]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` with control and invisible formatting characters escaped."""
    return _UNSAFE.sub(_escape_char, text)


def describe(record: loggate_pb2.LogRecord) -> str:
    """One line for a record, safe to print to a terminal."""
    when = record.time.ToDatetime().isoformat(timespec="milliseconds") + "Z"
    level = loggate_pb2.Level.Name(record.level).replace("LEVEL_", "")
    if level == "UNSPECIFIED":
        level = "INFO"
    where = record.service + (f" {record.node}" if record.node else "")
    line = f"{when} {level:5} {where}: {record.message}"
    for key in sorted(record.attributes):
        line += f" {key}={record.attributes[key]}"
    if record.trace_id:
        line += f" trace={record.trace_id}"
        if record.span_id:
            line += f" span={record.span_id}"
    line += f" id={record.id}"
    return escape(line)


def _tls(args: argparse.Namespace) -> object:
    if args.tls_cert or args.tls_key or args.tls_server_name:
        return TlsConfig(
            ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key, server_name=args.tls_server_name
        )
    if args.tls_ca:
        return args.tls_ca
    return True if args.tls else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loggate", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target",
        "--server",
        default=os.environ.get("LOGGATE_SERVER", DEFAULT_TARGET),
        help="gateway address(es): host:port, several comma-separated, https://host:port"
        " for TLS, or dns:///name:port ($LOGGATE_SERVER; default %(default)s)",
    )
    common.add_argument(
        "--token", default=os.environ.get("LOGGATE_TOKEN"), help="bearer token ($LOGGATE_TOKEN)"
    )
    common.add_argument("--tls", action="store_true", help="TLS with the system's roots")
    common.add_argument(
        "--tls-ca",
        default=os.environ.get("LOGGATE_TLS_CA"),
        help="TLS, trusting this CA (PEM file; $LOGGATE_TLS_CA)",
    )
    common.add_argument(
        "--tls-cert",
        default=os.environ.get("LOGGATE_TLS_CERT"),
        help="client certificate (PEM file; $LOGGATE_TLS_CERT)",
    )
    common.add_argument(
        "--tls-key",
        default=os.environ.get("LOGGATE_TLS_KEY"),
        help="its private key (PEM file; $LOGGATE_TLS_KEY)",
    )
    common.add_argument("--tls-server-name", help="name to check the certificate against")
    commands = parser.add_subparsers(dest="command", required=True)

    tail = commands.add_parser("tail", parents=[common], help="follow records")
    tail.add_argument("--service", action="append", default=[], help="service (repeatable)")
    tail.add_argument("--level", help="lowest level shown: trace, debug, info, warn, error, fatal")
    tail.add_argument("--node", action="append", default=[], help="node (repeatable)")
    tail.add_argument("--trace-id", default="")
    tail.add_argument("--contains", default="", help="substring of the message")
    tail.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE")
    start = tail.add_mutually_exclusive_group()
    start.add_argument("--from-start", action="store_true", help="from the oldest record kept")
    start.add_argument(
        "--since", help="records that arrived this long ago or later: 90s, 10m, 2h, 1d"
    )
    start.add_argument("--resume", metavar="TOKEN", help="right after the record of this token")
    tail.add_argument("--history-only", action="store_true", help="stop at the head of the history")
    tail.add_argument("--limit", type=int, default=0, help="stop after N records")
    tail.add_argument("--show-token", action="store_true", help="print each record's resume token")
    tail.add_argument("--no-reconnect", action="store_true", help="end when the stream breaks")

    log = commands.add_parser("log", parents=[common], help="send one record, print its id")
    log.add_argument("--service", required=True)
    log.add_argument("--level", default="info")
    log.add_argument("--node", default="")
    log.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE")
    log.add_argument("message")
    return parser


def _pairs(parser: argparse.ArgumentParser, items: List[str]) -> dict:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--attr {item!r}: KEY=VALUE wanted")
        pairs[key] = value
    return pairs


def _duration(parser: argparse.ArgumentParser, text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not match:
        parser.error(f"--since {text!r}: a duration like 90s, 10m, 2h or 1d wanted")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * unit


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        client = Client(args.target, token=args.token, tls=_tls(args))
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    with client:
        try:
            if args.command == "log":
                print(
                    client.log(
                        args.service,
                        args.message,
                        level=args.level,
                        node=args.node,
                        attributes=_pairs(parser, args.attr),
                    )
                )
                return 0
            return _tail(parser, client, args)
        except LoggateError as err:
            print(f"loggate: {err}", file=sys.stderr)
            return 1
        except ValueError as err:
            parser.error(str(err))
    return 0


def _tail(parser: argparse.ArgumentParser, client: Client, args: argparse.Namespace) -> int:
    tail = client.tail(
        args.service,
        min_level=Level.parse(args.level) if args.level else None,
        nodes=args.node,
        trace_id=args.trace_id,
        contains=args.contains,
        attributes=_pairs(parser, args.attr),
        since=_duration(parser, args.since) if args.since else None,
        from_beginning=args.from_start,
        resume_token=args.resume,
        history_only=args.history_only,
        limit=args.limit,
        reconnect=not args.no_reconnect,
    )
    out = sys.stdout
    try:
        for record in tail:
            line = describe(record)
            if args.show_token:
                line += f" token={escape(tail.resume_token or '')}"
            out.write(line + "\n")
            out.flush()
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        return 0
    finally:
        tail.close()
        if tail.resume_token:
            print(f"loggate: resume with --resume {tail.resume_token}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
