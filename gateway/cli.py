"""The `edi834` console script."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from validators.interchange import ValidationOptions


def _party(value: str) -> tuple[str, str]:
    qualifier, sep, ident = value.partition(":")
    if not sep or not qualifier or not ident:
        raise argparse.ArgumentTypeError("expected QUALIFIER:ID, e.g. ZZ:EDI834GATEWAY")
    return qualifier, ident.strip()


def _timestamp(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edi834", description="X12 834 enrollment gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser(
        "validate",
        help="validate 834 files offline and write their TA1/999",
        description="Exit status: 0 all accepted, 1 accepted with errors or partially "
        "accepted, 2 rejected, 3 unusable input.",
    )
    v.add_argument("files", nargs="+", metavar="FILE", help="834 files; - reads standard input")
    v.add_argument("--out", type=Path, required=True, help="directory for the acknowledgements")
    v.add_argument("--json", action="store_true", help="print a JSON summary per file")
    v.add_argument("--sender", type=_party, help="expected sender QUALIFIER:ID (else TA1 006)")
    v.add_argument("--receiver", type=_party, help="our receiver QUALIFIER:ID (else TA1 009)")
    v.add_argument("--control-number", type=int, default=1, help="first ISA13/GS06 we use")
    v.add_argument("--now", type=_timestamp, help="timestamp for the acks (ISO 8601)")
    v.add_argument("--max-segment-bytes", type=int, default=65_536)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "validate":
        from gateway.offline import run_validate

        options = ValidationOptions(
            expected_sender=args.sender,
            expected_receiver=args.receiver,
            max_segment_bytes=args.max_segment_bytes,
        )
        return run_validate(
            args.files,
            args.out,
            as_json=args.json,
            options=options,
            control_number=args.control_number,
            now=args.now or dt.datetime.now(dt.UTC),
        )
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
