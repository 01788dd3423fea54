"""PostgreSQL: a pooled connection is pinged before use only when it was idle (issue 19). A
connection whose server process is gone is replaced unseen when it had been idle; when it had
just been used, its next statement fails, the pool is invalidated at once and the statement
after it runs on a new connection."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from gateway.db.session import make_engine


@pytest.fixture
def url(postgres) -> str:
    return str(postgres.create_database(f"ping_{uuid.uuid4().hex[:12]}"))


def engine_with(url: str, ping_after_idle_seconds: float) -> Iterator[Engine]:
    engine = make_engine(url, pool_size=1, ping_after_idle_seconds=ping_after_idle_seconds)
    yield engine
    engine.dispose()


def kill_backend_of(engine: Engine, url: str) -> int:
    """Terminate the server process behind the pool's one connection; its pid."""
    with engine.connect() as conn:
        pid = int(conn.scalar(text("SELECT pg_backend_pid()")) or 0)
    other = make_engine(url, pool_size=1)
    with other.connect() as conn:
        assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    other.dispose()
    return pid


class TestPingWhenIdle:
    def test_an_idle_connection_with_no_server_is_replaced_before_use(self, url: str) -> None:
        # 0 s: every connection counts as idle, so each checkout pings.
        for engine in engine_with(url, 0.0):
            dead = kill_backend_of(engine, url)
            with engine.connect() as conn:
                assert conn.scalar(text("SELECT pg_backend_pid()")) != dead

    def test_a_connection_just_used_is_not_pinged(self, url: str) -> None:
        # An hour: no connection counts as idle, so none is pinged; the dead one is seen by the
        # statement itself, and the pool is invalidated for the next.
        for engine in engine_with(url, 3600.0):
            dead = kill_backend_of(engine, url)
            with pytest.raises(DBAPIError) as failed, engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            assert failed.value.connection_invalidated
            with engine.connect() as conn:
                assert conn.scalar(text("SELECT pg_backend_pid()")) != dead

    def test_the_status_reads_driver_statements_fail_and_invalidate_as_core_does(
        self, url: str
    ) -> None:
        # repo.receipt_status runs its selects on the driver's cursor; a dead connection there
        # is handed to Core, which fails the same way and invalidates the pool.
        from gateway.db import repositories as repo
        from gateway.db.migrate import upgrade

        upgrade(url)
        for engine in engine_with(url, 3600.0):
            reads = engine.execution_options(isolation_level="AUTOCOMMIT")  # as Gateway's
            dead = kill_backend_of(engine, url)
            with pytest.raises(DBAPIError) as failed, reads.connect() as conn:
                repo.receipt_status(conn, "0" * 32, 1)
            assert failed.value.connection_invalidated
            with reads.connect() as conn:
                assert conn.scalar(text("SELECT pg_backend_pid()")) != dead
                assert repo.receipt_status(conn, "0" * 32, 1) is None
