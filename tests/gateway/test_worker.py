"""The worker's queue and its guarantees, on SQLite and PostgreSQL: leases, control numbers,
duplicates, parking, and a graceful shutdown that finishes or safely abandons a file."""

from __future__ import annotations

import datetime as dt
import functools
import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.locks import sole
from gateway.db.models import Ack, Interchange, InterchangeKey, Receipt, ReceiptEvent, Status
from gateway.db.session import unit_of_work
from gateway.outbound import fsync_directory, write_atomically
from gateway.partners import add_partner
from gateway.worker import outbox
from gateway.worker.run import Worker
from tests.benchmarks.generate_834 import write_834
from tests.conftest import SAMPLES
from tests.gateway.harness import add_va, in_process_gateway, submit, wait_final
from tests.gateway.test_http_e2e import _with_isa13
from tests.x12build import ack_group, x12


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

    @pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
    def test_the_one_statement_claim_is_claim_nexts(self, gw):
        # PostgreSQL's claim (repo.claim_next_at_once): the same order, leases, takeovers,
        # attempts and events as claim_next's, and the partner's sender ids with the receipt.
        # (PostgreSQL only: SQLite has no such claim, and a skipped SQLite twin said nothing.)
        assert gw.autocommit_engine is not None
        pid = add_va(gw)
        first = _receipt(gw, pid, b"ISA first")
        second = _receipt(gw, pid, b"ISA second")

        def claim(worker_id: str, now: dt.datetime | None = None) -> repo.Claimed | None:
            with gw.single_write() as conn:
                return repo.claim_next_at_once(conn, worker_id=worker_id, lease_seconds=60, now=now)

        a = claim("w1")
        assert a is not None and (a.id, a.attempts, a.lease_expired) == (first, 1, False)
        assert (a.partner_id, a.partner_name, a.isa_qualifier, a.isa_id) == (
            pid,
            "va",
            "ZZ",
            "VA0FFM",
        )
        b = claim("w2")
        assert b is not None and b.id == second
        assert claim("w3") is None
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61)
        c = claim("w3", later)
        assert c is not None and (c.id, c.attempts, c.lease_expired) == (first, 2, True)
        with gw.reads() as s:
            r = s.get(Receipt, first)
            assert r is not None and r.status == Status.PROCESSING and r.lease_owner == "w3"
            assert r.lease_expires_at == later + dt.timedelta(seconds=60)
            assert r.started_at == later and c.received_at == r.received_at
            assert c.blob_path == r.blob_path and c.filename == r.filename
            details = s.scalars(
                select(ReceiptEvent.detail)
                .where(ReceiptEvent.event == "claimed")
                .order_by(ReceiptEvent.id)
            ).all()
        assert details == ["attempt 1 by w1", "attempt 1 by w2", "attempt 2 by w3 (lease expired)"]
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

    def test_the_database_going_away_is_not_a_failed_attempt(self, gw, monkeypatch):
        """Validation and the ledger stage cut by the database going away (a restart, a
        failover: OperationalError) more times than max_attempts: the file is taken again, not
        parked, and ends acknowledged and applied once (found by an on-call drill: three
        6-second outages parked a good file as failed, with no acks)."""
        from sqlalchemy.exc import OperationalError

        import gateway.worker.run as run

        pid = add_va(gw)
        rid = _receipt(gw, pid, (SAMPLES / "good_exchange_new_enrollment.834").read_bytes())
        outages = {"validate": gw.settings.max_attempts + 2, "ledger": gw.settings.max_attempts + 2}
        real_validate, real_apply = run.validate_job, run.apply_receipt

        def cut(stage, real):
            def call(*args, **kwargs):
                if outages[stage]:
                    outages[stage] -= 1
                    raise OperationalError("SELECT 1", {}, ConnectionError("server closed"))
                return real(*args, **kwargs)

            return call

        monkeypatch.setattr(run, "validate_job", cut("validate", real_validate))
        monkeypatch.setattr(run, "apply_receipt", cut("ledger", real_apply))
        monkeypatch.setattr(run, "RECORD_RETRY_SECONDS", 0.0, raising=False)
        worker = Worker(gw, worker_id="w1")
        for _ in range(20):
            worker.run_once()
            worker.apply_ledger_once()
            with unit_of_work(gw.sessions) as s:
                r = s.get(Receipt, rid)
                if r.ledger_status == "applied":
                    break
                r.lease_expires_at = None  # skip the wait before taking it again
        assert outages == {"validate": 0, "ledger": 0}
        with unit_of_work(gw.sessions) as s:
            r = s.get(Receipt, rid)
            assert (r.status, r.outcome, r.ledger_status) == (
                Status.PROCESSED,
                "accepted",
                "applied",
            )
            assert r.attempts <= 1 and r.ledger_attempts <= 1
            assert [a.kind for a in repo.acks_of(s, rid)].count("999") == 1


