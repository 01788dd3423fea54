"""Applying a leased receipt to the enrollment ledger: members stream from the blob (only the
file's 834 sets), a family at a time, in chunks of about `CHUNK_MEMBERS` members, each chunk
one transaction that also advances `ledger_progress` — a crash resumes after the last committed
chunk, and a unique constraint on the event's source makes a double apply impossible. What each
set's members may do is the gate's decision (`gateway.gate`), recorded when its 999 was stored:
apply (business rules, then the ledger and the core outbox), dry run (rules only, stored apart)
or not applied (listed with the reason). A SQLite writer never holds the lock for a whole
100,000-member file."""

from __future__ import annotations

import copy
import datetime as dt
import gc
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import cast

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import fit, utcnow
from gateway.db.models import (
    BusinessFinding,
    CoreDelivery,
    LedgerCoverage,
    LedgerMember,
    LedgerPeriod,
    LedgerStatus,
    MemberEventRow,
    MemberOutcome,
)
from gateway.db.session import run_in_transaction
from gateway.enrollment import lifecycle
from gateway.enrollment import repository as ledger_repo
from gateway.enrollment.advice import add_824s
from gateway.enrollment.codes import (
    ACTIVATING,
    Maintenance,
    MemberStatus,
    priced_coverage,
    priced_line,
)
from gateway.enrollment.events import Address, MemberEvent, TransactionSetHeader
from gateway.enrollment.extract import SetKey, extract_members
from gateway.enrollment.filesets import FileSets, SetCounts
from gateway.enrollment.identity import (
    Holding,
    Person,
    conflicts,
    event_identity,
    identity_of,
    same_dependent,
)
from gateway.enrollment.keys import (
    idempotency_key,
    is_audit,
    keyed_by_digest,
    member_key,
    policy_key,
    prior_member_keys,
    set_key,
)
from gateway.enrollment.reconcile import Reconciler
from gateway.enrollment.repository import MemberRec
from gateway.enrollment.rules import (
    RULES,
    Hit,
    LedgerView,
    MemberFacts,
    RuleConfig,
    Severity,
    amount,
    family_premium,
    member_rules,
    rejecting,
    set_rules,
    unevaluable,
)
from gateway.faults import crashpoint
from gateway.gate import Disposition
from gateway.logging import get_logger
from gateway.metrics import BUSINESS_FINDINGS, LEDGER_OUT_OF_ORDER
from gateway.parallel import SPLIT_FROM_BYTES, FileSetMembers, pool, processes_for
from parsers.envelope import read_events
from parsers.events import GroupStart, InterchangeStart, Segment, TransactionSetStart
from validators.parallel import MEMBERS_PER_PART

CHUNK_MEMBERS = 500
ANALYZE_AFTER_MEMBERS = 5_000
MEMBERS_PER_BLOCK = MEMBERS_PER_PART // 2
"""A large set's members are read by the process pool in blocks of this many: half the
validator's blocks, so the three blocks in hand (one applying, two read ahead) stay small —
20,000 members applied, in process: peak RSS 174 -> 157 MB for the same CPU, within noise."""
"""A run that has written this many members refreshes the planner's statistics (PostgreSQL),
and again at each doubling: a large first file otherwise slows down as the ledger grows."""
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
    sets: FileSets  # every 834 set of the file -> the gate's decision
    reconciler: Reconciler
    counts: SetCounts = field(default_factory=lambda: FileSets().counts)  # per set
    # The set-level hits of the set being applied (its members come together, in file order):
    # one set's, not every set's — a file can hold a million sets.
    set_hits: tuple[SetKey, list[Hit]] | None = None
    dry_known: dict[str, LedgerView] = field(default_factory=dict)
    dry_subscribers: set[str] = field(default_factory=set)
    dry_enrollments: dict[str, list[lifecycle.Enrollment]] = field(default_factory=dict)
    partner_name: str = ""
    # What the chunk being committed changed in the dry run's state above, as it was before:
    # a retried transaction starts again from there (`rewind`), a committed one forgets it.
    _dry_before: dict[str, tuple[LedgerView | None, list[lifecycle.Enrollment] | None]] = field(
        default_factory=dict
    )
    _dry_subscribers_added: set[str] = field(default_factory=set)

    def before_dry_change(self, key: str) -> None:
        """Keep `key`'s dry-run state as the committed chunks left it, once per chunk."""
        if key not in self._dry_before:
            items = self.dry_enrollments.get(key)
            self._dry_before[key] = (
                self.dry_known.get(key),
                copy.deepcopy(items) if items is not None else None,
            )

    def add_dry_subscriber(self, number: str) -> None:
        if number not in self.dry_subscribers:
            self.dry_subscribers.add(number)
            self._dry_subscribers_added.add(number)

    def rewind(self) -> None:
        """Undo what a failed attempt of this chunk did to the dry run's state."""
        for key, (view, items) in self._dry_before.items():
            if view is None:
                self.dry_known.pop(key, None)
            else:
                self.dry_known[key] = view
            if items is None:
                self.dry_enrollments.pop(key, None)
            else:
                self.dry_enrollments[key] = items
        self.dry_subscribers -= self._dry_subscribers_added
        self.committed()

    def committed(self) -> None:
        self._dry_before.clear()
        self._dry_subscribers_added.clear()


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
        leased = ledger_repo.leased_run(session, receipt_id, worker_id)
        if leased is None:
            raise LedgerAbandoned(receipt_id)
        decisions = ledger_repo.ledger_sets(session, receipt_id)
        config = RuleConfig.parse(leased.rule_severities, leased.plan_ids)
        run = Run(
            receipt_id=receipt_id,
            partner_id=leased.partner_id,
            sha256=leased.sha256,
            blob_path=leased.blob_path,
            config=config,
            sets=decisions,
            reconciler=Reconciler(receipt_id, leased.partner_id, config),
            partner_name=leased.partner_name,
        )
        run.counts = decisions.counts
        return run, leased.ledger_progress

    run, progress = run_in_transaction(gw.reads, load)
    if run.sets and not run.counts:  # validated before sets kept their counts: count now
        run.counts = _count_members(
            gw.blobs.chunks(run.blob_path), run.sets, settings.max_segment_bytes
        )
    with fewer_collections():
        events = extract_members(
            gw.blobs.chunks(run.blob_path),
            include=lambda key: key in run.sets,
            max_segment_bytes=settings.max_segment_bytes,
            parts=_set_parts(gw, run.blob_path),
        )
        if run.config.keys_by_group:
            events = (_in_its_group(e) for e in events)
        seq = 0
        batch: list[list[MemberEvent]] = []
        size = 0
        analyze_at = ANALYZE_AFTER_MEMBERS  # then twice as many, four times…: a few per file
        for family in _families(events):
            if seq < progress:  # committed by an earlier attempt (chunks end on family bounds)
                seq += len(family)
                continue
            batch.append(family)
            size += len(family)
            if size >= CHUNK_MEMBERS:
                seq = _commit_chunk(gw, run, worker_id, batch, seq)
                batch, size = [], 0
                if seq - progress >= analyze_at:
                    run_in_transaction(gw.sessions, ledger_repo.refresh_statistics)
                    analyze_at *= 2
                crashpoint("ledger_chunk")
                if on_chunk is not None:
                    on_chunk()
                if cancel is not None and cancel.is_set():
                    raise LedgerAbandoned(receipt_id)
        if batch:
            seq = _commit_chunk(gw, run, worker_id, batch, seq)
        return run_in_transaction(gw.sessions, lambda s: finish(s, run, worker_id))


