"""`edi834 validate`: validate files offline and write their acknowledgements. Reads streaming."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gateway.parallel import SPLIT_FROM_BYTES, FileSetChecks, pool
from gateway.storage import PRIVATE_FILE, make_private_dirs
from validators.acks import build_999, build_ta1
from validators.interchange import (
    Engine,
    InterchangeResult,
    Outcome,
    UnusableResult,
    ValidationOptions,
    validate_stream,
)
from validators.setlist import SETS_LISTED

CHUNK = 1 << 16
EXIT_CODES = {
    "accepted": 0,
    "accepted_with_errors": 1,
    "partially_accepted": 1,
    "rejected": 2,
    "unusable": 3,
}


@dataclass
class ControlNumbers:
    """Hands out our ISA13/GS06 control numbers in order."""

    next_value: int = 1

    def take(self) -> int:
        value = self.next_value
        self.next_value = value + 1 if value < 999_999_999 else 1
        return value


@dataclass
class FileReport:
    name: str
    interchanges: list[dict[str, Any]] = field(default_factory=list)
    unusable: dict[str, Any] | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if not self.outcomes:
            return "unusable"
        kinds = set(self.outcomes)
        if self.unusable is not None:
            kinds.add(Outcome.REJECTED)
        if kinds == {Outcome.ACCEPTED}:
            return "accepted"
        if kinds == {Outcome.REJECTED}:
            return "rejected"
        if Outcome.REJECTED in kinds or Outcome.PARTIALLY_ACCEPTED in kinds:
            return "partially_accepted"
        return "accepted_with_errors"

    def as_dict(self) -> dict[str, Any]:
        totals: dict[str, int] = {}
        for ic in self.interchanges:
            for key, value in ic["counts"].items():
                totals[key] = totals.get(key, 0) + value
        out: dict[str, Any] = {
            "file": self.name,
            "verdict": self.verdict,
            "exit_code": EXIT_CODES[self.verdict],
            "counts": totals,
            "interchanges": self.interchanges,
            "written": self.written,
        }
        if self.unusable is not None:
            out["unusable"] = self.unusable
        return out


def summarize(result: InterchangeResult) -> dict[str, Any]:
    """A JSON-ready summary of one interchange. Element values (possible PHI) are left out."""
    return {
        "isa13": result.isa13,
        "sender": ":".join(result.sender),
        "receiver": ":".join(result.receiver),
        "outcome": result.outcome.value,
        "ta1": {"code": result.ta1_code.value, "note": result.ta1_note}
        if result.ta1_required
        else None,
        "findings": [i.as_dict(include_values=False) for i in result.issues],
        "counts": result.counts(),
        "groups": [
            {
                "gs06": g.gs.element(6),
                "ack": g.ack_code.value,
                "sets_included": g.sets_included,
                "sets_received": len(g.sets),
                "sets_accepted": g.sets_accepted,
                "findings": [i.as_dict(include_values=False) for i in g.issues],
                # The first sets, as the status API lists them: the 999 answers every one.
                "transaction_sets": [
                    {
                        "st02": s.st02,
                        "ack": s.ack_code.value,
                        "codes": s.set_error_codes,
                        "members": s.member_count,
                        "segments": s.segment_count,
                        "findings": [i.as_dict(include_values=False) for i in s.issues],
                        "findings_truncated": s.issues_truncated,
                    }
                    for s in itertools.islice(g.sets, SETS_LISTED)
                ],
                "transaction_sets_omitted": max(0, len(g.sets) - SETS_LISTED),
            }
            for g in result.groups
        ],
    }


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def validate_file(
    stream: IO[bytes],
    name: str,
    out_dir: Path,
    *,
    options: ValidationOptions,
    numbers: ControlNumbers,
    now: dt.datetime,
) -> FileReport:
    """Validate one input and write `<stem>.ta1`, `<stem>.999` or `<stem>.rejected.json`."""
    stem = "stdin" if name == "-" else Path(name).name.rsplit(".", 1)[0] or Path(name).name
    report = FileReport(name=name)
    ta1_path, ack_path = out_dir / f"{stem}.ta1", out_dir / f"{stem}.999"
    for path in (ta1_path, ack_path, out_dir / f"{stem}.rejected.json"):
        path.unlink(missing_ok=True)
    sender = options.expected_sender  # the acks are addressed to it (else to the ISA's)
    for result in validate_stream(_chunks(stream), options):
        if isinstance(result, UnusableResult):
            report.unusable = {
                "reason": result.reason.value,
                "offset": result.offset,
                "message": result.message,
            }
            continue
        report.outcomes.append(result.outcome)
        report.interchanges.append(summarize(result))
        for wanted, path, build in (
            (result.ta1_required, ta1_path, build_ta1),
            (result.wants_999, ack_path, build_999),
        ):
            if wanted:
                with open(path, "ab", opener=_private) as f:
                    number = numbers.take()
                    f.write(build(result, control_number=number, now=now, receiver=sender))
        result.close()
    if report.unusable is not None:
        path = out_dir / f"{stem}.rejected.json"
        with open(path, "w", encoding="utf-8", opener=_private) as out:
            out.write(json.dumps({"file": name, **report.unusable}, indent=2) + "\n")
        report.written.append(str(path))
    report.written[:0] = [str(p) for p in (ta1_path, ack_path) if p.exists()]
    return report


def _private(path: str, flags: int) -> int:
    """The acks quote member data (IK404 bad values, CTX): 0600 whatever the umask, as in the
    data directory."""
    return os.open(path, flags, PRIVATE_FILE)


def run_validate(
    files: list[str],
    out_dir: Path,
    *,
    as_json: bool,
    options: ValidationOptions,
    control_number: int,
    now: dt.datetime,
    processes: int = 1,
) -> int:
    make_private_dirs(out_dir)  # 0700 for each folder it makes; one that exists keeps its mode
    out_dir.mkdir(parents=True, exist_ok=True)  # a file in the way: the error it always was
    numbers = ControlNumbers(control_number)
    worst = 0
    for name in files:
        try:
            if name == "-":
                report = validate_file(
                    sys.stdin.buffer, name, out_dir, options=options, numbers=numbers, now=now
                )
            else:
                file_options = _with_set_checks(Path(name), options, processes)
                with open(name, "rb") as stream:
                    report = validate_file(
                        stream, name, out_dir, options=file_options, numbers=numbers, now=now
                    )
        except OSError as exc:
            report = FileReport(name=name)
            report.unusable = {
                "reason": "unreadable",
                "offset": 0,
                "message": exc.strerror or str(exc),
            }
        summary = report.as_dict()
        worst = max(worst, summary["exit_code"])
        if as_json:
            sys.stdout.write(json.dumps(summary) + "\n")
        else:
            sys.stdout.write(_human(summary))
    return worst


def _with_set_checks(path: Path, options: ValidationOptions, processes: int) -> ValidationOptions:
    """Large 834 sets split across `processes` processes (gateway.parallel), when it pays."""
    if processes <= 1 or options.engine is not Engine.FAST:
        return options
    if path.stat().st_size < SPLIT_FROM_BYTES:
        return options
    checks = FileSetChecks(
        path,
        pool(processes),
        max_segment_bytes=options.max_segment_bytes,
        max_issues=options.max_issues_per_set,
    )
    return dataclasses.replace(options, set_checks=checks) if checks.split else options


def _human(summary: dict[str, Any]) -> str:
    lines = [f"{summary['file']}: {summary['verdict']}"]
    if "unusable" in summary:
        lines.append(f"  {summary['unusable']['message']}")
    for ic in summary["interchanges"]:
        c = ic["counts"]
        lines.append(
            f"  ISA13 {ic['isa13']} from {ic['sender']}: {ic['outcome']}; "
            f"sets {c['sets_accepted']}/{c['sets_received']} accepted, "
            f"members {c['members_accepted']}/{c['members_received']} accepted"
        )
        for f in ic["findings"]:
            lines.append(f"    TA105 {f['code']}: {f['message']}")
        for g in ic["groups"]:
            for f in g["findings"]:
                lines.append(f"    GS06 {g['gs06']} AK905 {f['code']}: {f['message']}")
            for s in g["transaction_sets"]:
                for f in s["findings"]:
                    lines.append(f"    ST02 {s['st02']} {f['family']} {f['code']}: {f['message']}")
    for path in summary["written"]:
        lines.append(f"  wrote {path}")
    return "\n".join(lines) + "\n"
