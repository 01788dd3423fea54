"""Retention: the member data of files received before a horizon, removed (`edi834 purge`).

An insurer keeps an enrollment's audit trail for years, and member data (PHI) no longer than
its retention policy says. A file received before the horizon and finished with — processed
(or an upload that never completed), its ledger stage over (a failed one resolved by an
operator), every core event and every ack delivered — loses:

- its bytes (the blob; kept while a file not purged has the same bytes) and the copies of its
  999s and 824s left in the partner's `outbound/`;
- the member data kept from it: its members' history payloads and their delivered core
  payloads, the findings' copies of what was sent (`bad_value`, `business_unit`), its business
  findings' wording and operator notes, the values of its reconciliation report;
- its 999s and 824s, which quote bad values and member ids (TA1s and rejection notices say
  nothing about members and stay).

What stays is the audit trail: the receipt (who sent what, when, its SHA-256, outcome, counts
and timeline, and `purged_at`), its envelopes, the findings' codes and positions, the rules that
fired, the TA1. The ledger itself — the members and enrollments the insurer holds now — is not
touched. Marking comes first, in one transaction a batch; the blobs and outbound copies go after
it commits, and every run removes any a crash left behind, so a purge is never half-recorded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select, update
from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import utcnow
from gateway.db.models import (
    Ack,
    AckKind,
    BusinessFinding,
    CoreDelivery,
    Finding,
    LedgerStatus,
    MemberEventRow,
    Partner,
    Receipt,
    Reconciliation,
    ReconciliationItem,
    Status,
)
from gateway.db.session import unit_of_work
from gateway.storage import HELD_DIR

PURGED = "(purged)"
"""What a purged finding's wording says (the rule, severity and position stay)."""

BATCH = 200
"""Files marked in one transaction."""

_QUOTING_KINDS = (AckKind.X999, AckKind.X824, AckKind.X824_DRY_RUN)
_LEDGER_DONE = (
    LedgerStatus.APPLIED,
    LedgerStatus.RECONCILED,
    LedgerStatus.NOT_APPLIED,
    LedgerStatus.DRY_RUN,
)


@dataclass(slots=True)
class PurgeReport:
    files: int = 0  # files purged (or, in a dry run, that would be)
    bytes: int = 0  # their size as received
    member_events: int = 0  # members whose history payload went
    blobs_removed: int = 0  # blob files deleted (a blob shared with a file kept stays)
    blobs_left: int = 0  # purged files' blobs still there: named by a file kept, held, or recent
    outbound_removed: int = 0  # 999/824 copies deleted from partners' outbound/
    unfinished: int = 0  # files before the horizon left as they are: not finished with


def _finished() -> ColumnElement[bool]:
    """A receipt finished with: nothing left to do that needs its bytes or its member data."""
    undelivered_event = exists().where(
        CoreDelivery.event_id == MemberEventRow.id,
        MemberEventRow.receipt_id == Receipt.id,
        CoreDelivery.delivered_at.is_(None),
    )
    undelivered_ack = exists().where(
        Ack.receipt_id == Receipt.id,
        Ack.kind != AckKind.X824_DRY_RUN,  # never sent: it stays in the API
        Ack.superseded.is_(False),
        Ack.delivered_at.is_(None),
    )
    resolved = Receipt.resolved_at.is_not(None)
    ledger_done = or_(
        Receipt.ledger_status.is_(None),
        Receipt.ledger_status.in_(_LEDGER_DONE),
        and_(Receipt.ledger_status == LedgerStatus.FAILED, resolved),
    )
    return and_(
        or_(
            and_(Receipt.status == Status.PROCESSED, ledger_done),
            Receipt.status == Status.PARTIAL,
            and_(Receipt.status == Status.FAILED, resolved),
        ),
        ~undelivered_event,
        ~undelivered_ack,
    )


def _due(before: dt.datetime, partner_id: int | None) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Receipt.received_at < before, Receipt.purged_at.is_(None)]
    if partner_id is not None:
        where.append(Receipt.partner_id == partner_id)
    return where


def purge(
    gw: Gateway,
    before: dt.datetime,
    *,
    apply: bool,
    operator: str,
    partner_id: int | None = None,
) -> PurgeReport:
    """Purge (or, `apply` False, count) the files received before `before`; audited per file
    as `operator`."""
    report = PurgeReport()
    after: tuple[dt.datetime, str] | None = None
    while True:
        with unit_of_work(gw.sessions) as s:
            query = (
                select(Receipt.id, Receipt.received_at, Receipt.size)
                .where(*_due(before, partner_id), _finished())
                .order_by(Receipt.received_at, Receipt.id)
                .limit(BATCH)
            )
            if apply:  # a file an operator is reprocessing now is left (and not finished)
                query = query.with_for_update(skip_locked=True)
            if after is not None and not apply:  # a dry run pages; a purge's rows drop out
                query = query.where(
                    or_(
                        Receipt.received_at > after[0],
                        and_(Receipt.received_at == after[0], Receipt.id > after[1]),
                    )
                )
            rows = s.execute(query).all()
            if not rows:
                break
            ids = [r.id for r in rows]
            report.files += len(ids)
            report.bytes += sum(r.size for r in rows)
            report.member_events += (
                s.scalar(select(func.count()).where(MemberEventRow.receipt_id.in_(ids))) or 0
            )
            if apply:
                _mark(s, ids, before, operator)
            after = (rows[-1].received_at, rows[-1].id)
        if len(rows) < BATCH:
            break
    with gw.reads() as s:
        due = s.scalar(select(func.count()).select_from(Receipt).where(*_due(before, partner_id)))
    # Those a purge leaves: a dry run's count still holds the files it would purge.
    report.unfinished = (due or 0) - (0 if apply else report.files)
    if apply:
        report.blobs_removed, report.blobs_left, report.outbound_removed = sweep(gw, before)
    return report


