"""a sequence of core events per partner

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-08 00:30:00

Each core event gets `partner_seq`: 1, 2, 3, … per partner, with no gap, in ledger order, given
in the chunk's transaction from `partners.core_seq`. A core system that sees 41 after 39 knows
an event is missing (never sent, or skipped by an operator with `edi834 core skip`), which the
idempotency keys and the global `event_id` (shared by every partner) cannot tell it. Events
written before this migration carry none; each partner's sequence starts at 1 after it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN and CREATE INDEX: on SQLite a batch would copy both tables.
    op.add_column(
        "partners", sa.Column("core_seq", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.add_column("core_outbox", sa.Column("partner_seq", sa.BigInteger(), nullable=True))
    op.create_index(
        "uq_core_outbox_partner_seq", "core_outbox", ["partner_id", "partner_seq"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_core_outbox_partner_seq", table_name="core_outbox")
    with op.batch_alter_table("core_outbox") as batch:
        batch.drop_column("partner_seq")
    with op.batch_alter_table("partners") as batch:
        batch.drop_column("core_seq")
