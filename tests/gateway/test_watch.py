"""Knowing what did not happen (gateway.watch), in-process on SQLite with the clock injected:
a partner's expected schedule and the missing-file alert, ack latency against the SLA, acks
never picked up from outbound/ (SFTP download or API fetch), stuck files; on the overview, in
/metrics, and posted once per incident (signed) to EDI834_ALERT_URL."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from gateway.api.app import create_health_app
from gateway.context import Gateway
from gateway.dashboard.app import create_dashboard
from gateway.db.base import utcnow
from gateway.db.migrate import upgrade
from gateway.db.models import Ack, CoreDelivery, Partner, Receipt
from gateway.db.session import unit_of_work
from gateway.intake.bridge import GatewaySftpHooks
from gateway.operators import add_operator
from gateway.partners import add_partner, set_schedule
from gateway.settings import Settings
from gateway.watch.alerts import run_watch
from gateway.watch.schedule import ScheduleError, deadlines, next_deadline, parse_schedule
from gateway.worker.outbox import deliver_acks
from gateway.worker.run import Worker
from tests.gateway.harness import GatewayProcess, submit
from tests.gateway.test_dashboard_inprocess import GOOD, PASSWORD, process_all, send

SECRET = "alert signing secret"  # noqa: S105 - test value
NY = "America/New_York"


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


class Hook:
    """The alert receiver: every POST, its signature checked."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.status = 200

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert request.headers["X-EDI834-Signature"] == want
        if self.status == 200:
            self.posts.append(json.loads(body))
        return httpx.Response(self.status)


@pytest.fixture
def gw(tmp_path) -> Iterator[Gateway]:
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url="",
        worker_enabled=False,
        alert_url="http://alerts.test/hook",
        alert_secret=SECRET,
        pickup_hours=24,
        stuck_minutes=30,
    )
    g = Gateway.open(settings)
    upgrade(settings.sqlalchemy_url)
    g.clock = Clock()
    with unit_of_work(g.sessions) as s:
        va, _ = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
        va.sftp_keys = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA test"
        add_partner(s, name="md", isa_qualifier="ZZ", isa_id="MD0SBE")
        set_schedule(s, "va", "daily 06:00", NY)
        add_operator(s, "alice", PASSWORD, "admin")
    yield g
    g.close()


def partner_id(gw: Gateway, name: str) -> int:
    with gw.reads() as s:
        return s.query(Partner).filter_by(name=name).one().id


def arrive(gw: Gateway, name: str, content: bytes = GOOD) -> str:
    """A file from `name`, received at the injected now, processed and its acks delivered."""
    rid = send(gw, partner_id(gw, name), content, name + ".834")
    with unit_of_work(gw.sessions) as s:
        s.execute(update(Receipt).where(Receipt.id == rid).values(received_at=gw.clock()))
    process_all(gw)
    with unit_of_work(gw.sessions) as s:
        s.execute(update(Receipt).where(Receipt.id == rid).values(processed_at=gw.clock()))
    deliver_acks(gw)
    with unit_of_work(gw.sessions) as s:
        s.execute(update(Ack).where(Ack.receipt_id == rid).values(delivered_at=gw.clock()))
    return rid


def watch(gw: Gateway, hook: Hook) -> list[str]:
    with httpx.Client(transport=httpx.MockTransport(hook)) as client:
        report = run_watch(gw, client)
    return sorted(i.key.split(":")[0] for i in report.incidents())


def dashboard(gw: Gateway) -> TestClient:
    c = TestClient(create_dashboard(gw), base_url="http://dash.test")
    page = c.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    c.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
    return c