class TestDuplicateRace:
    def test_an_isa13_recorded_between_validation_and_storing_is_ta1_025(self, gw, monkeypatch):
        # Two files of one sender with the same ISA13, the second validated before the first
        # was stored (as two workers would): storing it finds the key taken, validates again and
        # answers TA1 025; one key recorded, for the first.
        pid = add_va(gw)
        good = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
        first = _receipt(gw, pid, _with_isa13(good, 777))
        other_bytes = _with_isa13(good, 777).replace(b"VA0-20260412-041017", b"VA0-20260412-041018")
        second = _receipt(gw, pid, other_bytes)
        seen: list[bool] = []
        used = repo.is_isa13_used

        def not_yet_the_first_time(*args: object) -> bool:
            seen.append(used(*args))  # type: ignore[arg-type]
            return seen[-1] if len(seen) > 2 else False

        monkeypatch.setattr(repo, "is_isa13_used", not_yet_the_first_time)
        worker = Worker(gw, worker_id="w")
        while worker.run_once():
            pass
        assert seen == [False, True, True]  # the second file: validated twice
        with gw.reads() as s:
            notes = select(Interchange.receipt_id, Interchange.ta1_note)
            ta1 = {r: [n] for r, n in s.execute(notes).all()}
            keys = s.scalars(select(InterchangeKey.receipt_id)).all()
        assert ta1[first] != ["025"] and ta1[second] == ["025"]
        assert keys == [first]

    def test_register_isa13_says_who_was_first(self, gw):
        pid = add_va(gw)
        one, two = _receipt(gw, pid, b"ISA one"), _receipt(gw, pid, b"ISA two")
        key = {"partner_id": pid, "sender_qualifier": "ZZ", "sender_id": "VA0FFM", "isa13": "1"}
        with unit_of_work(gw.sessions) as s:
            assert repo.register_isa13(s, {**key, "receipt_id": one})
            assert not repo.register_isa13(s, {**key, "receipt_id": two})
            assert repo.register_isa13(s, {**key, "isa13": "2", "receipt_id": two})  # usable
        with gw.reads() as s:
            assert sorted(s.scalars(select(InterchangeKey.receipt_id)).all()) == sorted([one, two])


