"""Core delivery against a real HTTP server on loopback and a real export directory, on SQLite
and PostgreSQL: every applied member event arrives, in ledger order, accepted once per
Idempotency-Key, through failures, timeouts and a SIGKILL between sending and committing."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pydantic_core
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from gateway.context import Gateway
from gateway.db.migrate import upgrade
from gateway.db.models import AuditEntry, CoreDelivery, MemberEventRow, Receipt
from gateway.db.session import unit_of_work
from gateway.enrollment.delivery import (
    MARK_EVERY_EVENTS,
    Pending,
    _sole_deliverer,
    batch_key,
    deliver_core,
    export_line,
    export_name,
)
from gateway.outbound import retry_after_seconds
from gateway.partners import add_partner
from gateway.services.core import NotSkippable, queue_state, retry_now, skip
from gateway.settings import Settings
from tests.gateway.harness import EDI834

N = 50
SECRET = "core-test-secret"  # noqa: S105 - a test key
CANARY = "ZQXCANARYSURNAME"  # in every payload; must never reach a log line

DELIVER = """
from gateway.context import Gateway
from gateway.enrollment.delivery import deliver_core
from gateway.settings import Settings
gw = Gateway.open(Settings())
print("DELIVERED", deliver_core(gw, None), flush=True)
"""


class CoreServer:
    """A stand-in core system: commits each Idempotency-Key once (a key it already has gets a
    409) and first plays a script of answers: a status code, or "hang" (commit, then answer
    only after the client has timed out: the lost-answer case), or "STATUS/ra=SECONDS" (that
    status with a Retry-After). A JSON Lines batch
    (`application/x-ndjson`) commits each line's key once, in order; its own key, seen before,
    gets a 409."""

    def __init__(self, script: list[str] | None = None, hang_seconds: float = 1.5) -> None:
        self.script = list(script or [])
        self.hang_seconds = hang_seconds
        self.lock = threading.Lock()
        self.seen: list[tuple[str, bytes, str]] = []  # every request: key, body, signature
        self.headers: list[dict[str, str]] = []  # every request's headers
        self.times: list[float] = []  # every request's time.monotonic()
        self.accepted: list[str] = []  # keys committed, in the order committed
        self.batches: set[str] = set()  # batch keys committed
        core = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers.get("Idempotency-Key", "")
                signature = self.headers.get("X-EDI834-Signature", "")
                batch = self.headers.get("Content-Type") == "application/x-ndjson"
                with core.lock:
                    core.seen.append((key, body, signature))
                    core.headers.append(dict(self.headers))
                    core.times.append(time.monotonic())
                    action = core.script.pop(0) if core.script else "ok"
                    action, _, retry_after = action.partition("/ra=")
                    if action in ("ok", "hang") and batch:
                        status = 409 if key in core.batches else 201
                        core.batches.add(key)
                        for line in body.splitlines():
                            line_key = json.loads(line)["idempotency_key"]
                            if line_key not in core.accepted:
                                core.accepted.append(line_key)
                    elif action in ("ok", "hang"):
                        status = 409 if key in core.accepted else 201
                        if status == 201:
                            core.accepted.append(key)
                    else:
                        status = int(action)
                if action == "hang":
                    time.sleep(core.hang_seconds)
                try:
                    self.send_response(status)
                    if retry_after:
                        self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up waiting

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def __enter__(self) -> CoreServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def seen_keys(self) -> list[str]:
        with self.lock:
            return [key for key, _, _ in self.seen]


@pytest.fixture
def gw(tmp_path, database_url):
    settings = Settings(data_dir=tmp_path / "var", database_url=database_url)
    g = Gateway.open(settings)
    upgrade(settings.sqlalchemy_url)
    yield g
    g.close()


def configure(gw: Gateway, **core: object) -> None:
    gw.settings = gw.settings.model_copy(update=core)


def seed(gw: Gateway, count: int, *, start: int = 0) -> list[str]:
    """`count` applied member events with their outbox rows; returns their keys in id order."""
    with unit_of_work(gw.sessions) as s:
        if start == 0:
            partner, _ = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
            s.add(
                Receipt(
                    id="r" * 32,
                    partner_id=partner.id,
                    channel="http",
                    sha256="0" * 64,
                    size=1,
                    blob_path="x",
                )
            )
            s.flush()
            partner_id = partner.id
        else:
            partner_id = s.scalars(select(MemberEventRow.partner_id)).first()
        keys = []
        for seq in range(start, start + count):
            payload = json.dumps(
                {"seq": seq, "member": {"last_name": CANARY, "first_name": f"M{seq}"}},
                separators=(",", ":"),
            )
            event = MemberEventRow(
                partner_id=partner_id,
                receipt_id="r" * 32,
                seq=seq,
                envelope_seq=1,
                group_seq=1,
                set_seq=1,
                isa13="000000001",
                gs06="1",
                st02="0001",
                segment_position=10 + seq,
                member_key=f"member-{seq}",
                subscriber=True,
                relationship_code="18",
                maintenance_type="021",
                maintenance_reason="28",
                outcome="applied",
                payload=payload,
            )
            s.add(event)
            s.flush()
            key = hashlib.sha256(f"event-{seq}".encode()).hexdigest()
            s.add(
                CoreDelivery(
                    event_id=event.id, partner_id=partner_id, idempotency_key=key, payload=payload
                )
            )
            keys.append(key)
        return keys


def rows(gw: Gateway) -> list[CoreDelivery]:
    with unit_of_work(gw.sessions) as s:
        return list(s.scalars(select(CoreDelivery).order_by(CoreDelivery.id)))


def metric(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    assert value is not None
    return value


def run_deliver(gw: Gateway, *, crashpoints: str = "") -> subprocess.CompletedProcess[str]:
    """`deliver_core` in a child process of its own, configured the way `serve` would be."""
    s = gw.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDI834_")}
    env.update(
        EDI834_DATA_DIR=str(s.data_dir),
        EDI834_DATABASE_URL=s.database_url,
        EDI834_CORE_URL=s.core_url,
        EDI834_CORE_SECRET=s.core_secret,
        EDI834_CORE_TIMEOUT_SECONDS=str(s.core_timeout_seconds),
        EDI834_CORE_POST=s.core_post,
        EDI834_CRASHPOINTS=crashpoints,
    )
    if s.core_export_dir is not None:
        env["EDI834_CORE_EXPORT_DIR"] = str(s.core_export_dir)
    proc = subprocess.run(
        [sys.executable, "-c", DELIVER], env=env, capture_output=True, text=True, timeout=60
    )
    assert CANARY not in proc.stdout + proc.stderr  # logs carry ids and counts, never PHI
    return proc


def verify(body: bytes, signature: str) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def verify_timestamped(body: bytes, signature: str, window: float = 300) -> bool:
    """`t=<unix seconds>,v1=<HMAC of "<t>.<body>">`, with t within the window: a replay later
    is refused."""
    fields = dict(part.split("=", 1) for part in signature.split(","))
    at = int(fields["t"])
    mac = hmac.new(SECRET.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, fields["v1"]) and abs(time.time() - at) < window


def read_exports(directory: Path) -> list[dict[str, object]]:
    lines = []
    for path in sorted(directory.glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


class TestDeliverCoreHttp:
    def test_failures_then_a_lost_answer_then_everything_in_order_once(self, gw):
        keys = seed(gw, N)
        payloads = {r.idempotency_key: r.payload.encode() for r in rows(gw)}
        failures_before = metric("edi834_core_delivery_failures_total")
        # Round 1: the head gets 500 three times (every quick retry). Round 3: a 429, then the
        # core commits it but answers too late (timeout), then our retry gets a 409.
        script = ["500", "500", "500", "429", "hang"]
        with CoreServer(script) as core, httpx.Client() as client:
            configure(
                gw,
                core_url=core.url,
                core_secret=SECRET,
                core_timeout_seconds=0.4,
                core_batch_size=20,
            )
            assert deliver_core(gw, client) == 0
            head = rows(gw)[0]
            assert head.delivered_at is None and head.attempts == 1
            assert head.last_error == "CoreRefused: HTTP 500"
            assert head.next_attempt_at > dt.datetime.now(dt.UTC)
            assert all(r.attempts == 0 and r.delivered_at is None for r in rows(gw)[1:])
            assert metric("edi834_core_delivery_failures_total") == failures_before + 1
            assert metric("edi834_core_pending_events") == N
            assert metric("edi834_core_lag_seconds") > 0

            # The head is waiting out its backoff: the rows behind it (all due) wait too.
            assert deliver_core(gw, client) == 0
            assert core.seen_keys() == [keys[0]] * 3

            later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
            assert deliver_core(gw, client, now=later) == 20
            assert core.seen_keys()[3:7] == [keys[0]] * 3 + [keys[1]]
            assert deliver_core(gw, client, now=later) == 20
            assert deliver_core(gw, client, now=later) == N - 40
            assert deliver_core(gw, client, now=later) == 0

        assert core.accepted == keys  # every event, in id order, committed once
        assert len(core.seen) == N + 5  # the head 6 times (500 x3, 429, lost answer, 409)
        for (key, body, signature), headers in zip(core.seen, core.headers, strict=True):
            assert body == payloads[key]
            assert verify(body, signature)
            assert verify_timestamped(body, headers["X-EDI834-Signature-256"])
        final = rows(gw)
        assert all(r.delivered_at is not None for r in final)
        assert final[0].attempts == 2 and final[0].last_error == "CoreRefused: HTTP 500"
        assert all(r.attempts == 1 and r.last_error is None for r in final[1:])
        assert metric("edi834_core_pending_events") == 0
        assert metric("edi834_core_lag_seconds") == 0

    def test_a_failure_mid_batch_stops_the_batch(self, gw):
        keys = seed(gw, 5)
        script = ["ok", "ok", "400"]  # a 400 is not retried within the round
        with CoreServer(script) as core, httpx.Client() as client:
            configure(gw, core_url=core.url, core_secret=SECRET)
            assert deliver_core(gw, client) == 2
            assert core.seen_keys() == keys[:3]
            state = rows(gw)
            assert [r.delivered_at is not None for r in state] == [True, True, False, False, False]
            assert state[2].attempts == 1 and state[2].last_error == "CoreRefused: HTTP 400"
            assert metric("edi834_core_pending_events") == 3
            later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
            assert deliver_core(gw, client, now=later) == 3
        assert core.accepted == keys

    def test_a_kill_between_send_and_commit_resends_under_the_same_key(self, gw):
        keys = seed(gw, N)
        with CoreServer() as core:
            configure(gw, core_url=core.url, core_secret=SECRET)
            crashed = run_deliver(gw, crashpoints="core_sent")
            assert crashed.returncode == -signal.SIGKILL
            assert core.seen_keys() == [keys[0]]  # the core has it; our commit never happened
            assert all(r.delivered_at is None for r in rows(gw))

            restarted = run_deliver(gw)
            assert restarted.returncode == 0, restarted.stderr
            assert f"DELIVERED {N}" in restarted.stdout
            # The core's 409 for the key it had: delivered, and said so in the log.
            assert restarted.stdout.count("core_already_committed") == 1, restarted.stdout
        seen = core.seen_keys()
        assert seen == [keys[0], *keys]  # sent again once, with the same Idempotency-Key
        assert core.accepted == keys
        assert all(verify(body, signature) for _, body, signature in core.seen)
        assert all(r.delivered_at is not None for r in rows(gw))

    def test_a_kill_before_a_group_is_marked_resends_the_group_under_the_same_keys(self, gw):
        """What the core has is marked delivered in groups: a kill before a group's commit
        sends that group again, each event under its own key, and nothing more."""
        keys = seed(gw, MARK_EVERY_EVENTS + 5)
        with CoreServer() as core:
            configure(gw, core_url=core.url, core_secret=SECRET)
            crashed = run_deliver(gw, crashpoints="core_marking")
            assert crashed.returncode == -signal.SIGKILL
            assert core.seen_keys() == keys[:MARK_EVERY_EVENTS]
            assert all(r.delivered_at is None for r in rows(gw))

            restarted = run_deliver(gw)
            assert restarted.returncode == 0, restarted.stderr
            assert f"DELIVERED {len(keys)}" in restarted.stdout
        assert core.seen_keys() == keys[:MARK_EVERY_EVENTS] + keys
        assert core.accepted == keys
        assert all(r.delivered_at is not None and r.attempts == 1 for r in rows(gw))

    def test_a_short_retry_after_is_waited_out_within_the_round(self, gw):
        keys = seed(gw, 2)
        with CoreServer(["503/ra=1"]) as core, httpx.Client() as client:
            configure(gw, core_url=core.url, core_secret=SECRET)
            assert deliver_core(gw, client) == 2
        assert core.seen_keys() == [keys[0], *keys]
        assert core.times[1] - core.times[0] >= 0.95  # the second asked for, not ~0.2 s
        assert core.accepted == keys

    def test_a_long_retry_after_ends_the_round_and_holds_the_row_that_long(self, gw):
        keys = seed(gw, 2)
        with CoreServer(["429/ra=120"]) as core, httpx.Client() as client:
            configure(gw, core_url=core.url, core_secret=SECRET)
            before = dt.datetime.now(dt.UTC)
            assert deliver_core(gw, client) == 0
            assert core.seen_keys() == [keys[0]]  # no quick retry against "come back in 2 min"
            head = rows(gw)[0]
            assert head.last_error == "CoreRefused: HTTP 429"
            assert head.next_attempt_at >= before + dt.timedelta(seconds=119)  # backoff: 2 s
            soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
            assert deliver_core(gw, client, now=soon) == 0
            later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=121)
            assert deliver_core(gw, client, now=later) == 2
        assert core.accepted == keys

    def test_one_deliverer_at_a_time(self, gw):
        seed(gw, 3)
        with CoreServer() as core, httpx.Client() as client:
            configure(gw, core_url=core.url, core_secret=SECRET)
            with _sole_deliverer(gw) as sole:  # another process holds the queue
                assert sole
                assert deliver_core(gw, client) == 0
                assert core.seen == []
            assert deliver_core(gw, client) == 3

    def test_the_worker_outbox_loop_delivers(self, gw):
        from gateway.worker.run import Worker

        keys = seed(gw, 10)
        with CoreServer() as core:
            configure(gw, core_url=core.url, core_secret=SECRET, worker_poll_seconds=0.05)
            worker = Worker(gw)
            worker.start()
            try:
                deadline = time.monotonic() + 15
                while len(core.accepted) < len(keys) and time.monotonic() < deadline:
                    time.sleep(0.05)
            finally:
                worker.stop(5)
        assert core.accepted == keys

    def test_the_worker_drains_full_batches_back_to_back_and_sleeps_only_when_idle(
        self, gw, monkeypatch
    ):
        """Six batches' worth: six full rounds with no poll interval between them (the old loop
        slept one after each), then one empty round, then the loop waits for its poll."""
        from gateway.worker import run

        keys = seed(gw, 60)
        rounds: list[int] = []
        real = run.deliver_core

        def counted(*args, **kwargs):
            rounds.append(real(*args, **kwargs))
            return rounds[-1]

        monkeypatch.setattr(run, "deliver_core", counted)
        with CoreServer() as core:
            configure(
                gw, core_url=core.url, core_secret=SECRET, core_batch_size=10,
                worker_poll_seconds=30,
            )  # fmt: skip
            worker = run.Worker(gw)
            started = time.monotonic()
            worker.start()
            try:
                while len(rounds) < 7 and time.monotonic() - started < 20:
                    time.sleep(0.02)
                took = time.monotonic() - started
                time.sleep(1.0)  # idle: no further round before the 30 s poll
                assert rounds == [10, 10, 10, 10, 10, 10, 0]
            finally:
                worker.stop(5)
        assert took < 15, took  # the old loop: at least 5 polls of 30 s
        assert core.accepted == keys  # in ledger order, each key once
        assert sorted(core.seen_keys()) == sorted(keys)  # and sent once: nothing re-sent
        assert metric("edi834_core_pending_events") == 0


class TestDeliverCoreBatch:
    """`EDI834_CORE_POST=batch`: one POST a round, the round's events as the JSON Lines of an
    export file."""

    def test_one_post_a_round_in_order_each_key_once_through_failures_and_a_lost_answer(self, gw):
        keys = seed(gw, N)
        payloads = {r.idempotency_key: r.payload for r in rows(gw)}
        # Round 1: the batch gets 500 three times. Round 2: the core commits the batch but
        # answers after the timeout; the quick retry gets a 409 for the batch's key.
        script = ["500", "500", "500", "hang"]
        with CoreServer(script) as core, httpx.Client() as client:
            configure(
                gw,
                core_url=core.url,
                core_secret=SECRET,
                core_post="batch",
                core_timeout_seconds=0.4,
                core_batch_size=20,
            )
            assert deliver_core(gw, client) == 0
            head = rows(gw)[0]
            assert head.attempts == 1 and head.last_error == "CoreRefused: HTTP 500"
            assert all(r.delivered_at is None for r in rows(gw))
            assert deliver_core(gw, client) == 0  # the head waits out its backoff
            assert len(core.seen) == 3

            later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
            assert deliver_core(gw, client, now=later) == 20
            assert deliver_core(gw, client, now=later) == 20
            assert deliver_core(gw, client, now=later) == N - 40
            assert deliver_core(gw, client, now=later) == 0

        assert core.accepted == keys  # every event, in id order, committed once
        rounds = [keys[:20]] * 5 + [keys[20:40], keys[40:]]
        assert len(core.seen) == len(rounds)
        for (key, body, signature), headers, sent in zip(
            core.seen, core.headers, rounds, strict=True
        ):
            assert verify(body, signature)
            assert headers["Content-Type"] == "application/x-ndjson"
            assert headers["X-EDI834-Events"] == str(len(sent))
            lines = [json.loads(line) for line in body.splitlines()]
            assert [line["idempotency_key"] for line in lines] == sent
            assert [line["event"] for line in lines] == [json.loads(payloads[k]) for k in sent]
            assert key == hashlib.sha256("\n".join(sent).encode()).hexdigest()
        final = rows(gw)
        assert all(r.delivered_at is not None for r in final)
        assert final[0].attempts == 2 and final[0].last_error == "CoreRefused: HTTP 500"
        assert all(r.attempts == 1 and r.last_error is None for r in final[1:])
        assert metric("edi834_core_pending_events") == 0

    def test_a_kill_between_send_and_commit_resends_the_batch_under_the_same_keys(self, gw):
        keys = seed(gw, N)
        with CoreServer() as core:
            configure(gw, core_url=core.url, core_secret=SECRET, core_post="batch")
            crashed = run_deliver(gw, crashpoints="core_sent")
            assert crashed.returncode == -signal.SIGKILL
            assert core.accepted == keys  # the core has them; our commit never happened
            assert all(r.delivered_at is None for r in rows(gw))

            restarted = run_deliver(gw)
            assert restarted.returncode == 0, restarted.stderr
            assert f"DELIVERED {N}" in restarted.stdout
        assert [h["X-EDI834-Events"] for h in core.headers] == [str(N), str(N)]
        first, again = core.seen
        assert first == again  # the same lines, the same batch key, the same signature
        assert first[0] == batch_key([Pending(0, k, "") for k in keys])
        assert core.accepted == keys
        assert all(r.delivered_at is not None for r in rows(gw))


class TestExportLine:
    """An export line splices the stored payload in as it is: it must stay one line and parse
    to the same event, whatever the member's strings hold, from either encoder the ledger
    writes a payload with (`json.dumps` for its head, pydantic's serializer for the member)."""

    TRICKY = 'MÜLLER-ÑÚÑEZ "q" back\\slash \t\n\r\x00\x1f \u2028\u2029 \U0001f600 ~*:^'

    @staticmethod
    def check(payload: str) -> None:
        key = hashlib.sha256(payload.encode()).hexdigest()
        line = export_line(Pending(1, key, payload))
        assert line.endswith(b"\n") and line.count(b"\n") == 1 and b"\r" not in line
        assert json.loads(line) == {"idempotency_key": key, "event": json.loads(payload)}

    def test_the_ledgers_two_encoders(self) -> None:
        member = {"last_name": self.TRICKY, "dates": {"356": "2027-01-01"}, "none": None}
        head = json.dumps({"warnings": [self.TRICKY]}, sort_keys=True, separators=(",", ":"))
        body = pydantic_core.to_json(member).decode()
        self.check(f'{head[:-1]},"member":{body}}}')

    @given(st.text(), st.text())
    def test_any_strings(self, a: str, b: str) -> None:
        head = json.dumps({"a": a}, separators=(",", ":"))
        self.check(f'{head[:-1]},"member":{pydantic_core.to_json({"b": b}).decode()}}}')


class TestDeliverCoreExport:
    def test_kill_after_the_file_then_restart_keeps_each_event_once(self, gw, tmp_path):
        keys = seed(gw, N)
        export = tmp_path / "core-export"
        configure(gw, core_export_dir=export)
        crashed = run_deliver(gw, crashpoints="core_sent")
        assert crashed.returncode == -signal.SIGKILL
        first = export / export_name(1, N)
        assert [p.name for p in export.glob("*.jsonl")] == [first.name]
        written = first.read_bytes()
        assert all(r.delivered_at is None for r in rows(gw))

        more = seed(gw, 10, start=N)  # applied while the gateway was down
        restarted = run_deliver(gw)
        assert restarted.returncode == 0, restarted.stderr
        assert f"DELIVERED {N}" in restarted.stdout  # the file already written, not a bigger one
        assert [p.name for p in export.glob("*.jsonl")] == [first.name]
        assert first.read_bytes() == written
        assert deliver_core(gw, None) == 10

        assert sorted(p.name for p in export.glob("*.jsonl")) == [
            first.name,
            export_name(N + 1, N + 10),
        ]
        lines = read_exports(export)
        assert [line["idempotency_key"] for line in lines] == keys + more
        payloads = {r.idempotency_key: json.loads(r.payload) for r in rows(gw)}
        assert all(line["event"] == payloads[line["idempotency_key"]] for line in lines)
        assert all(r.delivered_at is not None for r in rows(gw))
        assert list((export / ".staging").iterdir()) == []
        assert metric("edi834_core_pending_events") == 0

    def test_the_export_is_readable_by_the_group_never_by_everyone(self, gw, tmp_path):
        """Its lines are member data: files 0640 and the folders it makes 0750 whatever the
        umask (0644 and 0755 under umask 022 before); a folder that exists keeps its mode."""
        seed(gw, 3)
        export = tmp_path / "exports" / "core"
        configure(gw, core_export_dir=export)
        old = os.umask(0o022)
        try:
            assert deliver_core(gw, None) == 3
        finally:
            os.umask(old)
        (written,) = export.glob("*.jsonl")
        assert stat.S_IMODE(written.stat().st_mode) == 0o640
        assert stat.S_IMODE(export.stat().st_mode) == 0o750
        assert stat.S_IMODE(export.parent.stat().st_mode) == 0o750
        assert stat.S_IMODE((export / ".staging").stat().st_mode) == 0o750

    def test_a_half_written_file_a_kill_left_is_removed(self, gw, tmp_path):
        """A deliverer killed while writing leaves its temporary in `.staging/` (member data,
        0640, read by the core's group, out of retention's reach): the next round, the sole
        deliverer's, removes it. It stayed there for good."""
        keys = seed(gw, 3)
        export = tmp_path / "core-export"
        (export / ".staging").mkdir(parents=True)
        left = export / ".staging" / f"{'a' * 32}.tmp"
        left.write_bytes(export_line(Pending(1, keys[0], rows(gw)[0].payload))[:20])
        configure(gw, core_export_dir=export)
        assert deliver_core(gw, None) == 3
        assert list((export / ".staging").iterdir()) == []
        assert [line["idempotency_key"] for line in read_exports(export)] == keys

    def test_a_foreign_file_under_the_head_name_is_never_overwritten(self, gw, tmp_path):
        keys = seed(gw, 3)
        export = tmp_path / "core-export"
        export.mkdir()
        stale = export / export_name(1, 3)
        stale.write_text(json.dumps({"idempotency_key": "other", "event": {}}) + "\n")
        configure(gw, core_export_dir=export)
        assert deliver_core(gw, None) == 0
        head = rows(gw)[0]
        assert head.attempts == 1 and head.last_error.startswith("FileExistsError: ")
        assert stale.read_text().startswith('{"idempotency_key": "other"')
        stale.rename(export.parent / stale.name)  # an operator moves it away
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        assert deliver_core(gw, None, now=later) == 3
        assert [line["idempotency_key"] for line in read_exports(export)] == keys

    def test_nothing_configured_keeps_the_rows_waiting(self, gw):
        seed(gw, 3)
        assert deliver_core(gw, None) == 0
        assert all(r.delivered_at is None and r.attempts == 0 for r in rows(gw))
        assert metric("edi834_core_pending_events") == 3
        # no core system: the waiting is by design, not lag an SRE is paged for (issue 18)
        assert metric("edi834_core_lag_seconds") == 0
        assert metric("edi834_core_delivery_configured") == 0


class TestRetryAfter:
    NOW = dt.datetime(2026, 12, 7, 12, 0, 0, tzinfo=dt.UTC)

    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            ("120", 120.0),
            (" 0 ", 0.0),
            ("Mon, 07 Dec 2026 12:01:30 GMT", 90.0),  # an HTTP date (IMF-fixdate)
            ("Monday, 07-Dec-26 12:00:10 GMT", 10.0),  # RFC 850, obsolete but allowed
            ("Mon, 07 Dec 2026 11:00:00 GMT", 0.0),  # a date past
            (None, None),
            ("soon", None),
            ("-5", None),
            ("1.5", None),  # delta-seconds are whole
        ],
    )
    def test_seconds_or_an_http_date(self, value, seconds):
        assert retry_after_seconds(value, now=self.NOW) == seconds


