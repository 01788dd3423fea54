"""Acknowledge: one validated file's outcome, interchanges, groups, transaction sets (with the
gate's decision), findings and TA1/999 (or rejection notice) stored in one transaction, then the
file queued for the ledger. This module maps the validator's results to rows."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, cast

from sqlalchemy import String, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from gateway import outbound
from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import fit, iso_z, utcnow
from gateway.db.models import (
    COUNT_COLUMNS,
    Ack,
    AckKind,
    Finding,
    Group,
    Interchange,
    InterchangeKey,
    LedgerStatus,
    Partner,
    Receipt,
    ReceiptEvent,
    Status,
    TransactionSet,
    WebhookDelivery,
)
from gateway.enrollment.keys import order_key
from gateway.gate import SenderFacts, SetFacts, decide
from gateway.worker.job import DuplicateRace, Job, LeaseLost
from gateway.worker.validate import Result, Validated, outcome_of
from validators.acks import build_999, build_ta1
from validators.interchange import (
    AckCode,
    GroupResult,
    InterchangeResult,
    UnusableResult,
)
from validators.issues import InterchangeNoteCode, Issue


def ack_filename(job: Job, isa13: str, kind: str, *, round_: int = 1) -> str:
    return outbound.ack_filename(
        received_at=job.received_at,
        receipt_id=job.receipt_id,
        filename=job.filename,
        isa13=isa13,
        kind=kind,
        round_=round_,
    )


_NO_POSITION: dict[str, object] = dict.fromkeys(
    (
        "envelope_id",
        "group_id",
        "set_id",
        "segment_id",
        "segment_position",
        "loop_id",
        "element_position",
        "component_position",
        "repetition_position",
        "element_ref",
        "bad_value",
        "business_unit",
    )
)


def finding_row(
    receipt_id: str, seq: int, finding: Issue | UnusableResult, **ids: int | None
) -> dict[str, object]:
    """One `findings` row: an X12 finding where it sits (`ids`: envelope_id, group_id, set_id),
    or a FILE finding for input with no usable ISA."""
    row: dict[str, object] = {**_NO_POSITION, **ids, "receipt_id": receipt_id, "seq": seq}
    if isinstance(finding, UnusableResult):
        row.update(
            level="file",
            family="FILE",
            code=finding.reason.value,
            message=finding.message,
            severity="reject",
        )
        return fit(Finding, row)
    row.update(
        level=finding.level.value,
        family=finding.family,
        code=finding.code,
        message=finding.message,
        severity=finding.severity.value,
        segment_id=finding.segment_id,
        segment_position=finding.segment_position,
        loop_id=finding.loop_id,
        element_position=finding.element_position,
        component_position=finding.component_position,
        repetition_position=finding.repetition_position,
        element_ref=finding.element_ref,
        bad_value=finding.bad_value,
        business_unit=finding.business_unit,
    )
    return fit(Finding, row)


def _ack(
    job: Job, envelope_id: int | None, kind: str, number: int | None, content: bytes, name: str
) -> dict[str, object]:
    """An `acks` row (the ack we send), inserted through Core with the file's other rows."""
    return {
        "receipt_id": job.receipt_id,
        "envelope_id": envelope_id,
        "kind": kind,
        "control_number": number,
        "filename": name,
        "content": content,
        "sha256": hashlib.sha256(content).hexdigest(),
    }


_RECEIPTS = cast(Table, Receipt.__table__)
_WEBHOOKS = cast(Table, WebhookDelivery.__table__)
# The store's statements, built once and run on the session's connection: building a statement
# (and its cache key) and the ORM session's execution path cost as much as running it, for a
# small file's eight statements (issue 19).
_INSERT_ACKS = insert(cast(Table, Ack.__table__))
_INSERT_FINDINGS = insert(cast(Table, Finding.__table__))
_TABLES = {model: cast(Table, model.__table__) for model in (Interchange, Group, TransactionSet)}
_INSERT_RETURNING_ID = {model: insert(t).returning(t.c.id) for model, t in _TABLES.items()}
_SETS = _TABLES[TransactionSet]
# A batch of sets, their ids in the rows' order (each set's findings need its id).
_INSERT_SETS_RETURNING_IDS = insert(_SETS).returning(_SETS.c.id, sort_by_parameter_order=True)


