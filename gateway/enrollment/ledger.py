"""The enrollment ledger stage: accepted 834 members applied to the ledger exactly once, in the
sender's order, with business rules, a transactional outbox for the core system, and audit
reconciliation.

After the 999 is stored, a receipt with accepted 834 sets is `pending`. A worker leases it
(the receipt's lease columns, reused) when it is its sender's next file: no other file of
that sender is still being validated (or it has waited `ledger_order_window_seconds`), and
among the sender's pending files it has the smallest order key (CMS AR -> RT -> daily from the
file name, then BGN03/BGN04, then ISA13).
Members stream from the blob a second time (`extract_members`, only the accepted sets) and are
applied a family at a time, in chunks of about `CHUNK_MEMBERS` members, each chunk one
transaction that also advances `ledger_progress`: a crash resumes after the last committed
chunk, and a unique constraint on the event's source makes a double apply impossible. A
SQLite writer never holds the lock for a whole 100,000-member file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import exists, func, insert, select
from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import utcnow
from gateway.db.models import (
    Ack,
    AckKind,
    BusinessFinding,
    CoreDelivery,
    Envelope,
    Group,
    LedgerCoverage,
    LedgerMember,
    LedgerStatus,
    MemberEventRow,
    MemberOutcome,
    Partner,
    Receipt,
    Reconciliation,
    ReconciliationItem,
    Status,
    TransactionSet,
)
from gateway.db.session import run_in_transaction
from gateway.enrollment.events import Address, MemberEvent
from gateway.enrollment.extract import SetKey, extract_members
from gateway.enrollment.rules import (
    RULES,
    Hit,
    LedgerView,
    MemberFacts,
    RuleConfig,
    amount,
    family_premium,
    member_rules,
    rejecting,
    set_rules,
    unevaluable,
)
from gateway.faults import crashpoint
from gateway.gate import Decision, Disposition
from gateway.logging import get_logger
from gateway.metrics import BUSINESS_FINDINGS
from parsers.envelope import read_events
from parsers.events import GroupStart, InterchangeStart, Segment, TransactionSetStart
from validators.acks import BusinessError, SetAdvice, build_824

CHUNK_MEMBERS = 500
DRY_RUN_824 = AckKind.X824_DRY_RUN.value
MAX_FAMILY = 200
"""A family (subscriber and dependents sharing REF*0F) longer than this is split: memory stays
bounded on hostile input. X220 families are a handful of members."""

log = get_logger(__name__)

_RANK = re.compile(r"(?:^|[._\-])(AR|RT)(?:[._\-]|$)")


class LedgerAbandoned(Exception):
    """Shutdown, or the lease was lost: stop between chunks; what committed stays."""


# --- order ---------------------------------------------------------------------------------


def order_key(filename: str | None, head: Iterator[bytes] | list[bytes]) -> str:
    """The sender's intended order: CMS annual renewal (AR) files, then re-enrollment (RT),
    then daily files (from the file name); then the first BGN03/BGN04; then ISA13."""
    name = (filename or "").rsplit("/", 1)[-1].upper()
    match = _RANK.search(name)
    rank = {"AR": "0", "RT": "1"}.get(match.group(1) if match else "", "2")
    isa13 = bgn_date = bgn_time = ""
    # An order key never fails a file: an unreadable head just sorts last.
    with contextlib.suppress(Exception):
        for event in read_events(head):
            if isinstance(event, InterchangeStart) and not isa13:
                isa13 = event.isa.element(13).strip()
            elif isinstance(event, Segment) and event.tag == "BGN":
                bgn_date, bgn_time = event.element(3), event.element(4)
                break
    digits = re.compile(r"\D")
    return (
        rank
        + digits.sub("", bgn_date)[:8].rjust(8, "9")
        + digits.sub("", bgn_time)[:8].ljust(8, "0")
        + digits.sub("", isa13)[:9].rjust(9, "0")
    )


# --- keys ----------------------------------------------------------------------------------


def member_key(event: MemberEvent) -> str:
    """REF*17 (the exchange-assigned member id); a subscriber without one is its REF*0F; a
    dependent without one is its subscriber's REF*0F with its NM109, else its name and DOB."""
    if event.client_reporting_category:
        return event.client_reporting_category[:120]
    subscriber = event.subscriber_number or ""
    if event.subscriber and subscriber:
        return subscriber[:120]
    name = event.name
    if name is not None and name.id:
        who = f"{name.id_qualifier}{name.id}"
    else:
        last = name.last if name else ""
        first = name.first if name else ""
        who = f"{last}|{first}|{event.birth_date_raw or ''}"
    return f"{subscriber}/{who}"[:120]


def policy_key(event: MemberEvent) -> str:
    """The enrollment group: 2300 REF*1L, else 2000 REF*1L, else the subscriber's REF*0F."""
    for cov in event.coverages:
        if cov.group_or_policy_number:
            return cov.group_or_policy_number[:120]
    return (event.group_or_policy_number or event.subscriber_number or "")[:120]


