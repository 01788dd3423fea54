"""Engines and units of work. SQLite runs in WAL mode with synchronous=FULL, a busy timeout and
write transactions that take the lock up front (BEGIN IMMEDIATE), so concurrent writers wait
instead of failing on a lock upgrade; PostgreSQL through `EDI834_DATABASE_URL`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

T = TypeVar("T")
SQLITE_BUSY_MS = 30_000
PING_AFTER_IDLE_SECONDS = 1.0


def pool_size_for(threads: int) -> int:
    """Connections a process keeps open: one for each thread that can hold one at the same time
    — `threads` (the API's threadpool), as many again (the hot routes' executor,
    gateway.api.lean) and asyncio.to_thread's default executor (min(32, CPUs + 4) threads) — so
    that none is closed when it is returned and opened again by the next request, as a pool
    smaller than the threadpool does (issue 19). Opened only when needed."""
    return 2 * threads + min(32, (os.cpu_count() or 1) + 4)


def make_engine(
    url: str,
    *,
    busy_timeout_ms: int = SQLITE_BUSY_MS,
    pool_size: int = 10,
    ping_after_idle_seconds: float = PING_AFTER_IDLE_SECONDS,
    **kwargs: Any,
) -> Engine:
    """`pool_size` connections kept (and 10 more opened at a peak, closed when returned);
    ignored with an explicit `poolclass` and by SQLite in memory (one connection per thread).
    PostgreSQL: a connection idle for `ping_after_idle_seconds` is pinged before use."""
    parsed = make_url(url)
    if "poolclass" not in kwargs and parsed.database not in (None, "", ":memory:"):
        kwargs.setdefault("pool_size", pool_size)
        kwargs.setdefault("max_overflow", 10)
        # The connection returned last is handed out first: a thread's units of work one after
        # another reuse one warm connection instead of walking the whole pool, each connection
        # filling its own page cache and prepared statements (SQLite: 199.6 MB against 164.5
        # at the 60th chunk of a file of one-member sets, with 12 connections pooled — issue
        # 13's "native memory" growth of `serve`), and idle ones stay idle (PostgreSQL).
        kwargs.setdefault("pool_use_lifo", True)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, say when transactions begin.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Writers take the lock up front; readers (WAL) neither wait for nor block them.
            read_only = conn.get_execution_options().get("edi834_read_only", False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, **kwargs)
    _ping_when_idle(engine, ping_after_idle_seconds)
    return engine


def _ping_when_idle(engine: Engine, after_seconds: float) -> None:
    """A pooled connection unused for `after_seconds` or more is pinged when it is checked out,
    and replaced when the ping fails (the database restarted, a firewall dropped it). One used
    less long ago is handed out as it is: under load, SQLAlchemy's pool_pre_ping spent a round
    trip on every checkout — half of a received file's (issue 19). Should such a connection be
    dead all the same, its statement fails, SQLAlchemy invalidates the whole pool at once and
    the units of work and key look-ups retry (db_retry)."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get("checked_in")
        if checked_in is None or time.monotonic() - checked_in < after_seconds:
            return  # just opened, or just used
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError("a pooled connection failed its ping") from exc


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def is_transient(exc: BaseException) -> bool:
    """Database locked, connection refused or dropped: worth another try."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL = 5, 6, 13
_PG_TROUBLE = {"53100": "disk_full", "53200": "out_of_memory", "53300": "too_many_connections"}


def database_trouble(exc: BaseException) -> str:
    """What a transient database error is, for the log line that reports it: `disk_full`,
    `locked`, `out_of_memory`, `too_many_connections`, else `unreachable`. From the driver's
    code, never its message (which may quote data). A full disk under SQLite, or under
    PostgreSQL's data directory, was logged as the database being unavailable, nothing more:
    an operator looked for a stopped database while the ledger retried every 5 s."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        primary = code & 0xFF  # an extended code keeps the primary one in its low byte
        if primary == _SQLITE_FULL:
            return "disk_full"
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return "locked"
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate in _PG_TROUBLE:
        return _PG_TROUBLE[sqlstate]
    return "unreachable"


_RETRYING = Retrying(
    retry=retry_if_exception(is_transient),
    stop=stop_after_attempt(5),
    wait=wait_exponential_jitter(multiplier=0.1, max=2.0),
    reraise=True,
)
db_retry = _RETRYING.wraps


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session


def run_in_transaction(factory: sessionmaker[Session], fn: Callable[[Session], T]) -> T:
    """`fn` in one unit of work, retried (bounded) when the database is locked or unreachable.

    tenacity's iterator, not its decorator: a decorated call leaves its function and arguments
    in a reference cycle (the attempt's state and its Retrying copy) that only the cyclic
    collector frees — here the function is a closure over a chunk of a file's members, and
    they stayed alive until a collection came."""
    for attempt in _RETRYING.copy():
        with attempt, unit_of_work(factory) as session:
            return fn(session)
    raise AssertionError("unreachable: the last attempt's error is re-raised")  # pragma: no cover