LEDGER_GC_THRESHOLDS = (50_000, 20, 20)
"""`gc.set_threshold` while files are applied: a file's members are millions of short-lived
objects without cycles, and Python's default (700, 10, 10) had the cyclic collector walk the
young objects every 700 allocations — a quarter of the stage's CPU (measured: 20,000 members,
8.3 -> 6.0 s applied, 6.1 -> 4.3 s audited). Memory is not at stake: objects without cycles
are freed at once whatever the thresholds."""

_gc_lock = threading.Lock()
_gc_users = 0
_gc_before: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """`LEDGER_GC_THRESHOLDS` while at least one file is being applied in this process; the
    thresholds it found are back when the last one ends."""
    global _gc_users, _gc_before
    with _gc_lock:
        if _gc_users == 0:
            _gc_before = gc.get_threshold()
            gc.set_threshold(*LEDGER_GC_THRESHOLDS)
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0:
                gc.set_threshold(*_gc_before)


def _set_parts(gw: Gateway, blob_path: str) -> FileSetMembers | None:
    """The large sets of a large file read by the process pool, in blocks, while this thread
    applies (the validator's split: `EDI834_VALIDATION_PROCESSES`, files of 4 MB and more)."""
    processes = processes_for(gw.settings.validation_processes)
    if processes <= 1:
        return None
    path = gw.blobs.path(blob_path)
    if path.stat().st_size < SPLIT_FROM_BYTES:
        return None
    parts = FileSetMembers(
        path,
        pool(processes),
        max_segment_bytes=gw.settings.max_segment_bytes,
        members_per_part=MEMBERS_PER_BLOCK,
    )
    return parts if parts.split else None


def _commit_chunk(
    gw: Gateway, run: Run, worker_id: str, families: list[list[MemberEvent]], seq: int
) -> int:
    def txn(session: Session) -> int:
        run.rewind()  # a retry starts from what the committed chunks left
        progress = ledger_repo.lock_for_chunk(session, run.receipt_id, worker_id)
        if progress is None:
            raise LedgerAbandoned(run.receipt_id)
        if progress != seq:
            raise LedgerAbandoned(run.receipt_id)  # someone else applied this chunk
        applied, rejected, n = _Chunk(session, run, families, first=seq == 0).apply(seq)
        until = utcnow() + dt.timedelta(seconds=gw.settings.lease_seconds)
        ledger_repo.chunk_done(session, run.receipt_id, n, applied, rejected, until)
        return n

    n = run_in_transaction(gw.sessions, txn)
    run.committed()
    return n


