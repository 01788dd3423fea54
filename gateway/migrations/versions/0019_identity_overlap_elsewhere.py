"""identity-overlap-elsewhere: a partner's identity-overlap severity carried over

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 13:00:00

`identity-overlap` now covers the same sender's other member ids only; the same person through
another sender is `identity-overlap-elsewhere`, whose warning the sender is not shown. A partner
that set `identity-overlap` (to reject, or to ignore) meant both: the new rule takes the same
severity, so nothing it rejected is applied after the upgrade.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

OLD, NEW = "identity-overlap", "identity-overlap-elsewhere"


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, rule_severities FROM partners WHERE rule_severities LIKE :old"),
        {"old": f'%"{OLD}"%'},
    ).all()
    for partner_id, text in rows:
        severities = json.loads(text)
        if OLD in severities and NEW not in severities:
            severities[NEW] = severities[OLD]
            conn.execute(
                sa.text("UPDATE partners SET rule_severities = :s WHERE id = :id"),
                {"s": json.dumps(severities, sort_keys=True), "id": partner_id},
            )


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, rule_severities FROM partners WHERE rule_severities LIKE :new"),
        {"new": f'%"{NEW}"%'},
    ).all()
    for partner_id, text in rows:
        severities = json.loads(text)
        severities.pop(NEW, None)
        conn.execute(
            sa.text("UPDATE partners SET rule_severities = :s WHERE id = :id"),
            {"s": json.dumps(severities, sort_keys=True) if severities else "", "id": partner_id},
        )
