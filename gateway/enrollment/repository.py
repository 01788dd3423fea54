"""Every query of the enrollment ledger stage: claiming a sender's next file under a lease,
releasing it, what the gate decided for each of its sets, the ledger rows a chunk needs, and the
rows the stage writes in bulk. Repositories never commit: the caller's unit of work does."""

from __future__ import annotations

import datetime as dt
import json
import operator
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Date,
    String,
    Table,
    any_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, lazyload

from gateway.db import repositories as repo
from gateway.db.base import Base, utcnow
from gateway.db.models import (
    BusinessFinding,
    Group,
    Interchange,
    LedgerCoverage,
    LedgerMember,
    LedgerPeriod,
    LedgerStatus,
    MemberEventRow,
    Partner,
    Receipt,
    Reconciliation,
    ReconciliationItem,
    Status,
    TransactionSet,
)
from gateway.enrollment import lifecycle
from gateway.enrollment.codes import MemberStatus
from gateway.enrollment.extract import SetKey
from gateway.enrollment.filesets import FileSets
from gateway.enrollment.identity import Holding, Person, identity_of
from gateway.gate import Decision, Disposition
from gateway.metrics import LEASE_TAKEOVERS

UNDECIDED = Decision(Disposition.NOT_APPLIED, "no gate decision recorded")

# --- the queue -------------------------------------------------------------------------------


_RECEIPTS = cast(Table, Receipt.__table__)
_UNVALIDATED_SENDERS = (
    select(Receipt.partner_id)
    .where(Receipt.status.in_((Status.RECEIVED, Status.PROCESSING)))
    .distinct()
)
# The queue's head as three columns, not 50 Receipt objects (each with ~40 columns, and once
# with its envelope tree): with a backlog, reading the candidates was most of a small file's
# claim (issue 19).
_LEDGER_CANDIDATES = (
    select(Receipt.id, Receipt.partner_id, Receipt.processed_at)
    .where(
        Receipt.status == Status.PROCESSED,
        Receipt.ledger_status == LedgerStatus.PENDING,
    )
    .order_by(Receipt.ledger_order, Receipt.received_at, Receipt.id)
    .limit(50)
)
_LOCK_SENDER = select(Partner.id).where(Partner.id == bindparam("partner_id")).with_for_update()
_SENDER_BUSY = (
    select(func.count())
    .select_from(Receipt)
    .where(
        Receipt.partner_id == bindparam("partner_id"),
        Receipt.ledger_status == LedgerStatus.PENDING,
        Receipt.id != bindparam("receipt_id"),
        Receipt.status == Status.PROCESSED,
        Receipt.lease_owner.is_not(None),
        Receipt.lease_expires_at > bindparam("now"),
    )
)
_LEDGER_LEASE_OF = select(
    _RECEIPTS.c.ledger_status,
    _RECEIPTS.c.lease_owner,
    _RECEIPTS.c.lease_expires_at,
    _RECEIPTS.c.ledger_attempts,
    _RECEIPTS.c.ledger_progress,
).where(_RECEIPTS.c.id == bindparam("receipt_id"))
_TAKE_LEDGER_LEASE = (
    update(_RECEIPTS)
    .where(_RECEIPTS.c.id == bindparam("receipt_id"))
    .values(
        lease_owner=bindparam("worker_id"),
        lease_expires_at=bindparam("until"),
        ledger_attempts=bindparam("ledger_try"),
    )
)


def claim_ledger_work(
    session: Session,
    *,
    worker_id: str,
    lease_seconds: int,
    order_window_seconds: float = 60.0,
    now: dt.datetime | None = None,
) -> str | None:
    """Lease the next receipt to apply, the smallest order key first, per sender: not while
    another file of that sender is being applied, and not while a file of that sender is still
    being validated (its place in the order is unknown until then) — unless this one has
    waited `order_window_seconds` since its 999, so a sender that never pauses is not starved.
    Its id. Prebuilt Core statements on the session's connection: the ORM's read of the
    receipt and its flush were most of a claim's CPU (issue 19)."""
    now = now or utcnow()
    window_start = now - dt.timedelta(seconds=order_window_seconds)
    conn = session.connection()
    unvalidated = set(conn.execute(_UNVALIDATED_SENDERS).scalars())
    decided: set[int] = set()
    for receipt_id, partner_id, processed_at in conn.execute(_LEDGER_CANDIDATES).all():
        if partner_id in decided:
            continue
        decided.add(partner_id)
        if partner_id in unvalidated and (processed_at is None or processed_at > window_start):
            continue
        # Serialise per sender across processes (PostgreSQL row lock; SQLite is serial anyway).
        conn.execute(_LOCK_SENDER, {"partner_id": partner_id})
        busy = conn.execute(
            _SENDER_BUSY, {"partner_id": partner_id, "receipt_id": receipt_id, "now": now}
        ).scalar()
        row = conn.execute(_LEDGER_LEASE_OF, {"receipt_id": receipt_id}).first()  # sender locked
        if busy or row is None or row.ledger_status != LedgerStatus.PENDING:
            continue
        if row.lease_owner and row.lease_expires_at and row.lease_expires_at > now:
            continue  # someone is applying it right now
        if row.lease_owner:  # its holder's lease ran out mid-file (it died or stalled)
            LEASE_TAKEOVERS.labels(stage="ledger").inc()
        attempts = row.ledger_attempts + 1
        conn.execute(
            _TAKE_LEDGER_LEASE,
            {
                "receipt_id": receipt_id,
                "worker_id": worker_id,
                "until": now + dt.timedelta(seconds=lease_seconds),
                "ledger_try": attempts,
            },
        )
        detail = f"attempt {attempts} by {worker_id} from member {row.ledger_progress}"
        repo.insert_events(session, [(receipt_id, "ledger_claimed", detail)])
        return str(receipt_id)
    return None


