"""The ledger scenarios through the real intake path: samples/ledger sent over HTTP to a running
`edi834 serve` (SQLite, then PostgreSQL), one file a day, and what the sender sees through the
API: per-member outcomes, the reconciliation report and its CSV, and nothing of anyone else's."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import quote

from gateway.enrollment.delivery import MARK_EVERY_EVENTS
from tests.benchmarks.generate_834 import write_834
from tests.conftest import SAMPLES
from tests.gateway.harness import GatewayProcess, members_of, submit, wait_ledger
from tests.gateway.x834 import Cov, Member, dependent, interchange

LEDGER = SAMPLES / "ledger"
EXPECT = json.loads((LEDGER / "expect.json").read_text())
FILES = sorted(p.name for p in LEDGER.glob("*.834"))


def test_the_scenario_series_gives_exactly_the_expected_outcomes(running) -> None:
    gw, va_key, other_key = running
    ids: dict[str, str] = {}
    with gw.client(va_key) as c, gw.client(other_key) as other:
        for name in FILES:
            r = submit(c, (LEDGER / name).read_bytes(), name)
            assert r.status_code == 202, r.text
            ids[name] = r.json()["id"]
            detail = wait_ledger(c, ids[name])
            assert detail["outcome"] == "accepted"  # every file passes the 999...
            expected = EXPECT[name]
            if "reconciliation" in expected:
                assert detail["ledger_status"] == "reconciled"
                continue
            assert detail["ledger_status"] == "applied"  # ...and the ledger decides per member
            got = members_of(c, ids[name], page=2)
            applied = sorted(m["member_key"] for m in got if m["outcome"] == "applied")
            rejected = {
                m["member_key"]: sorted(
                    f["rule"] for f in m["findings"] if f["severity"] == "reject"
                )
                for m in got
                if m["outcome"] == "rejected"
            }
            assert applied == sorted(expected["applied"]), name
            assert rejected == expected["rejected"], name
            assert detail["members_applied"] == len(applied)
            assert detail["members_business_rejected"] == len(rejected)
            for m in got:  # every rejection says where and why
                for f in m["findings"]:
                    assert f["message"] and f["remedy"] and f["snip"] in (3, 4, 6, 7)
                    assert f["segment_position"] and f["segment_position"] >= 1

            # An 824 answers exactly the sets with business rejects: a TED per reject.
            acks = {a["kind"] for a in c.get(f"/v1/interchanges/{ids[name]}/acks").json()}
            if rejected:
                assert "824" in acks, name
                advice = c.get(f"/v1/interchanges/{ids[name]}/acks/824").text
                segments = [seg.strip() for seg in advice.split("~") if seg.strip()]
                teds = [seg for seg in segments if seg.startswith("TED*")]
                assert len(teds) == sum(len(v) for v in rejected.values()), name
                (oti,) = [seg for seg in segments if seg.startswith("OTI*")]
                everyone = not applied
                assert oti.split("*")[1] == ("TR" if everyone else "TE"), oti
                assert any(seg.startswith("ST*824*") for seg in segments)
                outbound = gw.data_dir / "sftp" / "va" / "outbound"
                deadline = time.monotonic() + 10
                while not list(outbound.glob("*.824")) and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert list(outbound.glob("*.824"))
            else:
                assert "824" not in acks, name

            # Another sender sees none of it.
            assert other.get(f"/v1/interchanges/{ids[name]}/members").status_code == 404

        audit = ids["07_audit.834"]
        # Only an audit links to a report (another file's address would answer 404).
        links = c.get(f"/v1/interchanges/{audit}").json()["links"]
        assert links["reconciliation"].endswith(f"/v1/interchanges/{audit}/reconciliation")
        daily = c.get(f"/v1/interchanges/{ids['02_change_address.834']}").json()["links"]
        assert "reconciliation" not in daily and "members" in daily
        report = c.get(f"/v1/interchanges/{audit}/reconciliation").json()
        got_items = [
            {k: v for k, v in item.items() if k in ("kind", "member_key", "field", "file_value",
                                                     "ledger_value") and v}
            for item in report["items"]
        ]  # fmt: skip
        want = EXPECT["07_audit.834"]["reconciliation"]
        key = lambda d: (d["kind"], d["member_key"])  # noqa: E731
        assert sorted(got_items, key=key) == sorted(want, key=key)
        assert (report["missing_in_file"], report["missing_in_ledger"], report["mismatches"]) == (
            1,
            1,
            1,
        )
        download = c.get(report["csv_url"].replace(gw.url, ""))
        assert download.status_code == 200
        assert download.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(download.text)))
        assert sorted((r["kind"], r["member_key"]) for r in rows) == sorted(key(w) for w in want)
        assert other.get(f"/v1/interchanges/{audit}/reconciliation").status_code == 404
        assert other.get(f"/v1/interchanges/{audit}/reconciliation.csv").status_code == 404

        metrics = c.get("/metrics").text
        duplicate = 'edi834_business_findings_total{rule="duplicate-add",severity="reject"} 1.0'
        assert duplicate in metrics
        assert 'edi834_ledger_files{status="pending"} 0.0' in metrics
        assert "edi834_core_pending_events 7.0" in metrics  # no core system configured: waiting

        # A sender's REF*17 with a "/" in it, and a dependent without REF*17 (employer files
        # leave it out): each is read at its key, and the dependent's key shows no SSN.
        cov = [Cov(policy="PX/77001")]  # and a policy number with a "/" in it
        family = interchange(
            [
                Member("0077001", "VA/77", "STONE", "IRIS", "512849377", coverages=cov),
                dependent("0077001", "", "OMAR", "512849378", last="STONE", coverages=cov),
            ],
            control=77001,
        )
        rid = submit(c, family, "family.834").json()["id"]
        assert wait_ledger(c, rid)["ledger_status"] == "applied"
        keys = [m["member_key"] for m in members_of(c, rid)]
        assert keys[0] == "VA/77" and keys[1].startswith("0077001:"), keys
        assert "512849378" not in keys[1] and "9378" not in keys[1]
        for key in keys:
            body = c.get(f"/v1/members/{quote(key, safe='')}")
            assert body.status_code == 200 and body.json()["member_key"] == key, body.text
            assert other.get(f"/v1/members/{quote(key, safe='')}").status_code == 404
        months = c.get("/v1/policies/PX%2F77001/months", params={"from": "2027-01"})
        assert months.status_code == 200 and months.json()["policy"] == "PX/77001", months.text
        download = c.get(months.json()["csv_url"].replace(gw.url, ""))
        assert download.status_code == 200 and download.headers["content-type"].startswith(
            "text/csv"
        )
        assert "0077001:" in download.text
    assert "512849378" not in gw.logs() and "VA/77" not in gw.logs()


def test_a_queued_auto_reenrollment_file_applies_before_the_daily_file_queued_with_it(
    tmp_path, database_url
) -> None:
    """CMS names its files I834AR (auto re-enrollment), I834RT and I834, to be processed in that
    order. Both files wait in the queue (worker off); the daily change arrives first and has the
    earlier BGN date, yet the AR file applies first, so the change finds its member."""
    sub = "0009100001"
    person = {"subscriber_id": sub, "member_id": sub, "last": "ABARA", "first": "NKEM",
              "ssn": "512849371"}  # fmt: skip
    renewal = Member(
        **person,  # type: ignore[arg-type]
        reason="41",
        coverages=[Cov(policy="41200991", begin="20280101", end="20281231")],
        categories={"ADDL MAINT REASON": ("17", "PASSIVE")},
    )
    change = Member(**person, maintenance="001", reason="25", street="9 NEW RD", coverages=[])  # type: ignore[arg-type]
    ar = interchange([renewal], control=2, bgn_date="20271102")
    daily = interchange([change], control=1, bgn_date="20271101")
    gw = GatewayProcess(data_dir=tmp_path / "var", database_url=database_url)
    key = gw.add_partner("va", "VA0FFM")
    try:
        gw.start(EDI834_WORKER_ENABLED="false")
        with gw.client(key) as c:
            daily_id = submit(c, daily, "VA0FFM.EDI834GATEWAY.I834.D271101.T090000000.P").json()
            ar_id = submit(c, ar, "VA0FFM.EDI834GATEWAY.I834AR.D271102.T020000000.P").json()
        gw.stop()
        gw.start(EDI834_LEDGER_ORDER_WINDOW_SECONDS="5")
        with gw.client(key) as c:
            for receipt in (ar_id, daily_id):
                assert wait_ledger(c, receipt["id"])["ledger_status"] == "applied"
            got = {r["id"]: members_of(c, r["id"]) for r in (ar_id, daily_id)}
        for receipt in (ar_id, daily_id):
            ((member,),) = [got[receipt["id"]]]
            assert (member["member_key"], member["outcome"]) == (sub, "applied"), member
    finally:
        gw.kill()


class _Core(BaseHTTPRequestHandler):
    """The insurer's core system: records every Idempotency-Key it is sent."""

    seen: ClassVar[list[str]] = []
    numbered: ClassVar[list[tuple[str, str, int]]] = []  # (partner, key, partner_seq)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        event = json.loads(body)
        assert event["idempotency_key"] == self.headers["Idempotency-Key"]
        self.seen.append(self.headers["Idempotency-Key"])
        self.numbered.append((event["partner"], event["idempotency_key"], event["partner_seq"]))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_killed_mid_ledger_and_mid_delivery_loses_nothing_and_applies_nothing_twice(
    tmp_path,
) -> None:
    core = ThreadingHTTPServer(("127.0.0.1", 0), _Core)
    threading.Thread(target=core.serve_forever, daemon=True).start()
    _Core.seen.clear()
    _Core.numbered.clear()
    members = 1200  # more than two ledger chunks
    big = tmp_path / "big.834"
    with open(big, "wb") as f:
        write_834(f, members, seed=7)
    gw = GatewayProcess(
        data_dir=tmp_path / "var",
        extra_env={
            "EDI834_CORE_URL": f"http://127.0.0.1:{core.server_port}/events",
            "EDI834_CORE_SECRET": "core-test-secret",
        },
    )
    key = gw.add_partner("va", "VA0FFM")
    try:
        gw.start(crashpoints=("ledger_chunk",))  # SIGKILL right after the first chunk commits
        with gw.client(key) as c:
            receipt_id = submit(c, big.read_bytes(), "big.834").json()["id"]
        gw.wait_exit(timeout=120)
        gw.start(crashpoints=("core_sent",), wait=False)  # dies after its first delivery
        gw.wait_exit(timeout=120)
        gw.start()
        with gw.client(key) as c:
            detail = wait_ledger(c, receipt_id, timeout=120)
            assert detail["members_applied"] == members
            page = c.get(f"/v1/interchanges/{receipt_id}/members", params={"limit": 1}).json()
            assert page["counts"] == {"applied": members}  # each member recorded exactly once
        deadline = time.monotonic() + 60
        while len(set(_Core.seen)) < members and time.monotonic() < deadline:
            time.sleep(0.2)
        counts = Counter(_Core.seen)
        assert len(counts) == members  # every applied event reached the core system...
        # ...and at most what was sent and not yet marked delivered at each kill was sent
        # again: the first kill (after the first chunk) can land while the delivery loop posts
        # that chunk's events (a group of up to MARK_EVERY_EVENTS), the second after one POST.
        assert sum(counts.values()) - members <= MARK_EVERY_EVENTS + 1, counts.most_common(3)
        # The partner's sequence through both kills: 1..members, no gap, no number given twice
        # (the chunk the first kill cut off gave its numbers back), each resend under the same
        # number, and in the order the core received them.
        numbers = {key: seq for _, key, seq in _Core.numbered}
        assert {p for p, _, _ in _Core.numbered} == {"va"}
        assert sorted(numbers.values()) == list(range(1, members + 1))
        assert all(numbers[key] == seq for _, key, seq in _Core.numbered)
        firsts = list(dict.fromkeys(seq for _, _, seq in _Core.numbered))
        assert firsts == sorted(firsts)
    finally:
        gw.kill()
        core.shutdown()
