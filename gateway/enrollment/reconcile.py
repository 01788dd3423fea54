"""Audit reconciliation: an audit (BGN08 4, INS03 030) or replace (BGN08 RX) file is compared
with the enrollment ledger, member by member, never applied. `compare` is pure; `Reconciler`
records what it finds in the run's transaction, and resumes where an earlier attempt stopped."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy.orm import Session

from gateway.db.base import fit
from gateway.db.models import LedgerMember, Reconciliation, ReconciliationItem
from gateway.enrollment import repository as ledger_repo
from gateway.enrollment.codes import MemberStatus
from gateway.enrollment.events import MemberEvent
from gateway.enrollment.rules import amount


def compare(event: MemberEvent, member: LedgerMember) -> list[tuple[str, str, str]]:
    """(field, file value, ledger value) for every difference the audit can show."""
    out: list[tuple[str, str, str]] = []
    if event.relationship.code != member.relationship_code:
        out.append(("relationship", event.relationship.code, member.relationship_code))
    if member.status != MemberStatus.ACTIVE:
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


class Reconciler:
    """One receipt's reconciliation, created on its first audited member."""

    def __init__(
        self, receipt_id: str, partner_id: int, reconciliation_id: int | None, items: int
    ) -> None:
        self.receipt_id, self.partner_id = receipt_id, partner_id
        self.reconciliation_id = reconciliation_id
        self.items = items  # stored so far: the next item's seq

    def _reconciliation(self, session: Session) -> Reconciliation:
        if self.reconciliation_id is not None:
            return session.get_one(Reconciliation, self.reconciliation_id)
        rec = ledger_repo.new_reconciliation(session, self.receipt_id, self.partner_id)
        self.reconciliation_id = rec.id
        return rec

    def _add_item(self, session: Session, rec: Reconciliation, **values: object) -> None:
        values.update(reconciliation_id=rec.id, seq=self.items)
        session.add(ReconciliationItem(**fit(ReconciliationItem, values)))
        self.items += 1

    def member(
        self, session: Session, event: MemberEvent, key: str, member: LedgerMember | None
    ) -> None:
        rec = self._reconciliation(session)
        rec.members_in_file += 1
        where = {"segment_position": event.source.segment_position, "st02": event.source.st02}
        if member is None:
            rec.missing_in_ledger += 1
            self._add_item(session, rec, kind="missing_in_ledger", member_key=key, **where)
            return
        differences = compare(event, member)
        if not differences:
            rec.members_matched += 1
        for field_name, file_value, ledger_value in differences:
            rec.mismatches += 1
            self._add_item(
                session,
                rec,
                kind="mismatch",
                member_key=key,
                field=field_name,
                file_value=file_value,
                ledger_value=ledger_value,
                **where,
            )

    def finish(self, session: Session) -> bool:
        """Active ledger members the audit did not mention; False when nothing was audited."""
        if self.reconciliation_id is None:
            return False
        rec = session.get_one(Reconciliation, self.reconciliation_id)
        missing = ledger_repo.active_members_not_in_file(session, self.partner_id, self.receipt_id)
        ledger_repo.insert_rows(
            session,
            ReconciliationItem,
            [
                {
                    "reconciliation_id": rec.id,
                    "seq": self.items + n,
                    "kind": "missing_in_file",
                    "member_key": key,
                    "field": "",
                    "file_value": "",
                    "ledger_value": "",
                    "segment_position": None,
                    "st02": "",
                }
                for n, key in enumerate(missing)
            ],
        )
        rec.missing_in_file = len(missing)
        return True
