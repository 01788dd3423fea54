"""The worker's queue and its guarantees, on SQLite and PostgreSQL: leases, control numbers,
duplicates, parking, and a graceful shutdown that finishes or safely abandons a file."""

from __future__ import annotations

import datetime as dt
import functools
import io
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.models import Receipt, Status
from gateway.db.session import unit_of_work
from gateway.worker.run import Worker
from tests.benchmarks.generate_834 import write_834
from tests.gateway.harness import add_va, in_process_gateway, submit, wait_final


@pytest.fixture
def gw(tmp_path, database_url):
    yield from in_process_gateway(tmp_path / "var", database_url, max_attempts=2)


def _receipt(gw: Gateway, partner_id: int, content: bytes) -> str:
    pending = gw.blobs.begin()
    pending.write(content)
    blob = pending.commit()
    with unit_of_work(gw.sessions) as s:
        r, created = repo.insert_receipt(
            s,
            Receipt(
                partner_id=partner_id,
                channel="http",
                filename="x.834",
                sha256=blob.sha256,
                dedup_sha256=blob.sha256,
                size=blob.size,
                blob_path=blob.rel_path,
            ),
        )
        assert created
        return r.id


class TestQueue:
    def test_lease_is_exclusive_until_it_expires(self, gw):
        pid = add_va(gw)
        first = _receipt(gw, pid, b"ISA first")
        second = _receipt(gw, pid, b"ISA second")
        with unit_of_work(gw.sessions) as s:
            a = repo.claim_next(s, worker_id="w1", lease_seconds=60)
            assert a is not None and a.id == first and a.attempts == 1
        with unit_of_work(gw.sessions) as s:
            b = repo.claim_next(s, worker_id="w2", lease_seconds=60)
            assert b is not None and b.id == second
        with unit_of_work(gw.sessions) as s:
            assert repo.claim_next(s, worker_id="w3", lease_seconds=60) is None
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61)
        with unit_of_work(gw.sessions) as s:
            c = repo.claim_next(s, worker_id="w3", lease_seconds=60, now=later)
            assert c is not None and c.id == first and c.attempts == 2
            assert c.lease_owner == "w3"
        with unit_of_work(gw.sessions) as s:  # the old owner can no longer extend it
            assert not repo.extend_lease(s, first, "w1", 60)
            assert repo.extend_lease(s, first, "w3", 60)

    def test_same_bytes_same_partner_is_one_receipt(self, gw):
        pid = add_va(gw)
        rid = _receipt(gw, pid, b"ISA same")
        pending = gw.blobs.begin()
        pending.write(b"ISA same")
        blob = pending.commit()
        with unit_of_work(gw.sessions) as s:
            r, created = repo.insert_receipt(
                s,
                Receipt(
                    partner_id=pid,
                    channel="sftp",
                    filename="y",
                    sha256=blob.sha256,
                    dedup_sha256=blob.sha256,
                    size=blob.size,
                    blob_path=blob.rel_path,
                ),
            )
            assert (r.id, created) == (rid, False)

    def test_control_numbers_are_persisted_unique_and_wrap(self, gw):
        with unit_of_work(gw.sessions) as s:
            assert repo.take_control_numbers(s, 3) == [1, 2, 3]
        with unit_of_work(gw.sessions) as s:
            assert repo.take_control_numbers(s, 2) == [4, 5]
        with unit_of_work(gw.sessions) as s:
            if gw.engine.dialect.name == "postgresql":  # a sequence (migration 0005)
                s.execute(text("SELECT setval('edi834_control_numbers', 999999998)"))
            else:  # the counter row
                s.get(repo.Counter, repo.CONTROL_NUMBER).value = 999_999_998
        with unit_of_work(gw.sessions) as s:
            assert repo.take_control_numbers(s, 3) == [999_999_999, 1, 2]

    def test_control_numbers_stay_unique_under_concurrent_takers(self, gw):
        def take(_: int) -> list[int]:
            numbers = []
            for _ in range(20):
                with unit_of_work(gw.sessions) as s:
                    numbers += repo.take_control_numbers(s, 3)
            return numbers

        with ThreadPoolExecutor(4) as pool:
            taken = [n for batch in pool.map(take, range(4)) for n in batch]
        assert len(taken) == len(set(taken)) == 240

    def test_a_file_that_keeps_failing_is_parked_not_dropped(self, gw, monkeypatch):
        pid = add_va(gw)
        rid = _receipt(gw, pid, (b"ISA" + b"x" * 200))
        import gateway.worker.run as run

        def boom(*args, **kwargs):
            raise RuntimeError("simulated bug")

        monkeypatch.setattr(run, "validate_job", boom)
        worker = Worker(gw, worker_id="w1")
        for _ in range(5):
            worker.run_once()
            with unit_of_work(gw.sessions) as s:
                r = s.get(Receipt, rid)
                if r.status == Status.FAILED:
                    break
                r.lease_expires_at = None  # skip the back-off
        with unit_of_work(gw.sessions) as s:
            r = s.get(Receipt, rid)
            assert r.status == Status.FAILED and r.outcome is None
            assert "simulated bug" in r.error
            assert r.attempts == gw.settings.max_attempts
            assert repo.acks_of(s, rid) == []  # never a false rejection


@functools.cache
def _big_file(members: int) -> bytes:
    buf = io.BytesIO()
    write_834(buf, members, seed=7)
    return buf.getvalue()


class TestGracefulShutdown:
    def test_sigterm_mid_file_abandons_safely_and_the_restart_finishes_it(self, gateway):
        key = gateway.add_partner("va", "VA0FFM")
        # pyx12's engine: slow enough (a few seconds for 1,200 members) to be caught mid-file.
        gateway.start(EDI834_SHUTDOWN_GRACE_SECONDS="0.5", EDI834_VALIDATION_ENGINE="pyx12")
        content = _big_file(1200)
        with gateway.client(key) as c:
            rid = submit(c, content).json()["id"]
            deadline = time.monotonic() + 30
            while c.get(f"/v1/interchanges/{rid}").json()["status"] != "processing":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        started = time.monotonic()
        assert gateway.stop() == 0
        assert time.monotonic() - started < 20
        assert '"processing_abandoned"' in gateway.logs()
        gateway.start()
        with gateway.client(key) as c:
            body = wait_final(c, rid, timeout=120)
            assert body["status"] == "processed" and body["outcome"] == "accepted"
            assert body["counts"]["members_received"] == 1200
            acks = c.get(f"/v1/interchanges/{rid}/acks").json()
            assert sorted(a["kind"] for a in acks) == ["999", "ta1"]

    def test_sigterm_with_time_to_spare_finishes_the_file_first(self, gateway):
        key = gateway.add_partner("va", "VA0FFM")
        gateway.start(EDI834_SHUTDOWN_GRACE_SECONDS="60")
        with gateway.client(key) as c:
            rid = submit(c, _big_file(600)).json()["id"]
            deadline = time.monotonic() + 30
            while c.get(f"/v1/interchanges/{rid}").json()["status"] == "received":
                assert time.monotonic() < deadline
                time.sleep(0.02)
        assert gateway.stop() == 0
        gateway.start(EDI834_WORKER_ENABLED="false")
        with gateway.client(key) as c:
            body = c.get(f"/v1/interchanges/{rid}").json()
            assert body["status"] == "processed", body["status"]
