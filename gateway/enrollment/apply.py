"""Applying a leased receipt to the enrollment ledger: members stream from the blob (only the
file's 834 sets), a family at a time, in chunks of about `CHUNK_MEMBERS` members, each chunk
one transaction that also advances `ledger_progress` — a crash resumes after the last committed
chunk, and a unique constraint on the event's source makes a double apply impossible. What each
set's members may do is the gate's decision (`gateway.gate`), recorded when its 999 was stored:
apply (business rules, then the ledger and the core outbox), dry run (rules only, stored apart)
or not applied (listed with the reason). A SQLite writer never holds the lock for a whole
100,000-member file."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import fit, utcnow
from gateway.db.models import (
    BusinessFinding,
    CoreDelivery,
    LedgerCoverage,
    LedgerMember,
    LedgerStatus,
    MemberEventRow,
    MemberOutcome,
)
from gateway.db.session import run_in_transaction
from gateway.enrollment import repository as ledger_repo
from gateway.enrollment.advice import add_824s
from gateway.enrollment.codes import ACTIVATING, CoverageStatus, Maintenance, MemberStatus
from gateway.enrollment.events import Address, MemberEvent
from gateway.enrollment.extract import SetKey, extract_members
from gateway.enrollment.keys import idempotency_key, is_audit, member_key, policy_key, set_key
from gateway.enrollment.reconcile import Reconciler
from gateway.enrollment.rules import (
    RULES,
    Hit,
    LedgerView,
    MemberFacts,
    RuleConfig,
    Severity,
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

CHUNK_MEMBERS = 500
MAX_FAMILY = 200
"""A family (subscriber and dependents sharing REF*0F) longer than this is split: memory stays
bounded on hostile input. X220 families are a handful of members."""

log = get_logger(__name__)


class LedgerAbandoned(Exception):
    """Shutdown, or the lease was lost: stop between chunks; what committed stays."""


@dataclass
class Run:
    """The facts of one receipt's run, fetched once."""

    receipt_id: str
    partner_id: int
    sha256: str
    blob_path: str
    config: RuleConfig
    sets: dict[SetKey, Decision]  # every 834 set of the file -> the gate's decision
    reconciler: Reconciler
    counts: dict[SetKey, tuple[int, int]] = field(default_factory=dict)  # subscribers, dependents
    set_hits: dict[SetKey, list[Hit]] = field(default_factory=dict)
    dry_known: dict[str, LedgerView] = field(default_factory=dict)
    dry_subscribers: set[str] = field(default_factory=set)


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

    def load(session: Session) -> tuple[Run, int]:
        receipt = ledger_repo.leased(session, receipt_id, worker_id)
        if receipt is None:
            raise LedgerAbandoned(receipt_id)
        partner = receipt.partner
        reconciliation_id, items = ledger_repo.reconciliation_of(session, receipt.id)
        decisions, counts = ledger_repo.ledger_sets(session, receipt.id)
        run = Run(
            receipt_id=receipt.id,
            partner_id=partner.id,
            sha256=receipt.sha256,
            blob_path=receipt.blob_path,
            config=RuleConfig.parse(partner.rule_severities, partner.plan_ids),
            sets=decisions,
            reconciler=Reconciler(receipt.id, partner.id, reconciliation_id, items),
        )
        run.counts = counts or {}
        return run, receipt.ledger_progress

    run, progress = run_in_transaction(gw.reads, load)
    if run.sets and not run.counts:  # validated before sets kept their counts: count now
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
    return run_in_transaction(gw.sessions, lambda s: finish(s, run, worker_id))


def _commit_chunk(
    gw: Gateway, run: Run, worker_id: str, families: list[list[MemberEvent]], seq: int
) -> int:
    def txn(session: Session) -> int:
        receipt = ledger_repo.leased(session, run.receipt_id, worker_id)
        if receipt is None:
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
            or set_key(event) != set_key(family[0])
            or len(family) >= MAX_FAMILY
        ):
            yield family
            family = []
        family.append(event)
    if family:
        yield family