class TestOperatorActions:
    """`edi834 core`: an event the core refuses for good no longer holds the queue forever."""

    def test_an_event_the_core_refuses_for_good_is_skipped_by_an_operator_audited(self, gw):
        keys = seed(gw, 3)
        with CoreServer(["400", "400"]) as core, httpx.Client() as client:
            configure(gw, core_url=core.url, core_secret=SECRET)
            head = queue_state(gw).head
            assert head is not None
            with pytest.raises(NotSkippable, match="has not failed"):
                skip(gw, head.outbox_id, "alice", "the core refuses it")
            assert deliver_core(gw, client) == 0
            later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
            assert deliver_core(gw, client, now=later) == 0  # 400 again: it holds the queue
            with pytest.raises(NotSkippable, match="not the head"):
                skip(gw, head.outbox_id + 1, "alice", "the core refuses it")
            with pytest.raises(NotSkippable, match="say why"):
                skip(gw, head.outbox_id, "alice", "  ")
            state = queue_state(gw)
            assert (state.pending, state.skipped) == (3, 0)
            assert state.head is not None
            assert (state.head.attempts, state.head.last_error) == (2, "CoreRefused: HTTP 400")
            assert (state.head.partner, state.head.receipt_id) == ("va", "r" * 32)

            skip(gw, head.outbox_id, "alice", "core ticket 123: plan unknown there")
            assert deliver_core(gw, client) == 2  # the rest go on at once
            with pytest.raises(NotSkippable, match="is empty"):
                skip(gw, head.outbox_id, "alice", "again")
        assert core.accepted == keys[1:]  # the skipped one never reached the core
        state = queue_state(gw)
        assert (state.pending, state.skipped, state.head) == (0, 1, None)
        first = rows(gw)[0]
        assert first.delivered_at is not None and first.skipped_at is not None
        assert first.skipped_by == "alice"
        assert first.skip_reason == "core ticket 123: plan unknown there"
        with unit_of_work(gw.sessions) as s:
            (entry,) = s.scalars(select(AuditEntry).where(AuditEntry.action == "core_skip"))
            assert (entry.operator, entry.receipt_id) == ("alice", "r" * 32)
            assert "core ticket 123" in entry.detail and "HTTP 400" in entry.detail

    def test_retry_now_makes_the_head_due_at_once(self, gw):
        keys = seed(gw, 2)
        with CoreServer(["500", "500", "500"]) as core, httpx.Client() as client:
            configure(gw, core_url=core.url, core_secret=SECRET)
            assert deliver_core(gw, client) == 0
            assert deliver_core(gw, client) == 0  # waiting out its backoff: not even sent
            assert len(core.seen) == 3
            head = retry_now(gw, "alice")
            assert head is not None and head.outbox_id == rows(gw)[0].id
            assert deliver_core(gw, client) == 2
        assert core.accepted == keys
        assert retry_now(gw, "alice") is None

    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
    def test_the_cli(self, gw):
        seed(gw, 2)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDI834_")}
        env.update(EDI834_DATA_DIR=str(gw.settings.data_dir))

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(EDI834), "core", *args], env=env, capture_output=True, text=True, timeout=60
            )

        with CoreServer(["422"]) as core, httpx.Client() as client:
            configure(gw, core_url=core.url, core_secret=SECRET)
            assert deliver_core(gw, client) == 0
        status = json.loads(cli("status", "--json").stdout)
        head = status["head"]
        assert (status["pending"], status["skipped"]) == (2, 0)
        assert (head["attempts"], head["last_error"]) == (1, "CoreRefused: HTTP 422")
        text = cli("status").stdout
        assert text.startswith("2 events waiting (no core system configured), 0 skipped\n")
        assert f"head: outbox {head['outbox_id']} " in text and "HTTP 422" in text
        # Written with no partner_seq, as before migration 0024: said so, not "no. None".
        assert head["partner_seq"] is None
        assert "partner va, unnumbered (written before migration 0024)," in text
        refused = cli("skip", str(head["outbox_id"] + 1), "--reason", "x", "--by", "alice")
        assert refused.returncode == 1
        assert "is not the head of the queue" in refused.stderr
        done = cli("skip", str(head["outbox_id"]), "--reason", "core ticket 9", "--by", "alice")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"outbox {head['outbox_id']} skipped")
        assert "None" not in done.stdout + text
        assert '"event": "core_event_skipped"' in done.stderr  # the journal's line
        assert CANARY not in done.stdout + done.stderr + text  # ids, never member data
        assert json.loads(cli("status", "--json").stdout)["skipped"] == 1
        assert cli("retry").stdout.startswith(f"outbox {head['outbox_id'] + 1} is tried")
        with unit_of_work(gw.sessions) as s:  # a numbered event is named by its number
            later = CoreDelivery.id == head["outbox_id"] + 1
            s.execute(update(CoreDelivery).where(later).values(partner_seq=7))
        assert "partner va no. 7, file " in cli("status").stdout
