"""Load on the scaled-out topology (the one tests/gateway/test_scale_out.py runs): PostgreSQL,
nginx (TLS) in front of two `edi834 api`, one `edi834 sftp`, two `edi834 worker`s, loopback.

(a) intake: N small files from C concurrent clients over HTTPS; files/s and latency
    percentiles of the 202 (durably received);
(b) status API: R concurrent readers of GET /v1/interchanges/{id} while intake runs;
(c) peak RSS of every process (VmHWM) at the end; the 1,000,000-member audit figure is
    bench_validate.py's and bench_ledger.py's (one file is one worker's job);
(d) lost / duplicated / 5xx counted, after the queue drains.

Targets (issue 6, this 2-core machine): intake >= 200 files/s with p99 <= 250 ms; status API
>= 2,000 req/s with p99 <= 50 ms; 1,000,000 members to 999 in <= 15 min, every process under
300 MB. The figures are printed, never asserted.

Usage: python tests/benchmarks/bench_scale.py [--files 10000] [--clients 200] [--readers 500]

To separate causes: --workers 0 (intake alone), --mode intake|read (one load alone), --direct
(plain HTTP to the api processes, no nginx/TLS), --pids FILE (process ids as JSON, written once
the cluster is up, for py-spy). CPU seconds per process over the load window are printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_api import Connection  # noqa: E402
from tests.benchmarks.procs import children  # noqa: E402
from tests.conftest import SAMPLES  # noqa: E402
from tests.gateway.test_http_e2e import _with_isa13  # noqa: E402
from tests.gateway.test_scale_out import Cluster  # noqa: E402
from tests.pgserver import PostgresServer  # noqa: E402

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def rss_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of a live process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """utime + stime of each root process and its living descendants (nginx, postgres workers)."""
    kids = children()
    out: dict[str, float] = {}
    for name, pid in roots.items():
        total, todo = 0, [pid]
        while todo:
            p = todo.pop()
            todo.extend(kids.get(p, []))
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        out[name] = total / CLK_TCK
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["bench client"] = usage.ru_utime + usage.ru_stime
    cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    out["machine busy"] = (sum(cpu) - cpu[3] - cpu[4]) / CLK_TCK  # all but idle and iowait
    return out


def _host(url: str) -> str:
    return urlsplit(url).netloc


async def intake(
    urls: list[str], key: str, files: int, clients: int, offset: int = 0
) -> dict[str, object]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    ids: list[str] = []
    if files == 0:
        return {"files": 0, "codes": codes, "ids": ids}
    requests = []  # built before the clock starts
    for n in range(files):
        body = _with_isa13(GOOD, 800_000_000 + offset + n)
        requests.append(
            (
                f"POST /v1/interchanges HTTP/1.1\r\nHost: {_host(urls[n % len(urls)])}\r\n"
                f"Authorization: Bearer {key}\r\nContent-Type: application/edi-x12\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(files):
        queue.put_nowait(n)

    async def client(k: int) -> None:
        conn = Connection(urls[k % len(urls)])
        try:
            while not queue.empty():
                n = queue.get_nowait()
                t0 = time.perf_counter()
                status, body = await conn.exchange(requests[n])
                latencies.append(time.perf_counter() - t0)
                codes[status] = codes.get(status, 0) + 1
                if status in (200, 202):
                    ids.append(json.loads(body)["id"])
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - start
    return {
        "files": files,
        "clients": clients,
        "seconds": round(elapsed, 1),
        "files_per_s": round(files / elapsed, 1),
        "p50_ms": round(pct(latencies, 0.50)),
        "p95_ms": round(pct(latencies, 0.95)),
        "p99_ms": round(pct(latencies, 0.99)),
        "codes": codes,
        "ids": ids,
    }


async def readers(
    urls: list[str], key: str, ids: list[str], count: int, seconds: float
) -> dict[str, object]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    deadline = time.monotonic() + seconds

    async def reader(k: int) -> None:
        url = urls[k % len(urls)]
        conn, host, n = Connection(url), _host(url), k
        try:
            while time.monotonic() < deadline:
                if not ids:
                    await asyncio.sleep(0.05)
                    continue
                request = (
                    f"GET /v1/interchanges/{ids[n % len(ids)]} HTTP/1.1\r\nHost: {host}\r\n"
                    f"Authorization: Bearer {key}\r\n\r\n"
                ).encode()
                t0 = time.perf_counter()
                status, _ = await conn.exchange(request)
                latencies.append(time.perf_counter() - t0)
                codes[status] = codes.get(status, 0) + 1
                n += 7
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(reader(k) for k in range(count)))
    elapsed = time.perf_counter() - start
    return {
        "readers": count,
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(pct(latencies, 0.50)),
        "p99_ms": round(pct(latencies, 0.99)),
        "codes": codes,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--readers", type=int, default=500)
    parser.add_argument("--read-seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2, help="0: intake alone")
    parser.add_argument("--worker-nice", help="EDI834_WORKER_NICE for the workers")
    parser.add_argument("--mode", choices=("both", "intake", "read"), default="both")
    parser.add_argument("--direct", action="store_true", help="plain HTTP to the api processes")
    parser.add_argument("--pids", type=Path, help="write the process ids here (JSON)")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; PostgreSQL, "
        f"{'plain HTTP to' if args.direct else 'nginx TLS,'} 2 api, 1 sftp, "
        f"{args.workers} workers; mode {args.mode}"
    )
    with tempfile.TemporaryDirectory() as tmp, PostgresServer() as pg:
        cluster = Cluster(Path(tmp), pg.create_database("bench"))
        cluster.cli("db", "upgrade")
        key = json.loads(
            cluster.cli(
                "partner", "add", "--name", "va", "--isa-qualifier", "ZZ", "--isa-id",
                "VA0FFM", "--json",
            )
        )["api_key"]  # fmt: skip
        cluster.start(
            workers=args.workers,
            **({"EDI834_WORKER_NICE": args.worker_nice} if args.worker_nice else {}),
        )
        urls = (
            [f"http://127.0.0.1:{p}" for p in cluster.api_ports] if args.direct else [cluster.url]
        )
        roots = {name: p.pid for name, p in cluster.procs.items()}
        roots["postgres"] = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
        if args.pids:
            args.pids.write_text(json.dumps({**roots, "bench": os.getpid()}))
        try:
            files = args.files if args.mode != "read" else 0

            async def both() -> tuple[dict[str, object], dict[str, object]]:
                ids: list[str] = []
                # Readers read what intake has answered (seeded by a first small batch).
                seed = await intake(urls, key, 50, 10, offset=files)
                ids.extend(seed["ids"])  # type: ignore[arg-type]
                cpu0, t0 = cpu_seconds(roots), time.perf_counter()
                intake_task = asyncio.create_task(intake(urls, key, files, args.clients))
                read: dict[str, object] = {"codes": {}}
                if args.mode != "intake":
                    if args.mode == "both":
                        await asyncio.sleep(2)
                    read = await readers(urls, key, ids, args.readers, args.read_seconds)
                got = await intake_task
                cpu1 = cpu_seconds(roots)
                got["cpu_s"] = {k: round(cpu1[k] - cpu0[k], 1) for k in cpu1}
                got["cpu_s"]["window"] = round(time.perf_counter() - t0, 1)
                return got, read

            got_intake, got_read = asyncio.run(both())
            engine = create_engine(cluster.database_url)
            total = files + 50
            codes: dict[int, int] = got_intake["codes"]  # type: ignore[assignment]
            answered = sum(n for c, n in codes.items() if c in (200, 202))
            print(f"intake answers: {got_intake['codes']}", flush=True)
            t0 = time.monotonic()
            while True:  # every *received* file must end processed (a refused one is not owed)
                with engine.connect() as conn:
                    done = conn.scalar(
                        text("SELECT count(*) FROM receipts WHERE status = 'processed'")
                    )
                    received = conn.scalar(text("SELECT count(*) FROM receipts"))
                if done >= received or not args.workers or time.monotonic() - t0 > 3600:
                    break
                print(f"  {done}/{received} processed", flush=True)
                time.sleep(5)
            with engine.connect() as conn:
                sessions = conn.scalar(
                    text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
                )
                receipts = conn.scalar(text("SELECT count(*) FROM receipts"))
                twice = conn.scalar(
                    text(
                        "SELECT count(*) FROM (SELECT receipt_id FROM receipt_events WHERE "
                        "event = 'processed' GROUP BY receipt_id HAVING count(*) > 1) t"
                    )
                )
                drained = time.monotonic() - t0
            rss = {name: round(rss_mb(p.pid), 1) for name, p in cluster.procs.items()}
            got_intake.pop("ids")
            cpu = got_intake.pop("cpu_s")
            print("| (a) intake | value |\n|---|---|")
            for k, v in got_intake.items():
                print(f"| {k} | {v} |")
            print("\n| (b) status API during intake | value |\n|---|---|")
            for k, v in got_read.items():
                print(f"| {k} | {v} |")
            print("\n| (d) integrity | value |\n|---|---|")
            print(
                f"| receipts / files sent / intake 2xx (of {files}) "
                f"| {receipts} / {total} / {answered} |"
            )
            print(f"| processed | {done} (queue drained {drained:.0f} s after intake ended) |")
            print(f"| processed twice | {twice} |")
            five = sum(
                n
                for d in (got_intake["codes"], got_read["codes"])
                for c, n in d.items()  # type: ignore[attr-defined]
                if c >= 500
            )
            print(f"| 5xx | {five} |")
            print(f"\npeak RSS (MB): {rss}")
            print(f"CPU seconds over the load window (2 cores): {cpu}")
            print(f"PostgreSQL sessions opened in all: {sessions}")
            engine.dispose()
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
