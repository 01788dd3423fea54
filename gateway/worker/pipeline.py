"""One job: a claimed receipt's blob is parsed and validated (streaming), and its outcome,
envelopes, groups, transaction sets, findings and acknowledgements are stored in one
transaction. Parsing and validation are pure (validators/); this module maps their results to
rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import outbound
from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import fit, utcnow
from gateway.db.models import (
    Ack,
    Envelope,
    Finding,
    Group,
    InterchangeKey,
    Partner,
    Receipt,
    Status,
    TransactionSet,
    WebhookDelivery,
)
from gateway.enrollment.keys import order_key
from gateway.enrollment.repository import mark_pending
from gateway.faults import crashpoint, raisepoint
from gateway.gate import SenderFacts, SetFacts, decide
from gateway.parallel import SPLIT_FROM_BYTES, FileSetChecks, pool, processes_for
from validators.acks import build_999, build_ta1
from validators.interchange import (
    AckCode,
    Engine,
    InterchangeResult,
    Outcome,
    UnusableResult,
    ValidationOptions,
    validate_stream,
)
from validators.issues import Issue

Result = InterchangeResult | UnusableResult


class Abandoned(Exception):
    """Shutdown asked the worker to stop mid-file; the lease is released, nothing is stored."""


class LeaseLost(Exception):
    """Another worker took the receipt over (our lease expired); our results are discarded."""


class DuplicateRace(Exception):
    """A concurrent file from the same sender registered the same ISA13 first; validate again."""


@dataclass(frozen=True, slots=True)
class Job:
    receipt_id: str
    partner_id: int
    partner_name: str
    expected_sender: tuple[str, str]
    blob_path: str
    filename: str | None
    received_at: dt.datetime


def job_of(receipt: Receipt) -> Job:
    p = receipt.partner
    return Job(
        receipt_id=receipt.id,
        partner_id=p.id,
        partner_name=p.name,
        expected_sender=(p.isa_qualifier, p.isa_id),
        blob_path=receipt.blob_path,
        filename=receipt.filename,
        received_at=receipt.received_at,
    )


def validate_job(
    gw: Gateway,
    job: Job,
    *,
    cancel: threading.Event,
    heartbeat: Callable[[], None],
    heartbeat_seconds: float,
) -> list[Result]:
    """Stream the blob through the validator. Memory is bounded by findings, not file size."""

    def is_duplicate(qualifier: str, sender: str, isa13: str) -> bool:
        with gw.reads() as session:
            return repo.is_isa13_used(
                session, job.partner_id, qualifier, sender, isa13, job.receipt_id
            )

    options = ValidationOptions(
        expected_sender=job.expected_sender,
        expected_receiver=gw.settings.identity,
        is_duplicate=is_duplicate,
        max_segment_bytes=gw.settings.max_segment_bytes,
        engine=Engine(gw.settings.validation_engine),
    )
    last_beat = time.monotonic()

    def chunks() -> Iterator[bytes]:
        nonlocal last_beat
        for chunk in gw.blobs.chunks(job.blob_path):
            raisepoint("validating", chunk)  # tests: a bug whose message quotes the file
            if cancel.is_set():
                raise Abandoned
            if time.monotonic() - last_beat > heartbeat_seconds:
                heartbeat()
                last_beat = time.monotonic()
            yield chunk

    checks = _set_checks(gw, job, options, cancel, heartbeat, heartbeat_seconds)
    if checks is not None:
        options = dataclasses.replace(options, set_checks=checks)
    try:
        results = list(validate_stream(chunks(), options))
    finally:
        if checks is not None:
            checks.close()
    crashpoint("validated")
    return results


def _set_checks(
    gw: Gateway,
    job: Job,
    options: ValidationOptions,
    cancel: threading.Event,
    heartbeat: Callable[[], None],
    heartbeat_seconds: float,
) -> FileSetChecks | None:
    """Large 834 sets of this file checked in blocks by a process pool (gateway.parallel)."""
    processes = processes_for(gw.settings.validation_processes)
    if processes <= 1 or options.engine is not Engine.FAST:
        return None
    path = gw.blobs.path(job.blob_path)
    if path.stat().st_size < SPLIT_FROM_BYTES:
        return None

    last_beat = time.monotonic()

    def waiting() -> None:
        nonlocal last_beat
        if cancel.is_set():
            raise Abandoned
        if time.monotonic() - last_beat > heartbeat_seconds:
            heartbeat()
            last_beat = time.monotonic()

    checks = FileSetChecks(
        path,
        pool(processes),
        max_segment_bytes=options.max_segment_bytes,
        max_issues=options.max_issues_per_set,
        on_wait=waiting,
        wait_seconds=0.5,
    )
    return checks if checks.split else None


def outcome_of(results: list[Result]) -> Outcome:
    """The file's outcome from its interchanges'; an unusable part counts as a rejection."""
    kinds = {r.outcome if isinstance(r, InterchangeResult) else Outcome.REJECTED for r in results}
    if not kinds or kinds == {Outcome.REJECTED}:
        return Outcome.REJECTED
    if kinds == {Outcome.ACCEPTED}:
        return Outcome.ACCEPTED
    if Outcome.REJECTED in kinds or Outcome.PARTIALLY_ACCEPTED in kinds:
        return Outcome.PARTIALLY_ACCEPTED
    return Outcome.ACCEPTED_WITH_ERRORS


def ack_filename(job: Job, isa13: str, kind: str) -> str:
    return outbound.ack_filename(
        received_at=job.received_at,
        receipt_id=job.receipt_id,
        filename=job.filename,
        isa13=isa13,
        kind=kind,
    )


def _finding_row(
    issue: Issue,
    *,
    receipt_id: str,
    seq: int,
    envelope_id: int | None = None,
    group_id: int | None = None,
    set_id: int | None = None,
) -> dict[str, object]:
    return fit(
        Finding,
        {
            "receipt_id": receipt_id,
            "envelope_id": envelope_id,
            "group_id": group_id,
            "set_id": set_id,
            "seq": seq,
            "level": issue.level.value,
            "family": issue.family,
            "code": issue.code,
            "message": issue.message,
            "severity": issue.severity.value,
            "segment_id": issue.segment_id,
            "segment_position": issue.segment_position,
            "loop_id": issue.loop_id,
            "element_position": issue.element_position,
            "component_position": issue.component_position,
            "repetition_position": issue.repetition_position,
            "element_ref": issue.element_ref,
            "bad_value": issue.bad_value,
            "business_unit": issue.business_unit,
        },
    )


def _ack(
    job: Job, envelope_id: int | None, kind: str, number: int | None, content: bytes, name: str
) -> Ack:
    return Ack(
        receipt_id=job.receipt_id,
        envelope_id=envelope_id,
        kind=kind,
        control_number=number,
        filename=name,
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
    )


def store_results(
    session: Session,
    gw: Gateway,
    job: Job,
    worker_id: str,
    results: list[Result],
    now: dt.datetime,
) -> Receipt:
    """Everything about one processed file, in the caller's transaction."""
    receipt = repo.get_receipt(session, job.receipt_id)
    if receipt is None or receipt.status != Status.PROCESSING or receipt.lease_owner != worker_id:
        raise LeaseLost(job.receipt_id)
    identity = gw.settings.identity
    partner: Partner = receipt.partner
    sender_facts = SenderFacts(partner.isa_qualifier, partner.isa_id, partner.onboarding)
    findings: list[dict[str, object]] = []
    totals = dict.fromkeys(
        (
            "sets_received",
            "sets_accepted",
            "sets_rejected",
            "members_received",
            "members_accepted",
            "members_rejected",
        ),
        0,
    )
    needed = sum(
        int(r.ta1_required) + int(r.ta1_code is not AckCode.REJECTED and bool(r.groups))
        for r in results
        if isinstance(r, InterchangeResult)
    )
    numbers = iter(repo.take_control_numbers(session, needed))
    unusable_notes: list[dict[str, object]] = []

    for seq, result in enumerate(results):
        if isinstance(result, UnusableResult):
            unusable_notes.append(
                {"reason": result.reason.value, "offset": result.offset, "message": result.message}
            )
            findings.append(
                {
                    "receipt_id": job.receipt_id,
                    "envelope_id": None,
                    "group_id": None,
                    "set_id": None,
                    "seq": len(findings),
                    "level": "file",
                    "family": "FILE",
                    "code": result.reason.value,
                    "message": result.message,
                    "severity": "reject",
                    "segment_id": None,
                    "segment_position": None,
                    "loop_id": None,
                    "element_position": None,
                    "component_position": None,
                    "repetition_position": None,
                    "element_ref": None,
                    "bad_value": None,
                    "business_unit": None,
                }
            )
            continue
        qualifier, sender = result.sender
        env = Envelope(
            **fit(
                Envelope,
                {
                    "receipt_id": job.receipt_id,
                    "seq": seq,
                    "offset": result.offset,
                    "isa13": result.isa13,
                    "sender_qualifier": qualifier,
                    "sender_id": sender,
                    "receiver_qualifier": result.receiver[0],
                    "receiver_id": result.receiver[1],
                    "isa09": result.isa.element(9),
                    "isa10": result.isa.element(10),
                    "usage": result.isa.element(15)[:2],
                    "ta1_code": result.ta1_code.value,
                    "ta1_note": result.ta1_note,
                    "outcome": result.outcome.value,
                },
            )
        )
        session.add(env)
        session.flush()
        if result.ta1_code is not AckCode.REJECTED:
            try:
                with session.begin_nested():
                    session.add(
                        InterchangeKey(
                            **fit(
                                InterchangeKey,
                                {
                                    "partner_id": job.partner_id,
                                    "sender_qualifier": qualifier,
                                    "sender_id": sender,
                                    "isa13": result.isa13,
                                    "receipt_id": job.receipt_id,
                                },
                            )
                        )
                    )
                    session.flush()
            except IntegrityError as exc:
                raise DuplicateRace(job.receipt_id) from exc
        findings.extend(
            _finding_row(i, receipt_id=job.receipt_id, seq=len(findings) + k, envelope_id=env.id)
            for k, i in enumerate(result.issues)
        )
        for gseq, group in enumerate(result.groups):
            g = Group(
                **fit(
                    Group,
                    {
                        "envelope_id": env.id,
                        "receipt_id": job.receipt_id,
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
                )
            )
            session.add(g)
            session.flush()
            findings.extend(
                _finding_row(
                    i,
                    receipt_id=job.receipt_id,
                    seq=len(findings) + k,
                    envelope_id=env.id,
                    group_id=g.id,
                )
                for k, i in enumerate(group.issues)
            )
            for sseq, ts in enumerate(group.sets):
                decision = decide(
                    SetFacts(
                        ta1_code=result.ta1_code.value,
                        ta1_note=result.ta1_note,
                        usage=result.isa.element(15),
                        sender=result.sender,
                        group_ack=group.ack_code.value,
                        set_ack=ts.ack_code.value,
                        st01=ts.st01,
                    ),
                    sender_facts,
                )
                t = TransactionSet(
                    **fit(
                        TransactionSet,
                        {
                            "group_id": g.id,
                            "receipt_id": job.receipt_id,
                            "seq": sseq,
                            "st01": ts.st01,
                            "st02": ts.st02,
                            "st03": ts.st03,
                            "ack_code": ts.ack_code.value,
                            "error_codes": ",".join(ts.set_error_codes),
                            "member_count": ts.member_count,
                            "segment_count": ts.segment_count,
                            "accepted": ts.accepted,
                            "findings_truncated": ts.issues_truncated > 0,
                            "findings_omitted": ts.issues_truncated,
                            "gate": decision.disposition.value,
                            "gate_reason": decision.reason,
                        },
                    )
                )
                session.add(t)
                session.flush()
                findings.extend(
                    _finding_row(
                        i,
                        receipt_id=job.receipt_id,
                        seq=len(findings) + k,
                        envelope_id=env.id,
                        group_id=g.id,
                        set_id=t.id,
                    )
                    for k, i in enumerate(ts.issues)
                )
        for key, value in result.counts().items():
            totals[key] += value
        if result.ta1_required:
            number = next(numbers)
            content = build_ta1(result, control_number=number, now=now, sender=identity)
            session.add(
                _ack(job, env.id, "ta1", number, content, ack_filename(job, result.isa13, "ta1"))
            )
        if result.ta1_code is not AckCode.REJECTED and result.groups:
            number = next(numbers)
            content = build_999(result, control_number=number, now=now, sender=identity)
            session.add(
                _ack(job, env.id, "999", number, content, ack_filename(job, result.isa13, "999"))
            )

    if unusable_notes:
        body = (
            json.dumps(
                {
                    "receipt_id": job.receipt_id,
                    "file": job.filename,
                    "outcome": "rejected",
                    "problems": unusable_notes,
                    "note": "No ISA envelope could be read here, so no TA1 can answer it.",
                },
                indent=2,
            ).encode()
            + b"\n"
        )
        session.add(
            _ack(job, None, "rejection", None, body, ack_filename(job, "", "rejected.json"))
        )
        receipt.unusable_reason = str(unusable_notes[0]["reason"])[:32]
    if findings:
        session.execute(insert(Finding), findings)

    has_834 = any(
        ts.st01 == "834"
        for r in results
        if isinstance(r, InterchangeResult)
        for g in r.groups
        for ts in g.sets
    )
    if has_834:
        head = [next(gw.blobs.chunks(job.blob_path), b"")]
        mark_pending(receipt, order_key(receipt.filename, head), has_834)
    outcome = outcome_of(results)
    receipt.outcome = outcome.value
    receipt.status = Status.PROCESSED
    receipt.processed_at = now
    receipt.lease_owner = None
    receipt.lease_expires_at = None
    receipt.error = None
    for key, value in totals.items():
        setattr(receipt, key, value)
    repo.add_event(session, receipt.id, "processed", outcome.value)
    enqueue_webhook(session, receipt, "acknowledged")
    return receipt


def enqueue_webhook(session: Session, receipt: Receipt, event: str) -> None:
    partner: Partner = receipt.partner
    if not partner.webhook_url:
        return
    payload = {
        "event": event,
        "id": receipt.id,
        "status": receipt.status,
        "outcome": receipt.outcome,
        "sha256": receipt.sha256,
        "at": utcnow().isoformat(),
    }
    session.add(
        WebhookDelivery(
            receipt_id=receipt.id,
            partner_id=partner.id,
            event=event,
            payload=json.dumps(payload, sort_keys=True),
        )
    )


def park_failed(session: Session, receipt: Receipt, error: str) -> None:
    """Give up on a file that keeps making the worker fail: visible to operators, no ack."""
    receipt.status = Status.FAILED
    receipt.error = error
    receipt.lease_owner = None
    receipt.lease_expires_at = None
    receipt.processed_at = utcnow()
    repo.add_event(session, receipt.id, "failed", error[:2000])
    enqueue_webhook(session, receipt, "failed")