class TestSchedule:
    def test_deadlines_in_the_partners_time_zone(self):
        s = parse_schedule("daily 06:00", NY)
        now = dt.datetime(2026, 3, 9, 12, 0, tzinfo=dt.UTC)  # the day after DST began
        assert deadlines(s, now) == (
            dt.datetime(2026, 3, 8, 10, 0, tzinfo=dt.UTC),  # 06:00 EDT
            dt.datetime(2026, 3, 9, 10, 0, tzinfo=dt.UTC),
        )
        assert next_deadline(s, now) == dt.datetime(2026, 3, 10, 10, 0, tzinfo=dt.UTC)
        s = parse_schedule("weekly mon 06:00", "UTC")
        assert deadlines(s, now)[0] == dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)
        s = parse_schedule("monthly 31 06:00", "UTC")  # a short month: its last day
        assert deadlines(s, now) == (
            dt.datetime(2026, 1, 31, 6, 0, tzinfo=dt.UTC),
            dt.datetime(2026, 2, 28, 6, 0, tzinfo=dt.UTC),
        )
        s = parse_schedule("weekdays 06:00", "UTC")
        assert deadlines(s, now)[0] == dt.datetime(2026, 3, 6, 6, 0, tzinfo=dt.UTC)  # Friday

    @pytest.mark.parametrize("bad", ["hourly", "daily 25:00", "weekly 06:00", "monthly 32 06:00"])
    def test_unreadable_schedules_say_what_is_accepted(self, bad):
        with pytest.raises(ScheduleError):
            parse_schedule(bad)
        with pytest.raises(ScheduleError, match="time zone"):
            parse_schedule("daily 06:00", "Mars/Olympus")


class TestMissingFile:
    def test_alert_once_per_incident_then_cleared_by_a_file(self, gw):
        gw.settings.pickup_hours = 1000  # only the schedule here
        hook = Hook()
        arrive(gw, "va")
        assert watch(gw, hook) == []
        gw.clock.advance(days=2)  # two 06:00 deadlines pass in silence
        assert watch(gw, hook) == ["missing_file"]
        assert watch(gw, hook) == ["missing_file"]  # polled again: not posted again
        assert [p["event"] for p in hook.posts] == ["edi834.alert.opened"]
        assert hook.posts[0]["kind"] == "missing_file" and hook.posts[0]["partner"] == "va"
        assert "no file since" in hook.posts[0]["summary"]
        page = dashboard(gw).get("/dashboard").text
        assert 'data-kind="missing_file" data-partner="va"' in page
        assert "missing: due" in page
        arrive(gw, "va")  # late, but it came
        assert watch(gw, hook) == []
        assert [p["event"] for p in hook.posts] == ["edi834.alert.opened", "edi834.alert.closed"]
        page = dashboard(gw).get("/dashboard").text
        assert 'id="no-incidents"' in page and "on time · next due" in page

    def test_a_partner_without_a_schedule_or_added_after_the_deadline_owes_nothing(self, gw):
        gw.clock.advance(days=3)
        assert watch(gw, Hook()) == ["missing_file"]  # va (daily) only; md has no schedule
        with unit_of_work(gw.sessions) as s:
            set_schedule(s, "md", "daily 06:00", NY)
            s.execute(update(Partner).where(Partner.name == "md").values(created_at=gw.clock()))
        assert watch(gw, Hook()) == ["missing_file"]

    def test_a_failed_post_is_retried_later_not_lost(self, gw):
        hook = Hook()
        hook.status = 503
        gw.clock.advance(days=2)
        watch(gw, hook)
        assert hook.posts == []
        hook.status = 200
        watch(gw, hook)  # within the back-off: not yet
        assert hook.posts == []
        gw.clock.advance(minutes=5)
        watch(gw, hook)
        assert [p["event"] for p in hook.posts] == ["edi834.alert.opened"]