def leased(session: Session, receipt_id: str, worker_id: str) -> Receipt | None:
    """The receipt as an ORM object, while `worker_id` still holds its ledger lease; else None.
    For what needs the object (releasing the lease, building 824s); a run's own reads are
    leased_run and lock_for_chunk. Without its envelope tree (eager by default): its selectin
    queries were a quarter of the stage's CPU for a small file."""
    receipt = session.get(Receipt, receipt_id, options=[lazyload(Receipt.envelopes)])
    if receipt is None or receipt.lease_owner != worker_id:
        return None
    return receipt


_CHUNK_LEASE = (
    select(_RECEIPTS.c.lease_owner, _RECEIPTS.c.ledger_progress)
    .where(_RECEIPTS.c.id == bindparam("receipt_id"))
    .with_for_update()
)
_CHUNK_DONE = (
    update(_RECEIPTS)
    .where(_RECEIPTS.c.id == bindparam("receipt_id"))
    .values(
        ledger_progress=bindparam("progress"),
        members_applied=_RECEIPTS.c.members_applied + bindparam("applied"),
        members_business_rejected=_RECEIPTS.c.members_business_rejected + bindparam("rejected"),
        lease_expires_at=bindparam("until"),
    )
)


def lock_for_chunk(session: Session, receipt_id: str, worker_id: str) -> int | None:
    """The receipt's ledger progress, its row locked until the chunk commits, while
    `worker_id` holds its lease; else None. Two Core statements a chunk (this and
    chunk_done), not the ORM's whole Receipt and its flush: issue 19, a small file is one
    chunk, and reading the receipt was a seventh of its ledger CPU."""
    row = session.connection().execute(_CHUNK_LEASE, {"receipt_id": receipt_id}).first()
    if row is None or row.lease_owner != worker_id:
        return None
    return int(row.ledger_progress)


def chunk_done(
    session: Session,
    receipt_id: str,
    progress: int,
    applied: int,
    rejected: int,
    until: dt.datetime,
) -> None:
    """A chunk's members are in: the progress, the counts, the lease extended."""
    session.connection().execute(
        _CHUNK_DONE,
        {
            "receipt_id": receipt_id,
            "progress": progress,
            "applied": applied,
            "rejected": rejected,
            "until": until,
        },
    )


def take_core_seqs(session: Session, partner_id: int, n: int) -> int:
    """The first of `n` consecutive `partner_seq` for the partner's next core events: its
    `core_seq` moved on by `n` in the chunk's transaction (the row stays locked until it
    commits, and goes back with it), so a partner's sequence has no gap and no number twice."""
    last = (
        session.connection()
        .execute(
            update(Partner)
            .where(Partner.id == partner_id)
            .values(core_seq=Partner.core_seq + n)
            .returning(Partner.core_seq)
        )
        .scalar_one()
    )
    return int(last) - n + 1


class LeasedRun(NamedTuple):
    """A leased receipt as its run starts and finishes: what it needs, not the ORM's Receipt
    and Partner (read twice a file, a ninth of a small file's ledger CPU: issue 19)."""

    lease_owner: str | None
    sha256: str
    blob_path: str
    ledger_progress: int
    members_applied: int
    members_business_rejected: int
    partner_id: int
    partner_name: str
    rule_severities: str
    plan_ids: str
    send_824: bool
    onboarding: bool


_LEASED_RUN = (
    select(
        _RECEIPTS.c.lease_owner,
        _RECEIPTS.c.sha256,
        _RECEIPTS.c.blob_path,
        _RECEIPTS.c.ledger_progress,
        _RECEIPTS.c.members_applied,
        _RECEIPTS.c.members_business_rejected,
        Partner.id,
        Partner.name,
        Partner.rule_severities,
        Partner.plan_ids,
        Partner.send_824,
        Partner.onboarding,
    )
    .join(Partner, Partner.id == _RECEIPTS.c.partner_id)
    .where(_RECEIPTS.c.id == bindparam("receipt_id"))
)


