"""Run the real gateway (`edi834 serve`) as a child process on loopback, and talk to it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.orm import Session

from gateway import operators
from gateway.context import Gateway
from gateway.db.migrate import upgrade
from gateway.db.session import unit_of_work
from gateway.partners import add_partner, make_sftp_home, read_public_keys
from gateway.settings import Settings
from tests.conftest import ROOT
from tests.gateway.launcher import ForkedProcess, launcher, run

EDI834 = ROOT / ".venv" / "bin" / "edi834"
FINAL = {"processed", "failed"}
OPERATOR_PASSWORD = "correct horse battery staple"  # noqa: S105 - test operators


def in_process_gateway(
    data_dir: Path, database_url: str = "", **settings_: Any
) -> Iterator[Gateway]:
    """A migrated gateway in this process (no server), closed afterwards: for a fixture to
    yield from. The database: `database_url`, or SQLite in `data_dir` when empty; other
    settings as keywords."""
    settings = Settings(data_dir=data_dir, database_url=database_url, **settings_)
    gw = Gateway.open(settings)
    upgrade(settings.sqlalchemy_url)
    yield gw
    gw.close()


def add_va(gw: Gateway) -> int:
    """The partner most tests send as: va (ZZ / VA0FFM); its id."""
    with unit_of_work(gw.sessions) as s:
        partner, _ = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
        return partner.id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GatewayProcess:
    data_dir: Path
    database_url: str = ""
    http_port: int = field(default_factory=free_port)
    sftp_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | ForkedProcess | None = None
    starts: int = 0
    bind_retries: int = 0
    # Its `serve` and commands forked from a launcher that has their modules loaded
    # (tests/gateway/launcher.py), not started as new `edi834` processes: ~1.6 s of CPU less a
    # start, ~0.5 s a command. False for a measurement of the process itself (the benchmarks).
    forked: bool = True

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def settings(self) -> Settings:
        """What its CLI commands read: the data directory and the database (the rest defaults)."""
        return Settings(data_dir=self.data_dir, database_url=self.database_url)

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def add_operator(
        self, username: str, password: str, role: str = "viewer", *, cli: bool = False
    ) -> None:
        """An operator, through the library `edi834 operator add` runs, in this process (~0.6 s
        of CPU less than a subprocess); with `cli`, through the command itself, the password on
        its stdin (test_dashboard's seed logs in as an operator added so)."""
        if cli:
            self._run(["operator", "add", username, "--role", role], input=password + "\n")
            return
        with self._unit_of_work() as session:
            operators.add_operator(session, username, password, role)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self, **more: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDI834_")}
        env.update(
            EDI834_DATA_DIR=str(self.data_dir),
            EDI834_DATABASE_URL=self.database_url,
            EDI834_HTTP_PORT=str(self.http_port),
            EDI834_SFTP_PORT=str(self.sftp_port),
            EDI834_DASHBOARD_PORT=str(self.dashboard_port),
            # The intake wakes the worker at once (in this process; on PostgreSQL also through
            # LISTEN/NOTIFY), so polls only find what comes due later (retries, expired leases,
            # the ledger's order window): a gateway idle at 0.1 s took 8.3% of a core, at 1 s
            # 1.1%. A test that waits on polls in a long chain sets its own (test_crash).
            EDI834_WORKER_POLL_SECONDS="1",
            EDI834_SHUTDOWN_GRACE_SECONDS="5",
        )
        env.update(self.extra_env)
        env.update(more)
        return env

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(list(args), check=check)

    def _run(
        self, args: list[str], *, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`edi834 ARGS`, its output captured: forked from the launcher (see `forked`)."""
        argv, env = [str(EDI834), *args], self.env()
        if self.forked and args and not args[0].startswith("-"):
            return run(argv, env, input=input, check=check, timeout=60)
        return subprocess.run(
            argv, env=env, input=input, capture_output=True, text=True, check=check, timeout=60
        )

    def add_partner(
        self, name: str, isa_id: str, qualifier: str = "ZZ", sftp_key: Path | None = None
    ) -> str:
        """A partner and its API key, through the library `edi834 partner add` runs (the CLI
        itself is tested in test_ops): in this process, ~1 s of CPU less than a subprocess."""
        with self._unit_of_work() as session:
            partner, key = add_partner(
                session,
                name=name,
                isa_qualifier=qualifier,
                isa_id=isa_id,
                sftp_keys=read_public_keys([sftp_key] if sftp_key else []),
            )
            make_sftp_home(self.settings.sftp_root, partner.name)
        return key

    @contextmanager
    def _unit_of_work(self) -> Iterator[Session]:
        """A unit of work on this gateway's migrated database, as its CLI commands open one."""
        gw = Gateway.open(self.settings)
        try:
            upgrade(self.settings.sqlalchemy_url)
            with unit_of_work(gw.sessions) as session:
                yield session
        finally:
            gw.close()

    def start(self, *, crashpoints: tuple[str, ...] = (), wait: bool = True, **env: str) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        argv = [str(EDI834), "serve"]
        environment = self.env(EDI834_CRASHPOINTS=",".join(crashpoints), **env)
        if self.forked:
            self.proc = launcher().spawn(argv, environment, self.log_path)
        else:
            log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
            self.proc = subprocess.Popen(
                argv, env=environment, stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
            log.close()
        self.starts += 1
        if wait:
            try:
                self.wait_ready()
            except RuntimeError:
                # free_port() races with every other process on the machine: a port found free
                # can be taken before the gateway binds it (uvicorn exits 3). On a first start
                # nothing knows the ports yet, so pick new ones and start again.
                retry = self.starts == 1 and self.proc is not None and self.proc.returncode == 3
                if not retry or self.bind_retries >= 3:
                    raise
                self.bind_retries += 1
                self.http_port, self.sftp_port = free_port(), free_port()
                self.dashboard_port = free_port()
                self.starts = 0
                self.start(crashpoints=crashpoints, wait=wait, **env)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway not ready after {timeout}s:\n{self.logs()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, api_key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def submit(client: httpx.Client, content: bytes, filename: str = "file.834") -> httpx.Response:
    return client.post(
        "/v1/interchanges",
        content=content,
        headers={"Content-Type": "application/edi-x12", "X-Filename": filename},
    )


def wait_final(client: httpx.Client, receipt_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/interchanges/{receipt_id}")
        r.raise_for_status()
        body = r.json()
        if body["status"] in FINAL:
            return body
        time.sleep(0.1)
    raise AssertionError(f"{receipt_id} not processed within {timeout}s: {body['status']}")


LEDGER_DONE = {"applied", "reconciled", "not_applied", "dry_run", "failed"}


def wait_ledger(client: httpx.Client, receipt_id: str, timeout: float = 60.0) -> dict:
    """The file's status once validated and, when it has 834 sets, through the ledger stage."""
    body = wait_final(client, receipt_id, timeout)
    deadline = time.monotonic() + timeout
    while body["ledger_status"] is not None and body["ledger_status"] not in LEDGER_DONE:
        assert time.monotonic() < deadline, f"ledger stage not done: {body['ledger_status']}"
        time.sleep(0.05)
        body = client.get(f"/v1/interchanges/{receipt_id}").json()
    return body


def members_of(client: httpx.Client, receipt_id: str, page: int = 1000) -> list[dict]:
    """Every member the API lists for a file, page by page."""
    items: list[dict] = []
    after = -1
    while True:
        r = client.get(
            f"/v1/interchanges/{receipt_id}/members", params={"after": after, "limit": page}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        if body["next_after"] is None:
            return items
        after = body["next_after"]


def wait_for_file(path: Path, timeout: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear")


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a dashboard page."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no form on the page"
    return found.group(1)


def login(
    gateway: GatewayProcess, user: str, password: str = OPERATOR_PASSWORD
) -> tuple[httpx.Client, httpx.Response]:
    """A dashboard client with `user`'s session (when the password is right), and the answer
    to the login form."""
    c = httpx.Client(base_url=gateway.dashboard_url, timeout=30)
    page = c.get("/login")
    r = c.post(
        "/login",
        data={
            "username": user,
            "password": password,
            "csrf_token": csrf_of(page.text),
            "next": "/dashboard",
        },
    )
    return c, r


def self_signed_cert(tmp: Path) -> tuple[Path, Path]:
    """A throwaway TLS certificate and key for 127.0.0.1, written under `tmp`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "tls.crt", tmp / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
