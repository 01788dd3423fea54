"""Intake under faults: a full or failing disk, a locked or unreachable database. The client
always gets a clear error (507, or 503 with Retry-After, within a bound) and never a receipt for
a file that was not stored durably and recorded; once the fault clears, the same upload works.

The disk and lock faults run the real app in-process on loopback (so the blob store's fsync and
open can be swapped); the outage runs a real `edi834 serve` against a PostgreSQL we stop."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import datetime as dt
import errno
import hashlib
import os
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from gateway import storage
from gateway.api.app import create_app
from gateway.context import Gateway
from gateway.db.migrate import upgrade
from gateway.db.models import Receipt
from gateway.db.session import unit_of_work
from gateway.partners import add_partner
from gateway.settings import Settings
from gateway.storage import BlobStore
from gateway.worker.run import Worker
from tests.conftest import SAMPLES
from tests.gateway.harness import GatewayProcess, free_port, submit, wait_final
from tests.gateway.test_http_e2e import _with_isa13
from tests.pgserver import PostgresServer

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
BOUND_SECONDS = 30.0  # a functional bound: retries end, the client is answered


class FullDisk:
    """A file whose write (or flush) fails like a full disk; everything else passes through."""

    def __init__(self, f: Any, fail_on: str) -> None:
        self._f = f
        self._fail_on = fail_on

    def _maybe_fail(self, op: str) -> None:
        if op == self._fail_on:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write(self, data: bytes) -> int:
        self._maybe_fail("write")
        return int(self._f.write(data))

    def flush(self) -> None:
        self._maybe_fail("flush")
        self._f.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


@dataclass
class DiskFaults:
    """Switchable faults under the blob store: fsync of files or of directories, and writes."""

    fsync_errno: int | None = None
    fsync_target: str = "file"  # "file" | "dir"
    write_fails_on: str | None = None  # "write" | "flush"
    before_fsync: Callable[[], None] | None = None  # runs once, at the next fsync

    def clear(self) -> None:
        self.fsync_errno = self.write_fails_on = None

    def fsync(self, fd: int) -> None:
        hook, self.before_fsync = self.before_fsync, None
        if hook is not None:
            hook()
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        if self.fsync_errno is not None and is_dir == (self.fsync_target == "dir"):
            raise OSError(self.fsync_errno, os.strerror(self.fsync_errno))
        os.fsync(fd)

    def open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = builtins.open(file, mode, *args, **kwargs)  # noqa: SIM115 - returned to the caller
        if mode == "xb" and self.write_fails_on is not None:  # a PendingBlob's temporary
            return FullDisk(f, self.write_fails_on)
        return f


@dataclass
class InProcessGateway:
    gw: Gateway
    url: str
    api_key: str
    faults: DiskFaults
    db_path: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self) -> httpx.Client:
        c = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=60
        )
        self.clients.append(c)
        return c

    def receipt_count(self) -> int:
        with self.gw.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(Receipt)) or 0)

    def stored_blobs(self) -> list[Path]:
        """Files in the store's final places (blobs/ab/cd/<sha256>), not its tmp/."""
        root = self.gw.blobs.root
        return [p for p in root.rglob("*") if p.is_file() and p.parent != self.gw.blobs.tmp_dir]

    def temp_files(self) -> list[Path]:
        return list(self.gw.blobs.tmp_dir.iterdir())


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """uvicorn on a free loopback port in a thread (it installs no signal handlers there)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def inproc(tmp_path, monkeypatch) -> Iterator[InProcessGateway]:
    """The real app on loopback over SQLite, with a blob store whose disk can fail."""
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url="",
        db_busy_timeout_ms=50,  # a locked database fails each try fast; the retries bound it
        sftp_enabled=False,
        worker_enabled=False,
    )
    settings.data_dir.mkdir()
    upgrade(settings.sqlalchemy_url)
    faults = DiskFaults()
    monkeypatch.setattr(storage, "open", faults.open, raising=False)
    opened = Gateway.open(settings)
    gw = dataclasses.replace(opened, blobs=BlobStore(settings.blob_dir, fsync=faults.fsync))
    with unit_of_work(gw.sessions) as session:
        _, key = add_partner(session, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
    try:
        with serve_in_thread(create_app(gw)) as url:
            g = InProcessGateway(gw, url, key, faults, settings.data_dir / "edi834.sqlite3")
            try:
                yield g
            finally:
                for c in g.clients:
                    c.close()
    finally:
        gw.close()


def assert_accepted_once(g: InProcessGateway, c: httpx.Client) -> None:
    """After the fault: the same upload is received, once, with its blob in place."""
    r = submit(c, GOOD)
    assert r.status_code == 202, r.text
    assert r.json()["sha256"] == hashlib.sha256(GOOD).hexdigest()
    assert g.receipt_count() == 1
    assert [p.read_bytes() for p in g.stored_blobs()] == [GOOD]
    assert g.temp_files() == []


class TestDiskFaults:
    @pytest.mark.parametrize(
        ("fault", "strerror"),
        [
            ("fsync_enospc", "No space left on device"),
            ("fsync_eio", "Input/output error"),
            ("write_enospc", "No space left on device"),
            ("flush_enospc", "No space left on device"),
        ],
    )
    def test_a_file_not_stored_durably_gets_507_and_leaves_nothing(self, inproc, fault, strerror):
        f = inproc.faults
        if fault == "fsync_enospc":
            f.fsync_errno = errno.ENOSPC
        elif fault == "fsync_eio":
            f.fsync_errno = errno.EIO
        else:  # buffered: a small body's ENOSPC surfaces at write() or at commit's flush()
            f.write_fails_on = fault.split("_")[0]
        c = inproc.client()
        r = submit(c, GOOD)
        assert r.status_code == 507, r.text
        body = r.json()
        assert r.headers["content-type"] == "application/problem+json"
        assert body["code"] == "storage_unavailable" and body["status"] == 507
        assert "could not store the file" in body["detail"] and strerror in body["detail"]
        assert inproc.receipt_count() == 0
        assert inproc.stored_blobs() == []
        assert inproc.temp_files() == []
        assert c.get("/v1/interchanges").json()["items"] == []

        f.clear()
        assert_accepted_once(inproc, c)

    def test_directory_fsync_failure_gets_507_and_no_receipt(self, inproc):
        """The rename happened but its directory entry is not durable: no receipt is promised.
        The content (fsynced) may stay at its address; a resend re-fsyncs the directory."""
        inproc.faults.fsync_errno, inproc.faults.fsync_target = errno.EIO, "dir"
        c = inproc.client()
        r = submit(c, GOOD)
        assert r.status_code == 507, r.text
        assert inproc.receipt_count() == 0
        assert inproc.temp_files() == []
        assert all(p.read_bytes() == GOOD for p in inproc.stored_blobs())

        inproc.faults.clear()
        assert_accepted_once(inproc, c)


class TestUnwritableStore:
    def test_an_unwritable_blob_store_is_counted_logged_and_not_ready(self, inproc):
        """The store's folder cannot be written (here a file where it should be; a read-only
        mount alike): each upload is a 507, counted and logged, and /readyz says so — a
        load balancer sends the partner elsewhere instead of into 507s."""
        from gateway.metrics import REJECTED_REQUESTS

        refused = REJECTED_REQUESTS.labels(reason="storage")
        before = refused._value.get()
        tmp = inproc.gw.blobs.tmp_dir
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.write_text("not a folder")
        c = inproc.client()
        r = submit(c, GOOD)
        assert r.status_code == 507, r.text
        assert refused._value.get() == before + 1
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["code"] == "storage_unavailable"

        tmp.unlink()
        assert c.get("/readyz").status_code == 200
        assert_accepted_once(inproc, c)

    def test_a_nearly_full_disk_is_not_ready(self, inproc, monkeypatch):
        """Less than EDI834_READY_MIN_FREE_MB free for the blob store or the SQLite database:
        not ready, saying which (found by an on-call drill: a full disk answered every upload
        with a 507 while /readyz said ready)."""
        c = inproc.client()
        assert c.get("/readyz").status_code == 200
        real = shutil.disk_usage
        full = {"where": inproc.gw.blobs.root}

        def usage(path):
            found = real(path)
            if Path(path).resolve() == Path(full["where"]).resolve():
                return found._replace(free=1024)
            return found

        monkeypatch.setattr(shutil, "disk_usage", usage)
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["code"] == "storage_unavailable"
        assert "free for the blob store" in ready.json()["detail"]
        sqlite = inproc.gw.settings.sqlite_path
        assert sqlite is not None
        full["where"] = sqlite.parent / "elsewhere"  # the database on a disk of its own
        assert c.get("/readyz").status_code == 200
        full["where"] = sqlite.parent
        if sqlite.parent.resolve() != inproc.gw.blobs.root.resolve():
            ready = c.get("/readyz")
            assert ready.status_code == 503 and "for the database" in ready.json()["detail"]
        monkeypatch.setattr(shutil, "disk_usage", real)
        assert c.get("/readyz").status_code == 200


def hold_write_lock(db_path: Path) -> sqlite3.Connection:
    """Another process's writer in the middle of a long transaction."""
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False, timeout=5)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


