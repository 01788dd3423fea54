"""PostgreSQL: outgoing control numbers from a sequence (unique across processes, no row lock)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite keeps the counter row: one writer at a time anyway
    op.execute(
        "CREATE SEQUENCE IF NOT EXISTS edi834_control_numbers MINVALUE 1 MAXVALUE 999999999 CYCLE"
    )
    # Continue after the numbers the counter row already handed out.
    op.execute(
        "SELECT setval('edi834_control_numbers', COALESCE((SELECT value FROM counters "
        "WHERE name = 'control_number' AND value > 0), 1), "
        "EXISTS (SELECT 1 FROM counters WHERE name = 'control_number' AND value > 0))"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE IF EXISTS edi834_control_numbers")