class TestAckDelivery:
    """An ack's file is durable before it is marked delivered; the files one round writes are
    marked together, after them (gateway.worker.outbox, issue 19)."""

    @pytest.fixture(autouse=True)
    def _no_back_off_left(self):
        outbox._held.clear()
        yield
        outbox._held.clear()

    def processed(self, gw: Gateway, files: int) -> list[str]:
        pid = add_va(gw)
        good = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
        ids = [_receipt(gw, pid, _with_isa13(good, 500 + n)) for n in range(files)]
        worker = Worker(gw, worker_id="w")
        while worker.run_once():
            pass
        return ids

    def delivered(self, gw: Gateway) -> tuple[int, int, int]:
        """Acks, acks marked delivered, ack_delivered events."""
        with gw.reads() as s:
            acks = s.scalars(select(Ack.delivered_at)).all()
            events = s.scalars(
                select(ReceiptEvent.id).where(ReceiptEvent.event == "ack_delivered")
            ).all()
        return len(acks), sum(a is not None for a in acks), len(events)

    def test_files_first_then_one_mark_for_the_round(self, gw, monkeypatch):
        self.processed(gw, 3)
        marked_at_each_write: list[int] = []

        def spy(directory: Path, name: str, content: bytes, staging: Path, **kw: bool) -> Path:
            marked_at_each_write.append(self.delivered(gw)[1])
            return write_atomically(directory, name, content, staging, **kw)

        monkeypatch.setattr(outbox, "write_atomically", spy)
        acks, _, _ = self.delivered(gw)
        assert acks >= 3
        assert outbox.deliver_acks(gw) == acks
        assert marked_at_each_write == [0] * acks  # none marked before every file was durable
        assert self.delivered(gw) == (acks, acks, acks)
        assert len(list(gw.outbound_dir("va").iterdir())) == acks
        assert outbox.deliver_acks(gw) == 0

    def test_a_failed_write_leaves_the_earlier_files_marked(self, gw, monkeypatch):
        self.processed(gw, 2)
        calls: list[str] = []

        def second_fails(
            directory: Path, name: str, content: bytes, staging: Path, **kw: bool
        ) -> Path:
            calls.append(name)
            if len(calls) == 2:
                raise OSError("disk full")
            return write_atomically(directory, name, content, staging, **kw)

        monkeypatch.setattr(outbox, "write_atomically", second_fails)
        monkeypatch.setattr(outbox, "BLOCKED_FIRST_SECONDS", 0.0)  # retried at once
        acks, _, _ = self.delivered(gw)
        assert outbox.deliver_acks(gw) == 1  # the partner's other acks wait for the next round
        assert self.delivered(gw) == (acks, 1, 1)
        assert outbox.deliver_acks(gw) == acks - 1  # the next round: the rest, once each
        assert self.delivered(gw) == (acks, acks, acks)

    def test_one_partners_unwritable_outbound_holds_back_only_its_acks(self, gw):
        """md's outbound/ cannot be written (a file where the folder should be): va's acks are
        delivered all the same, md's wait (backed off) and go once it can be written."""
        self.processed(gw, 2)  # va's
        with unit_of_work(gw.sessions) as s:
            md, _ = add_partner(s, name="md", isa_qualifier="ZZ", isa_id="MD0SBE")
            md_id = md.id
        good = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
        theirs = _with_isa13(good, 900).replace(b"VA0FFM         ", b"MD0SBE         ", 1)
        _receipt(gw, md_id, theirs)
        worker = Worker(gw, worker_id="w")
        while worker.run_once():
            pass
        blocked = gw.outbound_dir("md")
        blocked.parent.mkdir(parents=True, exist_ok=True)
        blocked.write_text("not a folder")
        with gw.reads() as s:
            md_acks = len(
                s.scalars(select(Ack.id).join(Receipt).where(Receipt.partner_id == md_id)).all()
            )
        acks, _, _ = self.delivered(gw)
        assert md_acks >= 1 and outbox.deliver_acks(gw) == acks - md_acks
        assert len(list(gw.outbound_dir("va").iterdir())) == acks - md_acks
        assert "md" in outbox._held_partners()
        assert outbox.deliver_acks(gw) == 0  # backed off: md is not tried again at once
        blocked.unlink()
        outbox._held.clear()  # the back-off elapsed
        assert outbox.deliver_acks(gw) == md_acks
        assert self.delivered(gw) == (acks, acks, acks) and not outbox._held_partners()

    def test_a_file_reusing_its_own_isa13_gets_every_ack_in_outbound(self, gw):
        """Two interchanges with one ISA13 in a file: TA1 A and 999 for the first, TA1 R 025
        for the second — three files (the two TA1s had one name, and one replaced the other)."""
        pid = add_va(gw)
        _receipt(gw, pid, (SAMPLES / "bad_ta1_025_duplicate_isa13.834").read_bytes())
        assert Worker(gw, worker_id="w").run_once()
        assert outbox.deliver_acks(gw) == 3
        names = sorted(p.name for p in gw.outbound_dir("va").iterdir())
        assert len(names) == 3, names
        assert [n.rsplit(".", 2)[-2:] for n in names] == [
            ["000043012-2", "ta1"],
            ["000043012", "999"],
            ["000043012", "ta1"],
        ], names
        second = (gw.outbound_dir("va") / names[0]).read_bytes()
        assert b"*R*025~" in second

    def test_one_outbox_writes_acks_at_a_time(self, gw):
        """Two workers' outboxes never both write the same acks: while another holds the acks'
        lock (another process), this one skips its turn; then it delivers each ack once."""
        self.processed(gw, 2)
        acks, _, _ = self.delivered(gw)
        with sole(gw, outbox.ACK_LOCK_KEY, "ack-delivery.lock") as held:
            assert held
            assert outbox.deliver_acks(gw) == 0
            assert not gw.outbound_dir("va").exists()
        assert outbox.deliver_acks(gw) == acks
        assert self.delivered(gw) == (acks, acks, acks)

    def test_each_directory_is_fsynced_once_and_before_any_mark(self, gw, monkeypatch):
        self.processed(gw, 3)
        synced: list[tuple[Path, int]] = []

        def spy(directory: Path) -> None:
            synced.append((directory, self.delivered(gw)[1]))
            fsync_directory(directory)

        monkeypatch.setattr(outbox, "fsync_directory", spy)
        acks, _, _ = self.delivered(gw)
        assert outbox.deliver_acks(gw) == acks >= 3
        assert synced == [(gw.outbound_dir("va"), 0)]  # one partner: one fsync, nothing marked
        assert self.delivered(gw) == (acks, acks, acks)

    def test_an_ack_another_outbox_marked_meanwhile_has_one_event(self, gw, monkeypatch):
        self.processed(gw, 1)

        def and_another_outbox(
            directory: Path, name: str, content: bytes, staging: Path, **kw: bool
        ) -> Path:
            path = write_atomically(directory, name, content, staging, **kw)
            with unit_of_work(gw.sessions) as s:
                ack = s.scalars(select(Ack).where(Ack.filename == name)).one()
                if ack.delivered_at is None:
                    ack.delivered_at = dt.datetime.now(dt.UTC)
                    repo.add_event(s, ack.receipt_id, "ack_delivered", name)
            return path

        monkeypatch.setattr(outbox, "write_atomically", and_another_outbox)
        acks, _, _ = self.delivered(gw)
        outbox.deliver_acks(gw)
        assert self.delivered(gw) == (acks, acks, acks)


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


