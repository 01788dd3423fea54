"""a dependent's member key without its SSN, name or birth date

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 04:45:00

A dependent without REF*17 was keyed `SUBSCRIBER/34123456789` (its NM108 and NM109, an SSN) or
`SUBSCRIBER/LAST|FIRST|CCYYMMDD`. The key is listed by the API, shown to viewers (masked to its
last four characters: the SSN's), put in addresses (where its `/` made it unreachable) and in
access-log lines (where only the part before the `/` was redacted). It is now
`SUBSCRIBER:` and 20 hex digits of a digest (`gateway.enrollment.keys.dependent_key`).

The stored keys of that form are rewritten in the members, their events and reconciliation
items, so that the next file for the same dependent finds it. The digest is written out here,
not imported: a migration must do tomorrow what it does today. Rows are found with one scan of
each table (dependents whose key starts with their subscriber's REF*0F and a `/`; a
reconciliation item by the member keys rewritten) and updated by primary key.

Core events already in the outbox keep the key they were built with.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _dependent_key(subscriber: str, who: str) -> str:
    digest = hashlib.sha256(b"edi834 dependent\x1f" + who.encode()).hexdigest()[:20]
    return f"{subscriber[:99]}:{digest}"


def _table(name: str, *extra: str) -> sa.TableClause:
    return sa.table(name, sa.column("id"), sa.column("member_key"), *map(sa.column, extra))


def _rewrite(table: sa.TableClause, updates: list[dict[str, object]]) -> None:
    if updates:
        op.get_bind().execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("row_id"))
            .values(member_key=sa.bindparam("key")),
            updates,
        )


def upgrade() -> None:
    bind = op.get_bind()
    rewritten: dict[str, str] = {}
    for name in ("ledger_members", "member_events"):
        table = _table(name, "subscriber_number", "subscriber")
        rows = bind.execute(
            sa.select(table.c.id, table.c.member_key, table.c.subscriber_number).where(
                table.c.subscriber == sa.false(), table.c.member_key.like("%/%")
            )
        ).all()
        updates: list[dict[str, object]] = []
        for row_id, key, subscriber in rows:
            subscriber = subscriber or ""
            if not key.startswith(subscriber + "/"):
                continue  # a REF*17 with a slash in it: the sender's id, kept
            new = rewritten.setdefault(key, _dependent_key(subscriber, key[len(subscriber) + 1 :]))
            updates.append({"row_id": row_id, "key": new})
        _rewrite(table, updates)
    items = _table("reconciliation_items")
    found = bind.execute(
        sa.select(items.c.id, items.c.member_key).where(items.c.member_key.like("%/%"))
    ).all()
    _rewrite(items, [{"row_id": i, "key": rewritten[k]} for i, k in found if k in rewritten])


def downgrade() -> None:
    pass  # a digest cannot be read back; the old keys carried member data
