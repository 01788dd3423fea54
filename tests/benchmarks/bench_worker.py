"""The worker's CPU per small file (issue 19), stage by stage, in this process: a throwaway
PostgreSQL, one migrated gateway, N small files received (samples/good_exchange_new_enrollment.834
with distinct ISA13s, through the API app in this process, before any clock starts), then each
stage run to the end of its queue on one thread, as a worker's loops run it:

- validate & acknowledge: `Worker.run_once` (claim, validate, store the results and acks);
- acks delivered: `outbox.deliver_acks` (each ack's file written, fsynced and renamed, then
  marked delivered);
- ledger: `Worker.apply_ledger_once` (the file's members applied).

For each: wall seconds, files a second, and CPU milliseconds per file of this process and of
PostgreSQL (the postmaster and all its backends, from /proc). `--profile DIR` also writes a
cProfile of each stage there (`python -m pstats DIR/validate.prof`).

Usage: python tests/benchmarks/bench_worker.py [--files 300] [--profile DIR]
       [--stages validate,acks,ledger] (validation always runs: the others need it)
The figures are printed, never asserted; note the load average (printed) beside them.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from gateway.api.app import create_app  # noqa: E402
from gateway.db.session import unit_of_work  # noqa: E402
from gateway.partners import add_partner  # noqa: E402
from gateway.worker import outbox  # noqa: E402
from gateway.worker.run import Worker  # noqa: E402
from tests.benchmarks.bench_api import cpu_seconds  # noqa: E402
from tests.conftest import SAMPLES  # noqa: E402
from tests.gateway.harness import in_process_gateway  # noqa: E402
from tests.gateway.test_http_e2e import _with_isa13  # noqa: E402
from tests.pgserver import PostgresServer  # noqa: E402

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()


def stage(
    name: str, step: Callable[[], object], files: int, postmaster: int, profile: Path | None
) -> dict[str, object]:
    """Run `step` until it reports no work (False or 0) and measure it."""
    profiler = cProfile.Profile(time.process_time) if profile else None  # CPU, not waits
    pg0, cpu0, t0 = cpu_seconds(postmaster), time.process_time(), time.monotonic()
    if profiler:
        profiler.enable()
    while step():
        pass
    if profiler:
        profiler.disable()
    wall, cpu, pg = time.monotonic() - t0, time.process_time() - cpu0, cpu_seconds(postmaster) - pg0
    if profiler and profile:
        profiler.dump_stats(profile / f"{name.split()[0]}.prof")
    return {
        "stage": name,
        "seconds": wall,
        "per_s": files / wall,
        "cpu_ms": cpu * 1000 / files,
        "postgres_ms": pg * 1000 / files,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--profile", type=Path, help="write each stage's cProfile here")
    parser.add_argument("--stages", default="validate,acks,ledger")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(f"{args.files} small files, one thread; load average {os.getloadavg()} at start")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, PostgresServer() as pg:
        url = pg.create_database("bench")
        postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
        for gw in in_process_gateway(Path(tmp) / "var", url):
            with unit_of_work(gw.sessions) as s:
                _, key = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
            with TestClient(create_app(gw)) as c:
                for n in range(args.files):
                    r = c.post(
                        "/v1/interchanges",
                        content=_with_isa13(GOOD, 1000 + n),
                        headers={"Authorization": f"Bearer {key}",
                                 "Content-Type": "application/edi-x12"},
                    )  # fmt: skip
                    assert r.status_code == 202, r.text
            worker = Worker(gw, worker_id="bench")
            stages = args.stages.split(",")
            rows.append(stage("validate & acknowledge", worker.run_once, args.files, postmaster,
                              args.profile))  # fmt: skip
            if "acks" in stages:
                deliver = functools.partial(outbox.deliver_acks, gw)
                rows.append(stage("acks delivered", deliver, args.files, postmaster, args.profile))
            if "ledger" in stages:
                rows.append(stage("ledger", worker.apply_ledger_once, args.files, postmaster,
                                  args.profile))  # fmt: skip
    print("\n| stage | seconds | files/s | CPU ms/file | PostgreSQL CPU ms/file |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stage']} | {r['seconds']:.2f} | {r['per_s']:.0f} | {r['cpu_ms']:.2f} "
            f"| {r['postgres_ms']:.2f} |"
        )
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
