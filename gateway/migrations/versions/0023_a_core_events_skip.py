"""a core event skipped by an operator

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 22:00:00

An event the core system refuses for good (a 4xx for it, round after round) holds back every
event behind it, of every partner. `edi834 core skip` lets an operator move past it, audited:
the row is marked delivered (the queue goes on) and says who skipped it, when and why; the
core system must then get that member's change another way.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.db.base import UTCDateTime

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("core_outbox") as batch:
        batch.add_column(sa.Column("skipped_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("skipped_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("skip_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("core_outbox") as batch:
        batch.drop_column("skip_reason")
        batch.drop_column("skipped_by")
        batch.drop_column("skipped_at")
