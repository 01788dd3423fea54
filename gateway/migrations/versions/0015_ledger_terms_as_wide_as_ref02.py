"""ledger terms (premium, APTC, CSR amount, rating area) as wide as the 2750 REF02 they hold

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 01:30:00

The columns were 20 characters and the ledger cut what did not fit: `000000000000000412.37` (a
premium a sender padded with zeros) was stored as `000000000000000412.3`, billed as 412.30, and
`999999999999999999.99` lost a digit. Amounts are now stored as their decimal (`412.37`) and the
columns hold any REF02 (AN 1/50).

PostgreSQL: widening a varchar is a catalog change. SQLite does not enforce a varchar's length,
so its tables are left as they are: rebuilding ledger_coverages (SQLite cannot alter a column's
type) would drop the table inside the migration's transaction, where foreign keys are on and
its DROP deletes every ledger period by ON DELETE CASCADE.
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_TABLES = ("ledger_coverages", "ledger_periods")
_COLUMNS = ("premium", "aptc", "csr_amount", "rating_area")


def _alter(width: int) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(
            f"ALTER TABLE {table} "
            + ", ".join(f"ALTER COLUMN {c} TYPE VARCHAR({width})" for c in _COLUMNS)
        )


def upgrade() -> None:
    _alter(50)


def downgrade() -> None:
    _alter(20)  # fails on a value longer than 20, rather than cutting it
