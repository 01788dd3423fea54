"""`edi834 ledger`: the enrollment ledger for an operator's terminal. Names, SSNs and birth
dates are PHI: they are printed only with --show-names (and never logged)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.db.models import LedgerMember, Partner
from gateway.enrollment.queries import member_history
from gateway.enrollment.views import (
    MonthRow,
    enrollments_of,
    member_json,
    member_of,
    month_row_json,
)


def members_table(
    session: Session, partner: Partner, *, show_names: bool, as_of: dt.date | None = None
) -> list[dict[str, Any]]:
    """One row per member: each enrollment with its state and dates, and the terms of the
    period in force on `as_of` (default: the latest period). With `as_of`, the state and the
    member's status are those of that day — `covered` or `not covered` — not today's (a
    member terminated since was covered then)."""
    rows = []
    for m in session.scalars(
        select(LedgerMember)
        .where(LedgerMember.partner_id == partner.id)
        .order_by(LedgerMember.policy_key, LedgerMember.subscriber.desc(), LedgerMember.member_key)
    ):
        coverages = []
        for item in enrollments_of(m):
            if as_of is not None:
                terms = item.terms_on(as_of)
            else:
                terms = dict(item.periods[-1].terms) if item.periods else {}
            coverages.append(
                {
                    "line": item.line,
                    "policy": item.policy,
                    "year": item.plan_year,
                    "state": item.state.value
                    if as_of is None
                    else ("covered" if terms is not None else "not covered"),
                    "begin": item.begin.isoformat() if item.begin else None,
                    "end": item.end.isoformat() if item.end else None,
                    "paid_through": item.paid_through.isoformat() if item.paid_through else None,
                    "in_force": terms is not None,
                    "plan": (terms or {}).get("plan_id", ""),
                    "level": (terms or {}).get("coverage_level", ""),
                    "premium": (terms or {}).get("premium", ""),
                    "aptc": (terms or {}).get("aptc", ""),
                    "csr": (terms or {}).get("csr_amount", ""),
                    "periods": len(item.periods),
                }
            )
        row: dict[str, Any] = {
            "member": m.member_key,
            "policy": m.policy_key,
            "rel": m.relationship_code,
            "status": m.status
            if as_of is None
            else ("covered" if any(c["in_force"] for c in coverages) else "not covered"),
            "coverages": coverages,
        }
        if show_names:
            row["name"] = f"{m.last_name}, {m.first_name}"
        rows.append(row)
    return rows


def write_members(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    sys.stdout.write(
        f"{'member':<14} {'rel':<3} {'status':<10} {'line':<4} {'policy':<10} {'year':<4} "
        f"{'state':<11} {'begin':<10} {'end':<10} {'plan':<16} {'lvl':<3} {'premium':>8} "
        f"{'aptc':>8}" + ("  name" if rows and "name" in rows[0] else "") + "\n"
    )
    for r in rows:
        for n, c in enumerate(r["coverages"] or [{}]):
            head = f"{r['member']:<14} {r['rel']:<3} {r['status']:<10}" if n == 0 else " " * 29
            sys.stdout.write(
                f"{head} {c.get('line', ''):<4} {c.get('policy', ''):<10} "
                f"{c.get('year', '')!s:<4} {c.get('state', ''):<11} {c.get('begin') or '':<10} "
                f"{c.get('end') or '':<10} {c.get('plan', ''):<16} {c.get('level', ''):<3} "
                f"{c.get('premium', ''):>8} {c.get('aptc', ''):>8}"
                + (f"  {r['name']}" if "name" in r and n == 0 else "")
                + "\n"
            )


def enrollments_table(session: Session, partner: Partner, member_key: str) -> list[dict[str, Any]]:
    """The member's enrollments with every coverage period (no names: keys and terms)."""
    member = member_of(session, partner.id, member_key)
    return [] if member is None else member_json(member)["enrollments"]


def write_enrollments(items: list[dict[str, Any]]) -> None:
    for e in items:
        sys.stdout.write(
            f"{e['line']} policy {e['policy']} {e['plan_year']}: {e['state']} "
            f"{e['begin'] or '?'} .. {e['end'] or 'open'}"
            + (f", paid through {e['paid_through']}" if e["paid_through"] else "")
            + "\n"
        )
        for p in e["periods"]:
            mark = " " if p["in_force"] else "x"
            sys.stdout.write(
                f"  {mark} {p['begin'] or '?':<10} .. {p['end'] or 'open':<10} plan {p['plan_id']} "
                f"{p['coverage_level']} premium {p['premium'] or '-'} APTC {p['aptc'] or '-'} "
                f"CSR {p['csr_amount'] or '-'} {p['rating_area']}\n"
            )


def write_months(rows: list[MonthRow], totals: list[dict[str, Any]]) -> None:
    sys.stdout.write(
        f"{'month':<7} {'member':<14} {'rel':<3} {'line':<4} {'plan':<16} {'var':<3} "
        f"{'from':<10} {'to':<10} {'days':>7} {'premium':>9} {'aptc':>9} {'csr':>8}\n"
    )
    for row in rows:
        d = month_row_json(row)
        sys.stdout.write(
            f"{d['month']:<7} {d['member_key']:<14} {d['relationship']:<3} {d['line']:<4} "
            f"{d['plan_id']:<16} {d['csr_variant']:<3} {d['first_day']:<10} {d['last_day']:<10} "
            f"{d['days']:>3}/{d['days_in_month']:<3} {d['premium'] or '-':>9} "
            f"{d['aptc'] or '-':>9} {d['csr_amount'] or '-':>8}\n"
        )
    for t in totals:
        sys.stdout.write(
            f"{t['month']:<7} total premium {t['premium']}, APTC {t['aptc']}, CSR "
            f"{t['csr_amount']}, enrollee owes {t['responsible']}"
            + (f" (APTC above the premium by {t['aptc_excess']}, not applied)"
               if t["aptc_excess"] != "0.00" else "")
            + "\n"
        )  # fmt: skip


def history_table(session: Session, partner: Partner, member_key: str) -> list[dict[str, Any]]:
    _, events = member_history(session, partner.id, member_key)
    return [
        {
            "at": e.created_at.isoformat(timespec="seconds"),
            "receipt": e.receipt_id,
            "isa13": e.isa13,
            "st02": e.st02,
            "position": e.segment_position,
            "ins03": e.maintenance_type,
            "ins04": e.maintenance_reason,
            "outcome": e.outcome,
        }
        for e in events
    ]
