"""a member's sponsor group: an audit reconciles the groups it is for

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 16:05:00

A broker or TPA sends each employer group's full-file audit under the same ISA ID: one group's
audit listed every other group's members as missing from the file. `ledger_members.sponsor_group`
keeps the group a member's last applied event was sent for (the set's REF*38 master policy
number, else its N1*P5 sponsor id), and an audit's missing members are those of the groups its
members belong to. Members recorded before it have none ("") and are reconciled as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN on both databases (no table rebuild: other tables point at this one).
    op.add_column(
        "ledger_members",
        sa.Column("sponsor_group", sa.String(length=80), server_default="", nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("ledger_members") as batch:
        batch.drop_column("sponsor_group")
