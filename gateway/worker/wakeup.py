"""PostgreSQL: wake the worker when a file is received, instead of at its next poll (issue 19).
Every new receipt is announced on `repositories.WORK_CHANNEL` when it commits (pg_notify in
the intake's statement); this thread LISTENs on its own connection and sets the worker's wake
event for each announcement. Polling stays: a notification lost while this connection was
down (or a file released for retry, whose time comes later) is found by the next poll."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from gateway.db.repositories import WORK_CHANNEL
from gateway.logging import get_logger

if TYPE_CHECKING:
    import psycopg

log = get_logger(__name__)
RECONNECT_SECONDS = 5.0


class WorkListener:
    def __init__(self, engine: Engine, wake: threading.Event, stop: threading.Event) -> None:
        self._engine = engine
        self._wake = wake
        self._stop = stop
        self.listening = threading.Event()  # set while LISTEN is in effect (tests wait on it)
        self._thread = threading.Thread(target=self._run, name="work-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        args, kwargs = self._engine.dialect.create_connect_args(self._engine.url)
        return psycopg.connect(*args, **{**kwargs, "autocommit": True})

    def _run(self) -> None:
        import psycopg  # here: a gateway on SQLite never loads the driver (~0.15 s a start)

        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {WORK_CHANNEL}")
                    # Look once now: what was received before LISTEN took effect (or while this
                    # connection was down) was announced to no one here.
                    self._wake.set()
                    self.listening.set()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self._wake.set()
            except psycopg.Error as exc:
                log.warning("work_listener_disconnected", error_type=type(exc).__name__)
            finally:
                self.listening.clear()
            self._stop.wait(RECONNECT_SECONDS)
