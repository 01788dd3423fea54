"""Reading the ledger's results, for the status API and the dashboard alike: per-member business
outcomes of a file, its reconciliation report (rows and CSV), the business-rejects list, the
core outbox's backlog, and a member's history."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from gateway.csvfile import CsvLines
from gateway.db.models import (
    BusinessFinding,
    CoreDelivery,
    LedgerMember,
    MemberEventRow,
    Partner,
    Receipt,
    Reconciliation,
    ReconciliationItem,
)
from gateway.enrollment.rules import RULES


@dataclass(frozen=True, slots=True)
class MemberResult:
    event: MemberEventRow
    findings: list[BusinessFinding]


def member_results(
    session: Session,
    receipt_id: str,
    *,
    outcome: str | None = None,
    after: int = -1,
    limit: int = 100,
) -> list[MemberResult]:
    """A file's members in file order (seq > `after`), each with its business findings."""
    q = select(MemberEventRow).where(
        MemberEventRow.receipt_id == receipt_id, MemberEventRow.seq > after
    )
    if outcome:
        q = q.where(MemberEventRow.outcome == outcome)
    events = session.scalars(q.order_by(MemberEventRow.seq).limit(limit)).all()
    by_event: dict[int, list[BusinessFinding]] = {e.id: [] for e in events}
    if events:
        for f in session.scalars(
            select(BusinessFinding)
            .where(BusinessFinding.event_id.in_(list(by_event)))
            .order_by(BusinessFinding.id)
        ):
            if f.event_id is not None:
                by_event[f.event_id].append(f)
    return [MemberResult(e, by_event[e.id]) for e in events]


def outcome_counts(session: Session, receipt_id: str) -> dict[str, int]:
    rows = session.execute(
        select(MemberEventRow.outcome, func.count())
        .where(MemberEventRow.receipt_id == receipt_id)
        .group_by(MemberEventRow.outcome)
    ).all()
    return {outcome: int(n) for outcome, n in rows}


def reconciliation_of(session: Session, receipt_id: str) -> Reconciliation | None:
    return session.scalar(select(Reconciliation).where(Reconciliation.receipt_id == receipt_id))


def reconciliation_items(
    session: Session, reconciliation_id: int, *, after: int = -1, limit: int = 500
) -> Sequence[ReconciliationItem]:
    return session.scalars(
        select(ReconciliationItem)
        .where(
            ReconciliationItem.reconciliation_id == reconciliation_id,
            ReconciliationItem.seq > after,
        )
        .order_by(ReconciliationItem.seq)
        .limit(limit)
    ).all()


CSV_COLUMNS = (
    "kind",
    "member_key",
    "field",
    "file_value",
    "ledger_value",
    "st02",
    "segment_position",
)


def reconciliation_csv(session: Session, reconciliation_id: int) -> Iterator[str]:
    """The report as CSV, streamed in pages (a million-member audit stays flat in memory)."""
    lines = CsvLines(CSV_COLUMNS)
    after = -1
    while True:
        items = reconciliation_items(session, reconciliation_id, after=after, limit=1000)
        for item in items:
            lines.add(str(getattr(item, c) or "") for c in CSV_COLUMNS)
        yield lines.take()
        if len(items) < 1000:
            return
        after = items[-1].seq


@dataclass(frozen=True, slots=True)
class BusinessReject:
    finding: BusinessFinding
    receipt_id: str
    filename: str | None
    received_at: dt.datetime
    partner: str
    member_key: str | None
    ledger_member_id: int | None = None
    """The ledger's member with the finding's member key, for its page; None for a member the
    ledger never held."""


@dataclass(frozen=True, slots=True)
class BusinessFilter:
    """Which business findings a list shows: every field optional; `until` is exclusive."""

    partner_id: int | None = None
    rule: str | None = None
    severity: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    member: str | None = None  # a member key or subscriber number (REF*0F): member data


