"""Memory under hostile input (issue 13, item 5): the peak resident set (VmHWM, from /proc) of a
real `edi834 serve` given one hostile upload, against the 250 MB target. Each input runs on a
fresh gateway (its own data directory and SQLite), so each figure is that input's alone:

- 256 MB of NUL bytes over HTTP, and again over SFTP (written in order);
- a 200 MB segment with no terminator inside an 834 set, on the two-process path
  (EDI834_VALIDATION_PROCESSES=2: the block planner reads the file before the envelope reader);
- an SFTP client writing one byte at offset 1 GiB (a sparse file), then at 256 MiB;
- one interchange of one-member 834 transaction sets, as many as fill the size (about 1,100 a
  MB): every set gets its AK2/IK5, its row and its gate decision, and its member is applied.

Every input must still be answered (a rejection notice, a TA1/999) or refused with a clear SFTP
status, and the gateway must stay ready. Pool processes (the two-process path) are reported on
their own line: they are separate processes, each with its own peak.

Usage: python tests/benchmarks/bench_memory.py [--only NAME ...] [--mb 256]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncssh  # noqa: E402
import httpx  # noqa: E402

from tests.benchmarks.generate_834 import write_834  # noqa: E402
from tests.benchmarks.procs import descendants  # noqa: E402
from tests.gateway.harness import GatewayProcess, wait_final, wait_ledger  # noqa: E402

TARGET_MB = 250
MB = 1 << 20
CHUNK = MB


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of a live process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Bench:
    """One fresh gateway with one partner (API key and SFTP key)."""

    def __init__(self, tmp: Path, **env: str) -> None:
        # Measured: the process as `edi834 serve` starts it, not forked from the tests' launcher.
        self.gw = GatewayProcess(data_dir=tmp / "var", extra_env=env, forked=False)
        self.key = asyncssh.generate_private_key("ssh-ed25519")
        public = tmp / "id.pub"
        self.key.write_public_key(public)
        self.api_key = self.gw.add_partner("va", "VA0FFM", sftp_key=public)
        self.gw.start()
        assert self.gw.proc is not None
        self.pid = self.gw.proc.pid
        self.baseline = vm_hwm_mb(self.pid)

    def client(self) -> httpx.Client:
        c = self.gw.client(self.api_key)
        c.timeout = httpx.Timeout(600)
        return c

    def post(self, body: Iterator[bytes], name: str) -> dict:
        with self.client() as c:
            r = c.post(
                "/v1/interchanges",
                content=body,
                headers={"Content-Type": "application/edi-x12", "X-Filename": name},
            )
            r.raise_for_status()
            return wait_final(c, r.json()["id"], timeout=900)

    def sftp(self) -> asyncssh.connection._ConnectAwaitable:  # type: ignore[name-defined]
        return asyncssh.connect(
            "127.0.0.1",
            self.gw.sftp_port,
            username="va",
            client_keys=[self.key],
            known_hosts=None,
            agent_path=None,
            config=[],
        )

    def receipts(self) -> list[dict]:
        with self.client() as c:
            return c.get("/v1/interchanges", params={"limit": 200}).json()["items"]

    def ready(self) -> bool:
        return httpx.get(f"{self.gw.url}/readyz", timeout=10).status_code == 200

    def figures(self) -> tuple[float, float]:
        """(serve's peak, the largest peak among its child processes), MB."""
        children = [vm_hwm_mb(p) for p in descendants(self.pid)]
        return vm_hwm_mb(self.pid), max(children, default=0.0)

    def close(self) -> None:
        self.gw.stop()


def nuls(total: int) -> Iterator[bytes]:
    chunk = bytes(CHUNK)
    for _ in range(total // CHUNK):
        yield chunk


def answer_of(body: dict) -> str:
    kinds = sorted({a["kind"] for a in body.get("acks", [])}) if "acks" in body else []
    return f"{body['status']}/{body['outcome']}" + (f" acks {kinds}" if kinds else "")


# --- the inputs -----------------------------------------------------------------------------


def nul_http(tmp: Path, mb: int) -> tuple[Bench, str]:
    bench = Bench(tmp)
    body = bench.post(nuls(mb * MB), "zeros.834")
    reasons = [f["code"] for f in body["findings"] if f["family"] == "FILE"]
    return bench, f"{answer_of(body)}, rejection notice: {reasons}"


def nul_sftp(tmp: Path, mb: int) -> tuple[Bench, str]:
    bench = Bench(tmp)

    async def send() -> None:
        async with (
            bench.sftp() as conn,
            conn.start_sftp_client() as sftp,
            sftp.open("inbound/zeros.834", "wb") as f,
        ):
            offset = 0
            for chunk in nuls(mb * MB):
                await f.write(chunk, offset)
                offset += len(chunk)

    asyncio.run(send())
    (receipt,) = bench.receipts()
    with bench.client() as c:
        body = wait_final(c, receipt["id"], timeout=900)
        notice = c.get(f"/v1/interchanges/{receipt['id']}/acks/rejection").json()
    return bench, f"{answer_of(body)}, rejection notice: {notice['problems'][0]['reason']}"


def unterminated_two_process(tmp: Path, mb: int) -> tuple[Bench, str]:
    bench = Bench(tmp, EDI834_VALIDATION_PROCESSES="2")
    buf = io.BytesIO()
    write_834(buf, 6_000, seed=13)  # a set the planner would cut into three blocks
    data = buf.getvalue()
    cut = data.index(b"~INS*", len(data) // 2) + 1
    head = data[:cut]

    def body() -> Iterator[bytes]:
        yield head
        chunk = b"A" * CHUNK
        for _ in range(mb):
            yield chunk

    answered = bench.post(body(), "unterminated.834")
    with bench.client() as c:
        acks = sorted(a["kind"] for a in c.get(f"/v1/interchanges/{answered['id']}/acks").json())
    return bench, f"{answer_of(answered)}, acks {acks} ({len(head) / MB:.1f} MB of members first)"


def sparse_sftp(tmp: Path, _mb: int) -> tuple[Bench, str]:
    bench = Bench(tmp)
    said: list[str] = []

    async def send() -> None:
        async with bench.sftp() as conn, conn.start_sftp_client() as sftp:
            f = await sftp.open("inbound/sparse.834", "wb")
            start = time.perf_counter()
            for offset in (1 << 30, 256 << 20):
                try:
                    await f.write(b"\0", offset)
                    said.append(f"{offset >> 20} MiB: accepted")
                except asyncssh.SFTPFailure as exc:
                    said.append(f"{offset >> 20} MiB: refused ({exc.reason})")
            said.append(f"{time.perf_counter() - start:.2f} s")
            try:
                await f.close()
                said.append("closed")
            except asyncssh.SFTPFailure as exc:  # its refused writes never came: partial
                said.append(f"close refused ({exc.reason})")

    asyncio.run(send())
    answers = []
    with bench.client() as c:
        for r in bench.receipts():  # whatever was received is processed before the figures
            if r["status"] == "partial":  # recorded, never processed
                answers.append(f"{r['size']} bytes partial")
                continue
            answers.append(f"{r['size']} bytes {answer_of(wait_final(c, r['id'], timeout=900))}")
    return bench, "; ".join([*said, *answers])


def many_sets(tmp: Path, mb: int) -> tuple[Bench, str]:
    bench = Bench(tmp)
    try:
        return bench, _send_many_sets(bench, tmp, mb)
    except BaseException:
        bench.close()  # not left running when the file goes unanswered
        raise


def _send_many_sets(bench: Bench, tmp: Path, mb: int) -> str:
    path = tmp / "many-sets.834"
    sets = mb * 1_100
    with path.open("wb") as f:
        write_834(f, sets, seed=21, sets=sets)

    def body() -> Iterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    start = time.perf_counter()
    answered = bench.post(body(), "many-sets.834")
    acknowledged = time.perf_counter() - start
    with bench.client() as c:
        done = wait_ledger(c, answered["id"], timeout=3_600)
        acks = sorted(a["kind"] for a in c.get(f"/v1/interchanges/{answered['id']}/acks").json())
    counts = done["counts"]
    size = path.stat().st_size / MB
    return (
        f"{answer_of(done)} at {acknowledged:.1f} s, acks {acks}, "
        f"{counts['sets_accepted']:,}/{counts['sets_received']:,} sets accepted, ledger "
        f"{done['ledger_status']} at {time.perf_counter() - start:.1f} s "
        f"({sets:,} sets in {size:.0f} MB)"
    )


INPUTS: dict[str, tuple[str, Callable[[Path, int], tuple[Bench, str]]]] = {
    "nul-http": ("{mb} MB of NULs over HTTP", nul_http),
    "nul-sftp": ("{mb} MB of NULs over SFTP", nul_sftp),
    "unterminated-2proc": (
        "{mb} MB segment, no terminator, two processes",
        unterminated_two_process,
    ),
    "sparse-sftp": ("SFTP write of 1 byte at 1 GiB, then 256 MiB", sparse_sftp),
    "many-sets": ("{mb} MB of one-member 834 transaction sets, one interchange", many_sets),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(INPUTS), default=list(INPUTS))
    parser.add_argument("--mb", type=int, default=0, help="size of each input (default: 256/200)")
    args = parser.parse_args()
    print(f"edi834 serve, peak RSS (VmHWM) per hostile upload; target <= {TARGET_MB} MB")
    print(f"python {platform.python_version()}, {platform.machine()}")
    worst = 0.0
    for name in args.only:
        label, run = INPUTS[name]
        mb = args.mb or (200 if name == "unterminated-2proc" else 256)
        with tempfile.TemporaryDirectory(prefix=f"bench-memory-{name}-") as tmp:
            start = time.perf_counter()
            bench, answer = run(Path(tmp), mb)
            try:
                serve, child = bench.figures()
                ok = bench.ready()
            finally:
                bench.close()
        worst = max(worst, serve)
        verdict = "ok" if serve <= TARGET_MB else "OVER"
        print(f"\n{label.format(mb=mb)}  [{name}]")
        print(f"  serve peak RSS {serve:6.1f} MB  ({verdict}; {bench.baseline:.1f} MB at start)")
        if child:
            print(f"  largest child  {child:6.1f} MB  (validation pool process)")
        print(f"  answer: {answer}")
        print(f"  gateway ready afterwards: {ok}; {time.perf_counter() - start:.1f} s")
    print(f"\nworst serve peak: {worst:.1f} MB (target {TARGET_MB} MB)")
    return 0 if worst <= TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
