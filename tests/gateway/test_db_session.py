"""run_in_transaction: retried when the database is transiently away, and leaving nothing alive
behind it (the ledger passes it closures over a chunk of a file's members)."""

from __future__ import annotations

import gc
import sqlite3
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from tenacity import wait_none

from gateway.context import Gateway
from gateway.db import session
from gateway.db.session import run_in_transaction, unit_of_work
from tests.gateway.harness import in_process_gateway


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    yield from in_process_gateway(tmp_path / "var")


class Marker:
    pass


def _closure_over(marker: Marker) -> Callable[[Session], int]:
    def fn(session: Session) -> int:
        session.execute(text("SELECT 1"))
        return id(marker)

    return fn


def test_nothing_of_a_transaction_stays_alive_after_it(gw: Gateway) -> None:
    """Freed by reference counting alone: no cycle holds the function or what its closure
    holds until the cyclic collector runs (with tenacity's decorator, one did — for the
    ledger, a chunk of 500 members)."""
    marker = Marker()
    alive = weakref.ref(marker)
    fn = _closure_over(marker)
    del marker
    gc.disable()
    try:
        run_in_transaction(gw.sessions, fn)
        del fn
        assert alive() is None
    finally:
        gc.enable()


def test_a_transient_error_is_retried_and_others_are_not(gw: Gateway) -> None:
    calls: list[int] = []

    def flaky(session: Session) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        return "done"

    assert run_in_transaction(gw.sessions, flaky) == "done"
    assert len(calls) == 3

    def broken(session: Session) -> None:
        calls.append(1)
        raise IntegrityError("INSERT", {}, Exception("duplicate"))

    calls.clear()
    with pytest.raises(IntegrityError):
        run_in_transaction(gw.sessions, broken)
    assert len(calls) == 1


def test_the_retries_are_bounded(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "_RETRYING", session._RETRYING.copy(wait=wait_none()))
    calls: list[int] = []

    def away(session: Session) -> None:
        calls.append(1)
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    with pytest.raises(OperationalError):
        run_in_transaction(gw.sessions, away)
    assert len(calls) == 5


def test_units_of_work_one_after_another_reuse_the_connection_returned_last(gw: Gateway) -> None:
    """With a dozen connections pooled (a busy `serve`), one thread's transactions in a row
    run on the connection it returned last, not on each pooled one in turn: every connection
    keeps its own page cache and prepared statements, and walking the pool grew a ledger
    run's memory by 50 MB where this costs 16 (issue 13)."""
    held = [gw.read_engine.connect() for _ in range(12)]
    for c in held:
        c.exec_driver_sql("SELECT 1")
    for c in held:
        c.close()
    used = set()
    for _ in range(20):
        with unit_of_work(gw.sessions) as s:
            s.execute(text("SELECT 1"))
            used.add(id(s.connection().connection.dbapi_connection))
    assert len(used) == 1


class TestDatabaseTrouble:
    """A transient database error's log line says what it is (found filling the disk under a
    SQLite `serve` mid-ledger: `ledger_interrupted` and `core_outbox_error_database_unavailable`
    every few seconds, nothing saying the disk was full)."""

    @staticmethod
    def _full_sqlite(tmp_path: Path) -> OperationalError:
        engine = create_engine(f"sqlite:///{tmp_path / 'full.sqlite3'}")
        try:
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE t (v TEXT)"))
                pages = conn.execute(text("PRAGMA page_count")).scalar_one()
                conn.execute(text(f"PRAGMA max_page_count = {pages}"))  # as a full disk would
            with engine.begin() as conn:
                with pytest.raises(OperationalError) as caught:
                    conn.execute(
                        text("INSERT INTO t SELECT zeroblob(10000) FROM (SELECT 1 UNION SELECT 2)")
                    )
                return caught.value
        finally:
            engine.dispose()

    def test_a_full_disk_under_sqlite(self, tmp_path: Path) -> None:
        assert session.database_trouble(self._full_sqlite(tmp_path)) == "disk_full"

    def test_a_full_disk_under_postgresql(self) -> None:
        psycopg_errors = pytest.importorskip("psycopg.errors")
        exc = OperationalError("INSERT", {}, psycopg_errors.DiskFull("no space"))
        assert session.database_trouble(exc) == "disk_full"
        exc = OperationalError("SELECT", {}, psycopg_errors.TooManyConnections("too many"))
        assert session.database_trouble(exc) == "too_many_connections"

    def test_a_lock_held_past_the_busy_timeout(self, tmp_path: Path) -> None:
        path = tmp_path / "locked.sqlite3"
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("CREATE TABLE t (v TEXT)")
        holder.execute("BEGIN IMMEDIATE")
        engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
        try:
            with engine.connect() as conn, pytest.raises(OperationalError) as caught:
                conn.execute(text("INSERT INTO t VALUES ('x')"))
            assert session.database_trouble(caught.value) == "locked"
        finally:
            engine.dispose()
            holder.close()

    def test_a_database_that_does_not_answer(self) -> None:
        exc = OperationalError("SELECT 1", {}, ConnectionError("connection refused"))
        assert session.database_trouble(exc) == "unreachable"

    def test_a_worker_loop_logs_the_reason(self, tmp_path: Path) -> None:
        from structlog.testing import capture_logs

        from gateway.worker.run import _Failures

        with capture_logs() as logs:
            _Failures("core_outbox_error", "w").failed(self._full_sqlite(tmp_path))
        assert [(e["event"], e["reason"]) for e in logs] == [
            ("core_outbox_error_database_unavailable", "disk_full")
        ]