class _Processing(NamedTuple):
    """The receipt in hand and its sender, as storing its results needs them: one Core read,
    not the ORM's Receipt (40 columns) and Partner, whose unit of work (the receipt's UPDATE,
    the acks' and events' INSERTs) was a third of a small file's storing (issue 19)."""

    status: str
    lease_owner: str | None
    filename: str | None
    sha256: str
    ledger_status: str | None
    partner_id: int
    isa_qualifier: str
    isa_id: str
    onboarding: bool
    webhook_url: str | None
    reprocessed: int  # times an operator queued the file again: its acks' round is this + 1


_READ_PROCESSING = (
    select(
        Receipt.status,
        Receipt.lease_owner,
        Receipt.filename,
        Receipt.sha256,
        Receipt.ledger_status,
        Partner.id,
        Partner.isa_qualifier,
        Partner.isa_id,
        Partner.onboarding,
        Partner.webhook_url,
        select(func.count(ReceiptEvent.id))
        .where(
            ReceiptEvent.receipt_id == Receipt.id,
            ReceiptEvent.event == repo.REPROCESS_REQUESTED,
        )
        .scalar_subquery(),
    )
    .join(Partner, Partner.id == Receipt.partner_id)
    .where(Receipt.id == bindparam("receipt_id"))
)


# Rows written per statement: a file of a million one-family sets is a thousand INSERTs of a
# thousand sets each (one round trip apiece), and memory holds one batch, not the file.
SET_BATCH = 1_000
FINDING_BATCH = 5_000


