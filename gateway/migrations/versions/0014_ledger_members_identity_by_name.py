"""ledger members indexed by (birth date, upper-cased last name)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 21:00:00

The identity check (`gateway.enrollment.repository.holdings`) looks up each chunk's people by
(birth date, SSN) and by (birth date, upper-cased last name). Only the first had an index; the
second read every member born on each of the chunk's dates and compared the names, a cost that
grew with the ledger: the look-up's share of a chunk rose tenfold from an empty ledger to
400,000 members (bench, issue 15).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_ledger_members_identity_name",
        "ledger_members",
        ["birth_date", sa.text("upper(last_name)")],
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_members_identity_name", table_name="ledger_members")
