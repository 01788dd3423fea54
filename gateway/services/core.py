"""What an operator does about the core system's queue (`edi834 core`): see it, try its head
again now, or move past an event the core refuses for good.

Nothing overtakes a failing event (gateway.enrollment.delivery): one the core answers 4xx for
round after round holds back every event behind it, of every partner, forever. Skipping it is
an operator's decision, audited, allowed only for the head of the queue once it has failed;
the core system must then get that member's change another way (the ledger keeps it)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import utcnow
from gateway.db.models import CoreDelivery, MemberEventRow, Partner
from gateway.db.session import unit_of_work
from gateway.enrollment.queries import core_pending
from gateway.logging import get_logger

log = get_logger(__name__)
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class Head:
    """The oldest undelivered event: ids and its delivery state, never its payload (PHI)."""

    outbox_id: int
    event_id: int
    receipt_id: str
    partner: str
    partner_seq: int | None  # the event's number in its partner's sequence (core contract)
    created_at: dt.datetime
    attempts: int
    last_error: str | None
    next_attempt_at: dt.datetime


def numbered(head: Head) -> str:
    """The event's partner and its number there, as the command line and the audit log say
    it: `va no. 41`, or `va, unnumbered (written before migration 0024)` for an event the
    ledger wrote before numbering them (`partner_seq` NULL); it said `va no. None`."""
    if head.partner_seq is None:
        return f"{head.partner}, unnumbered (written before migration 0024)"
    return f"{head.partner} no. {head.partner_seq}"


@dataclass(frozen=True, slots=True)
class QueueState:
    pending: int
    skipped: int
    head: Head | None


def queue_state(gw: Gateway) -> QueueState:
    with gw.reads() as s:
        pending, _ = core_pending(s)
        skipped = s.scalar(select(func.count()).where(CoreDelivery.skipped_at.is_not(None)))
        head = _head(s)
    return QueueState(pending=pending, skipped=int(skipped or 0), head=head)


def queue_head(gw: Gateway) -> Head | None:
    with gw.reads() as s:
        return _head(s)


def _head(s: Session) -> Head | None:
    row = s.execute(
        select(CoreDelivery, MemberEventRow.receipt_id, Partner.name)
        .join(MemberEventRow, MemberEventRow.id == CoreDelivery.event_id)
        .join(Partner, Partner.id == CoreDelivery.partner_id)
        .where(CoreDelivery.delivered_at.is_(None))
        .order_by(CoreDelivery.id)
        .limit(1)
    ).first()
    if row is None:
        return None
    d, receipt_id, partner = row
    return Head(
        outbox_id=d.id,
        event_id=d.event_id,
        receipt_id=receipt_id,
        partner=partner,
        partner_seq=d.partner_seq,
        created_at=d.created_at,
        attempts=d.attempts,
        last_error=d.last_error,
        next_attempt_at=d.next_attempt_at,
    )


class NotSkippable(Exception):
    """Why an event cannot be skipped (said to the operator as it is)."""


def skip(gw: Gateway, outbox_id: int, operator: str, reason: str) -> Head:
    """Mark the head of the queue delivered without delivering it, audited with `reason`.
    Refused for an event that is not the head, has not failed, or is delivered already: a
    healthy queue is never skipped through."""
    reason = reason.strip()
    if not reason:
        raise NotSkippable("say why (--reason): it goes to the audit log")
    head = queue_head(gw)
    if head is None or head.outbox_id != outbox_id:
        raise NotSkippable(
            f"event {outbox_id} is not the head of the queue"
            + (f" (the head is {head.outbox_id})" if head is not None else " (it is empty)")
        )
    if head.attempts == 0 or head.last_error is None:
        raise NotSkippable(f"event {outbox_id} has not failed: nothing to skip")
    now = utcnow()
    with unit_of_work(gw.sessions) as s:
        done = s.execute(
            update(CoreDelivery)
            .where(CoreDelivery.id == outbox_id, CoreDelivery.delivered_at.is_(None))
            .values(
                delivered_at=now,
                skipped_at=now,
                skipped_by=operator[:64],
                skip_reason=reason[:MAX_REASON],
            )
        ).rowcount  # type: ignore[attr-defined]
        if not done:  # delivered meanwhile: the core took it after all
            raise NotSkippable(f"event {outbox_id} was delivered meanwhile")
        repo.add_audit_entries(
            s,
            operator=operator,
            action="core_skip",
            receipt_ids=[head.receipt_id],
            detail=f"core event {outbox_id} (member event {head.event_id}, partner "
            f"{numbered(head)}) skipped after "
            f"{head.attempts} failed attempts ({head.last_error}): {reason}"[:1000],
        )
    log.warning("core_event_skipped", outbox_id=outbox_id, receipt_id=head.receipt_id, by=operator)
    return head


def retry_now(gw: Gateway, operator: str) -> Head | None:
    """The head of the queue, waiting out its backoff, is due now (the core was fixed): the
    next delivery round tries it. None when the queue is empty."""
    head = queue_head(gw)
    if head is None:
        return None
    with unit_of_work(gw.sessions) as s:
        s.execute(
            update(CoreDelivery)
            .where(CoreDelivery.id == head.outbox_id, CoreDelivery.delivered_at.is_(None))
            .values(next_attempt_at=utcnow())
        )
    log.info("core_retry_now", outbox_id=head.outbox_id, by=operator)
    return head