def is_audit(event: MemberEvent) -> bool:
    """A full-file audit (BGN08 4) or replace file (BGN08 RX), or an INS03 030 member."""
    return event.header.action in ("4", "RX") or event.maintenance_type.code == "030"


def idempotency_key(receipt_sha256: str, partner_id: int, event: MemberEvent) -> str:
    s = event.source
    text = f"{partner_id}|{receipt_sha256}|{s.envelope}|{s.group}|{s.transaction_set}|"
    return hashlib.sha256(f"{text}{s.segment_position}".encode()).hexdigest()


# --- claiming ------------------------------------------------------------------------------


def claim_ledger_work(
    session: Session,
    *,
    worker_id: str,
    lease_seconds: int,
    order_window_seconds: float = 60.0,
    now: dt.datetime | None = None,
) -> Receipt | None:
    """Lease the next receipt to apply, the smallest order key first, per sender: not while
    another file of that sender is being applied, and not while a file of that sender is still
    being validated (its place in the order is unknown until then) — unless this one has
    waited `order_window_seconds` since its 999, so a sender that never pauses is not starved.
    """
    now = now or utcnow()
    window_start = now - dt.timedelta(seconds=order_window_seconds)
    unvalidated = set(
        session.scalars(
            select(Receipt.partner_id)
            .where(Receipt.status.in_((Status.RECEIVED, Status.PROCESSING)))
            .distinct()
        ).all()
    )
    candidates = session.scalars(
        select(Receipt)
        .where(
            Receipt.status == Status.PROCESSED,
            Receipt.ledger_status == LedgerStatus.PENDING,
        )
        .order_by(Receipt.ledger_order, Receipt.received_at, Receipt.id)
        .limit(50)
    ).all()
    decided: set[int] = set()
    for receipt in candidates:
        if receipt.partner_id in decided:
            continue
        decided.add(receipt.partner_id)
        if receipt.partner_id in unvalidated and (
            receipt.processed_at is None or receipt.processed_at > window_start
        ):
            continue
        # Serialise per sender across processes (PostgreSQL row lock; SQLite is serial anyway).
        session.execute(
            select(Partner.id).where(Partner.id == receipt.partner_id).with_for_update()
        )
        busy = session.scalar(
            select(func.count())
            .select_from(Receipt)
            .where(
                Receipt.partner_id == receipt.partner_id,
                Receipt.ledger_status == LedgerStatus.PENDING,
                Receipt.id != receipt.id,
                Receipt.status == Status.PROCESSED,
                Receipt.lease_owner.is_not(None),
                Receipt.lease_expires_at > now,
            )
        )
        session.refresh(receipt)
        if busy or receipt.ledger_status != LedgerStatus.PENDING:
            continue
        if receipt.lease_owner and receipt.lease_expires_at and receipt.lease_expires_at > now:
            continue  # someone is applying it right now
        receipt.lease_owner = worker_id
        receipt.lease_expires_at = now + dt.timedelta(seconds=lease_seconds)
        receipt.ledger_attempts += 1
        repo.add_event(
            session,
            receipt.id,
            "ledger_claimed",
            f"attempt {receipt.ledger_attempts} by {worker_id} from member "
            f"{receipt.ledger_progress}",
        )
        return receipt
    return None


# --- applying ------------------------------------------------------------------------------


@dataclass
class _Run:
    """The facts of one receipt's run, fetched once."""

    receipt_id: str
    partner_id: int
    sha256: str
    blob_path: str
    config: RuleConfig
    sets: dict[SetKey, Decision]  # every 834 set of the file -> the gate's decision
    counts: dict[SetKey, tuple[int, int]] = field(default_factory=dict)  # subscribers, dependents
    set_hits: dict[SetKey, list[Hit]] = field(default_factory=dict)
    reconciliation_id: int | None = None
    items: int = 0  # reconciliation items stored so far (their next seq)
    dry_known: dict[str, LedgerView] = field(default_factory=dict)
    dry_subscribers: set[str] = field(default_factory=set)


def _gated_sets(session: Session, receipt_id: str) -> dict[SetKey, Decision]:
    """Every 834 set of the file with the gate's decision, as the worker recorded it."""
    rows = session.execute(
        select(
            Envelope.id,
            Group.seq,
            TransactionSet.seq,
            TransactionSet.gate,
            TransactionSet.gate_reason,
        )
        .join(Group, Group.envelope_id == Envelope.id)
        .join(TransactionSet, TransactionSet.group_id == Group.id)
        .where(Envelope.receipt_id == receipt_id, TransactionSet.st01 == "834")
    ).all()
    envelopes = session.scalars(
        select(Envelope.id).where(Envelope.receipt_id == receipt_id).order_by(Envelope.seq)
    ).all()
    ordinal = {env_id: n for n, env_id in enumerate(envelopes)}
    return {
        (ordinal[env_id], gseq, sseq): _decision(gate, reason)
        for env_id, gseq, sseq, gate, reason in rows
    }


_UNDECIDED = Decision(Disposition.NOT_APPLIED, "no gate decision recorded")