def leased_run(session: Session, receipt_id: str, worker_id: str) -> LeasedRun | None:
    """The receipt's run facts while `worker_id` holds its ledger lease; else None."""
    row = session.connection().execute(_LEASED_RUN, {"receipt_id": receipt_id}).first()
    if row is None or row.lease_owner != worker_id:
        return None
    return LeasedRun._make(row)


_LEDGER_DONE = (
    update(_RECEIPTS)
    .where(_RECEIPTS.c.id == bindparam("receipt_id"))
    .values(
        ledger_status=bindparam("new_status"),
        ledger_applied_at=bindparam("at"),
        ledger_error=None,
        lease_owner=None,
        lease_expires_at=None,
    )
)


_ORDER_OF = select(_RECEIPTS.c.ledger_order).where(_RECEIPTS.c.id == bindparam("receipt_id"))
_APPLIED_LATER = (
    select(_RECEIPTS.c.id, _RECEIPTS.c.filename)
    .where(
        _RECEIPTS.c.partner_id == bindparam("partner_id"),
        _RECEIPTS.c.received_at > bindparam("since"),
        _RECEIPTS.c.ledger_status == LedgerStatus.APPLIED,  # an audit changed nothing
        _RECEIPTS.c.ledger_order > _ORDER_OF.scalar_subquery(),
    )
    .order_by(_RECEIPTS.c.ledger_order.desc())
    .limit(1)
)
OUT_OF_ORDER_DAYS = 35
"""How far back a file applied already is looked for that the sender's order puts after the
one applying now (a month of daily files, and the monthly audit)."""


def applied_later(
    session: Session, receipt_id: str, partner_id: int, now: dt.datetime
) -> tuple[str, str | None] | None:
    """(id, file name) of a file of the sender's, received in the last OUT_OF_ORDER_DAYS and
    already applied, that its order (CMS file name, else BGN date, then ISA13) puts after
    `receipt_id`: this file is applied out of the sender's order. None when there is none."""
    row = (
        session.connection()
        .execute(
            _APPLIED_LATER,
            {
                "receipt_id": receipt_id,
                "partner_id": partner_id,
                "since": now - dt.timedelta(days=OUT_OF_ORDER_DAYS),
            },
        )
        .first()
    )
    return (row[0], row[1]) if row is not None else None


def ledger_done(session: Session, receipt_id: str, status: str, at: dt.datetime) -> None:
    """The file is through the ledger: its status, and its lease released."""
    session.connection().execute(
        _LEDGER_DONE, {"receipt_id": receipt_id, "new_status": status, "at": at}
    )


def release_ledger(
    session: Session, receipt_id: str, worker_id: str, *, error: str | None, max_attempts: int
) -> None:
    """Give the lease back: after an error with backoff, parked as failed at max_attempts."""
    receipt = leased(session, receipt_id, worker_id)
    if receipt is None:
        return
    receipt.lease_owner = None
    if error is None:
        receipt.lease_expires_at = None
        receipt.ledger_attempts = max(0, receipt.ledger_attempts - 1)
        return
    receipt.ledger_error = error
    if receipt.ledger_attempts >= max_attempts:
        receipt.ledger_status = LedgerStatus.FAILED
        receipt.lease_expires_at = None
        repo.add_event(session, receipt.id, "ledger_failed", error[:2000])
    else:
        receipt.lease_expires_at = utcnow() + dt.timedelta(
            seconds=min(60.0, 2.0**receipt.ledger_attempts)
        )


def leased_ledger_work(session: Session) -> list[Receipt]:
    """Receipts some worker is applying to the ledger (or was, when it died)."""
    return list(
        session.scalars(
            select(Receipt).where(
                Receipt.status == Status.PROCESSED,
                Receipt.ledger_status == LedgerStatus.PENDING,
                Receipt.lease_owner.is_not(None),
            )
        )
    )


# --- what a run needs ------------------------------------------------------------------------


SETS_PAGE = 10_000


def ledger_sets(session: Session, receipt_id: str) -> FileSets:
    """Every 834 set of the file, by its key as member events count it: the gate's decision as
    the worker recorded it, and (subscribers, dependents) as validation counted them (not
    counted when the file was validated before they were kept). Read a page at a time (by
    set id), so that a file of a million sets never holds a million rows."""
    ordinal = envelope_ordinals(session, receipt_id)
    sets = FileSets()
    decisions: dict[tuple[str | None, str], Decision] = {}
    after = 0
    while True:
        rows = session.execute(
            select(
                TransactionSet.id,
                Group.envelope_id,
                Group.seq,
                TransactionSet.seq,
                TransactionSet.gate,
                TransactionSet.gate_reason,
                TransactionSet.member_count,
                TransactionSet.subscriber_count,
            )
            .join(Group, Group.id == TransactionSet.group_id)
            .where(
                TransactionSet.receipt_id == receipt_id,
                TransactionSet.st01 == "834",
                TransactionSet.id > after,
            )
            .order_by(TransactionSet.id)
            .limit(SETS_PAGE)
        ).all()
        for set_id, env_id, gseq, sseq, gate, reason, members, subscribers in rows:
            decision = decisions.get((gate, reason))
            if decision is None:
                decision = decisions[(gate, reason)] = _decision(gate, reason)
            counts = None if subscribers is None else (subscribers, members - subscribers)
            sets.add((ordinal[env_id], gseq, sseq), decision, counts)
            after = set_id
        if len(rows) < SETS_PAGE:
            return sets


