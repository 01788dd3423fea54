"""The 824 Application Advice (005010X186A1) for a file's business rejects: one 824 interchange
per received interchange that has sets with rejects, an ST*824 per such set (OTI TR when every
member was rejected, else TE), a TED per reject. A production 824 goes out only to partners who
asked for 824s; a dry run's 824 (what an onboarding sender's test file would get) is stored as
its own kind, readable through the API and never delivered."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy.orm import Session

from gateway import outbound
from gateway.db import repositories as repo
from gateway.db.base import utcnow
from gateway.db.models import Ack, AckKind, BusinessFinding, MemberOutcome, Receipt
from gateway.enrollment import repository as ledger_repo
from gateway.enrollment.extract import SetKey
from gateway.enrollment.rules import RULES
from parsers.delimiters import DEFAULT_DELIMITERS
from validators.acks import BusinessError, SetAdvice, build_824, echo

UNLISTED_RULE_CODE = "024"  # X186 TED01: other unlisted reason


def add_824s(session: Session, receipt: Receipt, *, dry_run: bool) -> None:
    """Build and store the receipt's 824s (production or dry run), if it has rejects."""
    if not dry_run and not receipt.partner.send_824:
        return
    rejects = ledger_repo.business_rejects(session, receipt.id, dry_run=dry_run)
    if not rejects:
        return
    by_set: dict[SetKey, list[BusinessFinding]] = {}
    for f in rejects:
        by_set.setdefault((f.envelope_seq, f.group_seq, f.set_seq), []).append(f)
    envelopes = list(receipt.envelopes)
    rejected_outcome = MemberOutcome.WOULD_REJECT if dry_run else MemberOutcome.REJECTED
    per_envelope: dict[int, list[SetAdvice]] = {}
    for key in sorted(by_set):
        envelope_seq, group_seq, set_seq = key
        group = envelopes[envelope_seq].groups[group_seq]
        tset = ledger_repo.set_of_group(session, group.id, set_seq)
        counts, first = ledger_repo.set_outcomes(session, receipt.id, key)
        rejected = counts.get(rejected_outcome, 0)
        total = sum(counts.values())
        per_envelope.setdefault(envelope_seq, []).append(
            SetAdvice(
                st01=tset.st01,
                st02=tset.st02,
                gs06=group.gs06,
                gs01=group.gs01,
                gs08=group.gs08,
                gs04="",
                gs05="",
                bgn02=json.loads(first)["header"]["reference"] if first else "",
                action="TR" if rejected and rejected == total else "TE",
                errors=tuple(
                    BusinessError(
                        code=RULES[f.rule].ted01 if f.rule in RULES else UNLISTED_RULE_CODE,
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
    kind = AckKind.X824_DRY_RUN if dry_run else AckKind.X824
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
            # Echo the received GS03/GS02 only when our 824 can carry them as they are.
            gs02=echo.an(group.gs03, DEFAULT_DELIMITERS, min_len=2, max_len=15, neutral="") or None,
            gs03=echo.an(group.gs02, DEFAULT_DELIMITERS, min_len=2, max_len=15, neutral="") or None,
        )
        session.add(
            Ack(
                receipt_id=receipt.id,
                envelope_id=envelope.id,
                kind=kind.value,
                control_number=number,
                filename=outbound.ack_filename(
                    received_at=receipt.received_at,
                    receipt_id=receipt.id,
                    filename=receipt.filename,
                    isa13=envelope.isa13,
                    kind=kind.value,
                ),
                content=content,
                sha256=hashlib.sha256(content).hexdigest(),
            )
        )
    repo.add_event(
        session, receipt.id, f"{kind.value}_created", f"{len(per_envelope)} interchange(s)"
    )