def _business_where(f: BusinessFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if f.partner_id is not None:
        where.append(BusinessFinding.partner_id == f.partner_id)
    if f.rule:
        where.append(BusinessFinding.rule == f.rule)
    if f.severity:
        where.append(BusinessFinding.severity == f.severity)
    if f.since:
        where.append(BusinessFinding.created_at >= f.since)
    if f.until:
        where.append(BusinessFinding.created_at < f.until)
    if f.member:
        where.append(
            BusinessFinding.event_id.in_(
                select(MemberEventRow.id).where(
                    or_(
                        MemberEventRow.member_key == f.member,
                        MemberEventRow.subscriber_number == f.member,
                    )
                )
            )
        )
    return where


def business_findings(
    session: Session,
    f: BusinessFilter | None = None,
    *,
    before_id: int | None = None,
    limit: int = 50,
) -> list[BusinessReject]:
    """Newest first, paged by id."""
    q = (
        select(BusinessFinding, Receipt.filename, Receipt.received_at, Partner.name)
        .join(Receipt, Receipt.id == BusinessFinding.receipt_id)
        .join(Partner, Partner.id == BusinessFinding.partner_id)
        .where(*_business_where(f or BusinessFilter()))
    )
    if before_id is not None:
        q = q.where(BusinessFinding.id < before_id)
    rows = session.execute(q.order_by(BusinessFinding.id.desc()).limit(limit)).all()
    keys = dict(
        session.execute(
            select(MemberEventRow.id, MemberEventRow.member_key).where(
                MemberEventRow.id.in_([f.event_id for f, *_ in rows if f.event_id is not None])
            )
        ).all()
    )
    # The ledger's member of each key: (partner, member key) is unique there, so one look-up
    # serves an applied member and a rejected one (whose event names no ledger member) alike.
    wanted = {(f.partner_id, keys[f.event_id]) for f, *_ in rows if f.event_id in keys}
    held: dict[tuple[int, str], int] = {}
    if wanted:
        found = session.execute(
            select(LedgerMember.id, LedgerMember.partner_id, LedgerMember.member_key).where(
                LedgerMember.member_key.in_({k for _, k in wanted})
            )
        ).all()
        held = {(p, k): i for i, p, k in found if (p, k) in wanted}
    out = []
    for finding, filename, received_at, partner in rows:
        key = keys.get(finding.event_id) if finding.event_id is not None else None
        member = held.get((finding.partner_id, key)) if key is not None else None
        out.append(
            BusinessReject(finding, finding.receipt_id, filename, received_at, partner, key, member)
        )
    return out


def count_business_findings(session: Session, f: BusinessFilter) -> int:
    """How many findings the list would page through."""
    q = select(func.count()).select_from(BusinessFinding).where(*_business_where(f))
    return int(session.scalar(q) or 0)


def rule_counts(session: Session, since: dt.datetime | None = None) -> dict[tuple[str, str], int]:
    """(rule, severity) -> findings, optionally since a moment."""
    q = select(BusinessFinding.rule, BusinessFinding.severity, func.count()).group_by(
        BusinessFinding.rule, BusinessFinding.severity
    )
    if since is not None:
        q = q.where(BusinessFinding.created_at >= since)
    return {(rule, severity): int(n) for rule, severity, n in session.execute(q).all()}


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    oldest: dt.datetime | None
    failing: int
    last_error: str | None


def core_pending(session: Session) -> tuple[int, dt.datetime | None]:
    """How many core outbox rows wait for delivery, and when the oldest was created (UTC)."""
    pending, oldest = session.execute(
        select(func.count(), func.min(CoreDelivery.created_at)).where(
            CoreDelivery.delivered_at.is_(None)
        )
    ).one()
    if isinstance(oldest, dt.datetime) and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    return int(pending or 0), oldest


def core_backlog(session: Session) -> Backlog:
    """The core outbox: undelivered events, the oldest one's age, how many have failed."""
    pending, oldest = core_pending(session)
    failing = session.scalar(
        select(func.count()).where(CoreDelivery.delivered_at.is_(None), CoreDelivery.attempts > 0)
    )
    last_error = session.scalar(
        select(CoreDelivery.last_error)
        .where(CoreDelivery.delivered_at.is_(None), CoreDelivery.last_error.is_not(None))
        .order_by(CoreDelivery.id)
        .limit(1)
    )
    return Backlog(pending, oldest, int(failing or 0), last_error)


def ledger_files(session: Session) -> dict[str, int]:
    """Files in the ledger stage by status (pending, failed; not_applied and dry_run: kept from
    the ledger by the gate), zeros included."""
    counts = dict.fromkeys(("pending", "failed", "not_applied", "dry_run"), 0)
    for status, n in session.execute(
        select(Receipt.ledger_status, func.count())
        .where(Receipt.ledger_status.in_(tuple(counts)))
        .group_by(Receipt.ledger_status)
    ).all():
        counts[str(status)] = int(n)
    return counts


def member_history(
    session: Session, partner_id: int, member_key: str, limit: int = 200
) -> tuple[LedgerMember | None, Sequence[MemberEventRow]]:
    member = session.scalar(
        select(LedgerMember).where(
            LedgerMember.partner_id == partner_id, LedgerMember.member_key == member_key
        )
    )
    events = session.scalars(
        select(MemberEventRow)
        .where(MemberEventRow.partner_id == partner_id, MemberEventRow.member_key == member_key)
        .order_by(MemberEventRow.id)
        .limit(limit)
    ).all()
    return member, events


def rule_title(rule: str) -> str:
    known = RULES.get(rule)
    return known.title if known else rule


def rule_remedy(rule: str) -> str:
    known = RULES.get(rule)
    return known.remedy if known else ""