class TestDatabaseLocked:
    @pytest.mark.parametrize("when", ["before_request", "after_blob_stored"])
    def test_a_lock_that_outlasts_the_retries_gets_503_with_retry_after(self, inproc, when):
        """Locked before the request, the API key lookup gives up; locked between the durable
        blob and its receipt, the receipt commit does. Either way: bounded, 503, no receipt."""
        from gateway.metrics import REJECTED_REQUESTS

        refused = REJECTED_REQUESTS.labels(reason="database")
        before = refused._value.get()
        holder: list[sqlite3.Connection] = []
        if when == "before_request":
            holder.append(hold_write_lock(inproc.db_path))
        else:
            inproc.faults.before_fsync = lambda: holder.append(hold_write_lock(inproc.db_path))
        c = inproc.client()
        started = time.monotonic()
        r = submit(c, GOOD)
        elapsed = time.monotonic() - started
        assert r.status_code == 503, r.text
        assert elapsed < BOUND_SECONDS
        assert int(r.headers["Retry-After"]) >= 1
        assert "database" in r.json()["detail"] and "again" in r.json()["detail"]
        assert r.json()["code"] == "unavailable"
        if when == "after_blob_stored":  # the upload's own receipt could not be recorded
            assert refused._value.get() == before + 1
        assert len(holder) == 1
        holder[0].rollback()
        holder[0].close()

        assert inproc.receipt_count() == 0
        assert inproc.temp_files() == []
        assert_accepted_once(inproc, c)  # the resend reuses a blob stored before the 503

    def test_a_lock_released_within_the_retry_window_is_waited_out(self, inproc):
        holder: list[sqlite3.Connection] = []

        def lock_then_release_soon() -> None:
            holder.append(hold_write_lock(inproc.db_path))
            threading.Timer(0.5, holder[0].close).start()  # closing ends its transaction

        inproc.faults.before_fsync = lock_then_release_soon
        c = inproc.client()
        started = time.monotonic()
        r = submit(c, GOOD)
        elapsed = time.monotonic() - started
        assert r.status_code == 202, r.text
        assert 0.5 <= elapsed < BOUND_SECONDS  # it waited for the lock, then went through
        assert inproc.receipt_count() == 1

    def test_an_ack_fetched_while_the_lock_outlasts_the_retries_gets_503(self, inproc):
        """Fetching an ack records its pick-up, a write: while another writer holds the lock
        (the ledger applying a large file, found by a sender polling for its 999) the fetch
        was a 500 `internal_error` ("a bug"), where every authenticated route documents a
        503 with Retry-After for a database that cannot answer. A read that needs no write
        (the status) is answered meanwhile."""
        c = inproc.client()
        r = submit(c, GOOD)
        assert r.status_code == 202, r.text
        receipt_id = r.json()["id"]
        worker = Worker(inproc.gw, worker_id="w")
        while worker.run_once():
            pass
        holder = hold_write_lock(inproc.db_path)
        try:
            started = time.monotonic()
            ack = c.get(f"/v1/interchanges/{receipt_id}/acks/999")
            assert time.monotonic() - started < BOUND_SECONDS
            assert ack.status_code == 503, ack.text
            assert ack.json()["code"] == "unavailable"
            assert "database" in ack.json()["detail"] and "again" in ack.json()["detail"]
            assert int(ack.headers["Retry-After"]) >= 1
            assert c.get(f"/v1/interchanges/{receipt_id}").status_code == 200
        finally:
            holder.rollback()
            holder.close()
        ack = c.get(f"/v1/interchanges/{receipt_id}/acks/999")
        assert ack.status_code == 200 and ack.content.startswith(b"ISA*")