def _view(member: LedgerMember | None) -> LedgerView | None:
    if member is None:
        return None
    return LedgerView(
        active=member.status == MemberStatus.ACTIVE,
        policy_numbers=frozenset(c.policy_number for c in member.coverages if c.policy_number),
    )


class _Chunk:
    """One transaction's worth of families. What the rules need from the database is read in
    three queries up front, decisions are made in memory (kept current as members apply), and
    rows go out in bulk: a handful of statements per chunk, not per member."""

    def __init__(self, session: Session, run: Run, families: list[list[MemberEvent]]) -> None:
        self.session, self.run, self.families = session, run, families
        keys = {member_key(e) for family in families for e in family}
        subscribers = {e.subscriber_number for f in families for e in f if e.subscriber_number}
        self.known: dict[str, LedgerMember] = {
            m.member_key: m for m in ledger_repo.known_members(session, run.partner_id, keys)
        }
        self.seen = ledger_repo.keys_seen_in_file(session, run.receipt_id, keys)
        self.active_subscribers = ledger_repo.active_subscribers(
            session, run.partner_id, subscribers
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
                decision = self.run.sets.get(set_key(event), ledger_repo.UNDECIDED)
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
        ids = ledger_repo.insert_member_events(self.session, rows)
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
                if self.run.sets[set_key(event)].reaches_insurer:
                    outbox.append(self._delivery(event_id, event, row, hits))
        ledger_repo.insert_rows(self.session, BusinessFinding, findings)
        for f in findings:
            if not f["dry_run"]:
                BUSINESS_FINDINGS.labels(rule=f["rule"], severity=f["severity"]).inc()
        ledger_repo.insert_rows(self.session, CoreDelivery, outbox)
        for event, key in audits:
            self.run.reconciler.member(self.session, event, key, self.known.get(key))
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
            active=event.maintenance_type.code != Maintenance.TERMINATION,
            policy_numbers=frozenset(policies | set(before.policy_numbers if before else ())),
        )
        if event.subscriber and event.subscriber_number:
            self.dry_subscribers.add(event.subscriber_number)

    def _track_subscriber(self, event: MemberEvent, member: LedgerMember) -> None:
        if event.subscriber and member.subscriber_number:
            if member.status == MemberStatus.ACTIVE:
                self.active_subscribers.add(member.subscriber_number)
            else:
                self.active_subscribers.discard(member.subscriber_number)

    def _row(self, event: MemberEvent, key: str, seq: int) -> dict[str, object]:
        envelope, group, tset = set_key(event)
        return fit(
            MemberEventRow,
            {
                "partner_id": self.run.partner_id,
                "receipt_id": self.run.receipt_id,
                "seq": seq,
                "envelope_seq": envelope,
                "group_seq": group,
                "set_seq": tset,
                "isa13": event.source.isa13,
                "gs06": event.source.gs06,
                "st02": event.source.st02,
                "segment_position": event.source.segment_position,
                "member_key": key,
                "subscriber_number": event.subscriber_number or "",
                "policy_key": policy_key(event),
                "subscriber": event.subscriber,
                "relationship_code": event.relationship.code,
                "maintenance_type": event.maintenance_type.code,
                "maintenance_reason": event.maintenance_reason,
                "note": "",
                "payload": event.model_dump_json(),
            },
        )

    def _finding(
        self, event_id: int, event: MemberEvent, hit: Hit, *, dry_run: bool = False
    ) -> dict[str, object]:
        envelope, group, tset = set_key(event)
        return {
            "receipt_id": self.run.receipt_id,
            "partner_id": self.run.partner_id,
            "event_id": event_id,
            "envelope_seq": envelope,
            "group_seq": group,
            "set_seq": tset,
            "st02": event.source.st02[:16],  # BusinessFinding.st02
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


def _set_level_hits(run: Run, event: MemberEvent) -> list[Hit]:
    """qty-totals for the member's set; stored once (on the set's first member's run)."""
    key = set_key(event)
    if key not in run.set_hits:
        subscribers, dependents = run.counts.get(key, (0, 0))
        run.set_hits[key] = [
            h
            for h in set_rules(event.header, subscribers, dependents)
            if run.config.severity(h.rule) is not Severity.IGNORE
        ]
    return run.set_hits[key]


def _address_json(address: Address | None) -> str:
    return address.model_dump_json() if address is not None else ""


def _apply_member(
    session: Session, run: Run, event: MemberEvent, key: str, member: LedgerMember | None
) -> LedgerMember:
    now = utcnow()
    mtype = event.maintenance_type.code
    if member is None:
        member = LedgerMember(
            partner_id=run.partner_id,
            member_key=key,
            subscriber=event.subscriber,
            relationship_code=event.relationship.code[:2],
            status=MemberStatus.ACTIVE,
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
    if mtype in ACTIVATING:
        member.status = MemberStatus.ACTIVE
    elif mtype == Maintenance.TERMINATION:
        member.status = MemberStatus.TERMINATED
    member.updated_at = now

    lines = {c.insurance_line: c for c in member.coverages}
    premium = event.reporting_categories.get("PRE AMT 1")
    aptc = event.reporting_categories.get("APTC AMT")
    for cov in event.coverages:
        line = cov.insurance_line[:3]
        row = lines.get(line)
        if row is None:
            row = LedgerCoverage(insurance_line=line, status=CoverageStatus.ACTIVE)
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
        elif cov.maintenance_type.code in ACTIVATING and mtype != Maintenance.TERMINATION:
            row.benefit_end = None
        ended = Maintenance.TERMINATION in (cov.maintenance_type.code, mtype)
        row.status = CoverageStatus.ENDED if ended else CoverageStatus.ACTIVE
        if premium is not None:
            row.premium = premium[:20]
        if aptc is not None:
            row.aptc = aptc[:20]
    if not event.coverages:
        if mtype == Maintenance.TERMINATION:
            end = event.eligibility_end or event.maintenance_effective
            for row in member.coverages:
                if row.status == CoverageStatus.ACTIVE:
                    row.status = CoverageStatus.ENDED
                    row.benefit_end = end or row.benefit_end
                    row.updated_event_id = None
        elif mtype == Maintenance.REINSTATEMENT:
            for row in member.coverages:
                row.status = CoverageStatus.ACTIVE
                row.updated_event_id = None
    return member


def finish(session: Session, run: Run, worker_id: str) -> str:
    """The file's last step, in one transaction: the audit's missing members, the 824s, and
    the ledger status — applied, reconciled (an audit), dry_run or not_applied."""
    receipt = ledger_repo.leased(session, run.receipt_id, worker_id)
    if receipt is None:
        raise LedgerAbandoned(run.receipt_id)
    run.reconciler.finish(session)
    outcomes = ledger_repo.event_outcomes(session, run.receipt_id)
    status = LedgerStatus.APPLIED
    if not outcomes & {MemberOutcome.APPLIED, MemberOutcome.REJECTED}:
        if MemberOutcome.AUDITED in outcomes:
            status = LedgerStatus.RECONCILED
        elif outcomes & {MemberOutcome.WOULD_APPLY, MemberOutcome.WOULD_REJECT}:
            status = LedgerStatus.DRY_RUN
        elif MemberOutcome.NOT_APPLIED in outcomes or not any(
            d.reaches_insurer for d in run.sets.values()
        ):
            status = LedgerStatus.NOT_APPLIED
    add_824s(session, receipt, dry_run=False)
    if receipt.partner.onboarding:
        add_824s(session, receipt, dry_run=True)
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
