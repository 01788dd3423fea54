"""What operators (on the dashboard, or a command) do to a received file, each audited: queue it
again, mark its problem resolved; and the reconciliation report as CSV, which the partner API and
the dashboard both serve."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.session import unit_of_work
from gateway.enrollment import queries
from gateway.logging import get_logger

log = get_logger(__name__)


BULK_LIMIT = 500  # files one bulk action may touch


def reprocess(gw: Gateway, receipt_id: str, operator: str) -> bool:
    """Queue a processed or failed file again and wake the worker (when this process runs
    one). False when the file is not processed or failed."""
    return reprocess_many(gw, [receipt_id], operator) == [receipt_id]


def reprocess_many(gw: Gateway, receipt_ids: Sequence[str], operator: str) -> list[str]:
    """Queue processed or failed files again, in one transaction (each audited); the ones
    queued. Others (received, processing, partial, unknown) are left as they are."""
    with unit_of_work(gw.sessions) as s:
        done = [rid for rid in receipt_ids[:BULK_LIMIT] if repo.reprocess(s, rid, operator)]
        repo.add_audit_entries(
            s, operator=operator, action="reprocess", receipt_ids=done, detail="queued again"
        )
    if done:
        wake = gw.extra.get("wake")
        if callable(wake):
            wake()
    return done


def resolve(gw: Gateway, receipt_id: str, operator: str, note: str) -> bool:
    """Record that an operator dealt with the file's problem. False when there is no such
    file."""
    return resolve_many(gw, [receipt_id], operator, note) == [receipt_id]


def resolve_many(gw: Gateway, receipt_ids: Sequence[str], operator: str, note: str) -> list[str]:
    """Mark files resolved with one note, in one transaction (each audited); the ones found."""
    note = note.strip()
    with unit_of_work(gw.sessions) as s:
        done = [
            rid
            for rid in receipt_ids[:BULK_LIMIT]
            if repo.mark_resolved(s, rid, operator, note or None) is not None
        ]
        repo.add_audit_entries(
            s, operator=operator, action="resolve", receipt_ids=done, detail=note[:2000]
        )
    return done


def reopen(gw: Gateway, receipt_id: str, operator: str) -> bool:
    """A resolved file's problem is open again (audited). False when it was not resolved."""
    with unit_of_work(gw.sessions) as s:
        if repo.reopen(s, receipt_id, operator) is None:
            return False
        repo.add_audit_entries(
            s, operator=operator, action="reopen", receipt_ids=[receipt_id], detail=""
        )
    return True


def reconciliation_csv(gw: Gateway, receipt_id: str) -> Iterator[str] | None:
    """The file's reconciliation report as CSV text, streamed a page at a time in its own read
    session; None when the file has none (it was not an audit or replace file)."""
    with gw.reads() as s:
        rec = queries.reconciliation_of(s, receipt_id)
        if rec is None:
            return None
        rec_id = rec.id

    def rows() -> Iterator[str]:
        with gw.reads() as s:
            yield from queries.reconciliation_csv(s, rec_id)

    return rows()