def test_a_received_999_is_recorded_and_not_acknowledged(gw):
    """An exchange's 999 (GS01 FA) sent to the gateway: kept, TA1 as ISA14 asks, and no 999
    back — X12 never acknowledges an acknowledgment."""
    pid = add_va(gw)
    content = x12(ack_group())
    rid = _receipt(gw, pid, content)
    assert Worker(gw).run_once()
    with gw.reads() as s:
        receipt = s.get_one(Receipt, rid)
        kinds = s.scalars(select(Ack.kind).where(Ack.receipt_id == rid)).all()
        groups = s.scalar(
            select(func.count()).select_from(Interchange).where(Interchange.receipt_id == rid)
        )
    assert receipt.status == Status.PROCESSED
    assert groups == 1
    assert kinds == ["ta1"]  # x12build asks for one (ISA14 1); never a 999


def test_a_database_outage_is_logged_once_per_loop_not_every_round(gw, monkeypatch):
    """Every background loop of a worker while the database refuses: one warning each, no
    traceback, backing off; one line when it answers again (found by an on-call drill: a
    traceback every half second from each loop, 110 MB of logs an hour)."""
    from sqlalchemy.exc import OperationalError
    from structlog.testing import capture_logs

    import gateway.worker.run as run

    away = {"on": True}

    def refusing(real):
        def call(*args, **kwargs):
            if away["on"]:
                raise OperationalError("SELECT 1", {}, ConnectionError("connection refused"))
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(run.outbox, "deliver_acks", refusing(run.outbox.deliver_acks))
    monkeypatch.setattr(run.outbox, "deliver_webhooks", refusing(run.outbox.deliver_webhooks))
    monkeypatch.setattr(run, "deliver_core", refusing(run.deliver_core))
    monkeypatch.setattr(run, "run_watch", refusing(run.run_watch))
    monkeypatch.setattr(run, "OUTBOX_GAP", 0.05)
    gw.settings.worker_poll_seconds = 0.05
    gw.settings.alert_poll_seconds = 0.05
    worker = Worker(gw, worker_id="w")
    loops = ("outbox_error", "core_outbox_error", "webhook_error", "watch_error")
    with capture_logs() as logs:
        worker.start()
        try:
            time.sleep(3)  # a poll every 0.05 s: some 60 rounds of each loop, were it not quiet
            away["on"] = False
            deadline = time.monotonic() + 15  # each loop's next round, after its back-off
            while time.monotonic() < deadline and sum(
                e["event"].endswith("_database_back") for e in logs
            ) < len(loops):
                time.sleep(0.1)
        finally:
            worker.stop(5)
    events = [e["event"] for e in logs]
    for loop in loops:
        assert events.count(f"{loop}_database_unavailable") == 1, (loop, events)
        assert events.count(f"{loop}_database_back") == 1, (loop, events)
    assert not [e for e in logs if "exc_info" in e or e["log_level"] == "error"]