def _count_members(
    chunks: Iterator[bytes], accepted: FileSets, max_segment_bytes: int
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


def _view(member: MemberRec | None) -> LedgerView | None:
    if member is None:
        return None
    return LedgerView(
        active=member.status == MemberStatus.ACTIVE,
        policy_numbers=frozenset(e.policy for e in member.enrollments if e.policy),
    )


@dataclass
class _Decided:
    """What a chunk decided, member by member in file order: the history rows, each one's
    business findings, what applying it changed (None when not applied) and its event; and
    the audited members to reconcile."""

    rows: list[dict[str, object]] = field(default_factory=list)
    hits_of: list[list[Hit]] = field(default_factory=list)
    changes: list[_Applied | None] = field(default_factory=list)
    events: list[MemberEvent] = field(default_factory=list)
    audits: list[tuple[MemberEvent, str]] = field(default_factory=list)


class _Chunk:
    """One transaction's worth of families. What the rules need from the database is read in
    three queries up front, decisions are made in memory (kept current as members apply), and
    rows go out in bulk: a handful of statements per chunk, not per member."""

    def __init__(
        self, session: Session, run: Run, families: list[list[MemberEvent]], *, first: bool
    ) -> None:
        self.session, self.run, self.families = session, run, families
        self.ref17 = ref17 = run.config.ref17_member_id
        self.computed: dict[int, str] = {
            id(e): member_key(e, ref17=ref17) for f in families for e in f
        }
        keys = set(self.computed.values())
        keys |= {k for f in families for e in f for k in prior_member_keys(e, ref17=ref17)}
        subscribers = {e.subscriber_number for f in families for e in f if e.subscriber_number}
        self.known: dict[str, MemberRec] = {
            m.member_key: m for m in ledger_repo.load_members(session, run.partner_id, keys)
        }
        # A dependent without REF*17 whose key the ledger does not hold may be held under the
        # key it had before a correction: its subscriber's dependents are the candidates.
        self.aliases: dict[str, str] = {}  # key the event computes -> the ledger's key
        self.dependents: dict[str, list[MemberRec]] = {}  # REF*0F -> digest-keyed dependents
        orphans = {
            e.subscriber_number
            for f in families
            for e in f
            if e.subscriber_number
            and keyed_by_digest(e, ref17=ref17)
            and self.computed[id(e)] not in self.known
        }
        if orphans:
            loaded = {m.id for m in self.known.values() if m.id is not None}
            for other in ledger_repo.dependents_of(session, run.partner_id, orphans, skip=loaded):
                self.known.setdefault(other.member_key, other)
        # A dependent sent without any REF*1L is on its subscriber's policy (the TR3 makes the
        # 2000 REF*1L situational; employers send it on the subscriber only): the subscribers
        # of such dependents, those this chunk does not bring, are looked up.
        without_policy = {
            e.subscriber_number
            for f in families
            for e in f
            if not e.subscriber and e.subscriber_number and not _names_a_policy(e)
        } - {e.subscriber_number for f in families for e in f if e.subscriber}
        if without_policy:
            loaded = {m.id for m in self.known.values() if m.id is not None}
            for other in ledger_repo.subscribers_of(
                session, run.partner_id, without_policy, skip=loaded
            ):
                self.known.setdefault(other.member_key, other)
        self.subscriber_of: dict[str, MemberRec] = {}  # REF*0F -> the subscriber's record
        for m in self.known.values():
            self._index_dependent(m)
        keys |= {self._key(e) for f in families for e in f}
        # The file's first chunk: none of its members is recorded yet (progress is never
        # reset), so no look-up — for a one-member file, the only chunk.
        # What this file already sent for its members (member-twice-in-file): this chunk's
        # member JSON by key, and earlier chunks' (parsed, a rare look-up: a member twice).
        self.sent: dict[str, list[str]] = {}
        self.sent_before: dict[str, list[dict[str, object]]] = (
            {} if first else ledger_repo.transactions_seen_in_file(session, run.receipt_id, keys)
        )
        self.covered_until = ledger_repo.subscribers_covered_until(
            session, run.partner_id, subscribers
        )
        # A dry run's would-be ledger: what earlier test members would have made of it.
        self.dry_known: dict[str, LedgerView] = run.dry_known
        self.dry_subscribers: set[str] = run.dry_subscribers
        # Who else holds coverage: the people this chunk adds, looked up once.
        adds = {
            i
            for f in families
            for e in f
            if e.maintenance_type.code == Maintenance.ADDITION and (i := event_identity(e))
        }
        self.holdings: dict[dt.date, list[tuple[Person, Holding]]] = {}
        for person, holding in ledger_repo.holdings(session, adds):
            self.holdings.setdefault(person.birth, []).append((person, holding))
        # What the chunk changed, for `_write`: members, enrollments and periods (by object),
        # each with the index of the last member event that changed it.
        self.members_changed: dict[str, int] = {}
        self.enrollments_changed: dict[int, tuple[lifecycle.Enrollment, MemberRec, int]] = {}
        self.periods_changed: dict[int, tuple[lifecycle.Period, lifecycle.Enrollment, int]] = {}
        # JSON written once per member (history and core payloads) and once per set's header.
        self.member_json: dict[int, str] = {}
        self.header_json: dict[int, tuple[TransactionSetHeader, str]] = {}
        # Who is on the policies this chunk's subscribers hold (a cascade's reach): the stored
        # members looked up once, and kept current as this chunk enrolls members.
        # By family (REF*0F) and enrollment (line, policy, plan year): an employer's file
        # carries the group's number in REF*1L for every employee, and a policy number alone
        # reached the whole group (one employee's termination ended it; premium-total added up
        # every family).
        self.on_policy: dict[tuple[str, str, str, int], set[str]] = {}
        policies = {
            p
            for f in families
            for e in f
            if e.subscriber
            for p in (
                *(c.group_or_policy_number for c in e.coverages),
                e.group_or_policy_number,
                policy_key(e),
            )
            if p
        }
        policies |= {m.policy_key for m in self.known.values() if m.subscriber and m.policy_key}
        # A cascade reaches the subscriber's own family only (its REF*0F): an employer's file
        # carries the group's number in REF*1L for every employee, and one employee's
        # termination ended the whole group.
        families_of = {
            e.subscriber_number for f in families for e in f if e.subscriber and e.subscriber_number
        }
        families_of |= {
            m.subscriber_number for m in self.known.values() if m.subscriber and m.subscriber_number
        }
        loaded = {m.id for m in self.known.values() if m.id is not None}
        for other in ledger_repo.policy_members(
            session, run.partner_id, policies, families_of, skip=loaded
        ):
            self.known.setdefault(other.member_key, other)
        for other in self.known.values():
            for item in other.enrollments:
                if item.policy in policies:
                    where = (other.subscriber_number, item.line, item.policy, item.plan_year)
                    self.on_policy.setdefault(where, set()).add(other.member_key)

    def _index_dependent(self, member: MemberRec) -> None:
        if member.subscriber and member.subscriber_number:
            self.subscriber_of[member.subscriber_number] = member
        if not member.subscriber and member.member_key.startswith(
            f"{member.subscriber_number[:99]}:"
        ):
            self.dependents.setdefault(member.subscriber_number, []).append(member)

    def _key(self, event: MemberEvent) -> str:
        """The member's key in the ledger: the one it computes (`member_key`), else — for a
        dependent without REF*17 — the key the same person already has: by its 2100B's prior
        identity, else `same_dependent` among its subscriber's dependents."""
        key = self.computed.get(id(event)) or member_key(event, ref17=self.ref17)
        if key in self.known or not keyed_by_digest(event, ref17=self.ref17):
            return key
        found = self.aliases.get(key)
        if found is None:
            found = next(
                (k for k in prior_member_keys(event, ref17=self.ref17) if k in self.known), None
            )
        if found is None:
            subscriber = (event.subscriber_number or "")[:80]
            same = same_dependent(event, self.dependents.get(subscriber, ()))
            found = same.member_key if same is not None else None
        if found is None:
            return key
        self.aliases[key] = found
        return found

    def apply(self, seq: int) -> tuple[int, int, int]:
        d = _Decided()
        self._decide(seq, d)
        self._write(d)
        applied_n = sum(r["outcome"] == MemberOutcome.APPLIED for r in d.rows)
        rejected = sum(r["outcome"] == MemberOutcome.REJECTED for r in d.rows)
        return applied_n, rejected, seq + len(d.rows)

    def _decide(self, seq: int, d: _Decided) -> None:
        rows, hits_of, changes, events, audits = d.rows, d.hits_of, d.changes, d.events, d.audits
        for family in self.families:
            premium = self._policy_premium(family)
            for event in family:
                key = self._key(event)
                row = self._row(event, key, seq + len(rows))
                applied: _Applied | None = None
                hits: list[Hit] = []
                decision = self.run.sets.get(set_key(event), ledger_repo.UNDECIDED)
                seen = self._sent_before(key, event)
                if decision.disposition is Disposition.NOT_APPLIED:
                    row["outcome"] = MemberOutcome.NOT_APPLIED
                    row["note"] = decision.reason[:200]
                elif decision.disposition is Disposition.DRY_RUN:
                    hits = self._rules(event, key, premium, seen=seen, dry_run=True)
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
                    hits = self._rules(event, key, premium, seen=seen)
                    if rejecting(hits, self.run.config):
                        row["outcome"] = MemberOutcome.REJECTED
                    else:
                        row["outcome"] = MemberOutcome.APPLIED
                        applied = self._apply(event, key, len(rows))
                        self._track_subscriber(event, applied.member)
                        self._remember_person(event, key)
                self.sent.setdefault(key, []).append(self.member_json[id(event)])
                rows.append(row)
                hits_of.append(hits)
                changes.append(applied)
                events.append(event)

    def _write(self, d: _Decided) -> None:
        """The chunk's rows in bulk: new members (their ids), the member events, then every
        changed member, enrollment and period, each stamped with the last event that changed
        it; the business findings and the core outbox."""
        rows, hits_of, changes, events, audits = d.rows, d.hits_of, d.changes, d.events, d.audits
        session = self.session
        # Ids first, so that a new member is written once, naming its last event.
        event_ids = ledger_repo.allocate_ids(session, MemberEventRow, len(rows))
        new = [k for k in self.members_changed if self.known[k].id is None]
        for k, member_id in zip(
            new, ledger_repo.allocate_ids(session, LedgerMember, len(new)), strict=True
        ):
            self.known[k].id = member_id
        if new:
            ledger_repo.insert_with_ids(
                session,
                LedgerMember,
                [
                    {**self.known[k].values(), "last_event_id": event_ids[self.members_changed[k]]}
                    for k in new
                ],
                [cast(int, self.known[k].id) for k in new],
            )
        for row, applied in zip(rows, changes, strict=True):
            rec = applied.member if applied is not None else None
            if rec is None and row["outcome"] == MemberOutcome.AUDITED:
                rec = self.known.get(str(row["member_key"]))
            row["member_id"] = rec.id if rec is not None else None
        ledger_repo.insert_with_ids(session, MemberEventRow, rows, event_ids)
        fresh = set(new)
        changed = [(k, n) for k, n in self.members_changed.items() if k not in fresh]
        if changed:
            session.execute(
                update(LedgerMember),
                [
                    {
                        "id": self.known[k].id,
                        **self.known[k].values(),
                        "last_event_id": event_ids[n],
                    }
                    for k, n in changed
                ],
            )
        self._write_enrollments(event_ids)
        findings: list[dict[str, object]] = []
        outbox: list[dict[str, object]] = []
        for event_id, row, hits, applied, event in zip(
            event_ids, rows, hits_of, changes, events, strict=True
        ):
            dry_run = row["outcome"] in (MemberOutcome.WOULD_APPLY, MemberOutcome.WOULD_REJECT)
            findings += [self._finding(event_id, event, hit, dry_run=dry_run) for hit in hits]
            # Only what the gate let through reaches the core system.
            if applied is not None and self.run.sets[set_key(event)].reaches_insurer:
                outbox.append(self._delivery(event_id, event, row, hits, applied))
        ledger_repo.insert_rows(session, BusinessFinding, findings)
        for f in findings:
            if not f["dry_run"]:
                BUSINESS_FINDINGS.labels(rule=f["rule"], severity=f["severity"]).inc()
        if outbox:
            first = ledger_repo.take_core_seqs(session, self.run.partner_id, len(outbox))
            for n, delivery in enumerate(outbox):
                delivery["partner_seq"] = seq = first + n
                head, member = cast(tuple[str, str], delivery.pop("payload"))
                delivery["payload"] = f'{head[:-1]},"partner_seq":{seq},"member":{member}}}'
        ledger_repo.insert_rows(session, CoreDelivery, outbox)
        for event, key in audits:
            rec = self.known.get(key)
            self.run.reconciler.member(session, event, key, rec, rec.enrollments if rec else [])
        self.run.reconciler.flush(session)
        session.flush()

    def _write_enrollments(self, event_ids: list[int]) -> None:
        session = self.session
        # Periods a re-add dropped go first: (coverage, begin) is unique.
        dropped = [
            pid
            for item, owner, _ in self.enrollments_changed.values()
            if item.id is not None
            for pid in owner.period_ids.get(item.id, set())
            - {p.id for p in item.periods if p.id is not None}
        ]
        if dropped:
            session.execute(delete(LedgerPeriod).where(LedgerPeriod.id.in_(dropped)))
        new = [(i, o, n) for i, o, n in self.enrollments_changed.values() if i.id is None]
        old = [(i, o, n) for i, o, n in self.enrollments_changed.values() if i.id is not None]
        if new:
            ids = ledger_repo.insert_returning_ids(
                session, LedgerCoverage, [_coverage_values(i, o, event_ids[n]) for i, o, n in new]
            )
            for (item, _, _), cid in zip(new, ids, strict=True):
                item.id = cid
        if old:
            session.execute(
                update(LedgerCoverage),
                [{"id": i.id, **_coverage_values(i, o, event_ids[n])} for i, o, n in old],
            )
        periods_new: list[tuple[lifecycle.Period, dict[str, object]]] = []
        periods_old: list[dict[str, object]] = []
        for period, item, n in self.periods_changed.values():
            if not any(p is period for p in item.periods):
                continue  # dropped again by a later event of the chunk (a re-add)
            values: dict[str, object] = {
                "coverage_id": item.id,
                "begin": period.begin,
                "event_id": event_ids[n],
                **{k: fit_term(k, period.terms.get(k, "")) for k in lifecycle.TERMS},
            }
            if period.id is None:
                periods_new.append((period, values))
            else:
                periods_old.append({"id": period.id, **values})
        if periods_old:
            session.execute(update(LedgerPeriod), periods_old)
        if periods_new:
            ids = ledger_repo.insert_returning_ids(
                session, LedgerPeriod, [v for _, v in periods_new]
            )
            for (period, _), pid in zip(periods_new, ids, strict=True):
                period.id = pid

    # --- the lifecycle ---------------------------------------------------------------------

    def _enrollments_of(self, key: str) -> list[lifecycle.Enrollment]:
        """The member's enrollments (read with the member; kept current as events apply)."""
        member = self.known.get(key)
        return member.enrollments if member is not None else []

    def _policy_fallback(self, event: MemberEvent, key: str) -> str:
        """The policy of an event's coverage that names none: the member's (as first
        recorded); for a new dependent sent without any REF*1L, its subscriber's; else the
        subscriber's REF*0F (`policy_key`)."""
        member = self.known.get(key)
        if member is not None and member.policy_key:
            return member.policy_key
        if not event.subscriber and not _names_a_policy(event):
            holder = self.subscriber_of.get(event.subscriber_number or "")
            if holder is not None and holder.policy_key:
                return holder.policy_key
        return policy_key(event)

    def _apply(self, event: MemberEvent, key: str, index: int) -> _Applied:
        before = self.known.get(key)
        member = _apply_member(self.run, event, key, before, self._policy_fallback(event, key))
        self.known[key] = member
        if before is None or member.subscriber:
            self._index_dependent(member)
        self.members_changed[key] = index
        enrollments = member.enrollments
        outcome = lifecycle.apply_event(
            enrollments,
            event,
            policy_fallback=self._policy_fallback(event, key),
            plan_year=self.run.config.plan_year_for(event.header),
            effectuate_on_add=self.run.config.effectuate_on_add,
        )
        applied = _Applied(member)
        for item in outcome.touched:
            self._changed(member, item, index)
        family = member.subscriber_number
        for c in outcome.cascades if family else ():
            for other_key in sorted(
                self.on_policy.get((family, c.line, c.policy, c.plan_year), ())
            ):
                if other_key == key:
                    continue
                other = self.known[other_key]
                ended = lifecycle.cascade(other.enrollments, c)
                for item in ended:
                    self._changed(other, item, index)
                    applied.cascade.append(
                        {
                            "member_key": other.member_key,
                            "line": item.line,
                            "policy": item.policy,
                            "plan_year": item.plan_year,
                            "state": item.state.value,
                            "end": item.end.isoformat() if item.end else None,
                        }
                    )
                if ended:
                    _set_status(other, other.enrollments, None)
                    self.members_changed[other_key] = index
                    crashpoint("ledger_cascade")  # a dependent ended, the chunk not committed
        _set_status(member, enrollments, event)
        applied.enrollments = [
            _enrollment_json(item) for item in outcome.touched if item in enrollments
        ]
        return applied

    def _changed(self, member: MemberRec, item: lifecycle.Enrollment, index: int) -> None:
        """Note what event `index` changed in one enrollment, for `_write`."""
        self.enrollments_changed[id(item)] = (item, member, index)
        where = (member.subscriber_number, item.line, item.policy, item.plan_year)
        self.on_policy.setdefault(where, set()).add(member.member_key)
        for period in item.periods:
            if period.dirty:
                if period.id is None and item.id is not None:
                    crashpoint("ledger_period_split")  # a stored enrollment gets a new period
                self.periods_changed[id(period)] = (period, item, index)
                period.dirty = False
        item.dirty = False

    def _rules(
        self,
        event: MemberEvent,
        key: str,
        premium: Decimal | None,
        *,
        seen: bool,
        dry_run: bool = False,
    ) -> list[Hit]:
        ledger = _view(self.known.get(key))
        present = event.subscriber or self._subscriber_covered(event)
        enrollments = self._enrollments_of(key)
        if dry_run:
            ledger = self.dry_known.get(key, ledger)
            present = present or (event.subscriber_number or "") in self.dry_subscribers
            enrollments = self.run.dry_enrollments.get(key, enrollments)
        facts = MemberFacts(
            ledger=ledger,
            subscriber_present=present,
            seen_in_file=seen,
            family_premium=premium,
        )
        try:
            refusals = lifecycle.plan_event(
                enrollments,
                event,
                policy_fallback=self._policy_fallback(event, key),
                plan_year=self.run.config.plan_year_for(event.header),
            )
            hits = _set_level_hits(self.run, event) + member_rules(event, facts, self.run.config)
            hits += self._identity_hits(event, key)
            hits += self._key_conflict(event, key)
            fired = {h.rule for h in hits}  # e.g. unknown-member: said once, by the rules
            return hits + [
                Hit(r.rule, r.message, r.segment_id, r.segment_position, r.element_position)
                for r in refusals
                if r.rule not in fired and self.run.config.severity(r.rule) is not Severity.IGNORE
            ]
        except Exception as exc:  # a rule that cannot read member data must not fail the file
            log.error(
                "business_rules_raised", receipt_id=self.run.receipt_id, error=type(exc).__name__
            )
            return [unevaluable(event)]

    def _key_conflict(self, event: MemberEvent, key: str) -> list[Hit]:
        """An addition under a member key (its REF*17, else its REF*0F) that another person
        holds — another SSN, or another birth date — would merge two people into one member:
        an employer's REF*17 (a reporting category) read as a member id did, silently."""
        if self.run.config.severity("member-key-conflict") is Severity.IGNORE:
            return []
        held = self.known.get(key)
        if held is None or event.maintenance_type.code != Maintenance.ADDITION:
            return []
        new = event_identity(event)
        old = identity_of(
            held.id_qualifier, held.id_value, held.last_name, held.first_name, held.birth_date
        )
        if new is None or old is None:
            return []
        if new.birth == old.birth and not (new.ssn and old.ssn and new.ssn != old.ssn):
            return []
        hint = (
            " (a REF*17 shared by several people: partner rules --ref17 category)"
            if (self.ref17 and event.client_reporting_category)
            else ""
        )
        return [
            Hit(
                "member-key-conflict",
                f"member {key[:40]} is another person in the ledger (another "
                + ("SSN" if new.birth == old.birth else "birth date")
                + f"){hint}",
                "NM1",
                None,
            )
        ]

    def _policy_premium(self, family: list[MemberEvent]) -> Decimal | None:
        """Σ PRE AMT 1 for the subscriber's PRE AMT TOT: of the family's members in this set,
        and of the members the ledger holds on the same policy (priced line, plan year) who are
        not in it, at their premium in force on the change's date — an exchange that sends
        only the changed member still sends the policy's total. None when no member sends
        PRE AMT 1."""
        sent = family_premium(family)
        subscriber = family[0]
        if sent is None or not subscriber.subscriber:
            return sent
        where = self._priced_policy(subscriber)
        if where is None:
            return sent
        line, policy, day = where
        year = self.run.config.plan_year_for(subscriber.header).of(day)
        present = {self._key(e) for e in family}
        others = Decimal(0)
        number = subscriber.subscriber_number
        for key in self.on_policy.get((number, line, policy, year), ()) if number else ():
            member = self.known.get(key)
            if key in present or member is None:
                continue
            for item in member.enrollments:
                if (item.line, item.policy, item.plan_year) == (line, policy, year):
                    terms = item.terms_on(day)
                    others += (amount(terms.get("premium")) if terms else None) or Decimal(0)
        return sent + others

    def _priced_policy(self, subscriber: MemberEvent) -> tuple[str, str, dt.date] | None:
        """(line, policy, date) the subscriber's 2750 amounts are for: its 2300 loops' priced
        line, or — a change without 2300, keyed by the 2000 REF*1L — the priced line of what
        it holds on that policy; the date the change takes effect (else the coverage's begin)."""
        key = member_key(subscriber, ref17=self.ref17)
        fallback = self._policy_fallback(subscriber, key)
        day = lifecycle.event_effective(subscriber)
        cov = priced_coverage(subscriber.coverages)
        if cov is not None:
            day = day or cov.benefit_begin
            if day is None:
                return None
            return cov.insurance_line[:3], lifecycle.policy_of(cov, subscriber, fallback), day
        policy = (subscriber.group_or_policy_number or fallback)[:80]
        if day is None:
            return None
        year = self.run.config.plan_year_for(subscriber.header).of(day)
        held = [
            e.line
            for e in self._enrollments_of(key)
            if e.policy == policy and e.plan_year == year and e.covers(day, day)
        ]
        line = priced_line(held)
        return (line, policy, day) if line is not None else None

    def _identity_hits(self, event: MemberEvent, key: str) -> list[Hit]:
        config = self.run.config
        if all(config.severity(r) is Severity.IGNORE for r in _IDENTITY_RULES.values()):
            return []
        ident = event_identity(event)
        if ident is None or event.maintenance_type.code != Maintenance.ADDITION:
            return []
        found = conflicts(event, key, self.run.partner_id, self._held_now(ident.birth))
        hits = []
        for c in found:
            rule = _IDENTITY_RULES[c.elsewhere]
            if config.severity(rule) is not Severity.IGNORE:
                hits.append(Hit(rule, c.message, "HD", c.segment_position, None, c.operator_note))
        return hits

    def _held_now(self, birth: dt.date) -> list[tuple[Person, Holding]]:
        """Who holds coverage now, among those born that day: as the ledger had it when the
        chunk began, but for this sender's members the chunk has since changed — their
        enrollments in force now. A member id terminated earlier in the same file holds
        nothing from its end on (the same person re-added under a new id was flagged)."""
        out: list[tuple[Person, Holding]] = []
        seen: set[str] = set()
        partner_id = self.run.partner_id
        for person, h in self.holdings.get(birth, []):
            if h.partner_id != partner_id or h.member_key not in self.members_changed:
                out.append((person, h))
                continue
            if h.member_key in seen:
                continue
            seen.add(h.member_key)
            out += [
                (
                    person,
                    Holding(partner_id, h.partner, h.member_key, e.line, e.policy, e.begin, e.end),
                )
                for e in self.known[h.member_key].enrollments
                if e.in_force
            ]
        return out

    def _remember_person(self, event: MemberEvent, key: str) -> None:
        """An applied addition holds coverage for the rest of this chunk (its look-up of the
        ledger was made before; the next chunk's sees it committed)."""
        ident = event_identity(event)
        if ident is None or event.maintenance_type.code != Maintenance.ADDITION:
            return
        for cov in event.coverages:
            holding = Holding(
                self.run.partner_id,
                self.run.partner_name,
                key,
                cov.insurance_line[:3],
                cov.group_or_policy_number or "",
                cov.benefit_begin,
                cov.benefit_end,
            )
            self.holdings.setdefault(ident.birth, []).append((ident, holding))

    def _dry_apply(self, event: MemberEvent, key: str) -> None:
        """A dry run remembers what it would have applied, so the rest of the test file is
        judged as if it had been — without touching the ledger."""
        self.run.before_dry_change(key)
        before = self.dry_known.get(key) or _view(self.known.get(key))
        policies = {c.group_or_policy_number for c in event.coverages if c.group_or_policy_number}
        items = self.run.dry_enrollments.get(key)
        if items is None:
            items = copy.deepcopy(self._enrollments_of(key))
            self.run.dry_enrollments[key] = items
        lifecycle.apply_event(
            items,
            event,
            policy_fallback=self._policy_fallback(event, key),
            plan_year=self.run.config.plan_year_for(event.header),
            effectuate_on_add=self.run.config.effectuate_on_add,
        )
        self.dry_known[key] = LedgerView(
            active=any(i.in_force for i in items)
            if items
            else event.maintenance_type.code != Maintenance.TERMINATION,
            policy_numbers=frozenset(policies | set(before.policy_numbers if before else ())),
        )
        if event.subscriber and event.subscriber_number:
            self.run.add_dry_subscriber(event.subscriber_number)

    def _sent_before(self, key: str, event: MemberEvent) -> bool:
        """Whether this file already sent this very transaction for the member: its member
        loop, as read (positions and envelope aside), the same as one earlier in the file. A
        termination and a new addition (a plan change), or two changes effective on other
        days, are two transactions."""
        earlier = [*self.sent.get(key, ()), *self.sent_before.get(key, ())]
        if not earlier:  # nearly every member: nothing to compare
            return False
        this = _transaction_of(self.member_json[id(event)])
        return any(_transaction_of(e) == this for e in earlier)

    def _track_subscriber(self, event: MemberEvent, member: MemberRec) -> None:
        if event.subscriber and member.subscriber_number:
            if member.status == MemberStatus.ACTIVE:
                until = dt.date.max
            else:
                until = max((e.end or dt.date.min for e in member.enrollments), default=dt.date.min)
            self.covered_until[member.subscriber_number] = until

    def _subscriber_covered(self, event: MemberEvent) -> bool:
        """The dependent's subscriber (its REF*0F) is earlier in this file or in the ledger, and
        covered on the dependent's date: its change's effective date, else its coverages'
        begin, else the file's (BGN03). An employee terminated at the end of the month is
        still there for a dependent's change or a newborn until then."""
        until = self.covered_until.get(event.subscriber_number or "")
        if until is None:
            return False
        if until == dt.date.max:
            return True
        begins = [c.benefit_begin for c in event.coverages if c.benefit_begin is not None]
        day = (
            lifecycle.event_effective(event)
            or (min(begins) if begins else None)
            or event.header.creation_date
        )
        return day is not None and day <= until

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
                "payload": self._payload(event),
            },
        )

    def _payload(self, event: MemberEvent) -> str:
        """`event.model_dump_json()`, byte for byte, from the parts a chunk writes anyway: the
        member without its source and header (kept for the core's payload), its source, and
        its set's header encoded once per set (source and header are its first two fields)."""
        member = event.model_dump_json(exclude=_NOT_IN_CORE_MEMBER)
        self.member_json[id(event)] = member
        found = self.header_json.get(id(event.header))
        if found is None or found[0] is not event.header:
            found = (event.header, event.header.model_dump_json())
            self.header_json[id(event.header)] = found
        source = event.source.model_dump_json()
        return f'{{"source":{source},"header":{found[1]},{member[1:]}'

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
            "operator_note": hit.operator_note,
        }

    def _delivery(
        self,
        event_id: int,
        event: MemberEvent,
        row: dict[str, object],
        hits: list[Hit],
        applied: _Applied,
    ) -> dict[str, object]:
        ikey = idempotency_key(self.run.sha256, self.run.partner_id, event)
        payload = {
            "idempotency_key": ikey,
            "event_id": event_id,
            "receipt_id": self.run.receipt_id,
            # The sender: member keys are per sender (two exchanges' ids can be the same),
            # so a core system fed by several partners tells their members apart by it.
            "partner": self.run.partner_name,
            "source": event.source.model_dump(mode="json"),
            "member_key": row["member_key"],
            "subscriber_number": event.subscriber_number,
            "policy_key": row["policy_key"],
            # The employer group the set is for (REF*38, else N1*P5 N104), its sponsor's name:
            # a broker's or TPA's members told apart by group in the core system.
            "group": sponsor_group(event.header),
            "sponsor": event.header.sponsor.name if event.header.sponsor is not None else "",
            "maintenance_type": event.maintenance_type.code,
            "maintenance_reason": event.maintenance_reason,
            "warnings": [hit.rule for hit in hits],
            "enrollments": applied.enrollments,
            "cascade": applied.cascade,
        }
        # The member as pydantic's own serializer writes it (in Rust: a third of this stage's
        # JSON time was the generic encoder walking the member's dict), spliced in.
        head = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        member = self.member_json.pop(id(event), None) or event.model_dump_json(
            exclude=_NOT_IN_CORE_MEMBER
        )
        # Its JSON is put together once the chunk's `partner_seq` are known (`_write`).
        return {
            "event_id": event_id,
            "partner_id": self.run.partner_id,
            "idempotency_key": ikey,
            "payload": (head, member),
        }