class _Store:
    """One processed file's rows, added to the caller's session step by step."""

    def __init__(self, session: Session, gw: Gateway, job: Job, receipt: _Processing) -> None:
        self.session, self.gw, self.job = session, gw, job
        self.conn = session.connection()
        self.sender = SenderFacts(receipt.isa_qualifier, receipt.isa_id, receipt.onboarding)
        self.findings: list[dict[str, object]] = []
        self.acks: list[dict[str, object]] = []
        self.finding_seq = 0
        self.totals = dict.fromkeys(COUNT_COLUMNS, 0)
        self.unusable: list[UnusableResult] = []
        # A reprocessed file's acks are new files beside the old ones, never over them: a
        # client that fetched the old names would never see the new acks.
        self.round = receipt.reprocessed + 1

    def _findings(self, issues: Iterable[Issue], **ids: int | None) -> None:
        for issue in issues:
            self.findings.append(finding_row(self.job.receipt_id, self.finding_seq, issue, **ids))
            self.finding_seq += 1
        if len(self.findings) >= FINDING_BATCH:
            self.flush_findings()

    def add_unusable(self, result: UnusableResult) -> None:
        self.unusable.append(result)
        self.findings.append(finding_row(self.job.receipt_id, self.finding_seq, result))
        self.finding_seq += 1

    def add_interchange(self, seq: int, result: InterchangeResult) -> int:
        """The interchange's row (one INSERT ... RETURNING, not an ORM object and a flush:
        issue 19), its key, findings, groups and sets; its id."""
        qualifier, sender = result.sender
        env_id = self._insert_returning_id(
            Interchange,
            fit(
                Interchange,
                {
                    "receipt_id": self.job.receipt_id,
                    "seq": seq,
                    "offset": result.offset,
                    "isa13": result.isa13,
                    "sender_qualifier": qualifier,
                    "sender_id": sender,
                    "receiver_qualifier": result.receiver[0],
                    "receiver_id": result.receiver[1],
                    "isa09": result.isa.element(9),
                    "isa10": result.isa.element(10),
                    "usage": result.isa.element(15),
                    "ta1_code": result.ta1_code.value,
                    "ta1_note": result.ta1_note,
                    "outcome": result.outcome.value,
                },
            ),
        )
        if result.ta1_code is not AckCode.REJECTED:
            self._register_isa13(result)
        self._findings(result.issues, envelope_id=env_id)
        for gseq, group in enumerate(result.groups):
            self._add_group(env_id, gseq, group, result)
        for key, value in result.counts().items():
            self.totals[key] += value
        return env_id

    def _insert_returning_id(
        self, model: type[Interchange] | type[Group] | type[TransactionSet], row: dict[str, object]
    ) -> int:
        """One row, through Core on the session's connection: the ORM's bulk-insert path cost
        more than the statement for a lone row (issue 19). The rows' keys are column names."""
        return int(self.conn.execute(_INSERT_RETURNING_ID[model], row).scalar_one())

    def _register_isa13(self, result: InterchangeResult) -> None:
        """TA1 025 from now on: a unique constraint, not a read-then-write race."""
        qualifier, sender = result.sender
        key = {
            "partner_id": self.job.partner_id,
            "sender_qualifier": qualifier,
            "sender_id": sender,
            "isa13": result.isa13,
            "receipt_id": self.job.receipt_id,
        }
        if not repo.register_isa13(self.session, fit(InterchangeKey, key)):
            raise DuplicateRace(self.job.receipt_id)

    def _add_group(
        self, env_id: int, gseq: int, group: GroupResult, result: InterchangeResult
    ) -> None:
        group_id = self._insert_returning_id(
            Group,
            fit(
                Group,
                {
                    "envelope_id": env_id,
                    "receipt_id": self.job.receipt_id,
                    "seq": gseq,
                    "gs01": group.gs.element(1),
                    "gs02": group.gs.element(2),
                    "gs03": group.gs.element(3),
                    "gs06": group.gs.element(6),
                    "gs08": group.gs.element(8),
                    "ack_code": group.ack_code.value,
                    "sets_included": group.sets_included,
                    "sets_received": len(group.sets),
                    "sets_accepted": group.sets_accepted,
                },
            ),
        )
        self._findings(group.issues, envelope_id=env_id, group_id=group_id)
        rows: list[dict[str, object]] = []
        issues: list[list[Issue]] = []
        # Judged once per group: asked per set, a group of n sets costs n² (one set per family).
        ta1_code, ta1_note, usage = result.ta1_code.value, result.ta1_note, result.isa.element(15)
        group_ack = group.ack_code.value
        for sseq, ts in enumerate(group.sets):
            # The gate: what may become of this set's members, decided once, here.
            decision = decide(
                SetFacts(
                    ta1_code=ta1_code,
                    ta1_note=ta1_note,
                    usage=usage,
                    sender=result.sender,
                    group_ack=group_ack,
                    set_ack=ts.ack_code.value,
                    st01=ts.st01,
                ),
                self.sender,
            )
            rows.append(
                fit(
                    TransactionSet,
                    {
                        "group_id": group_id,
                        "receipt_id": self.job.receipt_id,
                        "seq": sseq,
                        "st01": ts.st01,
                        "st02": ts.st02,
                        "st03": ts.st03,
                        "ack_code": ts.ack_code.value,
                        "error_codes": ",".join(ts.set_error_codes),
                        "member_count": ts.member_count,
                        "subscriber_count": ts.subscriber_count,
                        "segment_count": ts.segment_count,
                        "accepted": ts.accepted,
                        "findings_truncated": ts.issues_truncated > 0,
                        "findings_omitted": ts.issues_truncated,
                        "gate": decision.disposition.value,
                        "gate_reason": decision.reason,
                    },
                )
            )
            issues.append(ts.issues)
            if len(rows) >= SET_BATCH:
                self._insert_sets(rows, issues, env_id, group_id)
        self._insert_sets(rows, issues, env_id, group_id)

    def _insert_sets(
        self, rows: list[dict[str, object]], issues: list[list[Issue]], env_id: int, group_id: int
    ) -> None:
        """One INSERT for a batch of sets; their ids (in the rows' order) place the findings."""
        if not rows:
            return
        if len(rows) == 1:  # most files: one set, one plain INSERT (no ordered executemany)
            ids = [self._insert_returning_id(TransactionSet, rows[0])]
        else:
            ids = list(self.conn.execute(_INSERT_SETS_RETURNING_IDS, rows).scalars())
        for set_id, set_issues in zip(ids, issues, strict=True):
            self._findings(set_issues, envelope_id=env_id, group_id=group_id, set_id=set_id)
        rows.clear()
        issues.clear()

    def add_acks(
        self,
        env_id: int,
        result: InterchangeResult,
        numbers: Iterator[int],
        now: dt.datetime,
        *,
        seq: int = 0,
    ) -> None:
        """A TA1 when asked for or when the envelope has errors; a 999 unless the TA1 rejects
        or nothing in it is to be acknowledged (`InterchangeResult.wants_999`)."""
        identity = self.gw.settings.identity
        partner = (self.sender.isa_qualifier, self.sender.isa_id)  # who sent it: its acks
        isa13 = result.isa13
        if any(i.code == InterchangeNoteCode.DUPLICATE_CONTROL_NUMBER.value for i in result.issues):
            # TA1 025: the ISA13 was used before, perhaps earlier in this same file, whose acks
            # carry it already — `-<n>`, the interchange's place in the file, keeps each file.
            isa13 = f"{isa13}-{seq + 1}"
        if result.ta1_required:
            number = next(numbers)
            content = build_ta1(
                result, control_number=number, now=now, sender=identity, receiver=partner
            )
            name = ack_filename(self.job, isa13, AckKind.TA1, round_=self.round)
            self.acks.append(_ack(self.job, env_id, AckKind.TA1, number, content, name))
        if result.wants_999:
            number = next(numbers)
            content = build_999(
                result, control_number=number, now=now, sender=identity, receiver=partner
            )
            name = ack_filename(self.job, isa13, AckKind.X999, round_=self.round)
            self.acks.append(_ack(self.job, env_id, AckKind.X999, number, content, name))

    def add_rejection_notice(self) -> str | None:
        """Input with no usable ISA gets a notice in place of a TA1 (which needs an ISA); the
        receipt's `unusable_reason`."""
        if not self.unusable:
            return None
        problems = [
            {"reason": r.reason.value, "offset": r.offset, "message": r.message}
            for r in self.unusable
        ]
        body = (
            json.dumps(
                {
                    "receipt_id": self.job.receipt_id,
                    "file": self.job.filename,
                    "outcome": "rejected",
                    "problems": problems,
                    "note": "No ISA envelope could be read here, so no TA1 can answer it.",
                },
                indent=2,
            ).encode()
            + b"\n"
        )
        name = ack_filename(self.job, "", "rejected.json", round_=self.round)
        self.acks.append(_ack(self.job, None, AckKind.REJECTION, None, body, name))
        return self.unusable[0].reason.value[:32]

    def flush_findings(self) -> None:
        if self.findings:
            self.conn.execute(_INSERT_FINDINGS, self.findings)
            self.findings = []

    def flush_acks(self) -> None:
        if self.acks:
            self.conn.execute(_INSERT_ACKS, self.acks)
            self.acks = []


