"""watch: partners' expected schedules, ack pick-up, alert incidents

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 10:00:00

Partners get an expected schedule (empty: not watched) and a time zone; acks record when and
how the partner picked them up (existing acks: unknown, so never counted as waiting — an ack
delivered before this migration is not an incident); alerts hold one row per incident.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.db.base import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("expected_schedule", sa.String(length=64), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False)
        )
    with op.batch_alter_table("acks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("picked_up_at", UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("picked_up_via", sa.String(length=8), nullable=True))
        batch_op.create_index("ix_acks_pickup", ["picked_up_at", "delivered_at"], unique=False)
    # Acks delivered before pick-ups were recorded: not waiting for anyone.
    op.execute(
        sa.text(
            "UPDATE acks SET picked_up_at = delivered_at, picked_up_via = 'before' "
            "WHERE delivered_at IS NOT NULL"
        )
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("opened_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("posted_state", sa.String(length=8), server_default="", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_alerts_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("key", name=op.f("uq_alerts_key")),
    )
    op.create_index("ix_alerts_unposted", "alerts", ["posted_state"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alerts_unposted", table_name="alerts")
    op.drop_table("alerts")
    with op.batch_alter_table("acks", schema=None) as batch_op:
        batch_op.drop_index("ix_acks_pickup")
        batch_op.drop_column("picked_up_via")
        batch_op.drop_column("picked_up_at")
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.drop_column("timezone")
        batch_op.drop_column("expected_schedule")
