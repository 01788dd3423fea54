"""a receipt's purge: member data removed under the insurer's retention policy

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 18:30:00

`edi834 purge` removes, from files received before a retention horizon and finished with, the
bytes received (the blob), the member data kept from them (history payloads, delivered core
payloads, findings' copies of bad values, business findings' wording, reconciliation values)
and the 999s and 824s that quote it. `receipts.purged_at` says when; the receipt, its counts,
its findings' codes and positions and the TA1 stay as the audit trail.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.db.base import UTCDateTime

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("receipts", sa.Column("purged_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("receipts") as batch:
        batch.drop_column("purged_at")
