"""Scaled out on one machine, as deploy/ lays it out: a real PostgreSQL, nginx terminating TLS in
front of two `edi834 api` processes, one `edi834 sftp`, two `edi834 worker`s, all on loopback,
one shared data directory. 300 files over HTTPS and 30 over SFTP from concurrent clients; one
worker is SIGKILLed mid-run. Every file ends with exactly one outcome and its acks: none lost,
none processed twice, every control number unique."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from string import Template

import asyncssh
import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import ROOT, SAMPLES
from tests.gateway.harness import free_port, self_signed_cert
from tests.gateway.test_http_e2e import _with_isa13

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
DEFECTIVE = (SAMPLES / "bad_ik403_8_dmg02_date.834").read_bytes()
EDI834 = ROOT / ".venv" / "bin" / "edi834"
TEMPLATE = ROOT / "deploy" / "single-host" / "nginx.test.conf.template"
NGINX = next((p for p in ("/usr/sbin/nginx", "/usr/bin/nginx") if Path(p).exists()), None)
HTTP_FILES, SFTP_FILES = 300, 30

pytestmark = pytest.mark.skipif(NGINX is None, reason="make test installs nginx")


def _listening(port: int) -> bool:
    """The SFTP server accepts connections (it starts later than the APIs on a busy machine)."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Cluster:
    def __init__(self, tmp: Path, database_url: str) -> None:
        self.tmp = tmp
        self.data = tmp / "var"
        self.database_url = database_url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.api_ports = [free_port(), free_port()]
        self.sftp_port = free_port()
        self.https_port = free_port()

    def env(self, **more: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDI834_")}
        env.update(
            EDI834_DATA_DIR=str(self.data),
            EDI834_DATABASE_URL=self.database_url,
            EDI834_DASHBOARD_ENABLED="false",
            EDI834_WORKER_POLL_SECONDS="0.2",
            EDI834_LEASE_SECONDS="6",  # a killed worker's files are taken over quickly
            EDI834_SHUTDOWN_GRACE_SECONDS="5",
            EDI834_RATE_LIMIT_PER_MINUTE="100000",
            EDI834_LEDGER_ORDER_WINDOW_SECONDS="1",
            EDI834_LOG_LEVEL="warning",
        )
        env.update(more)
        return env

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [str(EDI834), *args], env=self.env(), check=True, capture_output=True, text=True
        ).stdout

    def spawn(self, name: str, argv: list[str], **env: str) -> None:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            argv, env=self.env(**env), stdout=log, stderr=subprocess.STDOUT
        )

    def start(
        self, workers: int = 2, worker_nice: dict[int, int] | None = None, **worker_env: str
    ) -> None:
        self.cli("db", "upgrade")
        for n, port in enumerate(self.api_ports):
            self.spawn(f"api{n}", [str(EDI834), "api"], EDI834_HTTP_PORT=str(port))
        self.spawn(
            "sftp",
            [str(EDI834), "sftp"],
            EDI834_SFTP_PORT=str(self.sftp_port),
            EDI834_HEALTH_PORT=str(free_port()),
        )
        for n in range(workers):
            self.spawn(
                f"worker{n}",
                [str(EDI834), "worker", "--concurrency", "2"],
                EDI834_HEALTH_PORT=str(free_port()),
                **worker_env,
                **(
                    {"EDI834_WORKER_NICE": str(worker_nice[n])}
                    if worker_nice and n in worker_nice
                    else {}
                ),
            )
        cert, key = self_signed_cert(self.tmp)
        (self.tmp / "nginx").mkdir()
        conf = Template(TEMPLATE.read_text()).substitute(
            LISTEN_PORT=self.https_port,
            UPSTREAMS=" ".join(f"server 127.0.0.1:{p};" for p in self.api_ports),
            CERT=cert,
            KEY=key,
            PID=self.tmp / "nginx" / "nginx.pid",
            TMP=self.tmp / "nginx",
        )
        (self.tmp / "nginx.conf").write_text(conf)
        assert NGINX is not None
        self.spawn(
            "nginx",
            [NGINX, "-p", str(self.tmp / "nginx"), "-c", str(self.tmp / "nginx.conf"),
             "-g", "daemon off;"],
        )  # fmt: skip
        deadline = time.monotonic() + 60
        with httpx.Client(verify=False, timeout=5) as c:  # noqa: S501 - our own test cert
            while True:
                try:
                    if (
                        all(
                            c.get(f"http://127.0.0.1:{p}/readyz").status_code == 200
                            for p in self.api_ports
                        )
                        and c.get(f"{self.url}/readyz").status_code == 200
                        and _listening(self.sftp_port)
                    ):
                        return
                except httpx.HTTPError:
                    pass
                for name, proc in self.procs.items():
                    assert proc.poll() is None, (self.tmp / f"{name}.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "cluster not ready"
                time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every process; their exit codes (None: had to be killed)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = None
        return codes


@pytest.fixture
def cluster(tmp_path, postgres):
    c = Cluster(tmp_path, postgres.create_database("scale_out"))
    yield c
    c.stop()


def test_many_processes_one_queue_nothing_lost_nothing_twice(cluster: Cluster, tmp_path) -> None:
    ssh_key = asyncssh.generate_private_key("ssh-ed25519")
    ssh_key.write_public_key(tmp_path / "sb.pub")
    keys = {
        name: json.loads(
            cluster.cli("partner", "add", "--name", name, "--isa-qualifier", "ZZ",
                        "--isa-id", "VA0FFM" if name == "va" else "MD0SBE",
                        *(["--sftp-key", str(tmp_path / "sb.pub")] if name == "md" else []),
                        "--json")
        )["api_key"]
        for name in ("va", "md")
    }  # fmt: skip
    # worker1 yields the CPU to intake (EDI834_WORKER_NICE); worker0 keeps the default.
    cluster.start(worker_nice={1: 5})

    def send(n: int) -> tuple[int, str]:
        content = _with_isa13(DEFECTIVE if n % 10 == 0 else GOOD, 500_000 + n)
        with httpx.Client(base_url=cluster.url, verify=False, timeout=60) as c:  # noqa: S501
            r = c.post(
                "/v1/interchanges",
                content=content,
                headers={
                    "Authorization": f"Bearer {keys['va']}",
                    "Content-Type": "application/edi-x12",
                    "X-Filename": f"daily-{n:04d}.834",
                },
            )
        return r.status_code, r.json().get("id", "")

    md_good = (SAMPLES / "good_newborn_dependent_add.834").read_bytes()

    async def upload_all() -> None:
        async with asyncssh.connect(
            "127.0.0.1", cluster.sftp_port, username="md", client_keys=[ssh_key],
            known_hosts=None,
        ) as conn, conn.start_sftp_client() as sftp:  # fmt: skip

            async def one(n: int) -> None:
                async with sftp.open(f"inbound/md-{n:03d}.834", "wb") as f:
                    await f.write(_with_isa13(md_good, 700_000 + n))

            await asyncio.gather(*(one(n) for n in range(SFTP_FILES)))

    engine = create_engine(cluster.database_url)

    def processed() -> int:
        with engine.connect() as conn:
            return int(conn.scalar(text("SELECT count(*) FROM receipts WHERE status='processed'")))

    killed = False
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(send, n) for n in range(HTTP_FILES)]
        asyncio.run(upload_all())
        while not all(f.done() for f in futures) or not killed:
            if not killed and processed() >= 60:
                cluster.procs["worker0"].send_signal(signal.SIGKILL)  # mid-run, files in hand
                killed = True
            time.sleep(0.05)
        answers = [f.result() for f in futures]
    assert Counter(code for code, _ in answers) == {202: HTTP_FILES}
    assert cluster.procs["worker0"].wait(5) == -signal.SIGKILL

    total = HTTP_FILES + SFTP_FILES
    deadline = time.monotonic() + 240
    while processed() < total:
        assert time.monotonic() < deadline, f"only {processed()} of {total} processed"
        assert cluster.procs["worker1"].poll() is None
        time.sleep(0.5)
    assert os.getpriority(os.PRIO_PROCESS, cluster.procs["worker1"].pid) == 5

    with engine.connect() as conn:
        statuses = dict(
            conn.execute(text("SELECT status, count(*) FROM receipts GROUP BY 1")).all()
        )
        assert statuses == {"processed": total}
        ids = {i for _, i in answers}
        assert len(ids) == HTTP_FILES and ids <= set(conn.scalars(text("SELECT id FROM receipts")))
        # Exactly one outcome each: one 'processed' event, one 999 (and the TA1 ISA14 asks for).
        once = conn.execute(
            text(
                "SELECT r.id, (SELECT count(*) FROM receipt_events e WHERE e.receipt_id = r.id "
                "AND e.event = 'processed'), (SELECT count(*) FROM acks a WHERE "
                "a.receipt_id = r.id AND a.kind = '999'), (SELECT count(*) FROM acks a WHERE "
                "a.receipt_id = r.id AND a.kind = 'ta1') FROM receipts r"
            )
        ).all()
        assert {(p, n999) for _, p, n999, _ in once} == {(1, 1)}
        outcomes = dict(
            conn.execute(text("SELECT outcome, count(*) FROM receipts GROUP BY 1")).all()
        )
        assert outcomes == {"accepted": total - HTTP_FILES // 10, "rejected": HTTP_FILES // 10}
        numbers = conn.scalars(text("SELECT control_number FROM acks")).all()
        assert len(numbers) == len(set(numbers))  # from one sequence across all processes
        taken_over = conn.scalar(
            text("SELECT count(*) FROM receipt_events WHERE detail LIKE '%lease expired%'")
        )
    engine.dispose()
    outbound = list((cluster.data / "sftp").glob("*/outbound/*.999"))
    deadline = time.monotonic() + 30
    while len(outbound) < total and time.monotonic() < deadline:
        time.sleep(0.2)
        outbound = list((cluster.data / "sftp").glob("*/outbound/*.999"))
    assert len(outbound) == total  # one 999 file per file, none written twice
    codes = cluster.stop()  # every role stops cleanly on SIGTERM
    assert codes == {**dict.fromkeys(cluster.procs, 0), "worker0": -signal.SIGKILL}, codes
    print(f"\n{total} files, one worker SIGKILLed; {taken_over} lease(s) taken over")