def _decision(gate: str | None, reason: str) -> Decision:
    if gate in {d.value for d in Disposition}:
        return Decision(Disposition(gate), reason)
    return _UNDECIDED


def _count_members(
    chunks: Iterator[bytes], accepted: dict[SetKey, Decision], max_segment_bytes: int
) -> dict[SetKey, tuple[int, int]]:
    """A parse-only pass: subscribers and dependents (INS01 Y / N) of each 834 set."""
    counts: dict[SetKey, list[int]] = {}
    envelope = group = tset = -1
    current: list[int] | None = None
    for event in read_events(chunks, max_segment_bytes=max_segment_bytes):
        if isinstance(event, Segment):
            if current is not None and event.tag == "INS":
                current[0 if event.element(1) == "Y" else 1] += 1
        elif isinstance(event, TransactionSetStart):
            tset += 1
            key = (envelope, group, tset)
            current = counts.setdefault(key, [0, 0]) if key in accepted else None
        elif isinstance(event, GroupStart):
            group, tset = group + 1, -1
        elif isinstance(event, InterchangeStart):
            envelope, group, tset = envelope + 1, -1, -1
    return {k: (v[0], v[1]) for k, v in counts.items()}


def _families(events: Iterator[MemberEvent]) -> Iterator[list[MemberEvent]]:
    """Consecutive members of one set sharing the subscriber's REF*0F, the subscriber first."""
    family: list[MemberEvent] = []
    for event in events:
        if family and (
            event.subscriber
            or event.subscriber_number != family[0].subscriber_number
            or _set_key(event) != _set_key(family[0])
            or len(family) >= MAX_FAMILY
        ):
            yield family
            family = []
        family.append(event)
    if family:
        yield family


def _set_key(event: MemberEvent) -> SetKey:
    s = event.source
    return (s.envelope, s.group, s.transaction_set)


def apply_receipt(
    gw: Gateway,
    receipt_id: str,
    worker_id: str,
    *,
    cancel: threading.Event | None = None,
    on_chunk: Callable[[], None] | None = None,
) -> str:
    """Apply (or reconcile) one leased receipt; returns its final ledger status."""
    settings = gw.settings

    def load(session: Session) -> tuple[_Run, int]:
        receipt = session.get(Receipt, receipt_id)
        if receipt is None or receipt.lease_owner != worker_id:
            raise LedgerAbandoned(receipt_id)
        partner = receipt.partner
        run = _Run(
            receipt_id=receipt.id,
            partner_id=partner.id,
            sha256=receipt.sha256,
            blob_path=receipt.blob_path,
            config=RuleConfig.parse(partner.rule_severities, partner.plan_ids),
            sets=_gated_sets(session, receipt.id),
        )
        run.reconciliation_id = session.scalar(
            select(Reconciliation.id).where(Reconciliation.receipt_id == receipt.id)
        )
        if run.reconciliation_id is not None:
            run.items = int(
                session.scalar(
                    select(func.count())
                    .select_from(ReconciliationItem)
                    .where(ReconciliationItem.reconciliation_id == run.reconciliation_id)
                )
                or 0
            )
        return run, receipt.ledger_progress

    run, progress = run_in_transaction(gw.reads, load)
    run.counts = _count_members(
        gw.blobs.chunks(run.blob_path), run.sets, settings.max_segment_bytes
    )
    events = extract_members(
        gw.blobs.chunks(run.blob_path),
        include=lambda key: key in run.sets,
        max_segment_bytes=settings.max_segment_bytes,
    )
    seq = 0
    batch: list[list[MemberEvent]] = []
    size = 0
    for family in _families(events):
        if seq < progress:  # committed by an earlier attempt (chunks end on family bounds)
            seq += len(family)
            continue
        batch.append(family)
        size += len(family)
        if size >= CHUNK_MEMBERS:
            seq = _commit_chunk(gw, run, worker_id, batch, seq)
            batch, size = [], 0
            crashpoint("ledger_chunk")
            if on_chunk is not None:
                on_chunk()
            if cancel is not None and cancel.is_set():
                raise LedgerAbandoned(receipt_id)
    if batch:
        seq = _commit_chunk(gw, run, worker_id, batch, seq)
    return run_in_transaction(gw.sessions, lambda s: _finish(s, run, worker_id))


def _commit_chunk(
    gw: Gateway, run: _Run, worker_id: str, families: list[list[MemberEvent]], seq: int
) -> int:
    def txn(session: Session) -> int:
        receipt = session.get(Receipt, run.receipt_id)
        if receipt is None or receipt.lease_owner != worker_id:
            raise LedgerAbandoned(run.receipt_id)
        if receipt.ledger_progress != seq:
            raise LedgerAbandoned(run.receipt_id)  # someone else applied this chunk
        applied, rejected, n = _Chunk(session, run, families).apply(seq)
        receipt.ledger_progress = n
        receipt.members_applied += applied
        receipt.members_business_rejected += rejected
        receipt.lease_expires_at = utcnow() + dt.timedelta(seconds=gw.settings.lease_seconds)
        return n

    return run_in_transaction(gw.sessions, txn)


