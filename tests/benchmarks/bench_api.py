"""The partner API alone, measured with a client that costs far less CPU than the server
(issue 19): a throwaway PostgreSQL, N `edi834 api` processes (plain HTTP on loopback, no nginx,
no SFTP, no workers), and a raw asyncio HTTP/1.1 keep-alive client whose requests are built
before the clock starts (intake: distinct files, ISA13 changed; reads: one request per id).

For each load: throughput, p50/p99 latency, and CPU milliseconds per request of each process
(the API processes, PostgreSQL with all its backends, this client), from /proc over the load
window; and the PostgreSQL sessions opened during it (pg_stat_database.sessions): a pool that
reuses its connections opens a handful, not one per request.

Usage: python tests/benchmarks/bench_api.py [--apis 1] [--clients 32] [--files 3000]
       [--read-seconds 15] [--loads intake,read,list,health,hey,pipeline] [--pids FILE]
       [--workers N] [--timeline]
(pipeline, with --workers N: the files are received while N `edi834 worker` processes run on
the same machine; it reports when every 999 is stored and every file is through the ledger,
and the CPU per file of the APIs, the workers and PostgreSQL.)
(hey: the status read, /healthz and, with list, the list page again from Debian's `hey`, when
it is installed.)
The figures are printed, never asserted. Run it on an otherwise idle machine (see `uptime`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.benchmarks.procs import children  # noqa: E402
from tests.conftest import SAMPLES  # noqa: E402
from tests.gateway.harness import free_port  # noqa: E402
from tests.gateway.test_http_e2e import _with_isa13  # noqa: E402
from tests.pgserver import PostgresServer  # noqa: E402

EDI834 = ROOT / ".venv" / "bin" / "edi834"
GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
CLK_TCK = os.sysconf("SC_CLK_TCK")
LIST_PAGE = "/v1/interchanges?limit=20"  # the first page of 20 (of the warm-up's 200 files)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its living descendants (PostgreSQL's backends), and of the
    children they have reaped (a backend that exited during the load counts too)."""
    kids = children()
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(kids.get(p, []))
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])
    return total / CLK_TCK


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Connection:
    """A raw HTTP/1.1 keep-alive connection (plain to an API process, or TLS to nginx for
    bench_scale.py): each request pre-built bytes, the answer's status line, headers and body
    read by hand. The client must cost far less CPU than the server it measures; httpx cost
    about as much as the APIs (issue 19). Reopened when the server closes it (nginx's
    keepalive_requests)."""

    def __init__(self, url: str) -> None:
        parsed = urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 443
        self.tls: ssl.SSLContext | None = None
        if parsed.scheme == "https":
            self.tls = ssl.create_default_context()
            self.tls.check_hostname = False
            self.tls.verify_mode = ssl.CERT_NONE  # the test cluster's own certificate
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=self.tls)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, length, close = int(head[9:12]), 0, False
        for line in head.split(b"\r\n"):
            name = line[:16].lower()
            if name.startswith(b"content-length:"):
                length = int(line[15:])
            elif name.startswith(b"connection:") and b"close" in line.lower():
                close = True
        body = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_load(
    ports: Sequence[int], requests: Sequence[bytes], clients: int, seconds: float | None
) -> dict[str, object]:
    """`clients` connections (spread over the ports) send `requests` in turn: each once, or
    round and round until `seconds` have passed."""
    latencies: list[float] = []
    starts: list[float] = []  # when each request was sent, for the timeline
    codes: dict[int, int] = {}
    bodies: list[bytes] = []
    next_index = 0
    deadline = None if seconds is None else time.monotonic() + seconds

    async def client(k: int) -> None:
        nonlocal next_index
        conn = Connection(f"http://127.0.0.1:{ports[k % len(ports)]}")
        await conn.open()  # before the clock: a request's time is its exchange only
        try:
            while True:
                if deadline is None:
                    if next_index >= len(requests):
                        return
                elif time.monotonic() >= deadline:
                    return
                request = requests[next_index % len(requests)]
                next_index += 1
                t0 = time.perf_counter()
                status, body = await conn.exchange(request)
                latencies.append(time.perf_counter() - t0)
                starts.append(t0)
                codes[status] = codes.get(status, 0) + 1
                if deadline is None:
                    bodies.append(body)
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - start
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "per_s": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 0.50),
        "p99_ms": pct(latencies, 0.99),
        "codes": codes,
        "bodies": bodies,
        "timeline": timeline(start, starts, latencies),
    }


