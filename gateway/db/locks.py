"""One holder at a time across the gateway's processes, for work two of them must not do at
once: a PostgreSQL advisory lock (per database), or with SQLite an flock on a file in the data
directory every process shares. Both end with their connection or process, so a crash never
wedges the work; a caller that does not get the lock skips its turn."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from gateway.context import Gateway
from gateway.storage import make_private_dirs, open_private

_TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")


@contextmanager
def sole(gw: Gateway, key: int, lock_file: str) -> Iterator[bool]:
    """True when this caller holds `key` (PostgreSQL) or `lock_file` (SQLite) until it exits."""
    if gw.engine.dialect.name == "postgresql":
        with gw.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            got = bool(conn.execute(_TRY_LOCK, {"key": key}).scalar())
            try:
                yield got
            finally:
                if got:
                    conn.execute(_UNLOCK, {"key": key})
        return
    make_private_dirs(gw.settings.data_dir)
    lock_fd = open_private(gw.settings.data_dir / lock_file, os.O_WRONLY | os.O_CREAT)
    with os.fdopen(lock_fd, "ab") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            got = False
        else:
            got = True
        try:
            yield got
        finally:
            if got:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