def set_of_group(session: Session, group_id: int, seq: int) -> TransactionSet:
    """One set of a group by its seq (not the group's whole list: it can hold a million)."""
    return session.scalars(
        select(TransactionSet).where(TransactionSet.group_id == group_id, TransactionSet.seq == seq)
    ).one()


def envelope_ordinals(session: Session, receipt_id: str) -> dict[int, int]:
    """envelopes.id -> the interchange's ordinal in its file, as member events count them."""
    ids = session.scalars(
        select(Interchange.id).where(Interchange.receipt_id == receipt_id).order_by(Interchange.seq)
    ).all()
    return {env_id: n for n, env_id in enumerate(ids)}


def _decision(gate: str | None, reason: str) -> Decision:
    if gate in {d.value for d in Disposition}:
        return Decision(Disposition(gate), reason)
    return UNDECIDED


def reconciliation_of(session: Session, receipt_id: str) -> tuple[int | None, int]:
    """(the receipt's reconciliation id, the next item's seq) — a resumed run continues both."""
    rec_id = session.scalar(
        select(Reconciliation.id).where(Reconciliation.receipt_id == receipt_id)
    )
    if rec_id is None:
        return None, 0
    last = session.scalar(  # the (reconciliation_id, seq) index's last entry
        select(func.max(ReconciliationItem.seq)).where(
            ReconciliationItem.reconciliation_id == rec_id
        )
    )
    return rec_id, 0 if last is None else last + 1


def add_to_reconciliation(session: Session, rec_id: int, counts: Mapping[str, int]) -> None:
    """Add a chunk's counts (members_in_file, members_matched, …) to the reconciliation's."""
    table = Reconciliation.__table__.c
    session.execute(
        update(Reconciliation)
        .where(Reconciliation.id == rec_id)
        .values({name: table[name] + n for name, n in counts.items()})
    )


MEMBER_COLUMNS = (
    "partner_id",
    "member_key",
    "subscriber_number",
    "policy_key",
    "subscriber",
    "relationship_code",
    "status",
    "last_name",
    "first_name",
    "middle_name",
    "id_qualifier",
    "id_value",
    "birth_date",
    "gender",
    "residence",
    "mailing",
    "contact",
    "reporting",
    "updated_at",
    "last_event_id",
    "sponsor_group",
)


@dataclass(eq=False)
class MemberRec:  # fields: id, then MEMBER_COLUMNS in order (`_load` builds it positionally)
    """A ledger member as a chunk works on it: the row's values (no ORM instance: a chunk
    writes its members, enrollments and periods in a few bulk statements) and its
    enrollments as the lifecycle's plain objects."""

    id: int | None
    partner_id: int
    member_key: str
    subscriber_number: str = ""
    policy_key: str = ""
    subscriber: bool = False
    relationship_code: str = ""
    status: str = "active"
    last_name: str = ""
    first_name: str = ""
    middle_name: str = ""
    id_qualifier: str = ""
    id_value: str = ""
    birth_date: dt.date | None = None
    gender: str = ""
    residence: str = ""
    mailing: str = ""
    contact: str = ""
    reporting: str = ""
    updated_at: dt.datetime | None = None
    last_event_id: int | None = None
    sponsor_group: str = ""
    enrollments: list[lifecycle.Enrollment] = field(default_factory=list)
    period_ids: dict[int, set[int]] = field(default_factory=dict)
    """Stored period ids per enrollment id, as loaded (to delete the ones a re-add drops)."""

    def values(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in MEMBER_COLUMNS}


def period_from_row(p: Any) -> lifecycle.Period:
    """A stored period (an ORM `LedgerPeriod` or a Core row of `ledger_periods`)."""
    return lifecycle.Period(
        begin=p.begin,
        terms={k: getattr(p, k) for k in lifecycle.TERMS},
        event_id=p.event_id,
        id=p.id,
        dirty=False,
    )


def enrollment_from_row(c: Any, periods: list[lifecycle.Period]) -> lifecycle.Enrollment:
    """A stored enrollment (an ORM `LedgerCoverage` or a Core row of `ledger_coverages`)."""
    return lifecycle.Enrollment(
        line=c.insurance_line,
        policy=c.policy_number,
        plan_year=c.plan_year,
        stint=c.stint,
        state=lifecycle.state_of(c.status),
        begin=c.benefit_begin,
        end=c.benefit_end,
        paid_through=c.paid_through,
        effectuated=c.effectuated,
        periods=periods,
        scheduled_end=c.scheduled_end,
        id=c.id,
        dirty=False,
    )


