"""the gate: per-set disposition, onboarding partners, dry runs, omitted findings counted

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 22:30:00

Existing transaction sets get the gate's decision computed from their stored facts (envelope
TA1, ISA15 and sender; group AK901; set IK501), so a database written by an older version
answers `edi834 ledger check` and the API the same way a new one does. Nothing already applied
is changed here: `edi834 ledger check` lists it for an operator to act on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("onboarding", sa.Boolean(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("transaction_sets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("findings_omitted", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("gate", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("subscriber_count", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("gate_reason", sa.String(length=200), server_default="", nullable=False)
        )
    with op.batch_alter_table("member_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("note", sa.String(length=200), server_default="", nullable=False)
        )
    with op.batch_alter_table("business_findings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dry_run", sa.Boolean(), server_default="0", nullable=False))
    _decide_existing_sets()


def _decide_existing_sets() -> None:
    # The decision itself lives in gateway.gate; a migration that re-derived it could drift.
    from gateway.gate import SenderFacts, SetFacts, decide

    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT t.id, t.st01, t.ack_code, g.ack_code, e.ta1_code, e.ta1_note, e.usage, "
            "e.sender_qualifier, e.sender_id, p.isa_qualifier, p.isa_id "
            "FROM transaction_sets t JOIN groups g ON g.id = t.group_id "
            "JOIN envelopes e ON e.id = g.envelope_id JOIN receipts r ON r.id = t.receipt_id "
            "JOIN partners p ON p.id = r.partner_id"
        )
    ).all()
    updates = []
    for set_id, st01, set_ack, group_ack, ta1, note, usage, squal, sid, pqual, pid in rows:
        decision = decide(
            SetFacts(
                ta1_code=ta1,
                ta1_note=note,
                usage=usage,
                sender=(squal, sid),
                group_ack=group_ack,
                set_ack=set_ack,
                st01=st01,
            ),
            SenderFacts(isa_qualifier=pqual, isa_id=pid),
        )
        updates.append(
            {"id": set_id, "gate": decision.disposition.value, "reason": decision.reason}
        )
    if updates:
        conn.execute(
            sa.text(
                "UPDATE transaction_sets SET gate = :gate, gate_reason = :reason WHERE id = :id"
            ),
            updates,
        )


def downgrade() -> None:
    with op.batch_alter_table("business_findings", schema=None) as batch_op:
        batch_op.drop_column("dry_run")
    with op.batch_alter_table("member_events", schema=None) as batch_op:
        batch_op.drop_column("note")
    with op.batch_alter_table("transaction_sets", schema=None) as batch_op:
        batch_op.drop_column("gate_reason")
        batch_op.drop_column("subscriber_count")
        batch_op.drop_column("gate")
        batch_op.drop_column("findings_omitted")
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.drop_column("onboarding")