_NOT_IN_CORE_MEMBER = {"header", "source"}
# By Conflict.elsewhere: the same sender's other member id, or another sender's member.
_IDENTITY_RULES = {False: "identity-overlap", True: "identity-overlap-elsewhere"}


def _transaction_of(member: str | dict[str, object]) -> object:
    """A member's transaction as sent, wherever in the file: its JSON (or the parsed payload
    of an earlier chunk's event) without the positions of its segments."""

    def strip(value: object) -> object:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "segment_position"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(member) if isinstance(member, str) else member)


def _set_level_hits(run: Run, event: MemberEvent) -> list[Hit]:
    """qty-totals for the member's set, judged once for its members in a row."""
    key = set_key(event)
    if run.set_hits is None or run.set_hits[0] != key:
        subscribers, dependents = run.counts.get(key, (0, 0))
        hits = [
            h
            for h in set_rules(event.header, subscribers, dependents)
            if run.config.severity(h.rule) is not Severity.IGNORE
        ]
        run.set_hits = (key, hits)
    return run.set_hits[1]


def _address_json(address: Address | None) -> str:
    return address.model_dump_json() if address is not None else ""


def _names_a_policy(event: MemberEvent) -> bool:
    """Whether the event sends a REF*1L (2000, or in a 2300 loop)."""
    return bool(event.group_or_policy_number) or any(
        c.group_or_policy_number for c in event.coverages
    )


