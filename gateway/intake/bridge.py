"""SFTP uploads into the durable intake path: the finished upload is adopted into the blob
store (fsync, rename, fsync) and its receipt committed before the client's CLOSE is answered.
What inbound/ still shows of finished uploads comes from those receipts."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import asyncssh
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import iso_z, utcnow
from gateway.db.models import Receipt
from gateway.db.session import is_transient, unit_of_work
from gateway.faults import crashpoint
from gateway.intake.receive import record_receipt
from gateway.intake.sftp import ReceivedFile, UploadHeld, client_key
from gateway.logging import get_logger
from gateway.metrics import DELIVERY_FAILURES, SFTP_UPLOADS
from gateway.outbound import OUTBOX_STAGING, ack_filename, write_atomically
from gateway.storage import HELD_DIR, StoredBlob

log = get_logger(__name__)
T = TypeVar("T")


def _patiently(fn: Callable[[], T], patience: float) -> T:
    """`fn`, retried while the database is unreachable, for at most `patience` seconds
    (Settings.sftp_close_patience_seconds: how long a CLOSE waits before the upload is held)."""
    for attempt in Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_delay(patience),
        wait=wait_exponential_jitter(initial=0.2, max=2.0),
        reraise=True,
    ):
        with attempt:
            return fn()
    raise AssertionError("unreachable")  # pragma: no cover


class GatewaySftpHooks:
    def __init__(self, gw: Gateway, on_receipt: Callable[[], None] | None = None) -> None:
        self.gw = gw
        self.on_receipt = on_receipt
        # Finished uploads of this process by (partner, name): (size, time). A duplicate's
        # receipt keeps the first upload's name, so the name just sent is shown from here.
        self._recent: dict[tuple[str, str], tuple[int, float]] = {}
        # Each enabled partner's stored keys as last read (id, key lines, monotonic time read):
        # logins go on with them while the database is away (Settings.sftp_key_cache_hours).
        self._keys_read: dict[str, tuple[int, str, float]] = {}

    def _partner(self, username: str) -> tuple[int, str] | None:
        with self.gw.reads() as session:
            p = repo.partner_by_name(session, username)
            if p is None or not p.enabled:
                return None
            return p.id, p.sftp_keys

    def read_keys(self) -> int:
        """Read every enabled partner's keys again (serve does so every minute): a partner
        disabled, or a key removed, is forgotten here too. Returns how many partners."""
        with self.gw.reads() as session:
            rows = repo.enabled_sftp_keys(session)
        now = time.monotonic()
        self._keys_read = {name: (pid, keys, now) for name, pid, keys in rows}
        return len(rows)

    def _last_read(self, username: str, exc: Exception) -> tuple[int, str] | None:
        """The partner's keys as last read, while the database cannot be asked: not older
        than the setting allows, else the lookup's own error."""
        read = self._keys_read.get(username)
        hours = self.gw.settings.sftp_key_cache_hours
        if not is_transient(exc) or read is None or time.monotonic() - read[2] > hours * 3600:
            raise exc
        log.warning(
            "sftp_keys_from_last_read",
            partner=username,
            age_s=round(time.monotonic() - read[2]),
            error=type(exc).__name__,
        )
        return read[0], read[1]

    async def authorized_keys(self, username: str) -> list[asyncssh.SSHKey] | None:
        try:
            found = await asyncio.to_thread(self._partner, username)
        except Exception as exc:
            found = self._last_read(username, exc)
        else:
            if found is None or not found[1]:
                self._keys_read.pop(username, None)
            else:
                self._keys_read[username] = (*found, time.monotonic())
        if found is None:
            return None
        keys = []
        for line in found[1].splitlines():
            try:
                key = client_key(asyncssh.import_public_key(line), allow_sha1=True)
            except (asyncssh.KeyImportError, ValueError):
                log.warning("bad_stored_sftp_key", partner_id=found[0])
                continue
            if key is None:
                log.warning("refused_stored_sftp_key", partner_id=found[0])
                continue
            keys.append(key)
        return keys

    async def _record(self, username: str, staged: Path, filename: str, partial: bool) -> None:
        blob: StoredBlob | None = None
        patience = self.gw.settings.sftp_close_patience_seconds
        try:
            found = await asyncio.to_thread(_patiently, lambda: self._partner(username), patience)
            if found is None:
                # Refused at CLOSE (the client is told): nothing of it is kept, so no sweep
                # later takes it for a partial upload and tells the partner to send it again.
                staged.unlink(missing_ok=True)
                raise PermissionError("partner disabled")
            blob = await asyncio.to_thread(self.gw.blobs.adopt, staged)
            crashpoint("sftp_blob_stored")
            stored = blob
            receipt, created = await asyncio.to_thread(
                _patiently,
                lambda: record_receipt(
                    self.gw,
                    partner_id=found[0],
                    blob=stored,
                    channel="sftp",
                    filename=filename,
                    partial=partial,
                ),
                patience,
            )
        except PermissionError:
            raise
        except Exception as exc:
            # The database did not answer in time (or failed): the bytes are kept as what they
            # are, a closed upload or a partial one, and recorded once it answers. Left in
            # inbound/, a whole file was listed at its full size (a client's confirming stat
            # passed though CLOSE failed) and a sweep later took it for a partial upload.
            await asyncio.to_thread(self._hold, username, staged, blob, filename, partial)
            raise UploadHeld from exc
        # Its notices read the database and write a file: off the event loop, as before.
        await asyncio.to_thread(
            self._after_record, username, receipt.id, filename, blob.size, partial, created
        )

    def _after_record(
        self, username: str, receipt_id: str, filename: str, size: int, partial: bool, created: bool
    ) -> None:
        if not partial:
            self._recent[(username, filename)] = (size, time.time())
        if not created and not partial:
            self._duplicate_notice(username, receipt_id, filename)
        if partial:
            self._partial_notice(username, receipt_id, filename, size)
        if created and not partial and self.on_receipt is not None:
            self.on_receipt()

    # --- uploads held while the database was away ----------------------------------------

    def _held_dir(self) -> Path:
        return self.gw.settings.data_dir / HELD_DIR

    def _hold(
        self, username: str, staged: Path, blob: StoredBlob | None, filename: str, partial: bool
    ) -> None:
        """Keep an upload that could not be recorded: its bytes in the blob store (out of
        inbound/), and a note of what it is, for `record_held`. A store that fails too leaves
        the file in inbound/, for the sweep (as a partial upload)."""
        if blob is None:
            blob = self.gw.blobs.adopt(staged)
        note = {
            "partner": username,
            "filename": filename,
            "partial": partial,
            "sha256": blob.sha256,
            "size": blob.size,
            "rel_path": blob.rel_path,
            "held_at": iso_z(utcnow()),
        }
        name = f"{uuid.uuid4().hex}.json"
        write_atomically(self._held_dir(), name, json.dumps(note).encode(), self._held_dir())
        SFTP_UPLOADS.labels(result="held").inc()
        log.warning("sftp_upload_held", partner=username, partial=partial, size=blob.size)

    async def record_held(self) -> int:
        """Record the uploads held while the database was away, as what they were when they
        ended (a closed file is processed; a partial one is shown, with its notice). The same
        bytes sent again meanwhile were answered then: recorded now, they are a duplicate and
        get no second notice. Returns how many are recorded now; one that still fails stays for
        the next call."""
        created_any, recorded = await asyncio.to_thread(self._record_held)
        if created_any and self.on_receipt is not None:
            self.on_receipt()
        return recorded

    def _record_held(self) -> tuple[bool, int]:
        created_any, recorded = False, 0
        try:
            notes = sorted(self._held_dir().glob("*.json"))
        except OSError:
            return False, 0
        for path in notes:
            try:
                note = json.loads(path.read_text())
            except FileNotFoundError:
                continue  # another process recorded it
            except (OSError, ValueError):
                log.error("sftp_held_note_unreadable", note=path.name)
                continue
            try:
                found = self._partner(str(note["partner"]))
                if found is None:
                    log.warning("sftp_held_upload_dropped", partner=note["partner"])
                    path.unlink(missing_ok=True)
                    continue
                blob = StoredBlob(str(note["sha256"]), int(note["size"]), str(note["rel_path"]))
                partial = bool(note["partial"])
                receipt, created = record_receipt(
                    self.gw,
                    partner_id=found[0],
                    blob=blob,
                    channel="sftp",
                    filename=str(note["filename"]),
                    partial=partial,
                    received_at=dt.datetime.fromisoformat(str(note["held_at"])),
                )
            except Exception as exc:
                log.error("sftp_held_upload_not_recorded", error=type(exc).__name__)
                return created_any, recorded  # the database is still away: try later
            if created:
                if partial:
                    self._partial_notice(
                        str(note["partner"]), receipt.id, str(note["filename"]), blob.size
                    )
                created_any = created_any or not partial
            path.unlink(missing_ok=True)
            recorded += 1
            SFTP_UPLOADS.labels(result="recorded_late").inc()
            log.info("sftp_held_upload_recorded", receipt_id=receipt.id, duplicate=not created)
        return created_any, recorded

    def _partial_notice(self, username: str, receipt_id: str, filename: str, size: int) -> None:
        """An upload cut short: kept, never processed, and said so in outbound/."""
        body = {
            "file": filename,
            "outcome": "partial",
            "receipt_id": receipt_id,
            "size": size,
            "received_at": iso_z(utcnow()),
            "note": "The upload ended before the file was closed (the connection dropped, or "
            "the server stopped): what arrived is kept but is not processed and gets no TA1 or "
            "999. Send the whole file again.",
        }
        self._notice(username, receipt_id, filename, "partial.json", body)

    def _duplicate_notice(self, username: str, receipt_id: str, filename: str) -> None:
        """The same bytes again: not processed again (the original's acks answer them), and
        said so in outbound/ — an SFTP sender sees nothing else. HTTP answers 200 with
        `duplicate`."""
        with self.gw.reads() as session:
            original = session.get(Receipt, receipt_id)
            if original is None:  # pragma: no cover - the receipt the insert conflicted with
                return
            acks = [a.filename for a in repo.acks_of(session, receipt_id)]
            body = {
                "file": filename,
                "outcome": "duplicate",
                "received_at": iso_z(utcnow()),
                "original": {
                    "receipt_id": original.id,
                    "file": original.filename,
                    "received_at": iso_z(original.received_at),
                    "status": original.status,
                    "outcome": original.outcome,
                },
                "acks": acks,
                "note": "These bytes (the same SHA-256) were already received from you, so this "
                "upload was not processed again: the original's acknowledgments answer it (in "
                "outbound/ unless removed, and at GET /v1/interchanges/<receipt_id>/acks"
                + (
                    "). "
                    if acks
                    else "; the original is not answered yet: its acknowledgments will come "
                    "under its own file name). "
                )
                + "To send it again as a new interchange, give it a new ISA13 (other bytes).",
            }
        self._notice(username, receipt_id, filename, "duplicate.json", body)

    def _notice(
        self, username: str, receipt_id: str, filename: str, kind: str, body: Mapping[str, object]
    ) -> None:
        """A JSON notice in the partner's outbound/, named as its acks are, with a part of its
        own (several notices for one receipt in one second must not overwrite each other).
        One that cannot be written (outbound/ not writable) is logged and counted, not retried:
        the upload stands, and the receipt and its timeline hold the same facts."""
        name = ack_filename(
            received_at=utcnow(),
            receipt_id=receipt_id,
            filename=filename,
            isa13="",
            kind=f"{uuid.uuid4().hex[:8]}.{kind}",
        )
        try:
            write_atomically(
                self.gw.outbound_dir(username),
                name,
                json.dumps(body, indent=2).encode() + b"\n",
                self.gw.settings.data_dir / OUTBOX_STAGING,
            )
        except OSError as exc:
            DELIVERY_FAILURES.labels(kind="notice").inc()
            # Not str(exc): it names the paths, and the sender's file name is in the notice's.
            log.warning(
                "sftp_notice_failed",
                kind=kind,
                receipt_id=receipt_id,
                error=type(exc).__name__,
                errno=exc.errno,
            )

    async def upload_complete(self, username: str, staged: Path, filename: str) -> None:
        await self._record(username, staged, filename, partial=False)

    async def upload_partial(self, username: str, staged: Path, filename: str) -> None:
        await self._record(username, staged, filename, partial=True)

    async def received_files(self, username: str) -> list[ReceivedFile]:
        return await asyncio.to_thread(self._received_files, username)

    def _received_files(self, username: str) -> list[ReceivedFile]:
        visible = self.gw.settings.sftp_received_visible_seconds
        now = time.time()
        with self.gw.reads() as session:
            p = repo.partner_by_name(session, username)
            if p is None or not p.enabled:
                return []
            since = dt.datetime.fromtimestamp(now - visible, dt.UTC)
            rows = repo.sftp_files_shown(session, p.id, since)
        shown = {name: ReceivedFile(name, size, at.timestamp()) for name, size, at in rows}
        for (partner, name), (size, at) in list(self._recent.items()):
            if now - at > visible:
                self._recent.pop((partner, name), None)
            elif partner == username and (name not in shown or shown[name].mtime < at):
                shown[name] = ReceivedFile(name, size, at)
        return list(shown.values())

    async def ack_downloaded(self, username: str, filename: str) -> None:
        await asyncio.to_thread(self._picked_up, username, filename)

    async def ack_removed(self, username: str, filename: str) -> None:
        await asyncio.to_thread(self._picked_up, username, filename, "sftp-rm")

    def _picked_up(self, username: str, filename: str, via: str = "sftp") -> None:
        with unit_of_work(self.gw.sessions) as session:
            repo.mark_picked_up(session, username, filename, via=via)