def timeline(start: float, starts: Sequence[float], latencies: Sequence[float]) -> str:
    """Where the tail is: p99 in each second of the load, and when the 20 slowest requests were
    sent (seconds from its start) and how long they took. A tail of one stall — every request
    in flight waiting at once, as a long garbage collection makes them — shows as one second's
    p99 far above the others and the slowest requests sent together."""
    per_second: dict[int, list[float]] = {}
    for t0, latency in zip(starts, latencies, strict=True):
        per_second.setdefault(int(t0 - start), []).append(latency)
    p99s = ", ".join(f"{s}s {pct(v, 0.99):.0f}" for s, v in sorted(per_second.items()))
    slowest = sorted(zip(latencies, starts, strict=True), reverse=True)[:20]
    sent = ", ".join(f"{t0 - start:.2f}s {latency * 1000:.0f}" for latency, t0 in slowest)
    return f"p99 ms by second: {p99s}\n  slowest (sent at, ms): {sent}"


def intake_requests(key: str, count: int, offset: int) -> list[bytes]:
    out = []
    for n in range(count):
        body = _with_isa13(GOOD, 700_000_000 + offset + n)
        out.append(
            b"POST /v1/interchanges HTTP/1.1\r\nHost: bench\r\n"
            + f"Authorization: Bearer {key}\r\n".encode()
            + b"Content-Type: application/edi-x12\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    return out


def get_requests(key: str, paths: Sequence[str]) -> list[bytes]:
    return [
        f"GET {p} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
        for p in paths
    ]


class Api:
    """PostgreSQL and `apis` API processes, started and stopped together."""

    def __init__(self, tmp: Path, pg: PostgresServer, apis: int, workers: int = 0) -> None:
        self.tmp = tmp
        self.workers = workers
        self.database_url = pg.create_database("bench")
        self.postmaster = 0
        self.pg = pg
        self.ports = [free_port() for _ in range(apis)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.worker_procs: list[subprocess.Popen[bytes]] = []

    def env(self, **more: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDI834_")}
        env.update(
            EDI834_DATA_DIR=str(self.tmp / "var"),
            EDI834_DATABASE_URL=self.database_url,
            EDI834_DASHBOARD_ENABLED="false",
            EDI834_RATE_LIMIT_PER_MINUTE="10000000",
            EDI834_LOG_LEVEL="warning",
            **more,
        )
        return env

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [str(EDI834), *args], env=self.env(), check=True, capture_output=True, text=True
        ).stdout

    def start(self) -> str:
        self.cli("db", "upgrade")
        key = json.loads(
            self.cli("partner", "add", "--name", "va", "--isa-qualifier", "ZZ", "--isa-id",
                     "VA0FFM", "--json")
        )["api_key"]  # fmt: skip
        for n, port in enumerate(self.ports):
            log = open(self.tmp / f"api{n}.log", "wb")  # noqa: SIM115 - closed with the process
            self.procs.append(
                subprocess.Popen(
                    [str(EDI834), "api"],
                    env=self.env(EDI834_HTTP_PORT=str(port)),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=5) as c:
            for port in self.ports:
                while True:
                    try:
                        if c.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("the API did not become ready")
                    time.sleep(0.2)
        self.postmaster = int((self.pg.data_dir / "postmaster.pid").read_text().split()[0])
        for n in range(self.workers):
            log = open(self.tmp / f"worker{n}.log", "wb")  # noqa: SIM115 - closed with it
            self.worker_procs.append(
                subprocess.Popen(
                    [str(EDI834), "worker"],
                    env=self.env(EDI834_CORE_EXPORT_DIR=str(self.tmp / "core")),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        return str(key)

    def stop(self) -> None:
        for p in self.procs + self.worker_procs:
            p.terminate()
        for p in self.procs + self.worker_procs:
            p.wait(60)

    def progress(self) -> tuple[int, int, int]:
        """Receipts processed (999 stored), through the ledger (applied or otherwise settled),
        and all receipts."""
        engine = create_engine(self.database_url, poolclass=NullPool)
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE status IN ('processed', 'failed')),"
                    " count(*) FILTER (WHERE ledger_status IS NOT NULL"
                    "   AND ledger_status <> 'pending'),"
                    " count(*) FROM receipts"
                )
            ).one()
        engine.dispose()
        return int(row[0]), int(row[1]), int(row[2])

    def wait_processed(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, settled, total = self.progress()
            if done == total and settled == total:
                return
            time.sleep(0.5)
        raise RuntimeError(f"not processed in {timeout}s: {self.progress()}")


def sessions(url: str) -> int:
    """Sessions PostgreSQL has opened on the bench database (its statistics lag ~1 s)."""
    time.sleep(1.5)
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        n = conn.scalar(
            text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        )
    engine.dispose()
    return int(n or 0)


def measure(
    api: Api, name: str, requests: Sequence[bytes], clients: int, seconds: float | None
) -> dict[str, object]:
    s0 = sessions(api.database_url)
    cpu0 = [cpu_seconds(p.pid) for p in api.procs], cpu_seconds(api.postmaster), client_cpu()
    got = asyncio.run(run_load(api.ports, requests, clients, seconds))
    cpu1 = [cpu_seconds(p.pid) for p in api.procs], cpu_seconds(api.postmaster), client_cpu()
    n = int(got["requests"])  # type: ignore[call-overload]
    got["api_ms"] = sum(b - a for a, b in zip(cpu0[0], cpu1[0], strict=True)) * 1000 / n
    got["postgres_ms"] = (cpu1[1] - cpu0[1]) * 1000 / n
    got["client_ms"] = (cpu1[2] - cpu0[2]) * 1000 / n
    # minus the one this function opens to count them
    got["new_sessions"] = sessions(api.database_url) - s0 - 1
    got["load"] = name
    return got


def measure_pipeline(
    api: Api, requests: Sequence[bytes], clients: int, timeout: float = 900
) -> dict[str, object]:
    """Intake with the workers running on the same machine: files/s received (the 202s),
    and the time until every file is processed (its 999 stored) and through the ledger; CPU
    per file of the APIs, the workers and PostgreSQL over the whole window."""
    api.wait_processed()
    done0, settled0, _ = api.progress()
    procs = [p.pid for p in api.procs], [p.pid for p in api.worker_procs]
    cpu0 = ([cpu_seconds(p) for p in procs[0]], [cpu_seconds(p) for p in procs[1]],
            cpu_seconds(api.postmaster))  # fmt: skip
    start = time.perf_counter()
    at_processed: list[float] = []

    async def load_and_watch() -> tuple[dict[str, object], float, float]:
        task = asyncio.create_task(run_load(api.ports, requests, clients, None))
        processed_at = applied_at = 0.0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            done, settled, _ = await asyncio.to_thread(api.progress)
            now = time.perf_counter() - start
            if not processed_at and done - done0 >= len(requests):
                processed_at = now
                at_processed.extend(
                    [sum(cpu_seconds(p) for p in procs[0]), sum(cpu_seconds(p) for p in procs[1]),
                     cpu_seconds(api.postmaster)]
                )  # fmt: skip
            if settled - settled0 >= len(requests):
                applied_at = now
                break
        return await task, processed_at, applied_at

    got, processed_at, applied_at = asyncio.run(load_and_watch())
    cpu1 = ([cpu_seconds(p) for p in procs[0]], [cpu_seconds(p) for p in procs[1]],
            cpu_seconds(api.postmaster))  # fmt: skip
    n = len(requests)
    got["load"] = f"received and processed, {len(procs[1])} workers"
    got["api_ms"] = sum(b - a for a, b in zip(cpu0[0], cpu1[0], strict=True)) * 1000 / n
    got["worker_ms"] = sum(b - a for a, b in zip(cpu0[1], cpu1[1], strict=True)) * 1000 / n
    got["postgres_ms"] = (cpu1[2] - cpu0[2]) * 1000 / n
    got["client_ms"] = 0.0
    got["new_sessions"] = "—"
    got["processed_s"] = processed_at
    if at_processed:  # CPU per file until every 999 was stored (the ledger mostly waits)
        got["to_999_ms"] = [
            (at_processed[0] - sum(cpu0[0])) * 1000 / n,
            (at_processed[1] - sum(cpu0[1])) * 1000 / n,
            (at_processed[2] - cpu0[2]) * 1000 / n,
        ]
    got["applied_s"] = applied_at
    return got


def measure_hey(
    api: Api, name: str, key: str, path: str, clients: int, seconds: float
) -> dict[str, object]:
    """The same load from Debian's `hey` (compiled, keep-alive), one per API process sharing
    the clients; its CPU is the children's rusage over the run."""
    s0 = sessions(api.database_url)
    cpu0 = [cpu_seconds(p.pid) for p in api.procs], cpu_seconds(api.postmaster)
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = [
        subprocess.Popen(
            ["hey", "-z", f"{seconds:g}s", "-c", str(clients // len(api.ports)), "-o", "csv",
             "-H", f"Authorization: Bearer {key}", f"http://127.0.0.1:{port}{path}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for port in api.ports
    ]  # fmt: skip
    outputs = [p.communicate()[0] for p in procs]
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1 = [cpu_seconds(p.pid) for p in api.procs], cpu_seconds(api.postmaster)
    latencies: list[float] = []
    codes: dict[int, int] = {}
    for out in outputs:
        for line in out.splitlines()[1:]:  # response-time,DNS+dialup,DNS,...,status-code,offset
            fields = line.split(",")
            latencies.append(float(fields[0]))
            codes[int(fields[6])] = codes.get(int(fields[6]), 0) + 1
    n = len(latencies)
    hey_cpu = (child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)
    return {
        "load": f"{name} (hey)",
        "requests": n,
        "seconds": seconds,
        "per_s": n / seconds,
        "p50_ms": pct(latencies, 0.50),
        "p99_ms": pct(latencies, 0.99),
        "codes": codes,
        "api_ms": sum(b - a for a, b in zip(cpu0[0], cpu1[0], strict=True)) * 1000 / n,
        "postgres_ms": (cpu1[1] - cpu0[1]) * 1000 / n,
        "client_ms": hey_cpu * 1000 / n,
        "new_sessions": sessions(api.database_url) - s0 - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apis", type=int, default=1)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--read-seconds", type=float, default=15)
    parser.add_argument("--loads", default="intake,read,health")
    parser.add_argument("--pids", type=Path, help="write the process ids here (JSON)")
    parser.add_argument(
        "--timeline", action="store_true", help="p99 by second and the slowest requests' times"
    )
    parser.add_argument(
        "--workers", type=int, default=0,
        help="`edi834 worker` processes on the same machine (the load 'pipeline')",
    )  # fmt: skip
    args = parser.parse_args()
    loads = args.loads.split(",")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; PostgreSQL, {args.apis} x `edi834 api` (plain HTTP), "
        f"{args.clients} keep-alive clients; load average {os.getloadavg()[0]:.2f} at start"
    )
    # uvicorn's "auto": uvloop and httptools when the API's environment has them, else asyncio
    # and h11.
    probe = (
        "import importlib.util as u; "
        "print(*(bool(u.find_spec(m)) for m in ('uvloop', 'httptools')))"
    )
    uv, ht = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", probe], capture_output=True, text=True
    ).stdout.split()
    loop_name = "uvloop" if uv == "True" else "asyncio"
    print(f"event loop: {loop_name}; HTTP: {'httptools' if ht == 'True' else 'h11'}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, PostgresServer() as pg:
        api = Api(Path(tmp), pg, args.apis, args.workers)
        key = api.start()
        if args.pids:
            pids = {f"api{n}": p.pid for n, p in enumerate(api.procs)}
            pids.update({f"worker{n}": p.pid for n, p in enumerate(api.worker_procs)})
            args.pids.write_text(json.dumps({**pids, "postgres": api.postmaster}))
        try:
            # A warm-up batch whose receipts the status readers read.
            seed = measure(api, "warm-up", intake_requests(key, 200, 0), args.clients, None)
            answers = [json.loads(b) for b in seed["bodies"]]  # type: ignore[attr-defined]
            if seed["codes"] != {202: 200}:
                raise SystemExit(f"the warm-up was not received whole: {seed['codes']}, "
                                 f"{[a for a in answers if 'id' not in a][:3]}")  # fmt: skip
            ids = [a["id"] for a in answers]
            if "intake" in loads:
                rows.append(
                    measure(api, "intake", intake_requests(key, args.files, 1000), args.clients,
                            None)
                )  # fmt: skip
            if "pipeline" in loads and args.workers:
                rows.append(
                    measure_pipeline(api, intake_requests(key, args.files, 500_000), args.clients)
                )
            if "read" in loads:
                paths = [f"/v1/interchanges/{i}" for i in ids]
                rows.append(
                    measure(api, "status read", get_requests(key, paths), args.clients,
                            args.read_seconds)
                )  # fmt: skip
            if "list" in loads:
                rows.append(
                    measure(api, "list", get_requests(key, [LIST_PAGE]),
                            args.clients, args.read_seconds)
                )  # fmt: skip
            if "hey" in loads and shutil.which("hey"):
                rows.append(
                    measure_hey(api, "status read", key, f"/v1/interchanges/{ids[0]}",
                                args.clients, args.read_seconds)
                )  # fmt: skip
                rows.append(
                    measure_hey(api, "healthz", key, "/healthz", args.clients, args.read_seconds)
                )
                if "list" in loads:
                    rows.append(
                        measure_hey(api, "list", key, LIST_PAGE, args.clients, args.read_seconds)
                    )
            if "health" in loads:
                rows.append(
                    measure(api, "healthz", get_requests(key, ["/healthz"]), args.clients,
                            args.read_seconds)
                )  # fmt: skip
        finally:
            api.stop()
    print(
        "\n| load | requests | per s | p50 ms | p99 ms | API CPU ms/req | PostgreSQL CPU ms/req "
        "| client CPU ms/req | new PG sessions | answers |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['load']} | {r['requests']} | {r['per_s']:.0f} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['api_ms']:.2f} | {r['postgres_ms']:.2f} "
            f"| {r['client_ms']:.2f} | {r['new_sessions']} | {r['codes']} |"
        )
    if args.timeline:
        for r in rows:
            if r.get("timeline"):
                print(f"\n{r['load']}: {r['timeline']}")
    for r in rows:
        if "processed_s" in r:
            n = int(r["requests"])  # type: ignore[call-overload]
            p, a = float(r["processed_s"]), float(r["applied_s"])  # type: ignore[arg-type]
            print(
                f"\n{r['load']}: {n} files received at {r['per_s']:.0f}/s; every 999 stored "
                f"{p:.1f} s after the first send ({n / p if p else 0:.0f} files/s), every file "
                f"through the ledger at {a:.1f} s ({n / a if a else 0:.0f} files/s); CPU per "
                f"file: API {r['api_ms']:.2f} ms, workers {r['worker_ms']:.2f} ms, PostgreSQL "
                f"{r['postgres_ms']:.2f} ms"
            )
            if "to_999_ms" in r:
                a, w, pg = r["to_999_ms"]  # type: ignore[misc]
                print(
                    f"  until every 999 was stored: API {a:.2f} ms, workers {w:.2f} ms, "
                    f"PostgreSQL {pg:.2f} ms a file"
                )
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