def _view(member: LedgerMember | None) -> LedgerView | None:
    if member is None:
        return None
    return LedgerView(
        active=member.status == "active",
        policy_numbers=frozenset(c.policy_number for c in member.coverages if c.policy_number),
    )


class _Chunk:
    """One transaction's worth of families. What the rules need from the database is read in
    three queries up front, decisions are made in memory (kept current as members apply), and
    rows go out in bulk: a handful of statements per chunk, not per member."""

    def __init__(self, session: Session, run: _Run, families: list[list[MemberEvent]]) -> None:
        self.session, self.run, self.families = session, run, families
        keys = {member_key(e) for family in families for e in family}
        subscribers = {e.subscriber_number for f in families for e in f if e.subscriber_number}
        self.known: dict[str, LedgerMember] = {
            m.member_key: m
            for m in session.scalars(
                select(LedgerMember).where(
                    LedgerMember.partner_id == run.partner_id, LedgerMember.member_key.in_(keys)
                )
            )
        }
        self.seen: set[str] = set(
            session.scalars(
                select(MemberEventRow.member_key).where(
                    MemberEventRow.receipt_id == run.receipt_id,
                    MemberEventRow.member_key.in_(keys),
                )
            )
        )
        self.active_subscribers: set[str] = set(
            session.scalars(
                select(LedgerMember.subscriber_number).where(
                    LedgerMember.partner_id == run.partner_id,
                    LedgerMember.subscriber_number.in_(subscribers),
                    LedgerMember.subscriber.is_(True),
                    LedgerMember.status == "active",
                )
            )
        )
        # A dry run's would-be ledger: what earlier test members would have made of it.
        self.dry_known: dict[str, LedgerView] = run.dry_known
        self.dry_subscribers: set[str] = run.dry_subscribers

    def apply(self, seq: int) -> tuple[int, int, int]:
        rows: list[dict[str, object]] = []
        hits_of: list[list[Hit]] = []
        members: list[LedgerMember | None] = []
        events: list[MemberEvent] = []
        audits: list[tuple[MemberEvent, str]] = []
        for family in self.families:
            premium = family_premium(family)
            for event in family:
                key = member_key(event)
                row = self._row(event, key, seq + len(rows))
                member: LedgerMember | None = None
                hits: list[Hit] = []
                decision = self.run.sets.get(_set_key(event), _UNDECIDED)
                if decision.disposition is Disposition.NOT_APPLIED:
                    row["outcome"] = MemberOutcome.NOT_APPLIED
                    row["note"] = decision.reason[:200]
                elif decision.disposition is Disposition.DRY_RUN:
                    hits = self._rules(event, key, premium, dry_run=True)
                    would_reject = rejecting(hits, self.run.config)
                    row["outcome"] = (
                        MemberOutcome.WOULD_REJECT if would_reject else MemberOutcome.WOULD_APPLY
                    )
                    row["note"] = decision.reason[:200]
                    if not would_reject:
                        self._dry_apply(event, key)
                elif is_audit(event):
                    row["outcome"] = MemberOutcome.AUDITED
                    audits.append((event, key))
                else:
                    hits = self._rules(event, key, premium)
                    if rejecting(hits, self.run.config):
                        row["outcome"] = MemberOutcome.REJECTED
                    else:
                        row["outcome"] = MemberOutcome.APPLIED
                        member = _apply_member(
                            self.session, self.run, event, key, self.known.get(key)
                        )
                        self.known[key] = member
                        self._track_subscriber(event, member)
                self.seen.add(key)
                rows.append(row)
                hits_of.append(hits)
                members.append(member)
                events.append(event)
        self.session.flush()  # members and coverages get their ids
        for row, member in zip(rows, members, strict=True):
            row["member_id"] = (
                member.id
                if member is not None
                else (
                    self.known[str(row["member_key"])].id
                    if row["outcome"] == MemberOutcome.AUDITED and row["member_key"] in self.known
                    else None
                )
            )
        ids = list(
            self.session.scalars(
                insert(MemberEventRow).returning(MemberEventRow.id, sort_by_parameter_order=True),
                rows,
            )
        )
        findings: list[dict[str, object]] = []
        outbox: list[dict[str, object]] = []
        for event_id, row, hits, member, event in zip(
            ids, rows, hits_of, members, events, strict=True
        ):
            dry_run = row["outcome"] in (MemberOutcome.WOULD_APPLY, MemberOutcome.WOULD_REJECT)
            findings += [self._finding(event_id, event, hit, dry_run=dry_run) for hit in hits]
            if member is not None:
                member.last_event_id = event_id
                for cov in member.coverages:
                    if cov.updated_event_id is None:
                        cov.updated_event_id = event_id
                # Only what the gate let through reaches the core system.
                if self.run.sets[_set_key(event)].reaches_insurer:
                    outbox.append(self._delivery(event_id, event, row, hits))
        if findings:
            self.session.execute(insert(BusinessFinding), findings)
            for f in findings:
                if not f["dry_run"]:
                    BUSINESS_FINDINGS.labels(rule=f["rule"], severity=f["severity"]).inc()
        if outbox:
            self.session.execute(insert(CoreDelivery), outbox)
        for event, key in audits:
            _reconcile_member(self.session, self.run, event, key, self.known.get(key))
        self.session.flush()
        applied = sum(r["outcome"] == MemberOutcome.APPLIED for r in rows)
        rejected = sum(r["outcome"] == MemberOutcome.REJECTED for r in rows)
        return applied, rejected, seq + len(rows)

    def _rules(
        self, event: MemberEvent, key: str, premium: Decimal | None, *, dry_run: bool = False
    ) -> list[Hit]:
        ledger = _view(self.known.get(key))
        present = event.subscriber or (event.subscriber_number or "") in self.active_subscribers
        if dry_run:
            ledger = self.dry_known.get(key, ledger)
            present = present or (event.subscriber_number or "") in self.dry_subscribers
        facts = MemberFacts(
            ledger=ledger,
            subscriber_present=present,
            seen_in_file=key in self.seen,
            family_premium=premium,
        )
        try:
            return _set_level_hits(self.run, event) + member_rules(event, facts, self.run.config)
        except Exception as exc:  # a rule that cannot read member data must not fail the file
            log.error(
                "business_rules_raised", receipt_id=self.run.receipt_id, error=type(exc).__name__
            )
            return [unevaluable(event)]

    def _dry_apply(self, event: MemberEvent, key: str) -> None:
        """A dry run remembers what it would have applied, so the rest of the test file is
        judged as if it had been — without touching the ledger."""
        before = self.dry_known.get(key) or _view(self.known.get(key))
        policies = {c.group_or_policy_number for c in event.coverages if c.group_or_policy_number}
        self.dry_known[key] = LedgerView(
            active=event.maintenance_type.code != "024",
            policy_numbers=frozenset(policies | set(before.policy_numbers if before else ())),
        )
        if event.subscriber and event.subscriber_number:
            self.dry_subscribers.add(event.subscriber_number)

    def _track_subscriber(self, event: MemberEvent, member: LedgerMember) -> None:
        if event.subscriber and member.subscriber_number:
            if member.status == "active":
                self.active_subscribers.add(member.subscriber_number)
            else:
                self.active_subscribers.discard(member.subscriber_number)

    def _row(self, event: MemberEvent, key: str, seq: int) -> dict[str, object]:
        envelope, group, tset = _set_key(event)
        return {
            "partner_id": self.run.partner_id,
            "receipt_id": self.run.receipt_id,
            "seq": seq,
            "envelope_seq": envelope,
            "group_seq": group,
            "set_seq": tset,
            "isa13": event.source.isa13[:16],
            "gs06": event.source.gs06[:16],
            "st02": event.source.st02[:16],
            "segment_position": event.source.segment_position,
            "member_key": key,
            "subscriber_number": (event.subscriber_number or "")[:80],
            "policy_key": policy_key(event),
            "subscriber": event.subscriber,
            "relationship_code": event.relationship.code[:2],
            "maintenance_type": event.maintenance_type.code[:3],
            "maintenance_reason": event.maintenance_reason[:3],
            "note": "",
            "payload": event.model_dump_json(),
        }

    def _finding(
        self, event_id: int, event: MemberEvent, hit: Hit, *, dry_run: bool = False
    ) -> dict[str, object]:
        envelope, group, tset = _set_key(event)
        return {
            "receipt_id": self.run.receipt_id,
            "partner_id": self.run.partner_id,
            "event_id": event_id,
            "envelope_seq": envelope,
            "group_seq": group,
            "set_seq": tset,
            "st02": event.source.st02[:16],
            "rule": hit.rule,
            "snip": RULES[hit.rule].snip,
            "severity": self.run.config.severity(hit.rule).value,
            "message": hit.message,
            "segment_id": hit.segment_id,
            "segment_position": hit.segment_position,
            "element_position": hit.element_position,
            "dry_run": dry_run,
        }

    def _delivery(
        self, event_id: int, event: MemberEvent, row: dict[str, object], hits: list[Hit]
    ) -> dict[str, object]:
        ikey = idempotency_key(self.run.sha256, self.run.partner_id, event)
        payload = {
            "idempotency_key": ikey,
            "event_id": event_id,
            "receipt_id": self.run.receipt_id,
            "source": event.source.model_dump(mode="json"),
            "member_key": row["member_key"],
            "subscriber_number": event.subscriber_number,
            "policy_key": row["policy_key"],
            "maintenance_type": event.maintenance_type.code,
            "maintenance_reason": event.maintenance_reason,
            "warnings": [hit.rule for hit in hits],
            "member": event.model_dump(mode="json", exclude={"header", "source"}),
        }
        return {
            "event_id": event_id,
            "partner_id": self.run.partner_id,
            "idempotency_key": ikey,
            "payload": json.dumps(payload, sort_keys=True, separators=(",", ":")),
        }


