"""A throwaway PostgreSQL server for the test suite.

Uses the Debian ``postgresql`` package's binaries (``/usr/lib/postgresql/<N>/bin``, newest
version wins; PATH is not consulted). The cluster lives in a fresh temp dir, listens on
127.0.0.1 on a free port plus a unix socket inside the temp dir, uses trust auth for the
``postgres`` superuser, and runs with durability switched off (fsync, synchronous_commit,
full_page_writes) because nothing in it needs to survive.

initdb and postgres refuse to run as root, so when the test process is root (CI) they run as
the ``postgres`` system user that Debian's package creates, via ``runuser`` (or ``setpriv``),
and the temp dir is chowned to that user. As a normal user the binaries run directly.

    with PostgresServer() as pg:
        engine = sqlalchemy.create_engine(pg.url)
        other_url = pg.create_database("scratch")

The server is also stopped at interpreter exit (atexit), so an interrupted test run (Ctrl-C)
does not leave a postmaster behind; SIGTERM (which skips atexit) is handled too, unless some
other handler was already installed. Only SIGKILL can leak a server (pg_ctl daemonizes it).
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path
from types import TracebackType

PG_ROOT = Path("/usr/lib/postgresql")
REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres", "createdb")
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
DEFAULT_DB = "edi834"
START_TIMEOUT = 60  # seconds, passed to pg_ctl -t
_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_PORT_ATTEMPTS = 3

SERVER_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "max_connections": "200",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


_LIVE: weakref.WeakSet[PostgresServer] = weakref.WeakSet()
_sigterm_installed = False


def _on_sigterm(signum: int, frame: object) -> None:
    """Stop running servers, then die of SIGTERM as we would have without this handler."""
    for server in list(_LIVE):
        server.stop()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_sigterm_handler() -> None:
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    _sigterm_installed = True


def find_postgres_bin() -> Path:
    """Return the bin dir of the newest PostgreSQL under /usr/lib/postgresql."""
    candidates: list[tuple[tuple[int, ...], Path]] = []
    if PG_ROOT.is_dir():
        for bindir in PG_ROOT.glob("*/bin"):
            version = bindir.parent.name
            if not re.fullmatch(r"\d+(\.\d+)*", version):
                continue
            if all((bindir / name).is_file() for name in REQUIRED_BINARIES):
                candidates.append((tuple(int(p) for p in version.split(".")), bindir))
    if not candidates:
        raise RuntimeError(
            f"PostgreSQL server binaries not found under {PG_ROOT}/<version>/bin "
            f"(need {', '.join(REQUIRED_BINARIES)}); install the Debian package, "
            "e.g. `apt-get install postgresql-15`"
        )
    return max(candidates)[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _clean_env() -> dict[str, str]:
    """The caller's environment minus libpq/server variables that would redirect the tools."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