def acks_needed(results: list[Result]) -> int:
    """Control numbers the file's TA1s and 999s take."""
    return sum(
        int(r.ta1_required) + int(r.ta1_code is not AckCode.REJECTED and bool(r.groups))
        for r in results
        if isinstance(r, InterchangeResult)
    )


@dataclass(frozen=True, slots=True)
class Stored:
    """What the worker reports of a file it stored."""

    outcome: str
    totals: dict[str, int]


def store_results(
    session: Session,
    gw: Gateway,
    job: Job,
    worker_id: str,
    validated: Validated,
    now: dt.datetime,
) -> Stored:
    """Everything about one processed file, in the caller's transaction: envelopes, groups,
    sets (with the gate's decision), findings, acks; then the file waits for the ledger.
    Core statements throughout: the receipt's last UPDATE holds the lease check, so a worker
    whose lease was taken over writes nothing (its transaction rolls back)."""
    conn = session.connection()
    row = conn.execute(_READ_PROCESSING, {"receipt_id": job.receipt_id}).first()
    receipt = _Processing._make(row) if row is not None else None
    if receipt is None or receipt.status != Status.PROCESSING or receipt.lease_owner != worker_id:
        raise LeaseLost(job.receipt_id)
    results = validated.results
    store = _Store(session, gw, job, receipt)
    numbers = iter(repo.take_control_numbers(session, acks_needed(results)))
    for seq, result in enumerate(results):
        if isinstance(result, UnusableResult):
            store.add_unusable(result)
            continue
        env_id = store.add_interchange(seq, result)
        store.add_acks(env_id, result, numbers, now, seq=seq)
    unusable_reason = store.add_rejection_notice()
    store.flush_findings()
    store.flush_acks()
    outcome = outcome_of(results).value
    values: dict[str, object] = {
        **store.totals,
        "outcome": outcome,
        "processed_at": now,
        "unusable_reason": unusable_reason,
        "ledger_status": None,
        "ledger_order": None,
        "receipt_id": job.receipt_id,
        "worker_id": worker_id,
    }
    if receipt.ledger_status is None and _has_834(validated):
        # The ledger stage applies what the gate let through and lists the rest as not
        # applied; once: a reprocessed file that was applied before is not applied again.
        values["ledger_status"] = LedgerStatus.PENDING
        values["ledger_order"] = order_key(receipt.filename, [validated.head])
    done = conn.execute(_MARK_PROCESSED, values)
    if done.rowcount != 1:  # taken over since the read above
        raise LeaseLost(job.receipt_id)
    repo.insert_events(session, [(job.receipt_id, "processed", outcome)])
    if receipt.webhook_url:
        conn.execute(
            insert(_WEBHOOKS),
            _webhook_row(
                job.receipt_id, receipt.partner_id, "acknowledged", Status.PROCESSED, outcome,
                receipt.sha256,
            ),
        )  # fmt: skip
    return Stored(outcome, store.totals)


