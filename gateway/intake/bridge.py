"""SFTP uploads into the durable intake path: the finished upload is adopted into the blob
store (fsync, rename, fsync) and its receipt committed before the client's CLOSE is answered.
What inbound/ still shows of finished uploads comes from those receipts."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import asyncssh

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.session import unit_of_work
from gateway.faults import crashpoint
from gateway.intake.receive import record_receipt
from gateway.intake.sftp import ReceivedFile
from gateway.logging import get_logger

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
                keys.append(asyncssh.import_public_key(line))
            except (asyncssh.KeyImportError, ValueError):
                log.warning("bad_stored_sftp_key", partner_id=found[0])
        return keys

    async def _record(self, username: str, staged: Path, filename: str, partial: bool) -> None:
        found = await asyncio.to_thread(self._partner, username)
        if found is None:
            raise PermissionError("partner disabled")
        blob = await asyncio.to_thread(self.gw.blobs.adopt, staged)
        crashpoint("sftp_blob_stored")
        _, created = await asyncio.to_thread(
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
        if created and not partial and self.on_receipt is not None:
            self.on_receipt()

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

    def _picked_up(self, username: str, filename: str) -> None:
        with unit_of_work(self.gw.sessions) as session:
            repo.mark_picked_up(session, username, filename, via="sftp")