class PostgresServer:
    """A throwaway PostgreSQL cluster; see the module docstring."""

    def __init__(self) -> None:
        self.host = HOST
        self.port: int | None = None
        self.bindir: Path | None = None
        self.base_dir: Path | None = None
        self._owner_pid = os.getpid()
        self._running = False
        self._as_root = os.geteuid() == 0

    # -- paths -------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._base / "data"

    @property
    def socket_dir(self) -> Path:
        return self._base / "run"

    @property
    def log_file(self) -> Path:
        return self._base / "run" / "postgres.log"

    @property
    def _base(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("PostgresServer has not been started")
        return self.base_dir

    # -- connection strings ------------------------------------------------------------------

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) for ``dbname`` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self._port}/{dbname}"

    def conninfo(self, dbname: str = DEFAULT_DB) -> str:
        """libpq conninfo string for ``psycopg.connect``."""
        return f"host={self.host} port={self._port} user={SUPERUSER} dbname={dbname}"

    @property
    def url(self) -> str:
        return self.url_for(DEFAULT_DB)

    @property
    def _port(self) -> int:
        if self.port is None or not self._running:
            raise RuntimeError("PostgresServer is not running")
        return self.port

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._running:
            return
        self.bindir = find_postgres_bin()
        self._owner_pid = os.getpid()
        self.base_dir = Path(tempfile.mkdtemp(prefix="edi834-pg-"))
        atexit.register(self.stop)
        _LIVE.add(self)
        _install_sigterm_handler()
        try:
            self._init_cluster()
            self._start_server()
            self._running = True
            self.create_database(DEFAULT_DB)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m immediate``) and remove the temp dir. Idempotent."""
        if os.getpid() != self._owner_pid:
            return  # a forked child must not tear down its parent's server
        atexit.unregister(self.stop)
        _LIVE.discard(self)
        base, self.base_dir = self.base_dir, None
        if base is None:
            return
        try:
            if self.bindir is not None and (base / "data" / "postmaster.pid").exists():
                self._run_as_owner(
                    [
                        str(self.bindir / "pg_ctl"),
                        "stop",
                        "-D",
                        str(base / "data"),
                        "-m",
                        "immediate",
                        "-w",
                        "-t",
                        "30",
                    ],
                    cwd=base,
                    timeout=60,
                )
        finally:
            self._running = False
            shutil.rmtree(base, ignore_errors=True)

    def pause(self) -> None:
        """Stop the postmaster as a crash would (``-m immediate``), keeping the cluster and the
        port: the database is down, for outage tests, until `resume()`."""
        assert self.bindir is not None
        result = self._run_as_owner(
            [
                *(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir)),
                *("-m", "immediate", "-w", "-t", "30"),
            ],
            cwd=self._base,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {result.stdout.strip()}")

    def resume(self) -> None:
        """Start a paused server again on the same port (so URLs handed out stay valid)."""
        assert self.bindir is not None
        result = self._run_as_owner(
            [
                *(str(self.bindir / "pg_ctl"), "start", "-D", str(self.data_dir)),
                *("-l", str(self.log_file), "-w", "-t", str(START_TIMEOUT)),
                *("-o", f"-p {self._port}"),
            ],
            cwd=self._base,
            timeout=START_TIMEOUT + 30,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {result.stdout.strip()}\n{self._log_tail()}")

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases ---------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"database name must match {_DB_NAME.pattern}: {name!r}")
        assert self.bindir is not None
        result = subprocess.run(
            [
                str(self.bindir / "createdb"),
                "-h",
                self.host,
                "-p",
                str(self._port),
                "-U",
                SUPERUSER,
                "--",
                name,
            ],
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {result.stderr.strip()}")
        return self.url_for(name)

    # -- internals ---------------------------------------------------------------------------

    def _init_cluster(self) -> None:
        base = self._base
        base.chmod(0o755)  # mkdtemp makes it 0700; the postgres user must traverse it
        self.data_dir.mkdir(mode=0o700)
        self.socket_dir.mkdir(mode=0o755)
        if self._as_root:
            try:
                user = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                raise RuntimeError(
                    f"running as root, but there is no {SYSTEM_USER!r} system user to run "
                    "initdb/postgres as (Debian's postgresql package creates it)"
                ) from None
            for path in (base, self.data_dir, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        assert self.bindir is not None
        result = self._run_as_owner(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=base,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout[-4000:]}")
        settings = dict(SERVER_SETTINGS)
        settings["unix_socket_directories"] = "'" + str(self.socket_dir).replace("'", "''") + "'"
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests/pgserver.py\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _start_server(self) -> None:
        assert self.bindir is not None
        for attempt in range(_PORT_ATTEMPTS):
            self.port = _free_port()
            result = self._run_as_owner(
                [
                    str(self.bindir / "pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(START_TIMEOUT),
                    "-o",
                    f"-p {self.port}",
                ],
                cwd=self._base,
                timeout=START_TIMEOUT + 30,
            )
            if result.returncode == 0:
                return
            log = self._log_tail()
            port_taken = "could not bind" in log or "already in use" in log
            if port_taken and attempt + 1 < _PORT_ATTEMPTS:
                continue  # lost the race for the port; pick another
            raise RuntimeError(
                f"PostgreSQL failed to start on {self.host}:{self.port} "
                f"(pg_ctl exit {result.returncode}): {result.stdout.strip()}\n"
                f"--- tail of {self.log_file} ---\n{log}"
            )

    def _log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def _run_as_owner(
        self, argv: list[str], *, cwd: Path, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run a server binary, as the postgres system user when we are root."""
        if self._as_root:
            if shutil.which("runuser"):
                argv = ["runuser", "-u", SYSTEM_USER, "--", *argv]
            elif shutil.which("setpriv"):
                argv = [
                    "setpriv",
                    f"--reuid={SYSTEM_USER}",
                    f"--regid={SYSTEM_USER}",
                    "--init-groups",
                    "--",
                    *argv,
                ]
            else:
                raise RuntimeError("running as root but neither runuser nor setpriv is available")
        return subprocess.run(
            argv,
            cwd=cwd,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
