"""transaction sets indexed by (receipt, id)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 13:00:00

The ledger stage reads a file's set decisions a page at a time, in id order (a file can hold a
million one-family sets). An index on the receipt alone made each page read and sort every set
of the file; (receipt_id, id) reads each page in order, and serves every look-up the old index
served.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_transaction_sets_receipt_id_id", "transaction_sets", ["receipt_id", "id"])
    op.drop_index("ix_transaction_sets_receipt_id", table_name="transaction_sets")


def downgrade() -> None:
    op.create_index("ix_transaction_sets_receipt_id", "transaction_sets", ["receipt_id"])
    op.drop_index("ix_transaction_sets_receipt_id_id", table_name="transaction_sets")