# The receipt processed, its lease released; its lease checked (no row: taken over). NULLs in
# unusable_reason, ledger_status and ledger_order keep the receipt's own values.
_MARK_PROCESSED = (
    update(_RECEIPTS)
    .where(
        _RECEIPTS.c.id == bindparam("receipt_id"),
        _RECEIPTS.c.status == Status.PROCESSING,
        _RECEIPTS.c.lease_owner == bindparam("worker_id"),
    )
    .values(
        {
            **{column: bindparam(column) for column in COUNT_COLUMNS},
            "outcome": bindparam("outcome"),
            "status": Status.PROCESSED,
            "processed_at": bindparam("processed_at"),
            "lease_owner": None,
            "lease_expires_at": None,
            "error": None,
            "unusable_reason": func.coalesce(
                bindparam("unusable_reason", type_=String), _RECEIPTS.c.unusable_reason
            ),
            "ledger_status": func.coalesce(
                bindparam("ledger_status", type_=String), _RECEIPTS.c.ledger_status
            ),
            "ledger_order": func.coalesce(
                bindparam("ledger_order", type_=String), _RECEIPTS.c.ledger_order
            ),
        }
    )
)


def _has_834(validated: Validated) -> bool:
    return any(
        ts.st01 == "834"
        for r in validated.results
        if isinstance(r, InterchangeResult)
        for g in r.groups
        for ts in g.sets
    )


def _webhook_row(
    receipt_id: str, partner_id: int, event: str, status: str, outcome: str | None, sha256: str
) -> dict[str, object]:
    payload = {
        "event": event,
        "id": receipt_id,
        "status": status,
        "outcome": outcome,
        "sha256": sha256,
        "at": iso_z(utcnow()),
    }
    return {
        "receipt_id": receipt_id,
        "partner_id": partner_id,
        "event": event,
        "payload": json.dumps(payload, sort_keys=True),
    }


def enqueue_webhook(session: Session, receipt: Receipt, event: str) -> None:
    partner: Partner = receipt.partner
    if not partner.webhook_url:
        return
    row = _webhook_row(
        receipt.id, partner.id, event, receipt.status, receipt.outcome, receipt.sha256
    )
    session.add(WebhookDelivery(**row))


def park_failed(session: Session, receipt: Receipt, error: str) -> None:
    """Give up on a file that keeps making the worker fail: visible to operators, no ack."""
    receipt.status = Status.FAILED
    receipt.error = error
    receipt.lease_owner = None
    receipt.lease_expires_at = None
    receipt.processed_at = utcnow()
    repo.add_event(session, receipt.id, "failed", error[:2000])
    enqueue_webhook(session, receipt, "failed")