def _set_level_hits(run: _Run, event: MemberEvent) -> list[Hit]:
    """qty-totals for the member's set; stored once (on the set's first member's run)."""
    key = _set_key(event)
    if key not in run.set_hits:
        subscribers, dependents = run.counts.get(key, (0, 0))
        run.set_hits[key] = [
            h
            for h in set_rules(event.header, subscribers, dependents)
            if run.config.severity(h.rule).value != "ignore"
        ]
    return run.set_hits[key]


def _address_json(address: Address | None) -> str:
    return address.model_dump_json() if address is not None else ""


def _apply_member(
    session: Session, run: _Run, event: MemberEvent, key: str, member: LedgerMember | None
) -> LedgerMember:
    now = utcnow()
    mtype = event.maintenance_type.code
    if member is None:
        member = LedgerMember(
            partner_id=run.partner_id,
            member_key=key,
            subscriber=event.subscriber,
            relationship_code=event.relationship.code[:2],
            status="active",
        )
        member.coverages = []
        session.add(member)
    member.subscriber = event.subscriber
    member.relationship_code = event.relationship.code[:2]
    member.subscriber_number = (event.subscriber_number or member.subscriber_number or "")[:80]
    explicit = next(
        (c.group_or_policy_number for c in event.coverages if c.group_or_policy_number),
        event.group_or_policy_number,
    )
    if explicit:  # a change without 2300 keeps the policy it has
        member.policy_key = explicit[:120]
    elif not member.policy_key:
        member.policy_key = policy_key(event)
    if event.name is not None:
        member.last_name = event.name.last[:80]
        member.first_name = event.name.first[:80]
        member.middle_name = event.name.middle[:80]
        if event.name.id:
            member.id_qualifier = event.name.id_qualifier[:2]
            member.id_value = event.name.id[:80]
    if event.birth_date is not None:
        member.birth_date = event.birth_date
    if event.gender:
        member.gender = event.gender[:1]
    if event.residence is not None:
        member.residence = _address_json(event.residence)
    if event.mailing is not None:
        member.mailing = _address_json(event.mailing)
    if event.contact:
        member.contact = json.dumps(event.contact, sort_keys=True)
    if event.reporting_categories:
        reporting = json.loads(member.reporting) if member.reporting else {}
        reporting.update(event.reporting_categories)
        member.reporting = json.dumps(reporting, sort_keys=True)
    if mtype in ("021", "025"):
        member.status = "active"
    elif mtype == "024":
        member.status = "terminated"
    member.updated_at = now

    lines = {c.insurance_line: c for c in member.coverages}
    premium = event.reporting_categories.get("PRE AMT 1")
    aptc = event.reporting_categories.get("APTC AMT")
    for cov in event.coverages:
        line = cov.insurance_line[:3]
        row = lines.get(line)
        if row is None:
            row = LedgerCoverage(insurance_line=line, status="active")
            member.coverages.append(row)
            lines[line] = row
        row.updated_event_id = None  # set to this event's id once it has one
        plan = cov.class_of_contract_code or cov.plan_coverage_description
        if plan:
            row.plan_id = plan[:80]
        if cov.group_or_policy_number:
            row.policy_number = cov.group_or_policy_number[:80]
        if cov.coverage_level:
            row.coverage_level = cov.coverage_level[:3]
        if cov.benefit_begin is not None:
            row.benefit_begin = cov.benefit_begin
        if cov.benefit_end is not None:
            row.benefit_end = cov.benefit_end
        elif cov.maintenance_type.code in ("021", "025") and mtype != "024":
            row.benefit_end = None
        ended = cov.maintenance_type.code == "024" or mtype == "024"
        row.status = "ended" if ended else "active"
        if premium is not None:
            row.premium = premium[:20]
        if aptc is not None:
            row.aptc = aptc[:20]
    if not event.coverages:
        if mtype == "024":
            end = event.eligibility_end or event.maintenance_effective
            for row in member.coverages:
                if row.status == "active":
                    row.status = "ended"
                    row.benefit_end = end or row.benefit_end
                    row.updated_event_id = None
        elif mtype == "025":
            for row in member.coverages:
                row.status = "active"
                row.updated_event_id = None
    return member