def _load(session: Session, where: ColumnElement[bool]) -> list[MemberRec]:
    """Members matching `where`, with their enrollments and periods: three queries."""
    table = cast(Table, LedgerMember.__table__)
    columns = [table.c.id, *(table.c[name] for name in MEMBER_COLUMNS)]
    # Positionally: MemberRec's fields are id and MEMBER_COLUMNS, in that order.
    rows = session.execute(select(*columns).where(where).order_by(table.c.id))
    recs = [MemberRec(*row) for row in rows]
    if not recs:
        return recs
    by_id = {r.id: r for r in recs}
    coverages = session.execute(
        select(LedgerCoverage.__table__)
        .where(_one_of(session, LedgerCoverage.member_id, by_id))
        .order_by(LedgerCoverage.id)
    ).all()
    periods: dict[int, list[lifecycle.Period]] = {}
    if coverages:
        for p in session.execute(
            select(LedgerPeriod.__table__)
            .where(_one_of(session, LedgerPeriod.coverage_id, [c.id for c in coverages]))
            .order_by(LedgerPeriod.coverage_id, LedgerPeriod.begin)
        ):
            periods.setdefault(p.coverage_id, []).append(period_from_row(p))
    for c in coverages:
        rec = by_id[c.member_id]
        own = periods.get(c.id, [])
        rec.enrollments.append(enrollment_from_row(c, own))
        rec.period_ids[c.id] = {p.id for p in own if p.id is not None}
    return recs


