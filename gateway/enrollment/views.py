"""Reading the ledger as an insurer's billing and the exchange's reconciliation need it: a member's
enrollments with every coverage period and the one in force on a date, and a policy's monthly
view — premium, APTC and CSR in force each month, prorated by days where coverage starts or
ends mid-month. Shared by `edi834 ledger`, the partner API and the CSV downloads."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.csvfile import csv_safe
from gateway.db.models import LedgerCoverage, LedgerMember
from gateway.enrollment import lifecycle
from gateway.enrollment.repository import enrollment_from_row, period_from_row

MAX_MONTHS = 36  # a monthly view spans at most three plan years


def enrollments_of(member: LedgerMember) -> list[lifecycle.Enrollment]:
    """The member's stored enrollments as the lifecycle's plain objects (ids kept)."""
    return [enrollment_of(c) for c in member.coverages]


def enrollment_of(c: LedgerCoverage) -> lifecycle.Enrollment:
    return enrollment_from_row(c, [period_from_row(p) for p in c.periods])


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day is not None else None


def enrollment_json(item: lifecycle.Enrollment, as_of: dt.date | None = None) -> dict[str, Any]:
    """An enrollment with every period (begin, end, terms) and, given a date, what is in force."""
    periods = []
    ever = {id(p) for p, _, _ in item.spans()}
    for n, p in enumerate(item.periods):
        nxt = item.periods[n + 1].begin if n + 1 < len(item.periods) else None
        end = nxt - dt.timedelta(days=1) if nxt is not None else item.end
        periods.append(
            {
                "begin": _iso(p.begin if p.begin != dt.date.min else item.begin),
                "end": _iso(end),
                "in_force": id(p) in ever,
                **{k: p.terms.get(k, "") for k in lifecycle.TERMS},
                "csr_variant": lifecycle.csr_variant(p.terms.get("plan_id", "")),
                "event_id": p.event_id,
            }
        )
    out: dict[str, Any] = {
        "line": item.line,
        "policy": item.policy,
        "plan_year": item.plan_year,
        "stint": item.stint,
        "state": item.state.value,
        "begin": _iso(item.begin),
        "end": _iso(item.end),
        "effectuated": item.effectuated,
        "paid_through": _iso(item.paid_through),
        "periods": periods,
    }
    if as_of is not None:
        terms = item.terms_on(as_of)
        out["as_of"] = (
            None
            if terms is None
            else {**terms, "csr_variant": lifecycle.csr_variant(terms.get("plan_id", ""))}
        )
    return out


def member_of(session: Session, partner_id: int, member_key: str) -> LedgerMember | None:
    return session.scalar(
        select(LedgerMember).where(
            LedgerMember.partner_id == partner_id, LedgerMember.member_key == member_key
        )
    )


def member_json(member: LedgerMember, as_of: dt.date | None = None) -> dict[str, Any]:
    """A member's ledger record without names, SSN, birth date or address (minimum necessary
    for status and billing questions): keys, relationship, status and enrollments."""
    items = enrollments_of(member)
    return {
        "member_key": member.member_key,
        "subscriber_number": member.subscriber_number,
        "subscriber": member.subscriber,
        "relationship": member.relationship_code,
        "policy": member.policy_key,
        "status": member.status,
        "as_of": _iso(as_of),
        "enrollments": [enrollment_json(i, as_of) for i in items],
    }


# --- the monthly view -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonthRow:
    member_key: str
    relationship: str
    line: lifecycle.MonthLine


def parse_month(text: str) -> tuple[int, int]:
    """YYYY-MM (or YYYY-MM-DD) -> (year, month); ValueError otherwise."""
    try:
        day = dt.date.fromisoformat(text + "-01" if len(text) == 7 else text)
    except ValueError:
        raise ValueError(f"not a month (YYYY-MM): {text!r}") from None
    return day.year, day.month


def months(first: tuple[int, int], last: tuple[int, int]) -> list[tuple[int, int]]:
    if last < first:
        raise ValueError("the last month is before the first")
    out = []
    year, month = first
    while (year, month) <= last:
        out.append((year, month))
        if len(out) > MAX_MONTHS:
            raise ValueError(f"at most {MAX_MONTHS} months at a time")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def policy_months(
    session: Session, partner_id: int, policy: str, span: list[tuple[int, int]]
) -> list[MonthRow]:
    """Every member's terms on the policy, month by month, prorated (empty: no such policy)."""
    rows = session.execute(
        select(LedgerMember.member_key, LedgerMember.relationship_code, LedgerCoverage)
        .join(LedgerCoverage, LedgerCoverage.member_id == LedgerMember.id)
        .where(LedgerMember.partner_id == partner_id, LedgerCoverage.policy_number == policy)
        .order_by(LedgerMember.subscriber.desc(), LedgerMember.member_key, LedgerCoverage.id)
    ).all()
    out: list[MonthRow] = []
    for year, month in span:
        for key, relationship, cov in rows:
            for line in lifecycle.month_lines(enrollment_of(cov), year, month):
                out.append(MonthRow(key, relationship, line))
    return out


