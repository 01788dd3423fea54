"""an enrollment's stint: enrolled again after a termination in the same plan year

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 15:45:00

A member terminated and then enrolled again on the same policy, line and plan year (a rehire,
COBRA continuation after a gap) reused that plan year's enrollment: its begin moved to the new
date and the months it had been in force left the monthly view. `ledger_coverages.stint`
numbers the enrollments of one (member, line, policy, plan year), 0 for the first, and is part
of the unique key. Existing rows are stint 0.
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

OLD_KEY = ["member_id", "insurance_line", "policy_number", "plan_year"]


def upgrade() -> None:
    _rebuild(add=True)


def downgrade() -> None:
    _rebuild(add=False)


def _rebuild(*, add: bool) -> None:
    # On SQLite a changed unique key rebuilds the table (batch mode): the old one is dropped,
    # and with foreign keys on, its periods with it (ON DELETE CASCADE). They are kept aside
    # and what went is put back. PostgreSQL alters the table in place.
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("CREATE TEMP TABLE keep_periods AS SELECT * FROM ledger_periods")
    with warnings.catch_warnings(), op.batch_alter_table("ledger_coverages") as batch:
        # Reflecting the table reflects ledger_members (its foreign key's), whose index on an
        # expression SQLAlchemy skips: that table is not rebuilt.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        batch.drop_constraint("uq_ledger_coverages_enrollment", type_="unique")
        if add:
            batch.add_column(sa.Column("stint", sa.Integer(), server_default="0", nullable=False))
            batch.create_unique_constraint("uq_ledger_coverages_enrollment", [*OLD_KEY, "stint"])
        else:
            batch.drop_column("stint")
            batch.create_unique_constraint("uq_ledger_coverages_enrollment", OLD_KEY)
    if sqlite:
        op.execute(
            "INSERT INTO ledger_periods SELECT * FROM keep_periods "
            "WHERE id NOT IN (SELECT id FROM ledger_periods)"
        )
        op.execute("DROP TABLE keep_periods")