def _one_of(session: Session, column: Any, values: Iterable[object]) -> Any:
    """`column IN (values)`; on PostgreSQL `column = ANY(:array)`: one parameter instead of
    one per value, so a chunk's 500-key look-up is a short statement that psycopg and the
    server parse once, not a new 500-placeholder text each time (issue 15)."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def load_members(session: Session, partner_id: int, keys: Iterable[str]) -> list[MemberRec]:
    return _load(
        session,
        (LedgerMember.partner_id == partner_id) & _one_of(session, LedgerMember.member_key, keys),
    )


def policy_members(
    session: Session,
    partner_id: int,
    policies: set[str],
    subscribers: set[str],
    *,
    skip: Collection[int] = (),
) -> list[MemberRec]:
    """The members of these subscribers' families (REF*0F) enrolled on any of these policies (a
    subscriber's end or effectuation cascades to them), but those in `skip` (already loaded by
    the caller): their ids in one query, then them with their enrollments and periods. Not a
    whole employer group that shares its group number as the policy."""
    if not policies or not subscribers:
        return []
    ids = [
        member_id
        for member_id in session.scalars(
            select(LedgerCoverage.member_id)
            .join(LedgerMember, LedgerMember.id == LedgerCoverage.member_id)
            .where(
                LedgerMember.partner_id == partner_id,
                _one_of(session, LedgerMember.subscriber_number, subscribers),
                _one_of(session, LedgerCoverage.policy_number, policies),
            )
            .distinct()
        )
        if member_id not in skip
    ]
    return _load(session, _one_of(session, LedgerMember.id, ids)) if ids else []


def subscribers_of(
    session: Session, partner_id: int, numbers: set[str], *, skip: Collection[int] = ()
) -> list[MemberRec]:
    """The subscribers these REF*0F numbers name, but those in `skip`: whose policy a
    dependent sent without any REF*1L is on."""
    if not numbers:
        return []
    where = (
        (LedgerMember.partner_id == partner_id)
        & LedgerMember.subscriber.is_(True)
        & _one_of(session, LedgerMember.subscriber_number, numbers)
    )
    if skip:
        where = where & LedgerMember.id.not_in(list(skip))
    return _load(session, where)


def dependents_of(
    session: Session, partner_id: int, subscribers: set[str], *, skip: Collection[int] = ()
) -> list[MemberRec]:
    """The dependents these subscribers (REF*0F) have in the ledger, but those in `skip`:
    where a dependent without REF*17 is looked for under the key it had before."""
    if not subscribers:
        return []
    where = (
        (LedgerMember.partner_id == partner_id)
        & _one_of(session, LedgerMember.subscriber_number, subscribers)
        & LedgerMember.subscriber.is_(False)
    )
    return [m for m in _load(session, where) if m.id not in skip]


_HOLDING_COLUMNS = (
    LedgerMember.id_qualifier,
    LedgerMember.id_value,
    LedgerMember.last_name,
    LedgerMember.first_name,
    LedgerMember.birth_date,
    LedgerMember.partner_id,
    Partner.name,
    LedgerMember.member_key,
    LedgerCoverage.insurance_line,
    LedgerCoverage.policy_number,
    LedgerCoverage.benefit_begin,
    LedgerCoverage.benefit_end,
)


def holdings(session: Session, people: Iterable[Person]) -> list[tuple[Person, Holding]]:
    """Enrollments in force, across every partner, of anyone born on one of these people's
    birth dates with their SSN or last name; `Person.same_as` decides who is the same person.

    PostgreSQL: two semi-joins against (birth date, SSN) and (birth date, last name) pairs —
    index look-ups of exactly those pairs. A filter `birth_date = ANY(…) AND (id_value =
    ANY(…) OR upper(last_name) = ANY(…))` read every member born on any of a chunk's 500
    dates and compared each with both arrays, element by element: 50 ms a chunk at 100,000
    members and growing with the ledger (issue 15)."""
    people = set(people)
    if not people:
        return []
    in_force = (
        select(*_HOLDING_COLUMNS)
        .join(LedgerCoverage, LedgerCoverage.member_id == LedgerMember.id)
        .join(Partner, Partner.id == LedgerMember.partner_id)
        .where(LedgerCoverage.status.in_(("initial", "effectuated", "active")))
    )
    by_ssn = [(p.birth, p.ssn) for p in people if p.ssn]
    by_name = [(p.birth, p.name.split("|", 1)[0]) for p in people if p.name]
    if session.get_bind().dialect.name == "postgresql":
        queries = [
            in_force.where(tuple_(LedgerMember.birth_date, column).in_(_pairs(pairs)))
            for column, pairs in (
                (LedgerMember.id_value, by_ssn),
                (func.upper(LedgerMember.last_name, type_=String), by_name),
            )
            if pairs
        ]
        rows = session.execute(union(*queries) if len(queries) > 1 else queries[0]).all()
    else:
        who = []
        if by_ssn:
            who.append(LedgerMember.id_value.in_({ssn for _, ssn in by_ssn}))
        if by_name:
            who.append(func.upper(LedgerMember.last_name).in_({last for _, last in by_name}))
        rows = session.execute(
            in_force.where(LedgerMember.birth_date.in_({p.birth for p in people}), or_(*who))
        ).all()
    out: list[tuple[Person, Holding]] = []
    for qual, ssn, last, first, birth, pid, pname, key, line, policy, begin, end in rows:
        person = identity_of(qual, ssn, last, first, birth)
        if person is not None:
            out.append((person, Holding(pid, pname, key, line, policy, begin, end)))
    return out


def _pairs(pairs: list[tuple[dt.date, str]]) -> Any:
    """(birth date, text) pairs as rows: `SELECT birth, key FROM unnest(:births, :keys)`."""
    births, keys = zip(*pairs, strict=True)
    rows = (
        func.unnest(
            bindparam(None, list(births), type_=ARRAY(Date)),
            bindparam(None, list(keys), type_=ARRAY(String)),
        )
        .table_valued("birth", "key")
        .render_derived()
    )
    return select(rows.c.birth, rows.c.key)


def transactions_seen_in_file(
    session: Session, receipt_id: str, keys: Iterable[str]
) -> dict[str, list[dict[str, object]]]:
    """What an earlier chunk of this file recorded for these members: each event's member
    (its payload without the set's source and header), by member key."""
    out: dict[str, list[dict[str, object]]] = {}
    for key, payload in session.execute(
        select(MemberEventRow.member_key, MemberEventRow.payload).where(
            MemberEventRow.receipt_id == receipt_id,
            _one_of(session, MemberEventRow.member_key, keys),
        )
    ):
        member = json.loads(payload)
        member.pop("source", None)
        member.pop("header", None)
        out.setdefault(key, []).append(member)
    return out


def subscribers_covered_until(
    session: Session, partner_id: int, numbers: Iterable[str]
) -> dict[str, dt.date]:
    """For the subscriber numbers (REF*0F) whose subscriber the ledger holds: until when it is
    covered — `date.max` while active, else the latest end of its coverages (a termination
    sent ahead of its date leaves the subscriber covered until then)."""
    rows = session.execute(
        select(
            LedgerMember.subscriber_number,
            LedgerMember.status,
            func.max(LedgerCoverage.benefit_end),
        )
        .outerjoin(LedgerCoverage, LedgerCoverage.member_id == LedgerMember.id)
        .where(
            LedgerMember.partner_id == partner_id,
            _one_of(session, LedgerMember.subscriber_number, numbers),
            LedgerMember.subscriber.is_(True),
        )
        .group_by(LedgerMember.id, LedgerMember.subscriber_number, LedgerMember.status)
    ).all()
    out: dict[str, dt.date] = {}
    for number, status, end in rows:
        until = dt.date.max if status == MemberStatus.ACTIVE else (end or dt.date.min)
        out[number] = max(out.get(number, dt.date.min), until)
    return out


# --- what a run writes -----------------------------------------------------------------------


def allocate_ids(session: Session, model: type[Base], n: int) -> list[int]:
    """`n` new ids of `model`'s table, in order, before its rows are written (so that rows of
    other tables can name them first). PostgreSQL: from the table's sequence. SQLite: after the
    current maximum; the writer holds SQLite's lock (BEGIN IMMEDIATE), so nothing else takes
    them before `insert_with_ids` writes them, which must come before the next allocation."""
    if n <= 0:
        return []
    table = cast(Table, model.__table__)
    if session.get_bind().dialect.name == "postgresql":
        seq = _SEQUENCES.get(table.name)
        if seq is None:
            seq = session.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name})
            _SEQUENCES[table.name] = seq
        return list(
            session.scalars(
                text("SELECT nextval(:s) FROM generate_series(1, :n)"), {"s": seq, "n": n}
            )
        )
    before = session.scalar(select(func.max(table.c.id))) or 0
    return list(range(before + 1, before + 1 + n))


