"""coverage periods and the policy lifecycle: one enrollment per policy, line and plan year

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 01:00:00

`ledger_coverages` becomes one row per member, insurance line, policy (REF*1L) and plan year,
with a lifecycle state (initial | effectuated | terminated | cancelled), the paid-through date,
and `ledger_periods` under it: the terms in force from a date on. Existing rows keep what they
had: an active coverage becomes `initial` (nothing recorded its effectuation), an ended one
`terminated` (`cancelled` when it ended on or before its begin date), and each gets one period
from its begin date with the terms it holds. An index on (birth_date, id_value) serves the
cross-identity check.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

from gateway.db.base import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_coverages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("plan_year", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("effectuated", sa.Boolean(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("paid_through", sa.Date(), nullable=True))
        batch_op.add_column(
            sa.Column("csr_amount", sa.String(length=20), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("rating_area", sa.String(length=20), server_default="", nullable=False)
        )
        batch_op.drop_constraint("uq_ledger_coverages_member_id_insurance_line", type_="unique")
        batch_op.create_unique_constraint(
            "uq_ledger_coverages_enrollment",
            ["member_id", "insurance_line", "policy_number", "plan_year"],
        )
        batch_op.create_index("ix_ledger_coverages_policy_number", ["policy_number"], unique=False)
    op.create_table(
        "ledger_periods",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("coverage_id", sa.Integer(), nullable=False),
        sa.Column("begin", sa.Date(), nullable=False),
        sa.Column("plan_id", sa.String(length=80), nullable=False),
        sa.Column("coverage_level", sa.String(length=3), nullable=False),
        sa.Column("premium", sa.String(length=20), nullable=False),
        sa.Column("aptc", sa.String(length=20), nullable=False),
        sa.Column("csr_amount", sa.String(length=20), nullable=False),
        sa.Column("rating_area", sa.String(length=20), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["coverage_id"],
            ["ledger_coverages.id"],
            name=op.f("fk_ledger_periods_coverage_id_ledger_coverages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_periods")),
        sa.UniqueConstraint(
            "coverage_id", "begin", name=op.f("uq_ledger_periods_coverage_id_begin")
        ),
    )
    with op.batch_alter_table("ledger_members", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_members_identity", ["birth_date", "id_value"], unique=False
        )
    _existing_coverages()


def _existing_coverages() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT id, status, benefit_begin, benefit_end, plan_id, coverage_level, premium, "
            "aptc, updated_event_id FROM ledger_coverages"
        )
    ).all()
    updates, periods = [], []
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for cid, status, begin, end, plan, level, premium, aptc, event_id in rows:
        begin = _date(begin)
        end = _date(end)
        if status == "active":
            state = "initial"
        elif begin is not None and end is not None and end <= begin:
            state = "cancelled"
        else:
            state = "terminated"
        updates.append({"id": cid, "state": state, "year": begin.year if begin else 0})
        periods.append(
            {
                "coverage_id": cid,
                "begin": begin or dt.date.min,
                "plan_id": plan or "",
                "coverage_level": level or "",
                "premium": premium or "",
                "aptc": aptc or "",
                "csr_amount": "",
                "rating_area": "",
                "event_id": event_id,
                "created_at": now,
            }
        )
    if updates:
        conn.execute(
            sa.text(
                "UPDATE ledger_coverages SET status = :state, plan_year = :year WHERE id = :id"
            ),
            updates,
        )
    if periods:
        conn.execute(
            sa.text(
                "INSERT INTO ledger_periods (coverage_id, begin, plan_id, coverage_level, "
                "premium, aptc, csr_amount, rating_area, event_id, created_at) VALUES "
                "(:coverage_id, :begin, :plan_id, :coverage_level, :premium, :aptc, "
                ":csr_amount, :rating_area, :event_id, :created_at)"
            ),
            periods,
        )


def _date(value: object) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def downgrade() -> None:
    with op.batch_alter_table("ledger_members", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_members_identity")
    op.drop_table("ledger_periods")
    conn = op.get_bind()
    conn.execute(
        sa.text(
            "UPDATE ledger_coverages SET status = CASE WHEN status IN ('initial', "
            "'effectuated') THEN 'active' ELSE 'ended' END"
        )
    )
    # One row per member and line again: keep each member's latest enrollment of a line.
    conn.execute(
        sa.text(
            "DELETE FROM ledger_coverages WHERE id NOT IN (SELECT max(id) FROM ledger_coverages "
            "GROUP BY member_id, insurance_line)"
        )
    )
    with op.batch_alter_table("ledger_coverages", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_coverages_policy_number")
        batch_op.drop_constraint("uq_ledger_coverages_enrollment", type_="unique")
        batch_op.create_unique_constraint(
            "uq_ledger_coverages_member_id_insurance_line", ["member_id", "insurance_line"]
        )
        batch_op.drop_column("rating_area")
        batch_op.drop_column("csr_amount")
        batch_op.drop_column("paid_through")
        batch_op.drop_column("effectuated")
        batch_op.drop_column("plan_year")
