"""Read-only queries behind the operators' dashboard. Aggregates run in the database, pages load
their related rows in one query each (no N+1)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session, lazyload

from gateway.db.models import (
    Finding,
    Interchange,
    LedgerStatus,
    MemberEventRow,
    Partner,
    Receipt,
    ReceiptEvent,
    Status,
    TransactionSet,
)
from gateway.db.repositories import like_literal, with_control_numbers
from gateway.gate import PRODUCTION

OUTCOMES = ("accepted", "accepted_with_errors", "partially_accepted", "rejected")
REJECTED = ("rejected",)
"""What "rejected" counts, everywhere a page says it (the overview's column, its chart, the
rejects filter): files whose every transaction set was rejected. Partially accepted files are
counted apart, as partially accepted."""
RESULTS = (*OUTCOMES, "failed", "pending", "partial", "problems")
FAMILIES = ("TA105", "AK905", "IK502", "IK304", "IK403", "FILE")
# Lists show the receipt row and its partner's name (selected beside it): not the eager partner
# join nor the envelope -> group -> set loads, which cost three queries a page (a batch, in
# the CSV export).
_ROW_ONLY = (lazyload(Receipt.partner), lazyload(Receipt.envelopes))
SORTS = {
    "received": Receipt.received_at,
    "partner": Partner.name,
    "outcome": Receipt.outcome,
    "size": Receipt.size,
    "members": Receipt.members_received,
}


@dataclass
class PartnerCounts:
    partner: str
    received: int = 0
    accepted: int = 0
    accepted_with_errors: int = 0
    partially_accepted: int = 0
    rejected: int = 0
    failed: int = 0
    pending: int = 0
    partial: int = 0
    test: int = 0  # files with a test interchange (ISA15 not P): never applied (gateway.gate)
    not_applied: int = 0  # files whose 834 members the gate kept from the ledger


def overview_counts(
    session: Session, since: dt.datetime, until: dt.datetime
) -> list[PartnerCounts]:
    rows = session.execute(
        select(Partner.name, Receipt.status, Receipt.outcome, func.count())
        .join(Partner, Partner.id == Receipt.partner_id)
        .where(Receipt.received_at >= since, Receipt.received_at < until)
        .group_by(Partner.name, Receipt.status, Receipt.outcome)
    ).all()
    out: dict[str, PartnerCounts] = {}
    for name, status, outcome, n in rows:
        c = out.setdefault(name, PartnerCounts(partner=name))
        c.received += n
        if status == Status.PROCESSED and outcome in OUTCOMES:
            setattr(c, outcome, getattr(c, outcome) + n)
        elif status == Status.FAILED:
            c.failed += n
        elif status == Status.PARTIAL:
            c.partial += n
        else:
            c.pending += n
    window = (
        Receipt.received_at >= since,
        Receipt.received_at < until,
    )
    for name, n in session.execute(
        select(Partner.name, func.count(func.distinct(Receipt.id)))
        .select_from(Receipt)
        .join(Partner, Partner.id == Receipt.partner_id)
        .join(Interchange, Interchange.receipt_id == Receipt.id)
        .where(*window, Interchange.usage != PRODUCTION)
        .group_by(Partner.name)
    ).all():
        out.setdefault(name, PartnerCounts(partner=name)).test += n
    for name, n in session.execute(
        select(Partner.name, func.count())
        .select_from(Receipt)
        .join(Partner, Partner.id == Receipt.partner_id)
        .where(*window, Receipt.ledger_status == LedgerStatus.NOT_APPLIED)
        .group_by(Partner.name)
    ).all():
        out.setdefault(name, PartnerCounts(partner=name)).not_applied += n
    return sorted(out.values(), key=lambda c: c.partner)


def rejects_per_day(
    session: Session, since: dt.datetime, until: dt.datetime
) -> dict[str, dict[str, int]]:
    """{partner: {YYYY-MM-DD: files rejected}} (UTC days; REJECTED, as the overview's table)."""
    day = func.date(Receipt.received_at)
    rows = session.execute(
        select(Partner.name, day, func.count())
        .join(Partner, Partner.id == Receipt.partner_id)
        .where(
            Receipt.received_at >= since,
            Receipt.received_at < until,
            Receipt.status == Status.PROCESSED,
            Receipt.outcome.in_(REJECTED),
        )
        .group_by(Partner.name, day)
    ).all()
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for name, d, n in rows:
        out[name][str(d)[:10]] = n
    return dict(out)


def top_codes(
    session: Session, since: dt.datetime, until: dt.datetime, limit: int = 10
) -> list[tuple[str, str, int, int]]:
    """(family, code, findings, files) most frequent first."""
    rows = session.execute(
        select(
            Finding.family,
            Finding.code,
            func.count(),
            func.count(func.distinct(Finding.receipt_id)),
        )
        .join(Receipt, Receipt.id == Finding.receipt_id)
        .where(Receipt.received_at >= since, Receipt.received_at < until)
        .group_by(Finding.family, Finding.code)
        .order_by(func.count().desc(), Finding.family, Finding.code)
        .limit(limit)
    ).all()
    return [(f, c, int(n), int(files)) for f, c, n, files in rows]


def waiting_or_failed(session: Session, limit: int = 50) -> Sequence[tuple[Receipt, str]]:
    return session.execute(
        select(Receipt, Partner.name)
        .join(Partner, Partner.id == Receipt.partner_id)
        .options(*_ROW_ONLY)
        .where(Receipt.status.in_([Status.RECEIVED, Status.PROCESSING, Status.FAILED]))
        .order_by(Receipt.received_at)
        .limit(limit)
    ).all()


@dataclass(frozen=True)
class RejectFilter:
    partner: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    result: str = "problems"
    family: str | None = None
    code: str | None = None
    isa13: str | None = None
    gs06: str | None = None
    st02: str | None = None
    resolved: str | None = None  # "yes" | "no" | None
    filename: str | None = None  # part of the file's name, any case
    member: str | None = None  # a member key or subscriber number (REF*0F) in the file's sets
    nothing: bool = False  # a filter that cannot match (an unknown code): no rows


def _where(stmt: Select, f: RejectFilter) -> Select:  # type: ignore[type-arg]
    if f.nothing:
        return stmt.where(Receipt.id.is_(None))
    if f.filename:
        pattern = "%" + like_literal(f.filename) + "%"
        # A duplicate (the same bytes sent again under another name) is a line on the
        # original's timeline, "http 1234 bytes again (NAME): not processed again": the sender
        # asks about NAME, and the file that answered it is found under it too.
        again = "%(" + pattern.lower() + "): not processed again"
        stmt = stmt.where(
            or_(
                func.lower(Receipt.filename).like(pattern.lower(), escape="\\"),
                Receipt.id.in_(
                    select(ReceiptEvent.receipt_id).where(
                        ReceiptEvent.event == "received_again",
                        func.lower(ReceiptEvent.detail).like(again, escape="\\"),
                    )
                ),
            )
        )
    if f.member:
        stmt = stmt.where(
            Receipt.id.in_(
                select(MemberEventRow.receipt_id).where(
                    or_(
                        MemberEventRow.member_key == f.member,
                        MemberEventRow.subscriber_number == f.member,
                    )
                )
            )
        )
    if f.partner:
        # By id, so a count needs no join to partners.
        partner_id = select(Partner.id).where(Partner.name == f.partner).scalar_subquery()
        stmt = stmt.where(Receipt.partner_id == partner_id)
    if f.since:
        stmt = stmt.where(Receipt.received_at >= f.since)
    if f.until:
        stmt = stmt.where(Receipt.received_at < f.until)
    if f.result in OUTCOMES:  # as the overview counts them: processed, with that outcome
        stmt = stmt.where(Receipt.outcome == f.result, Receipt.status == Status.PROCESSED)
    elif f.result == "failed":
        stmt = stmt.where(Receipt.status == Status.FAILED)
    elif f.result == "partial":
        stmt = stmt.where(Receipt.status == Status.PARTIAL)
    elif f.result == "pending":
        stmt = stmt.where(Receipt.status.in_([Status.RECEIVED, Status.PROCESSING]))
    elif f.result == "problems":
        stmt = stmt.where(
            or_(
                Receipt.outcome.in_(["rejected", "partially_accepted", "accepted_with_errors"]),
                Receipt.status.in_([Status.FAILED, Status.PARTIAL]),
            )
        )
    if f.family or f.code:
        cond = []
        if f.family:
            cond.append(Finding.family == f.family)
        if f.code:
            cond.append(Finding.code == f.code)
        found: ColumnElement[bool] = Receipt.id.in_(select(Finding.receipt_id).where(and_(*cond)))
        if f.family == "IK502":
            # IK502 5 / I5 (segments in error) are the 999's summary of a set's IK304/IK403s,
            # kept on the set (`error_codes`), not as findings: without this, `IK502 5`, which
            # every 999 of a segment error says, found no file.
            codes = "," + TransactionSet.error_codes + ","
            in_sets = codes.like(f"%,{f.code},%") if f.code else TransactionSet.error_codes != ""
            found = or_(found, Receipt.id.in_(select(TransactionSet.receipt_id).where(in_sets)))
        stmt = stmt.where(found)
    stmt = with_control_numbers(stmt, f.isa13, f.gs06)
    if f.st02:
        stmt = stmt.where(
            Receipt.id.in_(select(TransactionSet.receipt_id).where(TransactionSet.st02 == f.st02))
        )
    if f.resolved == "yes":
        stmt = stmt.where(Receipt.resolved_at.is_not(None))
    elif f.resolved == "no":
        stmt = stmt.where(Receipt.resolved_at.is_(None))
    return stmt


def _base() -> Select:  # type: ignore[type-arg]
    return (
        select(Receipt, Partner.name)
        .join(Partner, Partner.id == Receipt.partner_id)
        .options(*_ROW_ONLY)
    )


def count_rejects(session: Session, f: RejectFilter) -> int:
    # No join: every receipt has its partner, and the count then reads only indexes.
    return int(session.scalar(_where(select(func.count()).select_from(Receipt), f)) or 0)


def list_rejects(
    session: Session,
    f: RejectFilter,
    *,
    sort: str = "received",
    descending: bool = True,
    offset: int = 0,
    limit: int = 50,
) -> Sequence[tuple[Receipt, str]]:
    column = SORTS.get(sort, Receipt.received_at)
    order = column.desc() if descending else column.asc()
    tie = Receipt.id.desc() if descending else Receipt.id.asc()
    # The page's ids first, then their rows: OFFSET skips (and the sort holds) ids only, not
    # whole receipt rows (SQLite, 100k receipts: page 500 of the problems 220 -> 115 ms; the
    # last page of all results sorted by partner 930 -> 240 ms).
    page = _where(select(Receipt.id).join(Partner, Partner.id == Receipt.partner_id), f)
    page = page.order_by(order, tie).offset(offset).limit(limit)
    stmt = _base().where(Receipt.id.in_(page.scalar_subquery())).order_by(order, tie)
    return session.execute(stmt).all()


def iter_rejects(
    session: Session, f: RejectFilter, batch: int = 1000
) -> Iterator[tuple[Receipt, str]]:
    """Every matching row, newest first, fetched `batch` rows at a time (for CSV export).

    One sorted query, streamed (a server-side cursor on PostgreSQL): keyset batches cost a
    search and sort of every older match per batch when the planner takes the filter's
    indexes (SQLite does, for the default filter), quadratic in the export's size."""
    stmt = _where(_base(), f).order_by(Receipt.received_at.desc(), Receipt.id.desc())
    yield from session.execute(stmt.execution_options(yield_per=batch))


def codes_for(
    session: Session, receipt_ids: Sequence[str]
) -> dict[str, list[tuple[str, str, int]]]:
    """The finding codes of a page of receipts, in one query."""
    if not receipt_ids:
        return {}
    rows = session.execute(
        select(Finding.receipt_id, Finding.family, Finding.code, func.count())
        .where(Finding.receipt_id.in_(list(receipt_ids)))
        .group_by(Finding.receipt_id, Finding.family, Finding.code)
        .order_by(Finding.receipt_id, func.count().desc())
    ).all()
    out: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for rid, family, code, n in rows:
        out[rid].append((family, code, int(n)))
    return dict(out)


def envelope_ids_for(session: Session, receipt_ids: Sequence[str]) -> dict[str, list[str]]:
    if not receipt_ids:
        return {}
    out: dict[str, list[str]] = defaultdict(list)
    for rid, isa13 in session.execute(
        select(Interchange.receipt_id, Interchange.isa13)
        .where(Interchange.receipt_id.in_(list(receipt_ids)))
        .order_by(Interchange.receipt_id, Interchange.seq)
    ).all():
        out[rid].append(isa13)
    return dict(out)


def partner_names(session: Session) -> list[str]:
    return list(session.scalars(select(Partner.name).order_by(Partner.name)))


def partner_id(session: Session, name: str) -> int | None:
    return session.scalar(select(Partner.id).where(Partner.name == name))


def ledger_oldest_pending(session: Session) -> dt.datetime | None:
    """When the longest-waiting validated file was acknowledged (999): the ledger's lag. Its
    counts by status are `enrollment.queries.ledger_files`."""
    oldest = session.scalar(
        select(func.min(Receipt.processed_at)).where(Receipt.ledger_status == LedgerStatus.PENDING)
    )
    if isinstance(oldest, dt.datetime) and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)  # an aggregate may skip the column's type
    return oldest


def ledger_failures(session: Session, limit: int = 20) -> Sequence[tuple[Receipt, str]]:
    """The newest files the ledger parked as failed, with their partner."""
    return session.execute(
        _base()
        .where(Receipt.ledger_status == LedgerStatus.FAILED)
        .order_by(Receipt.received_at.desc(), Receipt.id.desc())
        .limit(limit)
    ).all()