def insert_with_ids(
    session: Session, model: type[Base], rows: Sequence[dict[str, object]], ids: Sequence[int]
) -> None:
    """`rows` with the ids `allocate_ids` gave them."""
    if len(rows) != len(ids):
        raise ValueError(f"{len(rows)} rows, {len(ids)} ids")
    insert_rows(session, model, rows, ids=ids)


def insert_returning_ids(
    session: Session, model: type[Base], rows: Sequence[dict[str, object]]
) -> list[int]:
    """Bulk insert, the new ids in the order of `rows`."""
    ids = allocate_ids(session, model, len(rows))
    insert_with_ids(session, model, rows, ids)
    return ids


_SEQUENCES: dict[str, str | None] = {}


def insert_rows(
    session: Session,
    model: type[Base],
    rows: Sequence[dict[str, object]],
    *,
    ids: Sequence[int] | None = None,
) -> None:
    """Bulk insert (Core: no ORM bookkeeping per row), with the given ids if any. PostgreSQL:
    one COPY, which costs a fraction of a pipelined INSERT per row on both sides of the
    connection (issue 15)."""
    if not rows:
        return
    table = cast(Table, model.__table__)
    if session.get_bind().dialect.name == "postgresql":
        _copy_rows(session, table, rows, ids)
    elif ids is None:
        session.execute(insert(table), list(rows))
    else:
        session.execute(insert(table), [{**r, "id": i} for r, i in zip(rows, ids, strict=True)])


def _copy_rows(
    session: Session, table: Table, rows: Sequence[dict[str, object]], ids: Sequence[int] | None
) -> None:
    """`COPY table (columns) FROM STDIN`: what `insert(table)` would send, value for value —
    each column's bind processing (e.g. UTC datetimes) and the Python-side defaults of columns
    the rows leave out (once per statement: one timestamp for the chunk's rows)."""
    dialect = session.get_bind().dialect
    names = list(rows[0])
    defaults: dict[str, object] = {}
    for column in table.columns:
        default: Any = column.default
        if column.name in rows[0] or column.name == "id" or default is None:
            continue
        if default.is_callable:
            defaults[column.name] = default.arg(None)
        elif default.is_scalar:
            defaults[column.name] = default.arg
    processors = {
        name: process
        for name in (*names, *defaults)
        if (process := table.c[name].type.bind_processor(dialect)) is not None
    }
    fixed = tuple(
        processors[name](value) if name in processors else value for name, value in defaults.items()
    )
    # A row's values in one C call; the few columns with bind processing fixed up after.
    values = operator.itemgetter(*names) if len(names) > 1 else (lambda r: (r[names[0]],))
    processed = [
        (names.index(name), process) for name, process in processors.items() if name in names
    ]
    columns = [*(["id"] if ids is not None else []), *names, *defaults]
    dbapi: Any = session.connection().connection.dbapi_connection
    statement = "COPY {} ({}) FROM STDIN".format(
        dialect.identifier_preparer.format_table(table),
        ", ".join(dialect.identifier_preparer.quote(c) for c in columns),
    )
    with dbapi.cursor() as cursor, cursor.copy(statement) as copy:
        for n, row in enumerate(rows):
            own = values(row)
            if processed:
                own = list(own)
                for at, process in processed:
                    own[at] = process(own[at])
                own = tuple(own)
            copy.write_row(((ids[n],) if ids is not None else ()) + own + fixed)


_GROWN_COLUMNS: dict[type[Base], tuple[str, ...]] = {
    LedgerMember: (
        "id",
        "partner_id",
        "member_key",
        "subscriber_number",
        "subscriber",
        "status",
        "birth_date",
        "id_value",
        "last_name",
    ),
    LedgerCoverage: ("id", "member_id", "policy_number", "status", "insurance_line", "plan_year"),
    LedgerPeriod: ("coverage_id",),
    MemberEventRow: ("partner_id", "receipt_id", "member_key", "seq"),
}
"""The tables a large file grows, and the columns a chunk's look-ups select, join or sort by:
the only statistics those plans need."""


