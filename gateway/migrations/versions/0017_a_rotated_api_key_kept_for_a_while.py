"""a rotated API key kept working for a while

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 08:30:00

`edi834 partner rotate-key NAME --keep-old MINUTES` keeps the old key's hash beside the new one
until then, so that a partner can move to the new key without an outage (the old key stopped
at once, and every rotation refused the partner's next uploads until it was given the new key).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.db.base import UTCDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN on both databases (no table rebuild: other tables' keys point at partners).
    op.add_column("partners", sa.Column("previous_api_key_hash", sa.String(64), nullable=True))
    op.add_column(
        "partners", sa.Column("previous_api_key_until", UTCDateTime(timezone=True), nullable=True)
    )
    op.create_index("ix_partners_previous_api_key_hash", "partners", ["previous_api_key_hash"])


def downgrade() -> None:
    op.drop_index("ix_partners_previous_api_key_hash", table_name="partners")
    with op.batch_alter_table("partners") as batch:
        batch.drop_column("previous_api_key_until")
        batch.drop_column("previous_api_key_hash")