def policy_exists(session: Session, partner_id: int, policy: str) -> bool:
    return (
        session.scalar(
            select(LedgerCoverage.id)
            .join(LedgerMember, LedgerMember.id == LedgerCoverage.member_id)
            .where(LedgerMember.partner_id == partner_id, LedgerCoverage.policy_number == policy)
            .limit(1)
        )
        is not None
    )


def _money(value: Decimal | None) -> str | None:
    return f"{value:.2f}" if value is not None else None


def month_row_json(row: MonthRow) -> dict[str, Any]:
    ln = row.line
    return {
        "month": ln.month,
        "member_key": row.member_key,
        "relationship": row.relationship,
        "line": ln.line,
        "plan_id": ln.plan_id,
        "csr_variant": ln.csr_variant,
        "coverage_level": ln.coverage_level,
        "rating_area": ln.rating_area,
        "first_day": ln.first.isoformat(),
        "last_day": ln.last.isoformat(),
        "days": ln.days,
        "days_in_month": ln.days_in_month,
        "premium": _money(ln.premium),
        "aptc": _money(ln.aptc),
        "csr_amount": _money(ln.csr_amount),
    }


def month_totals(rows: list[MonthRow]) -> list[dict[str, Any]]:
    """Per month: Σ premium, Σ APTC, Σ CSR and what the enrollee owes: the premium less the
    APTC, which never pays more than the premium (26 USC 36B(b)(2): the lesser of the two).
    APTC above the premium (a dependent ended, the subscriber's APTC not yet re-sent) is
    shown as `aptc_excess`, not as a negative amount owed."""
    totals: dict[str, dict[str, Decimal]] = {}
    for row in rows:
        t = totals.setdefault(row.line.month, dict.fromkeys(("premium", "aptc", "csr"), Decimal(0)))
        t["premium"] += row.line.premium or Decimal(0)
        t["aptc"] += row.line.aptc or Decimal(0)
        t["csr"] += row.line.csr_amount or Decimal(0)
    return [
        {
            "month": month,
            "premium": f"{t['premium']:.2f}",
            "aptc": f"{t['aptc']:.2f}",
            "csr_amount": f"{t['csr']:.2f}",
            "responsible": f"{t['premium'] - min(t['aptc'], t['premium']):.2f}",
            "aptc_excess": f"{max(t['aptc'] - t['premium'], Decimal(0)):.2f}",
        }
        for month, t in sorted(totals.items())
    ]


# What the sender wrote: quoted away from a spreadsheet's formulas like every export's text
# (gateway.csvfile.csv_safe). The rest (month, days, amounts) is the ledger's own and stays
# numbers: a rating area of `-1+1+cmd|...` passed as "a negative number" before.
_SENDER_COLUMNS = (
    "member_key",
    "relationship",
    "line",
    "plan_id",
    "csr_variant",
    "coverage_level",
    "rating_area",
)
_SENDER_TEXT = frozenset(_SENDER_COLUMNS)
MONTH_COLUMNS = (
    "month",
    *_SENDER_COLUMNS,
    "first_day",
    "last_day",
    "days",
    "days_in_month",
    "premium",
    "aptc",
    "csr_amount",
)


def months_csv(rows: list[MonthRow]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(MONTH_COLUMNS)
    for row in rows:
        values = month_row_json(row)
        writer.writerow(
            [
                "" if values[c] is None else csv_safe(values[c]) if c in _SENDER_TEXT else values[c]
                for c in MONTH_COLUMNS
            ]
        )
    yield buffer.getvalue()
