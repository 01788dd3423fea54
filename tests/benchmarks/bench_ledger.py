"""The ledger stage on large files, and a file's whole way to the insurer's core system.

(a) Stage: a generated exchange-style 834 (balanced premiums, correct QTY; all members new) of N
    members is received and validated by the real worker first, then applied to the enrollment
    ledger by a *separate process*, whose wall time and peak RSS (VmHWM) are reported; then the
    same file as a full-file audit (BGN08 4, INS03 030) is reconciled against the ledger it just
    built (every member matches). Sizes run side by side, so "memory does not grow with the
    file" is a figure, not a claim.
(b) End to end (--e2e-members): `edi834 serve` with EDI834_CORE_EXPORT_DIR set; the file is
    POSTed over HTTP and the clock reads the 202, the 999 (status processed), the ledger
    (applied) and the moment every event is in the export directory (each outbox row marked
    delivered, i.e. its JSON Lines file renamed into place; the lines are counted at the end).

PostgreSQL by default (a throwaway cluster from tests/pgserver.py: fsync off, like the test
suite's); --sqlite, or --postgres URL for a server of your own (its public schema is dropped).
The figures are printed beside issue 15's targets for this 2-core machine, never asserted:
>= 5,000 members/s applied (100,000 in <= 20 s), an audit of 100,000 in <= 20 s, the ledger's
peak RSS <= 150 MB, and 1,000,000 members upload -> 999 -> applied -> exported in <= 5 min.

Usage: python tests/benchmarks/bench_ledger.py [--members 10000 100000]
           [--e2e-members 100000] [--sqlite | --postgres URL] [--profile PREFIX]
       (--e2e-members 1000000 for the target's size: a 518 MB file; 0 skips the end-to-end run)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import httpx

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time
from gateway.malloc import limit_arenas
limit_arenas()  # as every edi834 process does (gateway/malloc.py)
from gateway.context import Gateway
from gateway.logging import configure_logging
from gateway.settings import Settings
from gateway.worker.run import Worker
configure_logging("warning")
gw = Gateway.open(Settings(data_dir=sys.argv[1], database_url=sys.argv[2]))
worker = Worker(gw)
start = time.perf_counter()
cpu0 = time.process_time()
if sys.argv[3] == "validate":
    while worker.run_once():
        pass
else:
    import os
    profile = os.environ.get("BENCH_PROFILE")
    if profile:  # --profile: cProfile of this stage, for pstats
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    while worker.apply_ledger_once():
        pass
    if profile:
        profiler.disable()
        profiler.dump_stats(f"{profile}-{sys.argv[3]}-{os.getpid()}.prof")
elapsed = time.perf_counter() - start
import resource
from gateway import parallel
from tests.benchmarks.procs import cpu_seconds
usage = resource.getrusage(resource.RUSAGE_SELF)
# The validation pool's processes (the ledger's blocks are read there): alive until exit.
pool_cpu = sum(
    cpu_seconds(pid) for ex in parallel._pools.values() for pid in list(ex._processes or {})
)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report its
# parent's peak (this benchmark's parent holds the file being rewritten).
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": elapsed, "peak_rss_mb": hwm / 1024,
                  "cpu_s": usage.ru_utime + usage.ru_stime - cpu0, "pool_cpu_s": pool_cpu}))
"""


PROFILE: str | None = None  # --profile: a path prefix for the ledger stage's cProfile dumps


def child(data_dir: Path, url: str, stage: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if PROFILE and stage != "validate":
        env["BENCH_PROFILE"] = PROFILE
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir), url, stage],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def audit_segments(src: BinaryIO) -> Iterator[bytes]:
    """The file as a full-file audit (BGN08 4, INS03/INS04 030/XN, HD01 030, a new ISA13),
    segment by segment, in constant memory."""
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
            elif seg.startswith(b"INS*"):
                seg = seg.replace(b"*021*EC*", b"*030*XN*", 1)  # the FFE's audit: 030/XN
            elif seg.startswith(b"HD*"):
                seg = seg.replace(b"*021*", b"*030*", 1)
            elif seg.startswith(b"IEA*"):
                seg = seg.replace(isa13, b"%09d" % (int(isa13) + 1))
            yield seg + b"~"
    if rest:
        yield rest