class TestAcks:
    def test_latency_against_the_sla(self, gw):
        gw.settings.ack_sla_seconds = 3600
        for _ in range(3):
            rid = arrive(gw, "md", GOOD + b"\n" * _)  # distinct bytes: distinct receipts
            with unit_of_work(gw.sessions) as s:
                r = s.get(Receipt, rid)
                r.received_at = gw.clock() - dt.timedelta(hours=2)
        hook = Hook()
        assert "ack_latency" in watch(gw, hook)
        page = dashboard(gw).get("/dashboard").text
        row = re.search(
            r'<tr data-watched="md">(.*?)</tr>', page.split('id="partners-watch"')[1], re.S
        )
        assert "2.0 h (over SLA)" in row.group(1)
        metrics = TestClient(create_health_app(gw)).get("/metrics").text
        assert 'edi834_ack_latency_seconds{partner="md",quantile="0.95"} 7200.0' in metrics
        assert "edi834_ack_sla_seconds 3600.0" in metrics

    def test_acks_not_picked_up_until_downloaded(self, gw):
        rid = arrive(gw, "va")
        hook = Hook()
        assert watch(gw, hook) == []
        gw.clock.advance(hours=25)
        with unit_of_work(gw.sessions) as s:  # the file for today came too
            set_schedule(s, "va", "")
        assert watch(gw, hook) == ["ack_pickup"]
        metrics = TestClient(create_health_app(gw)).get("/metrics").text
        assert 'edi834_acks_not_picked_up{partner="va"} 2.0' in metrics
        page = dashboard(gw).get("/dashboard").text
        assert 'data-kind="ack_pickup" data-partner="va"' in page
        with gw.reads() as s:
            names = [a.filename for a in s.query(Ack).filter_by(receipt_id=rid)]
        hooks = GatewaySftpHooks(gw)
        for name in names:  # what the SFTP server reports once outbound/NAME was read whole
            asyncio.run(hooks.ack_downloaded("va", name))
        assert watch(gw, hook) == []
        assert [p["event"] for p in hook.posts] == ["edi834.alert.opened", "edi834.alert.closed"]
        with gw.reads() as s:
            assert {a.picked_up_via for a in s.query(Ack).filter_by(receipt_id=rid)} == {"sftp"}

    def test_another_partners_file_of_the_same_name_is_not_picked_up(self, gw):
        rid = arrive(gw, "va")
        with gw.reads() as s:
            name = s.query(Ack).filter_by(receipt_id=rid).first().filename
        asyncio.run(GatewaySftpHooks(gw).ack_downloaded("md", name))
        with gw.reads() as s:
            assert s.query(Ack).filter_by(receipt_id=rid, picked_up_at=None).count() == 2


class TestStuck:
    def test_received_and_not_processed(self, gw):
        # The clock starts at the real now: va's 06:00 New York deadline could fall in the
        # 31 minutes below (it did, on CI at 10:31 UTC) and open a missing-file alert too.
        with unit_of_work(gw.sessions) as s:
            set_schedule(s, "va", "")
        rid = send(gw, partner_id(gw, "md"), GOOD, "stuck.834")  # no worker takes it
        assert watch(gw, Hook()) == []
        gw.clock.advance(minutes=31)
        hook = Hook()
        assert watch(gw, hook) == ["stuck_files"]
        page = dashboard(gw).get("/dashboard").text
        assert f'href="/dashboard/interchanges/{rid}">stuck.834' in page
        metrics = TestClient(create_health_app(gw)).get("/metrics").text
        assert "edi834_stuck_files 1.0" in metrics
        process_all(gw)
        assert watch(gw, hook) == []
        assert [p["kind"] for p in hook.posts] == ["stuck", "stuck"]

    def test_a_failed_file_and_a_core_backlog_are_alerts(self, gw):
        """A file parked as failed (the partner is told the operators were alerted) and core
        events left undelivered are incidents: posted, on the overview and in /metrics, and
        closed when resolved or delivered (found by an on-call drill: neither was alerted)."""
        with unit_of_work(gw.sessions) as s:
            set_schedule(s, "va", "")
        rid = arrive(gw, "va")
        worker = Worker(gw)
        while worker.apply_ledger_once():  # applied; no core system configured: events wait
            pass
        with gw.reads() as s:
            assert s.scalar(select(func.count()).select_from(CoreDelivery)) > 0
        assert watch(gw, Hook()) == []
        with unit_of_work(gw.sessions) as s:
            s.execute(update(Receipt).where(Receipt.id == rid).values(ledger_status="failed"))
        hook = Hook()
        assert watch(gw, hook) == ["failed_files"]
        assert "1 file(s) failed inside the gateway" in hook.posts[0]["summary"]
        assert hook.posts[0]["opened_at"].endswith("Z")  # as every time the gateway writes
        page = dashboard(gw).get("/dashboard").text
        assert 'data-kind="failed"' in page
        metrics = TestClient(create_health_app(gw)).get("/metrics").text
        assert 'edi834_alerts_open{kind="failed"} 1.0' in metrics
        gw.clock.advance(minutes=31)
        assert watch(gw, hook) == ["core_backlog", "failed_files"]
        with unit_of_work(gw.sessions) as s:
            s.execute(update(Receipt).where(Receipt.id == rid).values(resolved_at=gw.clock()))
        assert watch(gw, hook) == ["core_backlog"]
        with unit_of_work(gw.sessions) as s:
            s.execute(update(CoreDelivery).values(delivered_at=gw.clock()))
        assert watch(gw, hook) == []
        assert [p["kind"] for p in hook.posts] == [
            "failed",
            "core_backlog",
            "failed",
            "core_backlog",
        ]


