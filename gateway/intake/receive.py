"""The one durable path every channel uses: a stored blob becomes a receipt row."""

from __future__ import annotations

from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.models import Receipt, Status
from gateway.db.session import run_in_transaction
from gateway.faults import crashpoint
from gateway.logging import get_logger
from gateway.metrics import DUPLICATES, FILES_RECEIVED
from gateway.storage import StoredBlob

log = get_logger(__name__)


def record_receipt(
    gw: Gateway,
    *,
    partner_id: int,
    blob: StoredBlob,
    channel: str,
    filename: str | None,
    partial: bool = False,
) -> tuple[Receipt, bool]:
    """Commit the receipt for a durable blob. Returns (receipt, created); the same bytes from
    the same partner return the original receipt (created False). Partial uploads are kept and
    shown, never queued."""

    def txn(session: Session) -> tuple[Receipt, bool]:
        receipt = Receipt(
            partner_id=partner_id,
            channel=channel,
            filename=filename,
            sha256=blob.sha256,
            dedup_sha256=None if partial else blob.sha256,
            size=blob.size,
            blob_path=blob.rel_path,
            status=Status.PARTIAL if partial else Status.RECEIVED,
        )
        return repo.insert_receipt(session, receipt)

    receipt, created = run_in_transaction(gw.sessions, txn)
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
    return receipt, created