def _apply_member(
    run: Run, event: MemberEvent, key: str, member: MemberRec | None, fallback_policy: str
) -> MemberRec:
    now = utcnow()
    if member is None:
        member = MemberRec(
            id=None,
            partner_id=run.partner_id,
            member_key=key,
            subscriber=event.subscriber,
            relationship_code=event.relationship.code[:2],
            status=MemberStatus.ACTIVE,
        )
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
        member.policy_key = fallback_policy[:120]
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
    group = sponsor_group(event.header)
    if group:
        member.sponsor_group = group
    member.updated_at = now
    return member


def _in_its_group(event: MemberEvent) -> MemberEvent:
    """A broker's or TPA's member, its REF*0F qualified by its employer group (`--keys
    by-group`): GROUP/REF*0F, so two employers' staff with the same employee id are two
    families and two members. Unchanged when the set names no group."""
    group = sponsor_group(event.header)
    number = event.subscriber_number
    if not group or not number:
        return event
    return event.model_copy(update={"subscriber_number": f"{group}/{number}"[:80]})


def sponsor_group(header: TransactionSetHeader) -> str:
    """The employer group a set is for: its REF*38 master policy number, else its N1*P5
    sponsor's id (N104); "" when it names neither."""
    group = (header.policy_number or "").strip() or (
        header.sponsor.id.strip() if header.sponsor is not None else ""
    )
    return group[:80]


