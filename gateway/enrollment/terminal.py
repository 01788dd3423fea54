"""`edi834 ledger`: the enrollment ledger for an operator's terminal. Names, SSNs and birth
dates are PHI: they are printed only with --show-names (and never logged)."""

from __future__ import annotations

import json
import sys
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.db.models import LedgerMember, Partner
from gateway.enrollment.queries import member_history


def members_table(session: Session, partner: Partner, *, show_names: bool) -> list[dict[str, Any]]:
    rows = []
    for m in session.scalars(
        select(LedgerMember)
        .where(LedgerMember.partner_id == partner.id)
        .order_by(LedgerMember.policy_key, LedgerMember.subscriber.desc(), LedgerMember.member_key)
    ):
        row: dict[str, Any] = {
            "member": m.member_key,
            "policy": m.policy_key,
            "rel": m.relationship_code,
            "status": m.status,
            "coverages": [
                {
                    "line": c.insurance_line,
                    "plan": c.plan_id,
                    "level": c.coverage_level,
                    "begin": c.benefit_begin.isoformat() if c.benefit_begin else None,
                    "end": c.benefit_end.isoformat() if c.benefit_end else None,
                    "status": c.status,
                    "premium": c.premium,
                    "aptc": c.aptc,
                }
                for c in m.coverages
            ],
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
        f"{'member':<14} {'policy':<10} {'rel':<3} {'status':<10} {'line':<4} {'plan':<16} "
        f"{'begin':<10} {'end':<10} {'coverage':<8} {'premium':>8} {'aptc':>8}"
        + ("  name" if rows and "name" in rows[0] else "")
        + "\n"
    )
    for r in rows:
        for n, c in enumerate(r["coverages"] or [{}]):
            head = (
                f"{r['member']:<14} {r['policy']:<10} {r['rel']:<3} {r['status']:<10}"
                if n == 0
                else " " * 40
            )
            sys.stdout.write(
                f"{head} {c.get('line', ''):<4} {c.get('plan', ''):<16} "
                f"{c.get('begin') or '':<10} {c.get('end') or '':<10} {c.get('status', ''):<8} "
                f"{c.get('premium', ''):>8} {c.get('aptc', ''):>8}"
                + (f"  {r['name']}" if "name" in r and n == 0 else "")
                + "\n"
            )


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
