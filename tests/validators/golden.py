"""Golden acknowledgements for samples/: fixed clock and control numbers.

Regenerate after a deliberate change with:  .venv/bin/python -m tests.validators.golden
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

from gateway.cli import _party
from gateway.offline import ControlNumbers, FileReport, validate_file
from tests.conftest import SAMPLES
from validators.interchange import ValidationOptions

NOW = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
RECEIVER = ("ZZ", "EDI834GATEWAY")
SUFFIXES = (".ta1", ".999", ".rejected.json")


def expectation(sample: Path) -> dict[str, Any]:
    return json.loads(sample.with_suffix(".expect.json").read_text())  # type: ignore[no-any-return]


def options_for(sample: Path) -> ValidationOptions:
    args = expectation(sample).get("args", [])
    sender = _party(args[args.index("--sender") + 1]) if "--sender" in args else None
    return ValidationOptions(expected_sender=sender, expected_receiver=RECEIVER)


def produce(sample: Path, out_dir: Path) -> FileReport:
    with sample.open("rb") as stream:
        return validate_file(
            stream,
            sample.name,
            out_dir,
            options=options_for(sample),
            numbers=ControlNumbers(1),
            now=NOW,
        )


def codes_of(summary: dict[str, Any]) -> set[str]:
    """Every ack code a file produced, as FAMILY:CODE (TA104, TA105, AK901, AK905, IK501...)."""
    got: set[str] = set()
    for ic in summary["interchanges"]:
        got.update(f"TA105:{f['code']}" for f in ic["findings"])
        if ic["ta1"]:
            got.add(f"TA104:{ic['ta1']['code']}")
        for g in ic["groups"]:
            got.add(f"AK901:{g['ack']}")
            got.update(f"AK905:{f['code']}" for f in g["findings"])
            for t in g["transaction_sets"]:
                got.add(f"IK501:{t['ack']}")
                got.update(f"IK502:{c}" for c in t["codes"])
                got.update(f"{f['family']}:{f['code']}" for f in t["findings"])
    return got


def regenerate() -> None:
    for sample in sorted(SAMPLES.glob("*.834")):
        for suffix in SUFFIXES:
            sample.with_suffix(suffix).unlink(missing_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            produce(sample, Path(tmp))
            for made in Path(tmp).iterdir():
                (SAMPLES / made.name).write_bytes(made.read_bytes())


if __name__ == "__main__":
    regenerate()
