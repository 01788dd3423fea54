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

import asyncssh

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import iso_z, utcnow
from gateway.db.models import Receipt
from gateway.db.session import unit_of_work
from gateway.faults import crashpoint
from gateway.intake.receive import record_receipt
from gateway.intake.sftp import ReceivedFile, client_key
from gateway.logging import get_logger
from gateway.metrics import DELIVERY_FAILURES
from gateway.outbound import ack_filename, write_atomically

log = get_logger(__name__)


class GatewaySftpHooks:
    def __init__(self, gw: Gateway, on_receipt: Callable[[], None] | None = None) -> None:
        self.gw = gw
        self.on_receipt = on_receipt
        # Finished uploads of this process by (partner, name): (size, time). A duplicate's
        # receipt keeps the first upload's name, so the name just sent is shown from here.
        self._recent: dict[tuple[str, str], tuple[int, float]] = {}

    def _partner(self, username: str) -> tuple[int, str] | None:
        with self.gw.reads() as session:
            p = repo.partner_by_name(session, username)
            if p is None or not p.enabled:
                return None
            return p.id, p.sftp_keys

    async def authorized_keys(self, username: str) -> list[asyncssh.SSHKey] | None:
        found = await asyncio.to_thread(self._partner, username)
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
        found = await asyncio.to_thread(self._partner, username)
        if found is None:
            # Refused at CLOSE (the client is told): nothing of it is kept, so no sweep later
            # takes it for a partial upload and tells the partner to send it again.
            staged.unlink(missing_ok=True)
            raise PermissionError("partner disabled")
        blob = await asyncio.to_thread(self.gw.blobs.adopt, staged)
        crashpoint("sftp_blob_stored")
        receipt, created = await asyncio.to_thread(
            lambda: record_receipt(
                self.gw,
                partner_id=found[0],
                blob=blob,
                channel="sftp",
                filename=filename,
                partial=partial,
            )
        )
        if not partial:
            self._recent[(username, filename)] = (blob.size, time.time())
        if not created and not partial:
            await asyncio.to_thread(self._duplicate_notice, username, receipt.id, filename)
        if partial:
            await asyncio.to_thread(self._partial_notice, username, receipt.id, filename, blob.size)
        if created and not partial and self.on_receipt is not None:
            self.on_receipt()

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
                self.gw.settings.data_dir / "outbox-tmp",
            )
        except OSError as exc:
            DELIVERY_FAILURES.labels(kind="notice").inc()
            log.warning("sftp_notice_failed", kind=kind, receipt_id=receipt_id, error=str(exc))

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
