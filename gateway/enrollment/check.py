"""`edi834 ledger check`: ledger changes the gate would not have let through.

A database written before the gate (issue 13) may hold members applied from interchanges a TA1
rejected, from groups a 999 rejected, from test interchanges (ISA15 T) or from a sender other
than the partner who uploaded the file. This finds them by asking the gate again, from the
facts stored with each transaction set, for every set that has applied members — so an operator
can reverse them in the core system. On a clean database it finds nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.db.models import (
    CoreDelivery,
    Group,
    Interchange,
    MemberEventRow,
    MemberOutcome,
    Partner,
    Receipt,
    TransactionSet,
)
from gateway.enrollment.repository import envelope_ordinals
from gateway.gate import SenderFacts, SetFacts, decide


@dataclass(frozen=True, slots=True)
class Leak:
    receipt_id: str
    partner: str
    isa13: str
    gs06: str
    st02: str
    members_applied: int
    core_events: int  # queued for (or delivered to) the core system
    core_delivered: int
    reason: str


def find_leaks(session: Session, partner_id: int | None = None) -> Iterator[Leak]:
    """Sets whose members were applied although the gate says they may not reach the insurer."""
    q = (
        select(
            MemberEventRow.receipt_id,
            MemberEventRow.envelope_seq,
            MemberEventRow.group_seq,
            MemberEventRow.set_seq,
            func.count(MemberEventRow.id),
            func.count(CoreDelivery.id),
            func.count(CoreDelivery.delivered_at),
        )
        .outerjoin(CoreDelivery, CoreDelivery.event_id == MemberEventRow.id)
        .where(MemberEventRow.outcome == MemberOutcome.APPLIED)
        .group_by(
            MemberEventRow.receipt_id,
            MemberEventRow.envelope_seq,
            MemberEventRow.group_seq,
            MemberEventRow.set_seq,
        )
        .order_by(MemberEventRow.receipt_id)
    )
    if partner_id is not None:
        q = q.where(MemberEventRow.partner_id == partner_id)
    facts: dict[tuple[int, int, int], tuple[SetFacts, str, str, str]] = {}
    current: str | None = None
    sender = SenderFacts("", "")
    partner_name = ""
    for receipt_id, env_seq, group_seq, set_seq, applied, queued, delivered in session.execute(q):
        if receipt_id != current:
            current = receipt_id
            sender, partner_name, facts = _facts_of(session, receipt_id)
        found = facts.get((env_seq, group_seq, set_seq))
        if found is None:
            unknown = "applied members of a transaction set the database has no record of"
            yield Leak(receipt_id, partner_name, "", "", "", applied, queued, delivered, unknown)
            continue
        set_facts, isa13, gs06, st02 = found
        decision = decide(set_facts, sender)
        if not decision.reaches_insurer:
            yield Leak(
                receipt_id,
                partner_name,
                isa13,
                gs06,
                st02,
                applied,
                queued,
                delivered,
                decision.reason,
            )


def _facts_of(
    session: Session, receipt_id: str
) -> tuple[SenderFacts, str, dict[tuple[int, int, int], tuple[SetFacts, str, str, str]]]:
    receipt = session.get_one(Receipt, receipt_id)
    partner: Partner = receipt.partner
    # The gate judges production data: an older version's applied test data is a leak even
    # for an onboarding partner.
    sender = SenderFacts(partner.isa_qualifier, partner.isa_id)
    rows = session.execute(
        select(Interchange, Group, TransactionSet)
        .join(Group, Group.envelope_id == Interchange.id)
        .join(TransactionSet, TransactionSet.group_id == Group.id)
        .where(Interchange.receipt_id == receipt_id)
        .order_by(Interchange.seq, Group.seq, TransactionSet.seq)
    ).all()
    ordinal = envelope_ordinals(session, receipt_id)  # groupless interchanges count too
    out: dict[tuple[int, int, int], tuple[SetFacts, str, str, str]] = {}
    for envelope, group, tset in rows:
        out[(ordinal[envelope.id], group.seq, tset.seq)] = (
            SetFacts(
                ta1_code=envelope.ta1_code,
                ta1_note=envelope.ta1_note,
                usage=envelope.usage,
                sender=(envelope.sender_qualifier, envelope.sender_id),
                group_ack=group.ack_code,
                set_ack=tset.ack_code,
                st01=tset.st01,
            ),
            envelope.isa13,
            group.gs06,
            tset.st02,
        )
    return sender, partner.name, out