@dataclass
class _Applied:
    """What one applied member event changed: its member, what its enrollments became, and
    the policy's cascade (for the core event)."""

    member: MemberRec
    cascade: list[dict[str, object]] = field(default_factory=list)
    enrollments: list[dict[str, object]] = field(default_factory=list)


def _set_status(
    member: MemberRec, enrollments: list[lifecycle.Enrollment], event: MemberEvent | None
) -> None:
    """Active while any enrollment is in force; a member without one follows its INS03."""
    if enrollments:
        in_force = any(e.in_force for e in enrollments)
        member.status = MemberStatus.ACTIVE if in_force else MemberStatus.TERMINATED
    elif event is not None and event.maintenance_type.code in ACTIVATING:
        member.status = MemberStatus.ACTIVE
    elif event is not None and event.maintenance_type.code == Maintenance.TERMINATION:
        member.status = MemberStatus.TERMINATED


_TERM_LENGTHS = {"plan_id": 80, "coverage_level": 3}


def fit_term(name: str, value: str) -> str:
    return value[: _TERM_LENGTHS.get(name, 50)]  # 2750 REF02 is AN 1/50: nothing is cut


def _coverage_values(
    item: lifecycle.Enrollment, owner: MemberRec, event_id: int
) -> dict[str, object]:
    latest = item.periods[-1].terms if item.periods else {}
    return {
        "member_id": owner.id,
        "insurance_line": item.line[:3],
        "policy_number": item.policy[:80],
        "plan_year": item.plan_year,
        "stint": item.stint,
        "status": item.state.value,
        "benefit_begin": item.begin,
        "benefit_end": item.end,
        "scheduled_end": item.scheduled_end,
        "effectuated": item.effectuated,
        "paid_through": item.paid_through,
        "updated_event_id": event_id,
        **{k: fit_term(k, latest.get(k, "")) for k in lifecycle.TERMS},
    }