class TestSftpPickUp:
    def test_an_ack_read_to_its_end_is_picked_up_a_peek_is_not(self, gw, tmp_path):
        import asyncssh

        from gateway.intake.sftp import start_sftp_server

        key = asyncssh.generate_private_key("ssh-ed25519")
        with unit_of_work(gw.sessions) as s:
            s.execute(
                update(Partner)
                .where(Partner.name == "va")
                .values(sftp_keys=key.export_public_key().decode())
            )
        rid = arrive(gw, "va")
        with gw.reads() as s:
            names = sorted(a.filename for a in s.query(Ack).filter_by(receipt_id=rid))

        def unpicked() -> list[str]:
            with gw.reads() as s:
                q = s.query(Ack).filter_by(receipt_id=rid, picked_up_at=None)
                return sorted(a.filename for a in q)

        async def scenario() -> None:
            acceptor = await start_sftp_server(
                host="127.0.0.1",
                port=0,
                root=gw.settings.sftp_root,
                host_key_path=tmp_path / "host_key",
                hooks=GatewaySftpHooks(gw),
            )
            try:
                async with (
                    asyncssh.connect(
                        "127.0.0.1",
                        acceptor.get_port(),
                        username="va",
                        client_keys=[key],
                        known_hosts=None,
                        agent_path=None,
                        config=[],
                    ) as conn,
                    conn.start_sftp_client() as client,
                ):
                    async with client.open(f"/outbound/{names[0]}", "rb") as f:
                        assert (await f.read(10)).startswith(b"ISA")  # a peek
                    assert unpicked() == names
                    async with client.open(f"/outbound/{names[0]}", "rb") as f:
                        await f.read()
                    assert unpicked() == names[1:]
            finally:
                acceptor.close()
                await acceptor.wait_closed()

        asyncio.run(scenario())
        with gw.reads() as s:
            ack = s.query(Ack).filter_by(filename=names[0]).one()
            assert ack.picked_up_via == "sftp"

    def test_an_api_fetch_is_a_pick_up(self, gw):
        from gateway.api.app import create_app
        from gateway.partners import rotate_key

        rid = arrive(gw, "va")
        with unit_of_work(gw.sessions) as s:
            api_key = rotate_key(s, "va")
        api = TestClient(create_app(gw), headers={"Authorization": f"Bearer {api_key}"})
        assert api.get(f"/v1/interchanges/{rid}/acks/999").status_code == 200
        with gw.reads() as s:
            vias = {a.kind: a.picked_up_via for a in s.query(Ack).filter_by(receipt_id=rid)}
        assert vias == {"999": "api", "ta1": None}


