"""What every part of the running gateway shares: settings, the database, the blob store."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, Engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from gateway.db.base import utcnow
from gateway.db.session import make_engine, make_session_factory, pool_size_for
from gateway.metrics import DB_CONNECTIONS_CLOSED, DB_CONNECTIONS_OPENED
from gateway.settings import Settings
from gateway.storage import PRIVATE_DIR, BlobStore, make_private_dirs, open_private


@dataclass
class Gateway:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]  # units of work that write (SQLite: BEGIN IMMEDIATE)
    reads: sessionmaker[Session]  # read-only sessions (SQLite: a plain, deferred BEGIN)
    read_engine: Engine  # the same for Core reads on a Connection (the status API, issue 19)
    blobs: BlobStore
    extra: dict[str, object] = field(default_factory=dict)
    # "Now" for what judges time against a schedule (gateway.watch): tests inject their own.
    clock: Callable[[], dt.datetime] = utcnow
    # PostgreSQL: the engine in autocommit, for a unit of work that is one statement (single_write)
    autocommit_engine: Engine | None = None

    @classmethod
    def open(cls, settings: Settings) -> Gateway:
        prepare_data_dir(settings)
        engine = make_engine(
            settings.sqlalchemy_url,
            busy_timeout_ms=settings.db_busy_timeout_ms,
            pool_size=pool_size_for(settings.api_threads),
        )
        event.listen(engine, "connect", _count_opened)
        event.listen(engine, "close", _count_closed)
        read_engine = engine.execution_options(**_read_options(engine))
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            reads=make_session_factory(read_engine),
            read_engine=read_engine,
            autocommit_engine=(
                engine.execution_options(isolation_level="AUTOCOMMIT")
                if engine.dialect.name == "postgresql"
                else None
            ),
            blobs=BlobStore(settings.blob_dir),
        )

    def single_write(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection for a unit of work whose writes are one statement on PostgreSQL: there
        in autocommit, so the statement is its own transaction, committed before it returns (no
        BEGIN and COMMIT round trips, issue 19); on SQLite a write transaction (BEGIN IMMEDIATE)
        committed on leaving, rolled back on an error."""
        if self.autocommit_engine is not None:
            return self.autocommit_engine.connect()
        return self.engine.begin()

    def read_transaction(self) -> Session:
        """A read-only session that is one transaction on both databases: a long read that
        streams through a server-side cursor (PostgreSQL opens one only inside a transaction),
        where `reads` is in autocommit there. On SQLite a deferred BEGIN: a WAL snapshot that
        neither waits for writers nor blocks them — `sessions` takes the write lock up front,
        and a 100,000-row CSV export held it for its seven seconds, every upload, login and
        worker write waiting behind it."""
        return Session(self.engine.execution_options(edi834_read_only=True))

    def outbound_dir(self, partner_name: str) -> Path:
        return self.settings.sftp_root / partner_name / "outbound"

    def close(self) -> None:
        self.engine.dispose()


def _count_opened(_dbapi_conn: object, _record: object) -> None:
    DB_CONNECTIONS_OPENED.inc()


def _count_closed(_dbapi_conn: object, _record: object) -> None:
    DB_CONNECTIONS_CLOSED.inc()


def prepare_data_dir(settings: Settings) -> None:
    """The data directory holds member data: 0700, and the SQLite file 0600 (its -wal and -shm
    take its mode), whatever the umask. A directory made wider by hand is narrowed again."""
    make_private_dirs(settings.data_dir)
    with contextlib.suppress(PermissionError):  # not ours (a mounted volume): leave it
        os.chmod(settings.data_dir, PRIVATE_DIR)
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(url.database)
        make_private_dirs(database.parent)
        os.close(open_private(database, os.O_WRONLY | os.O_CREAT))


def _read_options(engine: Engine) -> dict[str, object]:
    """Read-only sessions: on SQLite a deferred BEGIN (one WAL snapshot for the session); on
    PostgreSQL no transaction at all: under READ COMMITTED each statement sees what was
    committed before it began, in a transaction or not, and without one a read costs no BEGIN
    and no ROLLBACK — two of a status read's five round trips (issue 19)."""
    if engine.dialect.name == "sqlite":
        return {"edi834_read_only": True}
    return {"edi834_read_only": True, "isolation_level": "AUTOCOMMIT"}