# --- reconciliation ------------------------------------------------------------------------


def compare(event: MemberEvent, member: LedgerMember) -> list[tuple[str, str, str]]:
    """(field, file value, ledger value) for every difference the audit can show."""
    out: list[tuple[str, str, str]] = []
    if event.relationship.code != member.relationship_code:
        out.append(("relationship", event.relationship.code, member.relationship_code))
    if member.status != "active":
        out.append(("status", "active (in the audit)", member.status))
    lines = {c.insurance_line: c for c in member.coverages}
    for cov in event.coverages:
        row = lines.get(cov.insurance_line)
        line = cov.insurance_line
        if row is None:
            out.append((f"{line} coverage", "present", "absent"))
            continue
        plan = cov.class_of_contract_code or cov.plan_coverage_description
        if plan and plan != row.plan_id:
            out.append((f"{line} plan", plan, row.plan_id))
        if cov.benefit_begin is not None and cov.benefit_begin != row.benefit_begin:
            out.append((f"{line} benefit_begin", str(cov.benefit_begin), _date(row.benefit_begin)))
        if cov.benefit_end is not None and cov.benefit_end != row.benefit_end:
            out.append((f"{line} benefit_end", str(cov.benefit_end), _date(row.benefit_end)))
        for name, field_name, stored in (
            ("PRE AMT 1", "premium", row.premium),
            ("APTC AMT", "aptc", row.aptc),
        ):
            sent = amount(event.reporting_categories.get(name))
            if sent is not None and sent != (amount(stored) or Decimal(0)):
                out.append((f"{line} {field_name}", str(sent), stored or "(none)"))
    return out