class TestCli:
    def test_partner_schedule(self, tmp_path):
        from tests.gateway.harness import GatewayProcess

        gp = GatewayProcess(data_dir=tmp_path / "var")
        gp.add_partner("va", "VA0FFM")
        out = gp.cli("partner", "schedule", "va", "daily 06:00", "--tz", NY).stdout
        assert out == f"va: a file expected daily 06:00 ({NY})\n"
        assert json.loads(gp.cli("partner", "schedule", "va", "--json").stdout) == {
            "name": "va",
            "schedule": "daily 06:00",
            "timezone": NY,
        }
        bad = gp.cli("partner", "schedule", "va", "hourly", check=False)
        assert bad.returncode == 1 and "use daily HH:MM" in bad.stderr
        assert "Traceback" not in bad.stderr
        out = gp.cli("partner", "schedule", "va", "none").stdout
        assert "not watched" in out


class TestWithoutWorkers:
    def test_a_process_without_a_worker_posts_that_files_are_stuck(self, tmp_path):
        """The API and SFTP stay up while every worker is down: they watch too, so the files
        nobody takes are an alert (found by an on-call drill: only workers posted alerts)."""
        posts: list[dict] = []

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                if self.headers["X-EDI834-Signature"] == want:
                    posts.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        gw = GatewayProcess(
            data_dir=tmp_path / "var",
            extra_env={
                "EDI834_ALERT_URL": f"http://127.0.0.1:{receiver.server_port}/alerts",
                "EDI834_ALERT_SECRET": SECRET,
                "EDI834_ALERT_POLL_SECONDS": "0.2",
                "EDI834_STUCK_MINUTES": "0.01",
            },
        )
        key = gw.add_partner("va", "VA0FFM")
        try:
            gw.start(EDI834_WORKER_ENABLED="false")
            with gw.client(key) as c:
                assert submit(c, GOOD, "nobody-takes-it.834").status_code == 202
            deadline = time.monotonic() + 30
            while not posts and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            gw.kill()
            receiver.shutdown()
        assert [(p["event"], p["kind"]) for p in posts[:1]] == [("edi834.alert.opened", "stuck")]
        assert posts[0]["summary"].startswith("1 file(s) received and not processed")


def test_ack_delays_and_last_files_are_read_in_sql_on_both_databases(tmp_path, database_url):
    """The overview's and each watch round's two reads over every receipt, now answered in the
    database (seconds between two times; the latest non-partial file per partner by index):
    the same figures on SQLite and PostgreSQL as the Python arithmetic gave."""
    from gateway.watch import repository as watch_repo
    from tests.gateway.harness import in_process_gateway

    for gw in in_process_gateway(tmp_path / "var", database_url):
        t0 = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)
        with unit_of_work(gw.sessions) as s:
            va, _ = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
            md, _ = add_partner(s, name="md", isa_qualifier="ZZ", isa_id="MD0FFM")
            add_partner(s, name="nj", isa_qualifier="ZZ", isa_id="NJ0FFM")  # never sent
            s.flush()
            hour, month = t0 + dt.timedelta(hours=1), t0 - dt.timedelta(days=30)
            seconds = dt.timedelta(seconds=1)
            rows = [
                (va.id, t0, t0 + 1.5 * seconds, "processed"),
                (va.id, hour, hour + 90 * seconds, "processed"),
                (va.id, t0 + dt.timedelta(hours=2), None, "partial"),  # not a file received
                (md.id, month, month + 7 * seconds, "processed"),  # outside the period
            ]
            for n, (pid, received, processed, status) in enumerate(rows):
                s.add(
                    Receipt(
                        partner_id=pid, channel="http", sha256=f"{n:064x}", size=1,
                        blob_path=f"x/{n}", status=status, received_at=received,
                        processed_at=processed,
                    )
                )  # fmt: skip
        with gw.reads() as s:
            delays = watch_repo.ack_delays(s, t0 - dt.timedelta(days=1), t0 + dt.timedelta(days=1))
            last = watch_repo.last_files(s)
        assert {pid: sorted(d) for pid, d in delays.items()} == {va.id: [1.5, 90.0]}
        assert last == {va.id: t0 + dt.timedelta(hours=1), md.id: t0 - dt.timedelta(days=30)}