class TestDatabaseDown:
    def test_outage_answers_503_keeps_the_worker_alive_and_recovers(self, tmp_path):
        with PostgresServer() as pg:
            gateway = GatewayProcess(data_dir=tmp_path / "var", database_url=pg.url)
            try:
                key = gateway.add_partner("va", "VA0FFM")
                gateway.start()
                with gateway.client(key) as c:
                    first = submit(c, GOOD)
                    assert wait_final(c, first.json()["id"])["outcome"] == "accepted"

                    pg.pause()
                    # A new interchange (its own ISA13: reusing the first's is TA1 025).
                    resend = _with_isa13(GOOD.replace(b"BGN*00*", b"BGN*00*OUTAGE", 1), 41999)
                    started = time.monotonic()
                    r = submit(c, resend)
                    assert r.status_code == 503, r.text
                    assert time.monotonic() - started < BOUND_SECONDS
                    assert int(r.headers["Retry-After"]) >= 1
                    assert "database" in r.json()["detail"]
                    assert httpx.get(f"{gateway.url}/readyz").status_code == 503
                    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
                    # The worker met the outage: said once, no traceback.
                    wait_for_log(gateway, '"worker_loop_error_database_unavailable"')

                    pg.resume()
                    gateway.wait_ready()
                    assert gateway.proc is not None and gateway.proc.poll() is None
                    r = submit(c, resend)
                    assert r.status_code == 202, r.text
                    done = wait_final(c, r.json()["id"], timeout=30)  # the worker survived
                    assert (done["status"], done["outcome"]) == ("processed", "accepted")
            finally:
                gateway.kill()

    def test_an_sftp_upload_closed_during_an_outage_is_kept_and_recorded_whole(self, tmp_path):
        """CLOSE waits for the database a while, then fails (the client must not take the file
        as received) and the upload is held: out of inbound/ (a client's confirming stat fails
        too; paramiko's put drops a CLOSE error) and recorded, as the whole file it was, once
        the database answers. Left in inbound/, it was listed at its full size and a sweep
        later recorded it as partial, telling the sender to send it again."""
        import asyncssh

        with PostgresServer() as pg:
            # The CLOSE's patience (15 s by default) shortened: what is checked is what follows
            # when it runs out, not its length; 15 s of waiting were most of this test's time.
            gateway = GatewayProcess(
                data_dir=tmp_path / "var",
                database_url=pg.url,
                extra_env={"EDI834_SFTP_CLOSE_PATIENCE_SECONDS": "2"},
            )
            try:
                client_key = asyncssh.generate_private_key("ssh-ed25519")
                public = tmp_path / "id_va.pub"
                client_key.write_public_key(public)
                api_key = gateway.add_partner("va", "VA0FFM", sftp_key=public)
                gateway.start()

                async def upload(name: str, close_during_outage: bool) -> str:
                    async with (
                        asyncssh.connect(
                            "127.0.0.1",
                            gateway.sftp_port,
                            username="va",
                            client_keys=[client_key],
                            known_hosts=None,
                        ) as conn,
                        conn.start_sftp_client() as sftp,
                    ):
                        f = await sftp.open(f"inbound/{name}", "wb")
                        await f.write(GOOD)
                        if not close_during_outage:
                            await f.close()
                            return "closed"
                        pg.pause()
                        with pytest.raises(asyncssh.SFTPFailure) as refused:
                            await f.close()
                        with pytest.raises(asyncssh.SFTPNoSuchFile):
                            await sftp.stat(f"inbound/{name}")
                        return str(refused.value.reason)

                said = asyncio.run(upload("held.834", close_during_outage=True))
                held_by = dt.datetime.now(dt.UTC)
                assert "kept" in said and "sending it again is safe" in said, said
                assert '"sftp_upload_held"' in gateway.logs()
                pg.resume()
                with gateway.client(api_key) as c:
                    item = _the_one_listed(gateway, c)
                    assert (item["filename"], item["channel"]) == ("held.834", "sftp")
                    # Received when its bytes came, not when the database came back: the ack
                    # SLA counts the outage against us.
                    received = dt.datetime.fromisoformat(item["received_at"])
                    assert received <= held_by, (received, held_by)
                    done = wait_final(c, item["id"], timeout=60)
                    assert (done["status"], done["outcome"]) == ("processed", "accepted"), done
                # Sent again as told: the same bytes, recognised.
                assert asyncio.run(upload("again.834", close_during_outage=False)) == "closed"
                with gateway.client(api_key) as c:
                    assert len(c.get("/v1/interchanges").json()["items"]) == 1
                outbound = gateway.data_dir / "sftp" / "va" / "outbound"
                assert [p.name for p in outbound.glob("*.duplicate.json")]
                assert not list(outbound.glob("*.partial.json"))
                assert not list((gateway.data_dir / "sftp-held").glob("*.json"))
            finally:
                gateway.kill()

    def test_partners_log_in_during_an_outage_with_the_keys_last_read(self, tmp_path):
        """An exchange's SFTP push during a database outage logs in with the keys the server
        last read (every partner's at start, then each login's), and its upload is held and
        recorded once the database answers; before, every login was refused until the database
        came back, and a sender's job told "service not available" gives up. A partner disabled
        before the outage, a wrong key and a name never read stay refused."""
        import asyncssh

        with PostgresServer() as pg:
            gateway = GatewayProcess(
                data_dir=tmp_path / "var",
                database_url=pg.url,
                extra_env={"EDI834_SFTP_CLOSE_PATIENCE_SECONDS": "1"},
            )
            try:
                keys = {n: asyncssh.generate_private_key("ssh-ed25519") for n in ("va", "vb")}
                api_key = ""
                for name, isa_id in (("va", "VA0FFM"), ("vb", "VB0FFM")):
                    public = tmp_path / f"id_{name}.pub"
                    keys[name].write_public_key(public)
                    made = gateway.add_partner(name, isa_id, sftp_key=public)
                    api_key = made if name == "va" else api_key
                gateway.start()
                # vb is disabled while the server runs: its next login is refused and its keys
                # are forgotten (the read at start had them).
                gateway.cli("partner", "disable", "vb")

                async def login(name: str, key: asyncssh.SSHKey, upload: bool = False) -> str:
                    try:
                        async with (
                            asyncssh.connect(
                                "127.0.0.1",
                                gateway.sftp_port,
                                username=name,
                                client_keys=[key],
                                known_hosts=None,
                            ) as conn,
                            conn.start_sftp_client() as sftp,
                        ):
                            if not upload:
                                return "in"
                            f = await sftp.open("inbound/outage.834", "wb")
                            await f.write(GOOD)
                            with pytest.raises(asyncssh.SFTPFailure) as held:
                                await f.close()  # the database is away: held, not received
                            return str(held.value.reason)
                    except asyncssh.PermissionDenied:
                        return "denied"
                    except asyncssh.DisconnectError as exc:
                        return exc.reason

                assert asyncio.run(login("vb", keys["vb"])) == "denied"
                pg.pause()
                # va never logged in before the outage: its keys were read at start.
                said = asyncio.run(login("va", keys["va"], upload=True))
                assert "kept" in said, said
                assert '"sftp_keys_from_last_read"' in gateway.logs()
                assert asyncio.run(login("va", keys["vb"])) == "denied"  # not va's key
                assert asyncio.run(login("vb", keys["vb"])) != "in"
                unknown = asyncio.run(login("vz", keys["va"]))
                assert "cannot check keys" in unknown, unknown
                pg.resume()
                with gateway.client(api_key) as c:
                    item = _the_one_listed(gateway, c)
                    assert (item["filename"], item["channel"]) == ("outage.834", "sftp")
                    done = wait_final(c, item["id"], timeout=60)
                    assert (done["status"], done["outcome"]) == ("processed", "accepted"), done
            finally:
                gateway.kill()


def _the_one_listed(gateway: GatewayProcess, c: httpx.Client) -> dict[str, Any]:
    """The partner's only interchange, once a held upload has been recorded (within 60 s)."""
    deadline = time.monotonic() + 60
    while not (items := c.get("/v1/interchanges").json()["items"]):
        assert time.monotonic() < deadline, gateway.logs()[-3000:]
        time.sleep(0.5)
    (item,) = items
    return dict(item)


def wait_for_log(gateway: GatewayProcess, needle: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while needle not in gateway.logs():
        assert time.monotonic() < deadline, f"{needle} not logged:\n{gateway.logs()[-2000:]}"
        time.sleep(0.1)
