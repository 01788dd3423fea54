"""business findings: a note for the insurer's operators only (never in API answers or the 824)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 01:40:00

The cross-identity check finds the same person enrolled through another sender; the sender is
told only that (its own member), while the operators see which partner and member it is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("business_findings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("operator_note", sa.Text(), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("business_findings", schema=None) as batch_op:
        batch_op.drop_column("operator_note")
