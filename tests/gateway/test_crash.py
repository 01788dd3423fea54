"""Crash consistency of `edi834 serve`: every promise survives a SIGKILL. The process is killed at
a named crash point (gateway/faults.py), or by the test while a client is still streaming a body,
then restarted; cut-off files are sent again as a client would, and once the queue drains:

- every file answered (HTTP 202/200, or an SFTP CLOSE/rename that succeeded) has exactly one
  receipt, `processed` with an outcome (`failed` only for the poison file), whose blob holds the
  bytes sent;
- nothing stays `received` or `processing`; no file is processed twice (one TA1 and one 999 per
  interchange, in the database and in outbound/);
- what was cut off promised nothing: a resend of the same bytes finds at most one receipt that
  counts; an SFTP upload the kill left in inbound/ under its final name is a `partial` receipt
  after the restart (its bytes a prefix of what was being sent), shown, never processed, never
  answered; one left under NAME.part stays to be resumed, and the resend (truncating) uses it.

Each phase prints its tally (`pytest -s`). The full matrix runs on SQLite; PostgreSQL runs a
representative subset (the same code paths, but the database decides dedup, leases and
atomicity), to keep the file under about 75 s on two cores.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import httpx
import pytest

from tests.conftest import SAMPLES
from tests.gateway.harness import GatewayProcess, submit
from tests.gateway.test_http_e2e import _with_isa13

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
PARTNER, ISA_ID = "va", "VA0FFM"
MID_UPLOAD = "mid_upload"  # not a crash point: the test kills the server mid-body
# PostgreSQL gets no orphan recovery at start (another process may hold the lease), so a receipt
# whose worker died waits for its lease to expire: keep the lease short, and the poll that finds
# it expired (and a failed attempt's retry) frequent, as before the harness's default became 1 s.
ENV = {"EDI834_LEASE_SECONDS": "1", "EDI834_WORKER_POLL_SECONDS": "0.1"}
MAX_ATTEMPTS = 3  # Settings.max_attempts
BIG_PADDING = 2 << 20  # CRLF pairs after the IEA: a 4 MiB file the validator accepts
CHUNK = 64 << 10
KILL_AFTER = 1 << 20  # bytes of the big body streamed before the test kills the server
# A batch of ten: HTTP, SFTP completed by CLOSE, SFTP completed by renaming NAME.part to NAME.
CHANNELS = ("http", "sftp", "http", "sftp-rename", "http", "sftp", "http", "sftp-rename")
CHANNELS += ("http", "sftp")
# sftp_blob_stored kills the process at the first SFTP upload: HTTP files go first, so that some
# are answered before it (the first SFTP starts only once two HTTP files have been).
HTTP_FIRST = tuple(sorted(CHANNELS))
FINAL_ACKS = Counter({"ta1": 1, "999": 1})  # ISA14 = 1: a TA1, and a 999 for the group
NOTICES = (".partial.json", ".duplicate.json")

_isa13 = itertools.count(200_001)


@dataclass(eq=False)
class Upload:
    """One file a client wants answered; sent again, as is, until it is."""

    name: str
    content: bytes
    channel: str  # "http", "sftp" or "sftp-rename"
    point: str
    poison: bool = False
    answers: list[tuple[int, str]] = field(default_factory=list)  # (HTTP status, id); SFTP (0, "")
    refusals: list[int] = field(default_factory=list)
    cut_off: int = 0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def answered(self) -> bool:
        return bool(self.answers)


@dataclass
class Tally:
    point: str
    sent: int = 0  # files in the batch sent to the process that crashed
    answered: int = 0  # answered before the crash
    cut_off: int = 0  # no answer before the crash: nothing promised
    recorded_unanswered: int = 0  # cut off, yet its receipt was committed before the crash
    resent: int = 0
    resend_found_original: int = 0  # the resend was answered with the pre-crash receipt
    receipts: int = 0  # answered receipts checked after the restart (every phase so far)
    lost: int = 0  # answered, then missing, unprocessed or wrong
    stuck: int = 0  # left `received` or `processing`
    duplicates: int = 0  # a second receipt for the same bytes, or acks written twice
    tmp_left: int = 0  # unreferenced temporaries (blobs/tmp, outbox-tmp): never promised
    orphans: int = 0  # SFTP uploads the kill cut off, recorded `partial` at the restart

    def line(self, db: str) -> str:
        counts = " ".join(f"{k}={v}" for k, v in vars(self).items() if k != "point")
        return f"crash tally [{db}] {self.point:<17} {counts}"


@dataclass
class Audit:
    receipts: int = 0
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)
    tmp_left: int = 0
    orphans: int = 0


def new_file(n: int, padding: int = 0) -> bytes:
    """A distinct, valid interchange: its own ISA13, so never a duplicate (TA1 025)."""
    return _with_isa13(GOOD, n) + b"\r\n" * padding


def _paced(content: bytes, pace: float) -> Iterator[bytes]:
    half = len(content) // 2
    yield content[:half]
    time.sleep(pace)
    yield content[half:]


async def _sftp_put(port: int, key: asyncssh.SSHKey, upload: Upload, pace: float) -> bool:
    """True once the server answered the CLOSE (or the rename) that completes the upload."""
    final = f"inbound/{upload.name}"
    first = f"{final}.part" if upload.channel == "sftp-rename" else final
    done = False
    try:
        async with (
            asyncssh.connect(
                "127.0.0.1",
                port,
                username=PARTNER,
                client_keys=[key],
                known_hosts=None,
                connect_timeout=10,
            ) as conn,
            conn.start_sftp_client() as sftp,
        ):
            async with sftp.open(first, "wb") as f:
                half = len(upload.content) // 2
                await f.write(upload.content[:half])
                await asyncio.sleep(pace)
                await f.write(upload.content[half:], half)
            if first != final:
                await sftp.rename(first, final)
            done = True
    except (OSError, asyncssh.Error):
        pass
    return done


def list_receipts(c: httpx.Client) -> list[dict]:
    items: list[dict] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = c.get("/v1/interchanges", params=params)
        page.raise_for_status()
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return items


class CrashLab:
    """One partner on one gateway, and every file it ever sent there."""

    def __init__(self, gw: GatewayProcess, tmp_path: Path) -> None:
        self.gw = gw
        self.db = "postgresql" if gw.database_url else "sqlite"
        self.sftp_key = asyncssh.generate_private_key("ssh-ed25519")
        pub = tmp_path / "partner_key.pub"
        pub.write_bytes(self.sftp_key.export_public_key())
        gw.extra_env.update(ENV)
        self.api_key = gw.add_partner(PARTNER, ISA_ID, sftp_key=pub)
        self.uploads: list[Upload] = []

    @property
    def outbound(self) -> Path:
        return self.gw.data_dir / "sftp" / PARTNER / "outbound"

    @property
    def inbound(self) -> Path:
        return self.gw.data_dir / "sftp" / PARTNER / "inbound"

    def batch(self, point: str, channels: tuple[str, ...] = CHANNELS) -> list[Upload]:
        made = []
        for channel in channels:
            n = next(_isa13)
            made.append(Upload(f"{point}-{n}.834", new_file(n), channel, point))
        self.uploads += made
        return made

    # --- sending -----------------------------------------------------------------------------

    def send(
        self, upload: Upload, *, pace: float = 0.0, body: Iterator[bytes] | None = None
    ) -> None:
        if upload.channel == "http":
            content = body or (_paced(upload.content, pace) if pace else upload.content)
            headers = {"Content-Type": "application/edi-x12", "X-Filename": upload.name}
            try:
                with self.gw.client(self.api_key) as c:
                    r = c.post("/v1/interchanges", content=content, headers=headers)
            except httpx.TransportError:
                upload.cut_off += 1
                return
            if r.status_code in (200, 202):
                upload.answers.append((r.status_code, r.json()["id"]))
            else:
                upload.refusals.append(r.status_code)
            return
        coro = _sftp_put(self.gw.sftp_port, self.sftp_key, upload, pace)
        if asyncio.run(coro):
            upload.answers.append((0, ""))
        else:
            upload.cut_off += 1

    def send_all(
        self,
        uploads: list[Upload],
        *,
        pace: float = 0.0,
        threads: int = 4,
        on_answer: Callable[[], None] | None = None,
    ) -> None:
        def one(upload: Upload) -> None:
            self.send(upload, pace=pace)
            if upload.answered and on_answer is not None:
                on_answer()

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, uploads))

    # --- phases ------------------------------------------------------------------------------

    def crash_at(self, point: str) -> Tally:
        """Start armed with `point`, send a batch of ten, and wait for the SIGKILL."""
        uploads = self.batch(point, HTTP_FIRST if point == "sftp_blob_stored" else CHANNELS)
        self.gw.start(crashpoints=(point,))
        self.send_all(uploads)
        return self._crashed(point, uploads)

    def kill_mid_upload(self) -> Tally:
        """A big body is being streamed when the test kills the server; a paced batch of ten
        runs beside it, some answered before the kill, some in flight, some never sent."""
        n = next(_isa13)
        big = Upload(f"{MID_UPLOAD}-big-{n}.834", new_file(n, BIG_PADDING), "http", MID_UPLOAD)
        self.uploads.append(big)
        small = self.batch(MID_UPLOAD)
        self.gw.start()
        answered = itertools.count(1)
        enough = threading.Event()

        def count_answer() -> None:
            if next(answered) >= 3:
                enough.set()

        def big_body() -> Iterator[bytes]:
            for offset in range(0, len(big.content), CHUNK):
                if offset == KILL_AFTER:
                    enough.wait(20)
                    self.gw.kill()
                yield big.content[offset : offset + CHUNK]

        streamer = threading.Thread(target=lambda: self.send(big, body=big_body()))
        streamer.start()
        self.send_all(small, pace=0.05, threads=3, on_answer=count_answer)
        streamer.join(60)
        assert not big.answered and big.cut_off == 1, "the big body was answered"
        return self._crashed(MID_UPLOAD, [big, *small])

    def _crashed(self, point: str, uploads: list[Upload]) -> Tally:
        rc = self.gw.wait_exit(30)
        assert rc == -signal.SIGKILL, f"{point}: gateway exited {rc}, not killed:\n{self.logs()}"
        tally = Tally(point, sent=len(uploads))
        tally.answered = sum(u.answered for u in uploads)
        tally.cut_off = len(uploads) - tally.answered
        return tally

    def recover(self, tally: Tally, *, crashpoints: tuple[str, ...] = ()) -> Tally:
        """Restart, resend what was cut off, let the queue drain, and check every promise."""
        self.gw.start(crashpoints=crashpoints)
        with self.gw.client(self.api_key) as c:
            # (a partial upload recorded at the restart is not a receipt of those bytes)
            before = {r["sha256"]: r["id"] for r in list_receipts(c) if r["status"] != "partial"}
            pending = [u for u in self.uploads if not u.answered]
            if tally.point == MID_UPLOAD:
                big = next(u for u in pending if "-big-" in u.name)
                assert big.sha256 not in before, "a cut-off body was recorded"
            tally.recorded_unanswered = sum(u.sha256 in before for u in pending)
            self.send_all(pending)
            tally.resent = len(pending)
            unanswered = [
                (u.name, u.channel, u.refusals, u.cut_off) for u in pending if not u.answered
            ]
            assert not unanswered, f"resends not answered by a healthy gateway: {unanswered}"
            tally.resend_found_original = sum(
                u.answers[-1] == ((200, before[u.sha256]) if u.channel == "http" else (0, ""))
                for u in pending
                if u.sha256 in before
            )  # recorded before the crash: the resend is answered with that receipt (HTTP 200)
            assert tally.resend_found_original == tally.recorded_unanswered, tally
            audit = self.audit(c)
        tally.receipts = audit.receipts
        tally.lost, tally.stuck = len(audit.lost), len(audit.stuck)
        tally.duplicates, tally.tmp_left = len(audit.duplicates), audit.tmp_left
        tally.orphans = audit.orphans
        print(tally.line(self.db))
        assert not audit.lost, f"{tally.point}: answered, then lost: {audit.lost}"
        assert not audit.stuck, f"{tally.point}: stuck: {audit.stuck}"
        assert not audit.duplicates, f"{tally.point}: processed twice: {audit.duplicates}"
        assert not audit.integrity, f"{tally.point}: {audit.integrity}"
        return tally

    def logs(self) -> str:
        return self.gw.logs()[-3000:]

    # --- checking ----------------------------------------------------------------------------

    def drain(self, c: httpx.Client, timeout: float = 30.0) -> tuple[list[dict], dict[str, list]]:
        """Wait until no receipt is waiting or in hand and every ack is in outbound/."""
        deadline = time.monotonic() + timeout
        acks: dict[str, list] = {}
        while True:
            receipts = list_receipts(c)
            busy = [r for r in receipts if r["status"] in ("received", "processing")]
            for r in receipts:
                if r["id"] not in acks and r["status"] not in ("received", "processing"):
                    got = c.get(f"/v1/interchanges/{r['id']}/acks").json()
                    if all(a["delivered_at"] for a in got):
                        acks[r["id"]] = got
            if (not busy and len(acks) == len(receipts)) or time.monotonic() > deadline:
                return receipts, acks
            time.sleep(0.1)

    def audit(self, c: httpx.Client) -> Audit:
        receipts, acks = self.drain(c)
        audit = Audit()
        by_sha: dict[str, list[dict]] = defaultdict(list)
        for r in receipts:
            if r["status"] != "partial":  # a partial upload is a record, not a receipt
                by_sha[r["sha256"]].append(r)
        sent = {u.sha256: u for u in self.uploads}
        outbound = sorted(p.name for p in self.outbound.iterdir()) if self.outbound.exists() else []
        # The SFTP server's notices (a partial upload, the same bytes again) are no acks: each
        # must name a receipt of its kind.
        notices = [n for n in outbound if n.endswith(NOTICES)]
        outbound = [n for n in outbound if n not in notices]
        by_prefix = {r["id"][:12]: r["status"] for r in receipts}
        for n in notices:
            status = by_prefix.get(n.split("_")[1])
            if (status == "partial") != n.endswith(".partial.json") or status is None:
                audit.integrity.append(f"{n}: a notice for no such receipt ({status})")

        for u in self.uploads:
            found = by_sha.get(u.sha256, [])
            if len(found) > 1:
                audit.duplicates.append(f"{u.name}: {len(found)} receipts")
            if u.refusals:
                audit.integrity.append(f"{u.name}: refused with {u.refusals}")
            if not u.answered:
                continue
            audit.receipts += 1
            ids = {rid for _, rid in u.answers if rid}
            if not found:
                audit.lost.append(f"{u.name}: answered {u.answers}, no receipt")
                continue
            r = found[0]
            if ids - {r["id"]}:
                audit.lost.append(f"{u.name}: answered {ids}, receipt {r['id']}")
            want = ("failed", None) if u.poison else ("processed", "accepted")
            if (r["status"], r["outcome"]) != want:
                audit.lost.append(f"{u.name}: {r['status']}/{r['outcome']}, wanted {want}")

        for r in receipts:
            rid, sha = r["id"], r["sha256"]
            if r["status"] in ("received", "processing"):
                audit.stuck.append(f"{rid}: {r['status']}")
            if r["status"] == "partial":
                # Only an SFTP upload the kill cut off: left in inbound/, recorded at the restart.
                blob = self.gw.data_dir / "blobs" / sha[:2] / sha[2:4] / sha
                held = blob.read_bytes() if blob.is_file() else None
                cut = [
                    u
                    for u in self.uploads
                    if u.channel != "http"
                    and u.cut_off
                    and held is not None
                    and u.content.startswith(held)
                ]
                if not cut or acks.get(rid):
                    audit.integrity.append(f"{rid}: a partial upload nobody was cut off from")
                audit.orphans += 1
                continue
            u = sent.get(sha)
            if u is None:
                audit.integrity.append(f"{rid}: a receipt for bytes nobody sent ({r['status']})")
                continue
            blob = self.gw.data_dir / "blobs" / sha[:2] / sha[2:4] / sha
            if not blob.is_file() or blob.read_bytes() != u.content:
                audit.integrity.append(f"{rid}: blob missing or not the bytes sent")
            mine = acks.get(rid, [])
            on_disk = sorted(n for n in outbound if rid[:12] in n)
            if r["status"] == "failed":
                if mine or on_disk:
                    audit.integrity.append(f"{rid}: failed, yet answered with {on_disk}")
                continue
            kinds = Counter(a["kind"] for a in mine)
            if kinds != FINAL_ACKS or on_disk != sorted(a["filename"] for a in mine):
                audit.duplicates.append(f"{rid}: acks {dict(kinds)}, outbound {on_disk}")

        named = {a["filename"] for got in acks.values() for a in got}
        stray = [n for n in outbound if n not in named]
        if stray:
            audit.integrity.append(f"outbound/ holds files no ack names: {stray}")
        left = [p.name for p in self.inbound.iterdir()] if self.inbound.exists() else []
        if left:
            audit.integrity.append(f"inbound/ still holds {left}")
        blobs = self.gw.data_dir / "blobs"
        for path in blobs.glob("??/??/*"):
            if hashlib.sha256(path.read_bytes()).hexdigest() != path.name:
                audit.integrity.append(f"blob {path.name} does not hold its address")
        temporaries = [*(blobs / "tmp").glob("*"), *(self.gw.data_dir / "outbox-tmp").glob("*")]
        audit.tmp_left = len(temporaries)
        return audit


@pytest.fixture
def lab(gateway, tmp_path) -> CrashLab:
    return CrashLab(gateway, tmp_path)


def _on(sqlite: list[str], postgresql: list[str]) -> pytest.MarkDecorator:
    """The crash points to run on each database (none: that database is not run)."""
    params = [
        pytest.param(db, points, id=db)
        for db, points in (("sqlite", sqlite), ("postgresql", postgresql))
        if points
    ]
    return pytest.mark.parametrize(("database_url", "points"), params, indirect=["database_url"])


class TestCrashAtIntake:
    @_on(
        sqlite=[
            MID_UPLOAD,
            "blob_fsynced",
            "receipt_committed",
            "before_response",
            "sftp_blob_stored",
        ],
        postgresql=["receipt_committed"],
    )
    def test_answered_files_survive_and_cut_off_files_resend_once(self, lab, points):
        for point in points:
            tally = lab.recover(
                lab.kill_mid_upload() if point == MID_UPLOAD else lab.crash_at(point)
            )
            if point in ("receipt_committed", "before_response"):
                assert tally.recorded_unanswered >= 1  # the request that died after its commit
            if point == "sftp_blob_stored":
                assert tally.answered >= 1  # the HTTP files beside the SFTP ones
            lab.gw.kill()  # idle and drained: one more crash, of nothing


class TestCrashInWorker:
    @_on(
        sqlite=["processing", "validated", "committed", "ack_written"],
        postgresql=["committed"],  # lease-expiry reclaim on PostgreSQL: TestPoisonFile
    )
    def test_every_answered_file_is_processed_exactly_once(self, lab, points):
        for point in points:
            lab.recover(lab.crash_at(point))
            lab.gw.kill()


class TestPoisonFile:
    def test_a_file_that_kills_the_worker_every_time_is_parked_failed(self, lab):
        gw = lab.gw
        # An ack's temporary a kill left two hours ago: the next start removes it.
        staging = gw.data_dir / "outbox-tmp"
        staging.mkdir(parents=True, exist_ok=True)
        stale = staging / "0123abcd.tmp"
        stale.write_bytes(b"ISA*00*")
        os.utime(stale, (time.time() - 7200, time.time() - 7200))
        gw.start(EDI834_WORKER_ENABLED="false")
        assert not stale.exists()
        (poison,) = lab.batch("poison", ("http",))
        poison.poison = True
        lab.send(poison)
        (status, rid) = poison.answers[0]
        assert status == 202
        gw.stop()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            gw.start(crashpoints=("processing",), wait=False)
            rc = gw.wait_exit(30)
            assert rc == -signal.SIGKILL, f"attempt {attempt}: exited {rc}:\n{lab.logs()}"
        # Still armed: the next claim sees the attempts used up and parks it before processing.
        tally = Tally("poison", sent=1, answered=1)
        lab.recover(tally, crashpoints=("processing",))
        with gw.client(lab.api_key) as c:
            body = c.get(f"/v1/interchanges/{rid}").json()
            assert body["status"] == "failed" and body["outcome"] is None and body["error"]
            assert c.get(f"/v1/interchanges/{rid}/acks").json() == []
            again = submit(c, poison.content, poison.name)
            assert (again.status_code, again.json()["id"]) == (200, rid)
            assert c.get(f"/v1/interchanges/{rid}").json()["status"] == "failed"
        assert gw.proc is not None and gw.proc.poll() is None  # and nothing killed it again