def run(members: int, postgres: str, pg_cpu: Callable[[], float] | None) -> list[dict[str, object]]:
    """Stage (a) for one size; `pg_cpu` reads the PostgreSQL cluster's CPU seconds so far
    (None: not known, e.g. a server given by URL)."""
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
            pg_before = pg_cpu() if pg_cpu else 0.0
            applied = child(data, url, "ledger")
            pg_used = pg_cpu() - pg_before if pg_cpu else None
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
                        # CPU per member, by process: the ledger's, the pool's, PostgreSQL's
                        "cpu_us_ledger": round(applied["cpu_s"] / members * 1e6),
                        "cpu_us_pool": round(applied["pool_cpu_s"] / members * 1e6),
                        "cpu_us_pg": round(pg_used / members * 1e6) if pg_used else "-",
                    }
                )
        del segments
        gw.close()
    return rows


TARGET_MEMBERS_PER_S = 5_000
TARGET_AUDIT_S = 20.0  # for 100,000 members
TARGET_RSS_MB = 150.0
TARGET_E2E_S = 300.0  # for 1,000,000 members


def end_to_end(members: int, url: str, tmp: Path) -> dict[str, float | int | str]:
    """One file through `edi834 serve`: seconds from the start of the upload to the 202, the
    999, the ledger applied and the last event handed to the core export directory."""
    from sqlalchemy import create_engine, func, select

    from gateway.db.models import CoreDelivery
    from tests.benchmarks.generate_834 import write_834
    from tests.benchmarks.procs import descendants
    from tests.gateway.harness import GatewayProcess

    source = tmp / f"e2e-{members}.834"
    with open(source, "wb") as f:
        write_834(f, members, seed=members + 1)
    export = tmp / "core-export"
    gw = GatewayProcess(
        data_dir=tmp / "e2e-var",
        database_url=url,
        extra_env={
            "EDI834_CORE_EXPORT_DIR": str(export),
            "EDI834_LOG_LEVEL": "warning",
            "EDI834_WORKER_POLL_SECONDS": "0.5",  # the default, not the tests' 0.1
        },
        forked=False,  # its RSS and CPU are measured: the process as `edi834 serve` starts it
    )
    key = gw.add_partner("va", "VA0FFM")
    gw.start()
    assert gw.proc is not None
    engine = create_engine(url or f"sqlite:///{gw.data_dir / 'edi834.sqlite3'}")
    peak_kb = 0

    def sample_rss() -> None:
        nonlocal peak_kb
        assert gw.proc is not None
        for pid in [gw.proc.pid, *descendants(gw.proc.pid)]:
            with contextlib.suppress(OSError, StopIteration, ValueError):
                status = Path(f"/proc/{pid}/status").read_text().splitlines()
                hwm = next(line for line in status if line.startswith("VmHWM"))
                peak_kb = max(peak_kb, int(hwm.split()[1]))

    def chunks() -> Iterator[bytes]:
        with open(source, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk

    marks: dict[str, float] = {}
    try:
        with gw.client(key) as c:
            c.timeout = httpx.Timeout(600)
            start = time.perf_counter()
            r = c.post(
                "/v1/interchanges",
                content=chunks(),
                headers={"Content-Type": "application/edi-x12", "X-Filename": source.name},
            )
            marks["202"] = time.perf_counter() - start
            assert r.status_code == 202, r.text
            receipt = r.json()["id"]
            while "applied" not in marks:
                body = c.get(f"/v1/interchanges/{receipt}").json()
                if body["status"] == "failed":
                    raise RuntimeError(f"the file failed: {body}")
                if body["status"] == "processed" and "999" not in marks:
                    marks["999"] = time.perf_counter() - start
                    assert body["ledger_status"] is not None, body
                if body["ledger_status"] in ("applied", "reconciled", "failed", "not_applied"):
                    assert body["ledger_status"] == "applied", body
                    marks["applied"] = time.perf_counter() - start
                    applied = int(body["members_applied"])
                sample_rss()
                time.sleep(0.2)
        while True:
            with engine.connect() as conn:
                waiting = conn.execute(
                    select(func.count()).where(CoreDelivery.delivered_at.is_(None))
                ).scalar_one()
            if waiting == 0:
                marks["exported"] = time.perf_counter() - start
                break
            sample_rss()
            time.sleep(0.5)
    finally:
        sample_rss()
        gw.stop()
        engine.dispose()
    lines = 0
    for path in export.glob("*.jsonl"):
        with open(path, "rb") as f:
            lines += sum(1 for _ in f)
    return {
        "members": members,
        "mb": round(source.stat().st_size / 1e6, 1),
        "upload_202_s": round(marks["202"], 1),
        "to_999_s": round(marks["999"], 1),
        "to_applied_s": round(marks["applied"], 1),
        "to_exported_s": round(marks["exported"], 1),
        "applied": applied,
        "exported_events": lines,
        "export_files": len(list(export.glob("*.jsonl"))),
        "serve_peak_rss_mb": round(peak_kb / 1024, 1),
    }


def print_table(rows: list[dict[str, object]]) -> None:
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument(
        "--e2e-members",
        type=int,
        default=100_000,
        help="members of the end-to-end file (the target is for 1000000; 0 skips it)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--postgres", help="a PostgreSQL URL (its public schema is dropped)")
    where.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument(
        "--profile",
        metavar="PREFIX",
        help="cProfile the ledger stage's process into PREFIX-ledger-PID.prof (figures then "
        "include the profiler's cost: for finding where the time goes, not for the README)",
    )
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile

    with contextlib.ExitStack() as stack:
        pg_cpu: Callable[[], float] | None = None
        if args.sqlite:
            urls = iter(lambda: "", None)
            engine_name = "SQLite"
        elif args.postgres:
            urls = iter(lambda: str(args.postgres), None)
            engine_name = "PostgreSQL (given)"
        else:
            from tests.benchmarks.procs import tree_cpu_seconds
            from tests.pgserver import PostgresServer

            pg = stack.enter_context(PostgresServer())
            postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
            pg_cpu = lambda: tree_cpu_seconds(postmaster)  # noqa: E731
            counter = iter(range(1, 1000))
            urls = iter(lambda: pg.create_database(f"bench_{next(counter)}"), None)
            engine_name = "PostgreSQL (throwaway cluster, fsync off)"
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, {engine_name}"
        )
        table: list[dict[str, object]] = []
        for n in args.members:
            t0 = time.perf_counter()
            table += run(n, next(urls), pg_cpu)
            print(f"  {n} members done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        if table:
            print_table(table)
        e2e: dict[str, object] | None = None
        if args.e2e_members:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                e2e = dict(end_to_end(args.e2e_members, next(urls), Path(tmp)))
                print(
                    f"  end to end, {args.e2e_members} members, done in "
                    f"{time.perf_counter() - t0:.0f} s",
                    file=sys.stderr,
                )
            print()
            print_table([e2e])

    print()
    print("| measure | figure | target (issue 15, this machine) |")
    print("|---|---:|---|")
    for row in table:
        n = int(str(row["members"]))
        if row["stage"] == "apply":
            print(
                f"| apply {n:,} members | {row['members_per_s']:,} members/s "
                f"({row['ledger_s']} s) | >= {TARGET_MEMBERS_PER_S:,} members/s "
                f"({n / TARGET_MEMBERS_PER_S:.1f} s) |"
            )
        else:
            budget = TARGET_AUDIT_S * n / 100_000
            print(f"| audit {n:,} members | {row['ledger_s']} s | <= {budget:.1f} s |")
        print(
            f"| ledger peak RSS, {row['stage']} {n:,} | {row['ledger_peak_rss_mb']} MB | "
            f"<= {TARGET_RSS_MB:.0f} MB |"
        )
    if e2e is not None:
        n = int(str(e2e["members"]))
        budget = TARGET_E2E_S * n / 1_000_000
        print(
            f"| end to end {n:,} members (upload -> exported) | {e2e['to_exported_s']} s | "
            f"<= {budget:.1f} s ({TARGET_E2E_S:.0f} s for 1,000,000) |"
        )
    print(
        f"(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB)"
    )


if __name__ == "__main__":
    main()
