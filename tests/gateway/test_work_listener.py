"""PostgreSQL LISTEN/NOTIFY (issue 19): a received file wakes the worker's loops at once. The
intake's statement announces each new receipt when it commits; the listener, on its own
connection, sets the wake event for it."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from gateway.context import Gateway
from gateway.db.migrate import upgrade
from gateway.db.session import unit_of_work
from gateway.intake.receive import record_receipt
from gateway.partners import add_partner
from gateway.settings import Settings
from gateway.worker.run import Worker
from gateway.worker.wakeup import WorkListener


@pytest.fixture
def gw(tmp_path: Path, postgres):
    url = str(postgres.create_database(f"wake_{uuid.uuid4().hex[:12]}"))
    settings = Settings(data_dir=tmp_path / "var", database_url=url)
    g = Gateway.open(settings)
    upgrade(settings.sqlalchemy_url)
    yield g
    g.close()


def receive(gw: Gateway, partner_id: int, content: bytes) -> bool:
    pending = gw.blobs.begin()
    pending.write(content)
    _, created = record_receipt(
        gw, partner_id=partner_id, blob=pending.commit(), channel="http", filename=None
    )
    return created


class TestWorkListener:
    def test_a_received_file_sets_the_wake_event(self, gw: Gateway) -> None:
        with unit_of_work(gw.sessions) as s:
            partner_id = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")[0].id
        wake, stop = threading.Event(), threading.Event()
        listener = WorkListener(gw.engine, wake, stop)
        listener.start()
        try:
            assert listener.listening.wait(30)
            wake.clear()  # the look it takes once connected
            assert receive(gw, partner_id, b"ISA*announced")
            # Nothing else sets this event: only the notification can have.
            assert wake.wait(30)
        finally:
            stop.set()
            listener.join(10)

    def test_only_a_postgresql_worker_listens(self, gw: Gateway, tmp_path: Path) -> None:
        assert Worker(gw).listener is not None
        sqlite = Gateway.open(Settings(data_dir=tmp_path / "sqlite"))
        try:
            assert Worker(sqlite).listener is None
        finally:
            sqlite.close()