def _enrollment_json(item: lifecycle.Enrollment) -> dict[str, object]:
    in_force = item.periods[-1].terms if item.periods else {}
    return {
        "line": item.line,
        "policy": item.policy,
        "plan_year": item.plan_year,
        "stint": item.stint,
        "state": item.state.value,
        "begin": item.begin.isoformat() if item.begin else None,
        "end": item.end.isoformat() if item.end else None,
        "paid_through": item.paid_through.isoformat() if item.paid_through else None,
        "periods": [{"begin": p.begin.isoformat(), **p.terms} for p in item.periods],
        "latest": dict(in_force),
    }


def finish(session: Session, run: Run, worker_id: str) -> str:
    """The file's last step, in one transaction: the audit's missing members, the 824s, and
    the ledger status — applied, reconciled (an audit), dry_run or not_applied."""
    leased = ledger_repo.leased_run(session, run.receipt_id, worker_id)
    if leased is None:
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
    if leased.send_824 or leased.onboarding:  # the 824s read the receipt's envelope tree
        receipt = ledger_repo.leased(session, run.receipt_id, worker_id)
        if receipt is None:
            raise LedgerAbandoned(run.receipt_id)
        add_824s(session, receipt, dry_run=False)
        if leased.onboarding:
            add_824s(session, receipt, dry_run=True)
    if status is LedgerStatus.APPLIED:  # an audit changes nothing: its order does not matter
        later = ledger_repo.applied_later(session, run.receipt_id, leased.partner_id, utcnow())
        if later is not None:
            # Files sent out of order are applied as they come (a file not yet received is
            # not waited for): said on the file, for the operators to check what it changed.
            LEDGER_OUT_OF_ORDER.inc()
            log.warning("ledger_out_of_order", receipt_id=run.receipt_id, later_receipt=later[0])
            detail = (
                f"applied after {later[1] or later[0]}, which its sender's order (file name, "
                "BGN date, ISA13) puts after it: check what each changed"
            )
            repo.insert_events(session, [(run.receipt_id, "ledger_out_of_order", detail[:500])])
    ledger_repo.ledger_done(session, run.receipt_id, status.value, utcnow())
    detail = (
        f"{leased.members_applied} applied, {leased.members_business_rejected} rejected by "
        "business rules"
    )
    repo.insert_events(session, [(run.receipt_id, f"ledger_{status.value}", detail)])
    return status.value
