"""an enrollment's scheduled end, restored by a reinstatement

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 10:20:00

A reinstatement without DTP*349 (CMS sends 025 without a 2300 loop) left the enrollment
open-ended, billed into the next plan year. `ledger_coverages.scheduled_end` keeps the end an
enrollment has while in force (its addition's or a change's DTP*349); a termination leaves it
and a reinstatement restores it. Enrollments in force now take their end; those already ended
are not known (NULL: reinstated open-ended, as before).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN on both databases (no table rebuild: ledger_periods points at this table).
    op.add_column("ledger_coverages", sa.Column("scheduled_end", sa.Date(), nullable=True))
    op.execute(
        "UPDATE ledger_coverages SET scheduled_end = benefit_end "
        "WHERE status IN ('initial', 'effectuated', 'active')"
    )


def downgrade() -> None:
    with op.batch_alter_table("ledger_coverages") as batch:
        batch.drop_column("scheduled_end")
