"""The ledger stage on large files: a generated exchange-style 834 (balanced premiums, correct
QTY) of N members is received and validated by the real worker, then applied to the enrollment
ledger by a *separate process*, whose wall time and peak RSS are reported. Sizes run side by
side so "memory does not grow with the file" is a figure, not a claim.

Then the same file again as a full-file audit (BGN08 4, INS03 030), reconciled against the
ledger it just built (every member matches).

Usage: python tests/benchmarks/bench_ledger.py [--members 10000 100000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time
from gateway.context import Gateway
from gateway.logging import configure_logging
from gateway.settings import Settings
from gateway.worker.run import Worker
configure_logging("warning")
gw = Gateway.open(Settings(data_dir=sys.argv[1], database_url=sys.argv[2]))
worker = Worker(gw)
start = time.perf_counter()
if sys.argv[3] == "validate":
    while worker.run_once():
        pass
else:
    while worker.apply_ledger_once():
        pass
elapsed = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report its
# parent's peak (this benchmark's parent holds the file being rewritten).
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": elapsed, "peak_rss_mb": hwm / 1024}))
"""


def child(data_dir: Path, url: str, stage: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir), url, stage],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def audit_segments(src: BinaryIO) -> Iterator[bytes]:
    """The file as a full-file audit (BGN08 4, INS03/HD01 030, a new ISA13), segment by
    segment, in constant memory."""
    rest = b""
    isa13 = b""
    while chunk := src.read(1 << 20):
        *segments, rest = (rest + chunk).split(b"~")
        for seg in segments:
            if seg.startswith(b"ISA*"):
                isa13 = seg[90:99]
                seg = seg[:90] + b"%09d" % (int(isa13) + 1) + seg[99:]
            elif seg.startswith(b"BGN*") and seg.endswith(b"***2"):
                seg = seg[:-1] + b"4"
            elif seg.startswith((b"INS*", b"HD*")):
                seg = seg.replace(b"*021*", b"*030*", 1)
            elif seg.startswith(b"IEA*"):
                seg = seg.replace(isa13, b"%09d" % (int(isa13) + 1))
            yield seg + b"~"
    if rest:
        yield rest


def run(members: int, postgres: str | None) -> list[dict[str, object]]:
    from sqlalchemy import func, select

    from gateway.context import Gateway
    from gateway.db import repositories as repo
    from gateway.db.migrate import upgrade
    from gateway.db.models import CoreDelivery, LedgerMember, Receipt, Reconciliation
    from gateway.db.session import unit_of_work
    from gateway.partners import add_partner
    from gateway.settings import Settings
    from tests.benchmarks.generate_834 import write_834

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "var"
        settings = Settings(data_dir=data, database_url=postgres or "")
        url = settings.sqlalchemy_url
        if postgres:
            from sqlalchemy import create_engine, text

            engine = create_engine(postgres)
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            engine.dispose()
        gw = Gateway.open(settings)
        upgrade(url)
        with unit_of_work(gw.sessions) as s:
            partner, _ = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
            partner_id = partner.id
        source = Path(tmp) / "big.834"
        with open(source, "wb") as f:
            _, segments = write_834(f, members, seed=members)
        audit = Path(tmp) / "audit.834"
        with open(source, "rb") as src, open(audit, "wb") as out:
            out.writelines(audit_segments(src))
        for label, path in (("apply", source), ("audit", audit)):
            pending = gw.blobs.begin()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    pending.write(chunk)
            blob = pending.commit()
            with unit_of_work(gw.sessions) as s:
                repo.insert_receipt(
                    s,
                    Receipt(
                        partner_id=partner_id,
                        channel="http",
                        filename=path.name,
                        sha256=blob.sha256,
                        dedup_sha256=blob.sha256,
                        size=blob.size,
                        blob_path=blob.rel_path,
                    ),
                )
            validated = child(data, url, "validate")
            applied = child(data, url, "ledger")
            with gw.reads() as s:
                receipt = s.scalars(select(Receipt).order_by(Receipt.received_at.desc())).first()
                assert receipt is not None
                rec = s.scalar(
                    select(Reconciliation).where(Reconciliation.receipt_id == receipt.id)
                )
                ledger_rows = s.scalar(select(func.count()).select_from(LedgerMember))
                outbox = s.scalar(select(func.count()).select_from(CoreDelivery))
                rows.append(
                    {
                        "stage": label,
                        "members": members,
                        "mb": round(path.stat().st_size / 1e6, 1),
                        "outcome": receipt.outcome,
                        "ledger_status": receipt.ledger_status,
                        "applied": receipt.members_applied,
                        "rejected": receipt.members_business_rejected,
                        "ledger_members": ledger_rows,
                        "outbox": outbox,
                        "matched": rec.members_matched if rec else None,
                        "discrepancies": (
                            rec.missing_in_file + rec.missing_in_ledger + rec.mismatches
                            if rec
                            else None
                        ),
                        "validate_s": round(validated["seconds"], 1),
                        "ledger_s": round(applied["seconds"], 1),
                        "members_per_s": round(members / applied["seconds"]),
                        "ledger_peak_rss_mb": round(applied["peak_rss_mb"], 1),
                    }
                )
        del segments
        gw.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--postgres", help="a PostgreSQL URL (its public schema is dropped)")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {'PostgreSQL' if args.postgres else 'SQLite'}"
    )
    table: list[dict[str, object]] = []
    for n in args.members:
        t0 = time.perf_counter()
        table += run(n, args.postgres)
        print(f"  {n} members done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    columns = list(table[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in table:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    print(
        f"(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB)"
    )


if __name__ == "__main__":
    main()
