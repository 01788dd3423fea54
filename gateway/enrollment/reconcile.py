"""Audit reconciliation: an audit (BGN08 4, INS03 030) or replace (BGN08 RX) file is compared
with the enrollment ledger, member by member, never applied. `compare` is pure; `Reconciler`
records what it finds in the run's transaction, and resumes where an earlier attempt stopped."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal

from sqlalchemy.orm import Session

from gateway.db.base import fit
from gateway.db.models import ReconciliationItem
from gateway.enrollment import lifecycle
from gateway.enrollment import repository as ledger_repo
from gateway.enrollment.codes import priced_line
from gateway.enrollment.events import MemberEvent
from gateway.enrollment.keys import policy_key
from gateway.enrollment.planyear import CALENDAR, PlanYear
from gateway.enrollment.repository import MemberRec
from gateway.enrollment.rules import RuleConfig, amount


def compare(
    event: MemberEvent,
    member: MemberRec,
    items: list[lifecycle.Enrollment],
    plan_year: PlanYear = CALENDAR,
) -> list[tuple[str, str, str]]:
    """(field, file value, ledger value) for every difference the audit can show: who the
    member is (name, SSN, birth date, gender, residential address, relationship) and, per
    coverage, the enrollment the ledger holds for it (policy, state, dates and paid-through
    date) and the terms in force (plan and CSR variant, coverage level; premium, APTC, CSR
    amount and rating area over each 2750 loop's range) on the audit's date: its header
    DTP*007 (file effective date), else BGN03. A terminated
    enrollment the audit lists with the same end date matches: no status is compared apart
    from its dates."""
    out: list[tuple[str, str, str]] = []
    if event.relationship.code != member.relationship_code:
        out.append(("relationship", event.relationship.code, member.relationship_code))
    out += _identity(event, member)
    as_of = event.header.file_effective_date or event.header.creation_date
    fallback = member.policy_key or policy_key(event)
    priced = priced_line([c.insurance_line[:3] for c in event.coverages])
    matched: set[int] = set()
    for cov in event.coverages:
        line = cov.insurance_line[:3]
        policy = lifecycle.policy_of(cov, event, fallback)
        year = plan_year.of(cov.benefit_begin) if cov.benefit_begin else None
        item = lifecycle.matching(items, line, policy, year, as_of)
        if as_of is not None and (item is None or not item.covers(as_of, as_of)):
            # An employer's full file carries the original begin of continuous coverage: the
            # enrollment in force on the audit's date is the one it lists, renewed since.
            current = lifecycle.matching(items, line, policy, None, as_of)
            if current is not None and current.covers(as_of, as_of):
                item = current
        if item is None:
            held = sorted({i.policy for i in items if i.line == line})
            if held:
                out.append((f"{line} policy", policy, ", ".join(held)))
                matched |= {id(i) for i in items if i.line == line}  # said: another policy
            else:
                out.append((f"{line} coverage", "present", "absent"))
            continue
        if item.state is lifecycle.State.CANCELLED:
            out.append((f"{line} state", "covered (in the audit)", "cancelled"))
        if cov.benefit_begin is not None and cov.benefit_begin != item.begin:
            out.append((f"{line} benefit_begin", str(cov.benefit_begin), _date(item.begin)))
        if cov.benefit_end != item.end and (cov.benefit_end is not None or not item.in_force):
            out.append((f"{line} benefit_end", _date(cov.benefit_end), _date(item.end)))
        terms = _terms_for(item, as_of)
        plan = lifecycle.plan_of(cov)
        if plan and plan != terms.get("plan_id", ""):
            out.append((f"{line} plan", plan, terms.get("plan_id", "") or "(none)"))
        if cov.coverage_level and cov.coverage_level != terms.get("coverage_level", ""):
            out.append(
                (f"{line} coverage_level", cov.coverage_level, terms.get("coverage_level", ""))
            )
        matched.add(id(item))
        paid = cov.last_premium_paid
        if paid is not None and paid != item.paid_through:
            out.append((f"{line} paid_through", str(paid), _date(item.paid_through)))
        if line == priced:
            out += _category_terms(event, item, line, as_of)
    # An enrollment in force on the audit's date that the audit does not list: the exchange
    # no longer has it, and the insurer would go on billing it.
    for item in items if event.coverages else ():
        if (
            id(item) not in matched
            and item.in_force
            and (as_of is None or item.covers(as_of, as_of))
        ):
            ledger = f"{item.state.value} {_date(item.begin)} .. {_date(item.end) or 'open'}"
            out.append((f"{item.line} policy {item.policy}", "(not in the audit)", ledger))
    return out


def _category_terms(
    event: MemberEvent, item: lifecycle.Enrollment, line: str, as_of: dt.date | None
) -> list[tuple[str, str, str]]:
    """Each 2750 term the audit sends (premium, APTC, CSR amount, rating area) against every
    period of the ledger's in force over the loop's own DTP*007 — an RD8 range, or a D8 date
    until the audit's date (a value holds until the next one) — or, for a loop without one, on
    the audit's date. An audit listing APTC 400.00 for January to May 14 and 450.00 from May 15
    matches a ledger holding just that; one listing 400.00 for the year does not match a ledger
    with 450.00 for the summer, and says from which day."""
    out: list[tuple[str, str, str]] = []
    spans = item.spans()
    for loop in event.reporting_category_loops:
        name = lifecycle.CATEGORY_TERMS.get(loop.name)
        if name is None:
            continue
        if name == "rating_area":
            sent: str | Decimal = loop.value.strip()
        else:
            figure = amount(loop.value)
            if figure is None:
                continue  # unreadable-amount says so
            sent = figure
        first = loop.period_begin or as_of
        if loop.period_begin is not None and "-" in loop.period_raw:
            last = loop.period_end
        elif first is not None and as_of is not None and as_of > first:
            last = as_of
        else:
            last = first
        overlapping: list[tuple[dict[str, str], dt.date | None]] = [
            (period.terms, begin)
            for period, begin, end in spans
            if first is None or ((end is None or end >= first) and (last is None or begin <= last))
        ] or [(_terms_for(item, first), first)]
        for terms, begin in overlapping:
            stored = terms.get(name, "")
            if isinstance(sent, Decimal):
                differs = sent != (amount(stored) or Decimal(0))
            else:
                differs = sent != stored
            if differs:
                day = max(begin, first) if begin and first else (begin or first)
                # The date only where it says more than the field: not from the enrollment's
                # begin, nor for a loop without a range.
                plain = loop.period_begin is None or day is None or day == item.begin
                out.append((f"{line} {name}" + ("" if plain else f" on {day}"), str(sent),
                            stored or "(none)"))  # fmt: skip
                break
    return out


def _terms_for(item: lifecycle.Enrollment, as_of: dt.date | None) -> dict[str, str]:
    """The terms in force on the audit's date; for a date outside the enrollment, the nearest
    period (the first before it begins, the last after it ended)."""
    if as_of is not None:
        terms = item.terms_on(as_of)
        if terms is not None:
            return terms
    spans = item.spans() or [(p, p.begin, None) for p in item.periods]
    if not spans:
        return {}
    if as_of is not None and item.begin is not None and as_of < item.begin:
        return dict(spans[0][0].terms)
    return dict(spans[-1][0].terms)


def _identity(event: MemberEvent, member: MemberRec) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    name = event.name
    if name is not None:
        for label, sent, held in (
            ("last name", name.last, member.last_name),
            ("first name", name.first, member.first_name),
        ):
            if sent.strip().upper() != (held or "").strip().upper():
                out.append((label, sent, held))
        if (
            name.id
            and name.id_qualifier == "34"
            and (_digits(name.id) != _digits(member.id_value) or member.id_qualifier != "34")
        ):
            out.append(("SSN", name.id, member.id_value))
    if event.birth_date is not None and event.birth_date != member.birth_date:
        out.append(("birth date", str(event.birth_date), _date(member.birth_date)))
    if event.gender and event.gender != member.gender:
        out.append(("gender", event.gender, member.gender))
    if event.residence is not None:
        held = json.loads(member.residence) if member.residence else {}
        for key in ("line1", "line2", "city", "state", "postal_code"):
            sent = getattr(event.residence, key) or ""
            if sent.strip().upper() != str(held.get(key) or "").strip().upper():
                out.append((f"residence {key}", sent, str(held.get(key) or "")))
    return out


def _date(value: dt.date | None) -> str:
    return value.isoformat() if value is not None else "(none)"


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


class Reconciler:
    """One receipt's reconciliation, created on its first audited member. What a chunk finds is
    kept in memory and written by `flush` in the chunk's transaction: the counts as one UPDATE
    of increments, the items in bulk. Where the reconciliation stands (its id, the next item's
    seq) is read in each transaction that needs it, never carried from one to the next: a
    transaction retried after an error starts from what is committed, not from what the failed
    attempt had counted."""

    def __init__(self, receipt_id: str, partner_id: int, config: RuleConfig | None = None) -> None:
        self.receipt_id, self.partner_id, self.config = receipt_id, partner_id, config
        self._session: Session | None = None  # the transaction the state below belongs to
        self._id: int | None = None
        self._items = 0  # stored so far: the next item's seq
        self._counts: Counter[str] = Counter()
        self._rows: list[dict[str, object]] = []

    def _begin(self, session: Session) -> None:
        if session is not self._session:
            self._session = session
            self._id, self._items = ledger_repo.reconciliation_of(session, self.receipt_id)
            self._counts.clear()
            self._rows.clear()

    def _add_item(self, kind: str, member_key: str, where: dict[str, object], **more: str) -> None:
        values: dict[str, object] = {
            "seq": self._items + len(self._rows),
            "kind": kind,
            "member_key": member_key,
            "field": "",
            "file_value": "",
            "ledger_value": "",
            **where,
            **more,
        }
        self._rows.append(fit(ReconciliationItem, values))

    def member(
        self,
        session: Session,
        event: MemberEvent,
        key: str,
        member: MemberRec | None,
        enrollments: list[lifecycle.Enrollment],
    ) -> None:
        self._begin(session)
        counts = self._counts
        counts["members_in_file"] += 1
        where = {"segment_position": event.source.segment_position, "st02": event.source.st02}
        if member is None:
            counts["missing_in_ledger"] += 1
            self._add_item("missing_in_ledger", key, where)
            return
        plan_year = self.config.plan_year_for(event.header) if self.config else CALENDAR
        differences = compare(event, member, enrollments, plan_year)
        if not differences:
            counts["members_matched"] += 1
        for field_name, file_value, ledger_value in differences:
            counts["mismatches"] += 1
            self._add_item(
                "mismatch",
                key,
                where,
                field=field_name,
                file_value=file_value,
                ledger_value=ledger_value,
            )

    def flush(self, session: Session) -> None:
        """Write what this transaction found (nothing when it audited no one)."""
        if session is not self._session or not self._counts:
            return
        if self._id is None:
            self._id = ledger_repo.new_reconciliation(session, self.receipt_id, self.partner_id).id
        ledger_repo.add_to_reconciliation(session, self._id, self._counts)
        for row in self._rows:
            row["reconciliation_id"] = self._id
        ledger_repo.insert_rows(session, ReconciliationItem, self._rows)
        self._items += len(self._rows)
        self._counts.clear()
        self._rows.clear()

    def finish(self, session: Session) -> bool:
        """Active ledger members the audit did not mention; False when nothing was audited."""
        self._begin(session)
        if self._id is None:
            return False
        missing = ledger_repo.active_members_not_in_file(session, self.partner_id, self.receipt_id)
        for key in missing:
            self._add_item("missing_in_file", key, {"segment_position": None, "st02": ""})
        self._counts["missing_in_file"] = len(missing)
        self.flush(session)
        return True