def refresh_statistics(session: Session) -> None:
    """PostgreSQL: ANALYZE the tables a large file grows. Until autovacuum gets to them (a
    minute, or 10% more rows), the planner has no statistics for rows just written and reads a
    chunk's look-ups through the (partner, status) index, filtering every member of the
    partner: 40 ms instead of 0.4 ms per query at 10,000 members, growing with the ledger.

    Only the look-ups' columns (`_GROWN_COLUMNS`): the whole tables took 359 ms a time at
    20,000 members, most of it sorting the samples of columns no look-up reads (names,
    addresses, 2.8 KB payloads); these took 127 ms. Autovacuum still analyzes every column."""
    if session.get_bind().dialect.name != "postgresql":
        return
    names = ", ".join(
        f"{cast(Table, model.__table__).name} ({', '.join(columns)})"
        for model, columns in _GROWN_COLUMNS.items()
    )
    session.execute(text(f"ANALYZE {names}"))


def new_reconciliation(session: Session, receipt_id: str, partner_id: int) -> Reconciliation:
    rec = Reconciliation(receipt_id=receipt_id, partner_id=partner_id)
    session.add(rec)
    session.flush()
    return rec


def active_members_not_in_file(session: Session, partner_id: int, receipt_id: str) -> list[str]:
    """Member keys active in the ledger that an audit file did not mention. A sender whose
    members belong to several groups (a broker's or TPA's employers: `sponsor_group`) audits
    one group at a time: then only the groups of the members the file mentions are looked at
    (and members of no known group)."""
    mentioned = exists().where(
        MemberEventRow.receipt_id == receipt_id,
        MemberEventRow.member_key == LedgerMember.member_key,
    )
    where = [
        LedgerMember.partner_id == partner_id,
        LedgerMember.status == MemberStatus.ACTIVE,
        ~mentioned,
    ]
    groups = set(
        session.scalars(
            select(LedgerMember.sponsor_group)
            .where(LedgerMember.partner_id == partner_id, LedgerMember.sponsor_group != "")
            .distinct()
            .limit(2)
        )
    )
    if len(groups) > 1:
        audited = select(LedgerMember.sponsor_group).where(
            LedgerMember.partner_id == partner_id, mentioned, LedgerMember.sponsor_group != ""
        )
        where.append(or_(LedgerMember.sponsor_group == "", LedgerMember.sponsor_group.in_(audited)))
    return list(
        session.scalars(
            select(LedgerMember.member_key).where(*where).order_by(LedgerMember.member_key)
        )
    )


def event_outcomes(session: Session, receipt_id: str) -> set[str]:
    return set(
        session.scalars(
            select(MemberEventRow.outcome).where(MemberEventRow.receipt_id == receipt_id).distinct()
        )
    )


# --- the 824 ---------------------------------------------------------------------------------


def business_rejects(session: Session, receipt_id: str, *, dry_run: bool) -> list[BusinessFinding]:
    return list(
        session.scalars(
            select(BusinessFinding)
            .where(
                BusinessFinding.receipt_id == receipt_id,
                BusinessFinding.severity == "reject",
                BusinessFinding.dry_run.is_(dry_run),
            )
            .order_by(BusinessFinding.id)
        )
    )


def set_outcomes(session: Session, receipt_id: str, key: SetKey) -> tuple[dict[str, int], str]:
    """(members per outcome, the first member's payload) of one set of the file."""
    envelope_seq, group_seq, set_seq = key
    in_set = (
        MemberEventRow.receipt_id == receipt_id,
        MemberEventRow.envelope_seq == envelope_seq,
        MemberEventRow.group_seq == group_seq,
        MemberEventRow.set_seq == set_seq,
    )
    counts = {
        str(outcome): int(n)
        for outcome, n in session.execute(
            select(MemberEventRow.outcome, func.count())
            .where(*in_set)
            .group_by(MemberEventRow.outcome)
        ).all()
    }
    first = session.scalar(
        select(MemberEventRow.payload).where(*in_set).order_by(MemberEventRow.seq).limit(1)
    )
    return counts, first or ""


__all__ = [
    "MEMBER_COLUMNS",
    "UNDECIDED",
    "MemberRec",
    "active_members_not_in_file",
    "add_to_reconciliation",
    "allocate_ids",
    "applied_later",
    "business_rejects",
    "claim_ledger_work",
    "event_outcomes",
    "holdings",
    "insert_returning_ids",
    "insert_rows",
    "insert_with_ids",
    "leased",
    "leased_ledger_work",
    "leased_run",
    "ledger_done",
    "ledger_sets",
    "load_members",
    "new_reconciliation",
    "policy_members",
    "reconciliation_of",
    "refresh_statistics",
    "release_ledger",
    "set_outcomes",
    "subscribers_covered_until",
    "transactions_seen_in_file",
]
