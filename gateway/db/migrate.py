"""Alembic, driven from code: `edi834 db upgrade`, `serve` on start, and `/readyz`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from gateway.db.session import db_retry

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@db_retry
def upgrade(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def pending(engine: Engine) -> bool:
    return current_revision(engine) != head_revision()


def upgrade_from(engine: Engine, url: str) -> tuple[str | None, str | None]:
    """Migrate to head; returns (the revision before, head): equal when nothing was pending,
    the first None for a database without the schema yet."""
    before, head = current_revision(engine), head_revision()
    if before != head:
        upgrade(url)
    return before, head