def _mark(s: Session, ids: Sequence[str], before: dt.datetime, operator: str) -> None:
    """One batch's member data removed and its receipts marked, in the caller's transaction."""
    events = select(MemberEventRow.id).where(MemberEventRow.receipt_id.in_(ids))
    reconciliations = select(Reconciliation.id).where(Reconciliation.receipt_id.in_(ids))
    for statement in (
        # Members the ledger never held (a rejected file's, a test file's): their ids go too.
        # Those it holds keep theirs: the ledger keeps the member, and its history links here.
        update(MemberEventRow)
        .where(MemberEventRow.receipt_id.in_(ids), MemberEventRow.member_id.is_(None))
        .values(member_key="", subscriber_number="", policy_key=""),
        update(CoreDelivery).where(CoreDelivery.event_id.in_(events)).values(payload=""),
        update(MemberEventRow).where(MemberEventRow.receipt_id.in_(ids)).values(payload=""),
        update(Finding)
        .where(Finding.receipt_id.in_(ids))
        .values(bad_value=None, business_unit=None),
        update(BusinessFinding)
        .where(BusinessFinding.receipt_id.in_(ids))
        .values(message=PURGED, operator_note=""),
        update(ReconciliationItem)
        .where(ReconciliationItem.reconciliation_id.in_(reconciliations))
        .values(
            file_value="",
            ledger_value="",
            member_key=case(
                (ReconciliationItem.kind == "missing_in_ledger", ""),
                else_=ReconciliationItem.member_key,
            ),
        ),
        update(Ack)
        .where(Ack.receipt_id.in_(ids), Ack.kind.in_(_QUOTING_KINDS))
        .values(content=b""),
        # The same bytes sent again later are a new file (its ISA13 still a duplicate: TA1 025).
        update(Receipt).where(Receipt.id.in_(ids)).values(purged_at=utcnow(), dedup_sha256=None),
    ):
        s.execute(statement, execution_options={"synchronize_session": False})
    detail = f"member data purged: received before {before.isoformat()}"
    for rid in ids:
        repo.add_event(s, rid, repo.PURGED, detail)
    repo.add_audit_entries(s, operator=operator, action="purge", receipt_ids=ids, detail=detail)


RECENT = dt.timedelta(hours=1)
"""A blob written this recently is never deleted, whatever the horizon: the same bytes may have
been received again and be on their way to a receipt."""


def sweep(gw: Gateway, before: dt.datetime) -> tuple[int, int, int]:
    """Delete what purged files left on disk (right after their purge, or after a crash in
    between): each blob no file still kept names — unless it was written after the horizon
    or in the last hour (`BlobStore.remove_stale`: the same bytes received again), or an SFTP
    upload held while the database was away names it — and the 999/824 copies in
    `outbound/`. (blobs removed, blobs left, outbound files removed)."""
    gw.blobs.restore_aside()  # what a crash left half-deleted is judged again below
    written_before = min(before, utcnow() - RECENT).timestamp()
    held = _held_blobs(gw)
    blobs = left = outbound = 0
    after = ""
    while True:
        with gw.reads() as s:
            rows = s.execute(
                select(Receipt.id, Receipt.blob_path)
                .where(
                    Receipt.purged_at.is_not(None),
                    Receipt.received_at < before,
                    Receipt.id > after,
                )
                .order_by(Receipt.id)
                .limit(1000)
            ).all()
            if not rows:
                break
            paths = {r.blob_path for r in rows}
            kept = set(
                s.scalars(
                    select(Receipt.blob_path).where(
                        Receipt.blob_path.in_(paths), Receipt.purged_at.is_(None)
                    )
                )
            )
            copies = s.execute(
                select(Partner.name, Ack.filename)
                .join(Receipt, Receipt.id == Ack.receipt_id)
                .join(Partner, Partner.id == Receipt.partner_id)
                .where(Ack.receipt_id.in_([r.id for r in rows]), Ack.kind.in_(_QUOTING_KINDS))
            ).all()
        for path in paths:
            if (
                path not in kept
                and path not in held
                and gw.blobs.remove_stale(path, written_before)
            ):
                blobs += 1
            elif gw.blobs.path(path).exists():
                left += 1
        for partner, filename in copies:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(gw.outbound_dir(partner) / os.path.basename(filename))
                outbound += 1
        after = rows[-1].id
    return blobs, left, outbound


def _held_blobs(gw: Gateway) -> set[str]:
    """The blobs of SFTP uploads held while the database was away (not yet receipts)."""
    out: set[str] = set()
    for note in (gw.settings.data_dir / HELD_DIR).glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            out.add(str(json.loads(note.read_text())["rel_path"]))
    return out
