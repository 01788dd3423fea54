"""The one durable path every channel uses: a stored blob becomes a receipt row."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import utcnow
from gateway.db.session import db_retry, run_in_transaction, unit_of_work
from gateway.errors import IdempotencyKeyReused
from gateway.faults import crashpoint
from gateway.logging import get_logger
from gateway.metrics import DUPLICATES, FILES_RECEIVED
from gateway.storage import StoredBlob

log = get_logger(__name__)
# How long an upload's Idempotency-Key names its bytes (issue 18).
IDEMPOTENCY_WINDOW = dt.timedelta(hours=24)


def check_idempotency_key(gw: Gateway, *, partner_id: int, key: str, sha256: str) -> None:
    """Before the blob is kept: refuse a key that names other bytes (IdempotencyKeyReused).
    `record_receipt` checks again in its transaction, for requests racing each other."""
    since = utcnow() - IDEMPOTENCY_WINDOW
    with gw.reads() as session:
        row = repo.idempotency_key(session, partner_id, key, since)
        if row is not None and row.sha256 != sha256:
            raise IdempotencyKeyReused


def record_receipt(
    gw: Gateway,
    *,
    partner_id: int,
    blob: StoredBlob,
    channel: str,
    filename: str | None,
    partial: bool = False,
    idempotency_key: str | None = None,
    received_at: dt.datetime | None = None,
) -> tuple[repo.ReceiptRef, bool]:
    """Commit the receipt for a durable blob. Returns (receipt, created); the same bytes from
    the same partner return the original receipt (created False). Partial uploads are kept and
    shown, never queued. An Idempotency-Key is recorded with the receipt, in its transaction;
    one that names other bytes within IDEMPOTENCY_WINDOW raises IdempotencyKeyReused and
    records nothing. Without a key (nearly every file) the receipt and its event are one
    statement on PostgreSQL (repo.receive), retried like any unit of work. `received_at` is
    when the bytes came, when that was before now (an SFTP upload held through a database
    outage): the ack SLA counts from it."""

    @db_retry
    def receive() -> tuple[repo.ReceiptRef, bool]:
        with gw.single_write() as conn:
            return repo.receive(
                conn,
                partner_id=partner_id,
                channel=channel,
                filename=filename,
                sha256=blob.sha256,
                size=blob.size,
                blob_path=blob.rel_path,
                partial=partial,
                now=received_at or utcnow(),
            )

    def txn(session: Session, key: str) -> tuple[repo.ReceiptRef, bool]:
        now = received_at or utcnow()
        row = repo.idempotency_key(session, partner_id, key, now - IDEMPOTENCY_WINDOW)
        if row is not None and row.sha256 != blob.sha256:
            raise IdempotencyKeyReused
        receipt, created = repo.receive(
            session.connection(),
            partner_id=partner_id,
            channel=channel,
            filename=filename,
            sha256=blob.sha256,
            size=blob.size,
            blob_path=blob.rel_path,
            partial=partial,
            now=now,
        )
        row = repo.remember_idempotency_key(
            session,
            partner_id=partner_id,
            key=key,
            sha256=blob.sha256,
            receipt_id=receipt.id,
            now=now,
            since=now - IDEMPOTENCY_WINDOW,
        )
        if row.sha256 != blob.sha256:  # another request took the key meanwhile
            raise IdempotencyKeyReused
        return receipt, created

    if idempotency_key is None:
        receipt, created = receive()
    else:
        key = idempotency_key
        receipt, created = run_in_transaction(gw.sessions, lambda session: txn(session, key))
    crashpoint("receipt_committed")
    if created:
        FILES_RECEIVED.labels(channel=channel).inc()
        log.info(
            "file_received" if not partial else "partial_upload_recorded",
            receipt_id=receipt.id,
            partner_id=partner_id,
            channel=channel,
            size=blob.size,
            sha256=blob.sha256,
        )
    else:
        DUPLICATES.inc()
        log.info("duplicate_file", receipt_id=receipt.id, partner_id=partner_id, channel=channel)
        # On the original's timeline: the operators see the sender sent it again.
        again = f"{channel} {blob.size} bytes again ({filename or 'no name'}): not processed again"

        @db_retry
        def note() -> None:
            with unit_of_work(gw.sessions) as session:
                repo.insert_events(session, [(receipt.id, "received_again", again[:500])])

        note()
    return receipt, created