def _date(value: dt.date | None) -> str:
    return value.isoformat() if value is not None else "(none)"


def _reconciliation(session: Session, run: _Run) -> Reconciliation:
    if run.reconciliation_id is not None:
        return session.get_one(Reconciliation, run.reconciliation_id)
    rec = Reconciliation(receipt_id=run.receipt_id, partner_id=run.partner_id)
    session.add(rec)
    session.flush()
    run.reconciliation_id = rec.id
    return rec


def _add_item(session: Session, run: _Run, rec: Reconciliation, **values: object) -> None:
    session.add(ReconciliationItem(reconciliation_id=rec.id, seq=run.items, **values))
    run.items += 1


def _reconcile_member(
    session: Session, run: _Run, event: MemberEvent, key: str, member: LedgerMember | None
) -> None:
    rec = _reconciliation(session, run)
    rec.members_in_file += 1
    where = {"segment_position": event.source.segment_position, "st02": event.source.st02[:16]}
    if member is None:
        rec.missing_in_ledger += 1
        _add_item(session, run, rec, kind="missing_in_ledger", member_key=key, **where)
        return
    differences = compare(event, member)
    if not differences:
        rec.members_matched += 1
    for field_name, file_value, ledger_value in differences:
        rec.mismatches += 1
        _add_item(
            session,
            run,
            rec,
            kind="mismatch",
            member_key=key,
            field=field_name,
            file_value=file_value,
            ledger_value=ledger_value,
            **where,
        )


def _finish(session: Session, run: _Run, worker_id: str) -> str:
    receipt = session.get(Receipt, run.receipt_id)
    if receipt is None or receipt.lease_owner != worker_id:
        raise LedgerAbandoned(run.receipt_id)
    status = LedgerStatus.APPLIED
    if run.reconciliation_id is not None:
        rec = session.get_one(Reconciliation, run.reconciliation_id)
        missing = session.scalars(
            select(LedgerMember.member_key)
            .where(
                LedgerMember.partner_id == run.partner_id,
                LedgerMember.status == "active",
                ~exists().where(
                    MemberEventRow.receipt_id == run.receipt_id,
                    MemberEventRow.member_key == LedgerMember.member_key,
                ),
            )
            .order_by(LedgerMember.member_key)
        )
        base = run.items
        rows = [
            {
                "reconciliation_id": rec.id,
                "seq": base + n,
                "kind": "missing_in_file",
                "member_key": key,
                "field": "",
                "file_value": "",
                "ledger_value": "",
                "segment_position": None,
                "st02": "",
            }
            for n, key in enumerate(missing)
        ]
        if rows:
            session.execute(insert(ReconciliationItem), rows)
        rec.missing_in_file = len(rows)
    outcomes = set(
        session.scalars(
            select(MemberEventRow.outcome)
            .where(MemberEventRow.receipt_id == run.receipt_id)
            .distinct()
        )
    )
    if not outcomes & {MemberOutcome.APPLIED, MemberOutcome.REJECTED}:
        if MemberOutcome.AUDITED in outcomes:
            status = LedgerStatus.RECONCILED
        elif outcomes & {MemberOutcome.WOULD_APPLY, MemberOutcome.WOULD_REJECT}:
            status = LedgerStatus.DRY_RUN
        elif MemberOutcome.NOT_APPLIED in outcomes or not any(
            d.reaches_insurer for d in run.sets.values()
        ):
            status = LedgerStatus.NOT_APPLIED
    if receipt.partner.send_824 or receipt.partner.onboarding:
        _add_824s(session, receipt, dry_run=False)
        _add_824s(session, receipt, dry_run=True)
    receipt.ledger_status = status
    receipt.ledger_applied_at = utcnow()
    receipt.ledger_error = None
    receipt.lease_owner = None
    receipt.lease_expires_at = None
    repo.add_event(
        session,
        receipt.id,
        f"ledger_{status.value}",
        f"{receipt.members_applied} applied, {receipt.members_business_rejected} rejected by "
        "business rules",
    )
    return status.value


def _add_824s(session: Session, receipt: Receipt, *, dry_run: bool) -> None:
    """One 824 interchange per received interchange that has sets with business rejects: an
    ST*824 per such set (OTI TR when every member was rejected, else TE), a TED per reject.
    A dry run's 824 (what an onboarding sender's test file would get) is stored as its own
    kind, readable through the API and never delivered; a production 824 only when the partner
    asked for 824s."""
    from gateway.worker.pipeline import Job, ack_filename, job_of  # the worker's ack naming

    if not dry_run and not receipt.partner.send_824:
        return
    rejects = session.scalars(
        select(BusinessFinding)
        .where(
            BusinessFinding.receipt_id == receipt.id,
            BusinessFinding.severity == "reject",
            BusinessFinding.dry_run.is_(dry_run),
        )
        .order_by(BusinessFinding.id)
    ).all()
    if not rejects:
        return
    by_set: dict[SetKey, list[BusinessFinding]] = {}
    for f in rejects:
        by_set.setdefault((f.envelope_seq, f.group_seq, f.set_seq), []).append(f)
    envelopes = list(receipt.envelopes)
    job: Job = job_of(receipt)
    per_envelope: dict[int, list[SetAdvice]] = {}
    for key in sorted(by_set):
        envelope_seq, group_seq, set_seq = key
        envelope = envelopes[envelope_seq]
        group = envelope.groups[group_seq]
        tset = group.transaction_sets[set_seq]
        in_set = (
            MemberEventRow.receipt_id == receipt.id,
            MemberEventRow.envelope_seq == envelope_seq,
            MemberEventRow.group_seq == group_seq,
            MemberEventRow.set_seq == set_seq,
        )
        counts = dict(
            session.execute(
                select(MemberEventRow.outcome, func.count())
                .where(*in_set)
                .group_by(MemberEventRow.outcome)
            ).all()
        )
        first = session.scalar(
            select(MemberEventRow.payload).where(*in_set).order_by(MemberEventRow.seq).limit(1)
        )
        bgn02 = json.loads(first)["header"]["reference"] if first else ""
        rejected = int(
            counts.get(MemberOutcome.WOULD_REJECT if dry_run else MemberOutcome.REJECTED, 0)
        )
        total = sum(int(n) for n in counts.values())
        per_envelope.setdefault(envelope_seq, []).append(
            SetAdvice(
                st01=tset.st01,
                st02=tset.st02,
                gs06=group.gs06,
                gs01=group.gs01,
                gs08=group.gs08,
                gs04="",
                gs05="",
                bgn02=bgn02,
                action="TR" if rejected and rejected == total else "TE",
                errors=tuple(
                    BusinessError(
                        code=RULES[f.rule].ted01 if f.rule in RULES else "024",
                        message=f.message,  # the sender's own data; cut to TED02's 60
                        segment_id=f.segment_id,
                        segment_position=f.segment_position,
                        element_position=f.element_position,
                    )
                    for f in by_set[key]
                ),
                members_total=total,
                members_rejected=rejected,
            )
        )
    numbers = iter(repo.take_control_numbers(session, len(per_envelope)))
    now = utcnow()
    for envelope_seq, advices in per_envelope.items():
        envelope = envelopes[envelope_seq]
        group = envelope.groups[0]
        number = next(numbers)
        content = build_824(
            advices,
            control_number=number,
            now=now,
            sender=(envelope.receiver_qualifier, envelope.receiver_id),  # us, as addressed
            receiver=(envelope.sender_qualifier, envelope.sender_id),
            usage=envelope.usage or "P",
            gs02=group.gs03 or None,
            gs03=group.gs02 or None,
        )
        session.add(
            Ack(
                receipt_id=receipt.id,
                envelope_id=envelope.id,
                kind=DRY_RUN_824 if dry_run else "824",
                control_number=number,
                filename=ack_filename(job, envelope.isa13, DRY_RUN_824 if dry_run else "824"),
                content=content,
                sha256=hashlib.sha256(content).hexdigest(),
            )
        )
    repo.add_event(
        session,
        receipt.id,
        f"{DRY_RUN_824}_created" if dry_run else "824_created",
        f"{len(per_envelope)} interchange(s)",
    )


def release_ledger(
    session: Session, receipt_id: str, worker_id: str, *, error: str | None, max_attempts: int
) -> None:
    """Give the lease back: after an error with backoff, parked as failed at max_attempts."""
    receipt = session.get(Receipt, receipt_id)
    if receipt is None or receipt.lease_owner != worker_id:
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


def ledger_backlog(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Receipt)
            .where(Receipt.ledger_status == LedgerStatus.PENDING)
        )
        or 0
    )


def mark_pending(receipt: Receipt, head: list[bytes], has_834: bool) -> None:
    """Called as the 999 is stored: a file with 834 sets waits for the ledger stage, which
    applies what the gate let through and lists the rest as not applied (once: a reprocessed
    file that was applied before is not applied again)."""
    if has_834 and receipt.ledger_status is None:
        receipt.ledger_status = LedgerStatus.PENDING
        receipt.ledger_order = order_key(receipt.filename, head)


__all__ = [
    "LedgerAbandoned",
    "apply_receipt",
    "claim_ledger_work",
    "compare",
    "is_audit",
    "ledger_backlog",
    "mark_pending",
    "member_key",
    "order_key",
    "policy_key",
    "release_ledger",
]
