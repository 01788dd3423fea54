"""The operators' dashboard in-process (the app over Starlette's TestClient, on SQLite, files
processed by the real worker code): error pages, the code filter, one definition of rejected,
the audit log, and what did not happen (schedules, ack latency and pick-up, stuck files) with
the clock injected."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import insert, select, update
from starlette.testclient import TestClient

from gateway.api.app import create_health_app
from gateway.context import Gateway
from gateway.dashboard import rejects as rejects_module
from gateway.dashboard.app import create_dashboard
from gateway.db import reports
from gateway.db.base import utcnow
from gateway.db.migrate import upgrade
from gateway.db.models import AuditEntry, Group, Interchange, OperatorSession, Partner, Receipt
from gateway.db.session import unit_of_work
from gateway.intake.receive import record_receipt
from gateway.operators import add_operator
from gateway.partners import add_partner
from gateway.settings import Settings
from gateway.worker.run import Worker
from tests.conftest import SAMPLES

PASSWORD = "correct horse battery staple"  # noqa: S105 - test operators
GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
BAD = (SAMPLES / "bad_ik403_8_dmg02_date.834").read_bytes()
FORMULA = "=cmd|' /C calc'!A0"


@dataclass
class Site:
    gw: Gateway
    ids: dict[str, str]  # file name -> receipt id

    def client(self, user: str = "alice") -> TestClient:
        c = TestClient(create_dashboard(self.gw), base_url="http://dash.test")
        page = c.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = c.post(
            "/login",
            data={"username": user, "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        return c


def send(gw: Gateway, partner_id: int, content: bytes, name: str) -> str:
    pending = gw.blobs.begin()
    pending.write(content)
    blob = pending.commit()
    receipt, _ = record_receipt(gw, partner_id=partner_id, blob=blob, channel="http", filename=name)
    return receipt.id


def process_all(gw: Gateway) -> None:
    worker = Worker(gw)
    while worker.run_once():
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """One seeded database per module: tests read it, or change only what they assert on."""
    data_dir = tmp_path_factory.mktemp("dash") / "var"
    settings = Settings(data_dir=data_dir, database_url="", worker_enabled=False)
    gw = Gateway.open(settings)
    upgrade(settings.sqlalchemy_url)
    with unit_of_work(gw.sessions) as s:
        va, _ = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
        md, _ = add_partner(s, name="md", isa_qualifier="ZZ", isa_id="MD0SBE")
        add_operator(s, "alice", PASSWORD, "admin")
        add_operator(s, "victor", PASSWORD, "viewer")
        va_id, md_id = va.id, md.id
    ids = {
        "good.834": send(gw, va_id, GOOD, "good.834"),
        "bad.834": send(gw, va_id, BAD, "bad.834"),
        FORMULA: send(gw, md_id, BAD.replace(b"ODUYA", b"ODUYB"), FORMULA),
    }
    process_all(gw)
    yield Site(gw, ids)
    gw.close()


class TestErrorPages:
    def test_a_405_names_every_method_of_the_address(self, site):
        c = TestClient(create_dashboard(site.gw), base_url="http://dash.test")
        r = c.delete("/login")  # a GET route and a POST route
        assert r.status_code == 405
        assert r.headers["content-type"].startswith("text/html")
        assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
        head = c.head("/login")  # HEAD wherever GET is answered (RFC 9110 9.3.2)
        assert head.status_code == 200
        assert head.headers["content-type"].startswith("text/html")

    @pytest.mark.parametrize(
        "path",
        [
            "/dashboard/rejects?page=abc",
            "/dashboard?days=abc",
            "/dashboard/audit?page=x",
        ],
    )
    def test_unreadable_values_get_an_html_page_with_a_way_back(self, site, path):
        c = site.client()
        r = c.get(path)
        assert r.status_code == 400
        assert r.headers["content-type"].startswith("text/html")
        assert 'id="back"' in r.text and "<h1>Cannot read the address</h1>" in r.text
        back = re.search(r'<a href="([^"]+)" id="back">', r.text).group(1)
        assert c.get(back.replace("&amp;", "&")).status_code == 200

    @pytest.mark.parametrize(
        "path",
        [
            "/dashboard/rejects?page=0",
            "/dashboard/rejects?page=-3",
            "/dashboard/rejects?page=999999999",
            "/dashboard?days=0",
            "/dashboard?days=100000",
            "/dashboard?until=9999-12-31",
            "/dashboard?since=0001-01-01&until=9999-12-31",
            "/dashboard?until=0001-01-01",
            "/dashboard/rejects?until=9999-12-31&result=all",
            "/dashboard/rejects?since=0001-01-01",
            "/dashboard/rejects.csv?until=9999-12-31&since=0001-01-01",
            "/dashboard/audit?page=0",
        ],
    )
    def test_out_of_range_values_are_clamped(self, site, path):
        r = site.client().get(path)
        assert r.status_code == 200, r.text[:500]

    def test_page_zero_is_the_first_page_and_a_huge_page_the_last(self, site):
        c = site.client()
        assert "Page 1 of 1" in c.get("/dashboard/rejects?page=0&result=all").text
        assert "Page 1 of 1" in c.get("/dashboard/rejects?page=99999&result=all").text

    def test_unknown_pages_and_files_are_html(self, site):
        c = site.client()
        for path in ("/dashboard/nope", "/dashboard/interchanges/" + "0" * 32):
            r = c.get(path)
            assert r.status_code == 404 and "text/html" in r.headers["content-type"]
            assert 'href="/dashboard"' in r.text
        viewer = site.client("victor")
        r = viewer.get("/dashboard/audit")
        assert r.status_code == 403 and "This needs the admin role." in r.text
        assert 'href="/dashboard"' in r.text


class TestExports:
    def test_the_rejects_csv_neutralises_formulas(self, site):
        text = site.client().get("/dashboard/rejects.csv?result=all").text
        assert "'" + FORMULA in text
        assert "\n" + FORMULA not in text and "," + FORMULA not in text

    def test_a_viewer_downloads_a_masked_ack(self, site):
        c = site.client("victor")
        rid = site.ids["bad.834"]
        detail = c.get(f"/dashboard/interchanges/{rid}").text
        ack_ids = re.findall(rf"/dashboard/interchanges/{rid}/acks/(\d+)", detail)
        assert ack_ids
        for ack_id in ack_ids:
            r = c.get(f"/dashboard/interchanges/{rid}/acks/{ack_id}")
            assert r.status_code == 200
            assert b"19801345" not in r.content
        assert any(
            b"IK4*" in c.get(f"/dashboard/interchanges/{rid}/acks/{a}").content for a in ack_ids
        )


def token_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def listed(html: str) -> set[str]:
    return set(re.findall(r'<tr data-id="([0-9a-f]{32})"', html))


@pytest.mark.parametrize("path", ["/dashboard/rejects", "/dashboard/business", "/dashboard/audit"])
def test_a_filter_that_cannot_be_read_is_said_not_dropped_silently(site, path):
    """`since=abc` showed every file as if filtered; now the page says what it left out."""
    c = site.client("alice")
    page = c.get(path, params={"since": "abc", "until": "2027-13-45", "resolved": "maybe"})
    assert page.status_code == 200
    assert "“abc” is not a date (YYYY-MM-DD); it was left out." in page.text
    assert "“2027-13-45” is not a date" in page.text
    if path == "/dashboard/rejects":
        assert "“maybe” is not yes or no" in page.text
        everything = c.get(path).text
        assert listed(page.text) == listed(everything)  # the rest of the filter still applies
    clean = c.get(path, params={"since": "2020-01-01"}).text
    assert "is not a date" not in clean
    backwards = c.get(path, params={"since": "2026-12-07", "until": "2026-12-01"}).text
    assert "“From” 2026-12-07 is after “To” 2026-12-01: nothing can match." in backwards
    if path == "/dashboard/rejects":  # one alert per problem, only the code's beside its box
        page = c.get(path, params={"since": "abc", "until": "xyz", "code": "ZZZ"}).text
        assert page.count('id="code-problem"') == 1 and page.count('role="alert"') == 3
        assert 'aria-describedby="code-help code-problem" aria-invalid="true"' in page


class TestCodeFilter:
    @pytest.mark.parametrize("typed", ["IK403 8", "IK403:8", "ik403-8", " IK403  08 "])
    def test_codes_as_the_pages_show_them(self, site, typed):
        page = site.client("victor").get("/dashboard/rejects", params={"code": typed}).text
        assert listed(page) == {site.ids["bad.834"], site.ids[FORMULA]}
        assert 'id="code-note"' in page and "IK403 8" in page
        assert "code-problem" not in page

    @pytest.mark.parametrize(
        ("typed", "said"),
        [
            ("IK403 99", "IK403 99 is not a code the gateway sends"),
            ("XYZ9 1", "XYZ9 is not an error code family"),
            ("hello", "“hello” is not an error code"),
        ],
    )
    def test_an_unknown_code_is_said_and_matches_nothing(self, site, typed, said):
        c = site.client("victor")
        page = c.get("/dashboard/rejects", params={"code": typed, "result": "all"}).text
        assert said in page and 'role="alert" id="code-problem"' in page
        assert listed(page) == set()
        assert f'value="{typed}"' in page  # still in the box, to correct
        csv = c.get("/dashboard/rejects.csv", params={"code": typed, "result": "all"}).text
        assert len(csv.strip().splitlines()) == 1  # the header only

    @pytest.mark.parametrize("typed", ["IK502 5", "IK502:5", "IK502"])
    def test_the_999s_ik502_5_finds_the_files_whose_segments_are_in_error(self, site, typed):
        """`IK5*R*5` is in the 999 of every segment or element error, and the filter took it
        as a code the gateway sends, yet found no file: it is kept on the set, not as a
        finding."""
        c = site.client("victor")
        page = c.get("/dashboard/rejects", params={"code": typed}).text
        assert "code-problem" not in page
        assert listed(page) == {site.ids["bad.834"], site.ids[FORMULA]}
        csv = c.get("/dashboard/rejects.csv", params={"code": typed}).text
        assert site.ids["bad.834"] in csv and site.ids["good.834"] not in csv
        assert listed(c.get("/dashboard/rejects", params={"code": "IK502 I5"}).text) == set()

    def test_a_ta105_code_with_or_without_its_zeros(self, site):
        c = site.client("victor")
        for typed in ("TA105 006", "TA105 6", "TA105:006"):
            page = c.get("/dashboard/rejects", params={"code": typed}).text
            assert "code-problem" not in page and "TA105 006" in page

    def test_codes_are_listed_with_their_meaning(self, site):
        page = site.client("victor").get("/dashboard/rejects").text
        assert "IK403 8</span>" in page
        assert '<span class="meaning">' in page

    def test_searches_find_accepted_files_too(self, site):
        c = site.client("victor")
        assert listed(c.get("/dashboard/rejects", params={"file": "GOOD"}).text) == {
            site.ids["good.834"]
        }
        assert listed(c.get("/dashboard/rejects", params={"file": "%"}).text) == set()
        page = c.get("/dashboard/rejects", params={"member": "0004931685"}).text
        assert "needs the admin role" in page

    def test_control_numbers_are_found_with_or_without_their_leading_zeros(self, site):
        """An analyst reads `41017` off a 999's AK102 or a sender's e-mail; the ISA13 is
        stored as its nine digits (`000041017`) and a GS06 as sent. Before, only the stored
        form found the file."""
        with site.gw.reads() as s:
            isa13, gs06 = s.execute(
                select(Interchange.isa13, Group.gs06)
                .join(Group, Group.envelope_id == Interchange.id)
                .where(Interchange.receipt_id == site.ids["good.834"])
            ).one()
        c = site.client("victor")
        bare = isa13.lstrip("0")
        for field, typed in (
            ("isa13", (isa13, bare, "0" + bare)),
            ("gs06", (gs06, gs06.lstrip("0"), gs06.zfill(9))),
        ):
            found = [listed(c.get("/dashboard/rejects", params={field: t}).text) for t in typed]
            assert site.ids["good.834"] in found[0], (field, typed)
            assert all(f == found[0] for f in found), (field, typed, found)
        assert listed(c.get("/dashboard/rejects", params={"isa13": "1" + bare}).text) == set()

    def test_a_member_search_that_finds_nothing_is_audited_without_a_file(self, site):
        page = site.client("alice").get("/dashboard/rejects", params={"member": "0004718293"})
        assert listed(page.text) == set()  # the ledger stage did not run here
        with site.gw.reads() as s:
            last = s.execute(
                select(AuditEntry.operator, AuditEntry.receipt_id, AuditEntry.detail)
                .where(AuditEntry.action == "search_member")
                .order_by(AuditEntry.id.desc())
                .limit(1)
            ).one()
        assert tuple(last) == ("alice", None, "rejects searched by member ID: nothing found")


class TestOneDefinitionOfRejected:
    def test_the_chart_counts_what_the_table_counts(self, site):
        page = site.client("victor").get("/dashboard").text
        rows = dict(
            re.findall(
                r'<tr data-partner="(\w+)">.*?data-k="rejected">(?:<a [^>]*>)?(\d+)', page, re.S
            )
        )
        legend = dict(re.findall(r"</svg>([\w]+): (\d+)</li>", page))
        assert rows == legend == {"va": "1", "md": "1"}


class TestActions:
    def test_reveal_redirects_and_a_reload_does_not_audit_again(self, site):
        c = site.client("alice")
        rid = site.ids["bad.834"]
        page = c.get(f"/dashboard/interchanges/{rid}").text
        r = c.post(
            f"/dashboard/interchanges/{rid}/reveal",
            data={"csrf_token": token_of(page)},
            follow_redirects=False,
        )
        assert r.status_code == 303
        target = r.headers["location"]
        assert target.startswith(f"/dashboard/interchanges/{rid}?reveal=")
        shown = c.get(target).text
        assert "ODUYA" in shown and "revealed to alice" in shown
        entries = c.get("/dashboard/audit").text.count("reveal member data")
        assert "ODUYA" in c.get(target).text  # reloaded: a GET
        assert c.get("/dashboard/audit").text.count("reveal member data") == entries
        # The token is this session's: another admin session, or a viewer, sees it masked.
        assert "ODUYA" not in site.client("alice").get(target).text
        assert "ODUYA" not in site.client("victor").get(target).text

    def test_resolve_then_reopen(self, site):
        c = site.client("alice")
        rid = site.ids[FORMULA]
        page = c.get(f"/dashboard/interchanges/{rid}").text
        assert 'id="resolve"' in page and 'id="reopen"' not in page
        c.post(f"/dashboard/interchanges/{rid}/resolve", data={"csrf_token": token_of(page)})
        page = c.get(f"/dashboard/interchanges/{rid}").text
        assert 'id="resolve"' not in page and 'id="reopen"' in page  # not offered again
        c.post(f"/dashboard/interchanges/{rid}/reopen", data={"csrf_token": token_of(page)})
        page = c.get(f"/dashboard/interchanges/{rid}").text
        assert 'id="resolve"' in page and "reopened: by alice" in page
        r = c.post(f"/dashboard/interchanges/{rid}/reopen", data={"csrf_token": token_of(page)})
        assert r.status_code == 409 and "not resolved" in r.text

    def test_bulk_resolve_is_admin_only_and_audited(self, site):
        viewer = site.client("victor")
        page = viewer.get("/dashboard/rejects").text
        assert 'id="bulk"' not in page
        r = viewer.post(
            "/dashboard/rejects/bulk",
            data={"csrf_token": token_of(page), "ids": [site.ids["bad.834"]], "action": "resolve"},
        )
        assert r.status_code == 403
        c = site.client("alice")
        page = c.get("/dashboard/rejects?result=all").text
        ids = [site.ids["bad.834"], site.ids["good.834"], "f" * 32]
        r = c.post(
            "/dashboard/rejects/bulk",
            data={
                "csrf_token": token_of(page),
                "ids": ids,
                "action": "resolve",
                "note": "bulk note",
                "back": "/dashboard/rejects?result=all",
            },
            follow_redirects=False,
        )
        assert r.status_code == 303
        done = c.get(r.headers["location"]).text
        assert "2 files marked resolved (1 could not be" in done
        # The message is the server's word, not the address's: a forged one says nothing,
        # and the same signed value means nothing in another operator's session.
        forged = c.get("/dashboard/rejects?done=resolve%3A999%3A999").text
        assert "marked resolved" not in forged
        assert "marked resolved" not in site.client("victor").get(r.headers["location"]).text
        r = c.post(
            "/dashboard/rejects/bulk",
            data={
                "csrf_token": token_of(page),
                "action": "reprocess",
                "back": "/dashboard/rejects",
            },
            follow_redirects=False,
        )
        assert "No file was ticked" in c.get(r.headers["location"]).text
        resolved = listed(c.get("/dashboard/rejects?result=all&resolved=yes").text)
        assert {site.ids["bad.834"], site.ids["good.834"]} <= resolved
        audit = c.get("/dashboard/audit").text
        assert audit.count("bulk note") >= 2
        for rid in ids[:2]:  # open again, for the other tests
            page = c.get(f"/dashboard/interchanges/{rid}").text
            c.post(f"/dashboard/interchanges/{rid}/reopen", data={"csrf_token": token_of(page)})


class TestDetail:
    def test_a_segment_in_context_is_shown_once_and_the_999_a_segment_a_line(self, site):
        page = site.client("victor").get(f"/dashboard/interchanges/{site.ids['bad.834']}").text
        # IK304 8 and IK403 8 both point at the DMG at position 16: its context once, under
        # the IK403 (which highlights the element).
        assert page.count('<pre class="context"') == 1
        assert page.count('class="note context-above"') == 1
        assert 'href="#finding-2">finding 2</a>' in page
        ik403 = page[page.index('<span class="code">IK403 8</span>') :]
        assert ik403.index('<pre class="context"') < ik403.index("</article>")
        ack = re.search(r'<pre class="ack">(.*?)</pre>', page, re.S).group(1)
        lines = re.findall(r'<span class="line">([^<]*)</span>', ack)
        assert lines[0].startswith("ISA") and lines[-1].startswith("IEA")
        assert all(line.endswith("~") for line in lines)


class TestAuditLog:
    def test_logins_failures_logouts_and_exports_are_recorded(self, site):
        c = TestClient(create_dashboard(site.gw), base_url="http://dash.test")
        page = c.get("/login")
        # No operator's name (it could be anything typed there: a member's name, a password)
        # is recorded as no one; a real operator's wrong password names the operator.
        for name in ("mallory 512849301", "victor"):
            c.post(
                "/login",
                data={"username": name, "password": "x" * 12, "csrf_token": token_of(page.text)},
            )
        admin = site.client("alice")
        admin.get("/dashboard/rejects.csv?result=all")
        # A search by member ID in the export is audited as a search, without the ID (the
        # audit log is not for member data).
        admin.get("/dashboard/rejects.csv?result=all&member=0004718293")
        viewer = site.client("victor")
        viewer.post("/logout", data={"csrf_token": token_of(viewer.get("/dashboard").text)})
        audit = admin.get("/dashboard/audit").text
        assert "mallory" not in audit and "512849301" not in audit
        assert "0004718293" not in audit
        assert re.search(r"<td>alice</td><td>search member</td>", audit)
        for who, what in (
            ("(not an operator)", "login failed"),
            ("victor", "login failed"),
            ("alice", "login"),
            ("alice", "export csv"),
            ("victor", "logout"),
        ):
            assert re.search(rf"<td>{re.escape(who)}</td><td>{what}</td>", audit), (who, what)


def test_a_member_page_shows_the_ledger_and_business_rejects_link_to_it(tmp_path) -> None:
    """Operators see what the ledger holds for a member (enrollments, periods, the latest
    events and the rules they drew) from the business reject that names it — no names, SSNs
    or birth dates, and the member id as the list shows it."""
    from tests.gateway.x834 import Member, interchange

    settings = Settings(data_dir=tmp_path / "var", database_url="", worker_enabled=False)
    gw = Gateway.open(settings)
    upgrade(settings.sqlalchemy_url)
    with unit_of_work(gw.sessions) as s:
        va, _ = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
        add_operator(s, "alice", PASSWORD, "admin")
        add_operator(s, "victor", PASSWORD, "viewer")
        va_id = va.id
    amounts = {"PRE AMT 1": ("9X", "300.00"), "APTC AMT": ("9V", "100.00")}
    ros = Member(
        "0005100001", "0005100001", "QUINTERO", "ROSALIND", "512849301", categories=amounts
    )
    send(gw, va_id, interchange([ros], control=801), "add.834")
    send(gw, va_id, interchange([ros], control=802, bgn_date="20270102"), "again.834")
    worker = Worker(gw)
    while worker.run_once():
        pass
    while worker.apply_ledger_once():
        pass
    site = Site(gw, {})
    try:
        for user in ("alice", "victor"):
            c = site.client(user)
            listing = c.get("/dashboard/business").text
            (link,) = set(re.findall(r'href="(/dashboard/members/\d+)"', listing))
            page = c.get(link, params={"as_of": "2027-03-01"})
            assert page.status_code == 200
            text = page.text
            # A policy number identifies the member: a viewer sees it as the member id.
            shown = "31200457" if user == "alice" else "…0457"
            assert f"HLT policy {shown}, plan year 2027" in text
            if user == "victor":
                assert "31200457" not in text
            assert "300.00" in text and "100.00" in text and "48213VA004000701" in text
            assert 'data-outcome="applied"' in text and 'data-outcome="rejected"' in text
            assert "duplicate-add" in text
            assert "…0001" in text  # as every list shows a member id (last4)
            for phi in ("QUINTERO", "ROSALIND", "512849301", "19800101", "MAIN ST"):
                assert phi not in text, phi
        assert "is not a date" in c.get(link, params={"as_of": "abc"}).text
        ledger_id = link.rsplit("/", 1)[1]
        with gw.reads() as s:
            views = s.execute(
                select(AuditEntry.operator, AuditEntry.detail).where(
                    AuditEntry.action == "view_member"
                )
            ).all()
        # Every view of a member's page, by whom and of which member (the ledger's id).
        assert [who for who, _ in views] == ["alice", "victor", "victor"]
        assert {detail for _, detail in views} == {f"ledger member {ledger_id} of va"}
        # The audit log's partner filter finds them (they are about no file: it missed them).
        audit = site.client("alice").get("/dashboard/audit", params={"partner": "va"}).text
        rows = re.findall(r'<tr data-action="view_member">(.*?)</tr>', audit, re.S)
        assert len(rows) == 3 and all('data-k="partner">va<' in row for row in rows)
        for unknown in ("999999", "abc", "9" * 40):
            missing = c.get(f"/dashboard/members/{unknown}")
            assert missing.status_code == 404 and "No such member" in missing.text
    finally:
        gw.close()


def test_the_rejects_csv_lists_the_files_on_both_databases(tmp_path, database_url) -> None:
    """The export streams through a server-side cursor: on PostgreSQL it needs a transaction
    (a read session in autocommit gave the header alone, for every filter)."""
    from gateway.dashboard.rejects import _csv_rows
    from gateway.db.reports import RejectFilter
    from tests.gateway.harness import add_va, in_process_gateway
    from tests.gateway.test_worker import _receipt

    for gw in in_process_gateway(tmp_path / "var", database_url):
        partner = add_va(gw)
        bad = (SAMPLES / "bad_ik403_8_dmg02_date.834").read_bytes()
        rid = _receipt(gw, partner, bad)
        assert Worker(gw).run_once()
        lines = "".join(_csv_rows(gw, RejectFilter(result="all"))).splitlines()
        assert [line.split(",")[0] for line in lines[1:]] == [rid], lines
        # Times as the API writes them (UTC, Z), on both databases.
        received = dict(zip(lines[0].split(","), lines[1].split(","), strict=True))
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", received["received_at"])


def test_a_new_password_a_disabled_account_or_a_new_role_takes_effect_at_once(site) -> None:
    """An operator's access ends when it must: `operator passwd` and `operator disable` end
    its open sessions (a session opened with a leaked password stayed for 30 idle minutes);
    `operator role` applies from the next request."""
    from gateway.operators import set_enabled, set_password, set_role

    with unit_of_work(site.gw.sessions) as s:
        add_operator(s, "olga", PASSWORD, "admin")
    first, second = site.client("olga"), site.client("olga")

    def status(c: TestClient, path: str = "/dashboard/audit") -> int:
        return c.get(path, follow_redirects=False).status_code

    assert status(first) == status(second) == 200
    with unit_of_work(site.gw.sessions) as s:
        set_role(s, "olga", "viewer")
    assert status(first) == 403 and status(first, "/dashboard") == 200  # a viewer now
    with unit_of_work(site.gw.sessions) as s:
        set_password(s, "olga", PASSWORD + "!")
    assert status(first, "/dashboard") != 200 and status(second, "/dashboard") != 200
    with unit_of_work(site.gw.sessions) as s:
        set_password(s, "olga", PASSWORD)
        set_role(s, "olga", "admin")
    third = site.client("olga")
    with unit_of_work(site.gw.sessions) as s:
        set_enabled(s, "olga", False)
    assert status(third, "/dashboard") != 200
    with pytest.raises(AssertionError):
        site.client("olga")  # refused at the login
    with unit_of_work(site.gw.sessions) as s:
        set_enabled(s, "olga", True)
    assert status(site.client("olga")) == 200


def test_a_viewer_never_sees_member_data_a_stray_separator_moved(site) -> None:
    """The segments around a finding mask member data for a viewer by what each element holds,
    not by its position alone: a stray `*` in a name moved the SSN one element right, out of
    the masked positions, and a viewer (and an admin who had not revealed) read it. The county
    (N406), gender and marital status (DMG03/04) are member data too."""
    shifted = BAD.replace(
        b"NM1*IL*1*ODUYA*KWAME*A***34*915830264", b"NM1*IL*1*ODUYA*JR*KWAME*A***34*915830264"
    )
    shifted = shifted.replace(b"000043303", b"000043999").replace(b"*43303*", b"*43999*")
    assert shifted.count(b"*JR*") == 1 and b"43999" in shifted
    with unit_of_work(site.gw.sessions) as s:
        va_id = s.scalar(select(Partner.id).where(Partner.name == "va"))
    rid = send(site.gw, va_id, shifted, "shifted.834")
    process_all(site.gw)
    for user in ("victor", "alice"):
        page = site.client(user).get(f"/dashboard/interchanges/{rid}").text
        for value in ("915830264", "ODUYA", "KWAME", "51760", "2318 FLOYD", "19801345"):
            assert value not in page, (user, value)
        assert "NM1*IL*1*" in page and "•••••" in page  # the qualifiers stay readable


@pytest.mark.parametrize(
    ("sent", "as_sent"),
    [
        (b"NM1*IL*1*ODUYA*KWAME", b"nm1*IL*1*ODUYA*KWAME"),  # lower case, read as sent
        (b"NM1*IL*1*ODUYA*KWAME", b"NMI*IL*1*ODUYA*KWAME"),  # a segment id the guide lacks
        (b"DMG*D8*", b"DM6*D8*"),
        (b"N3*", b"N 3*"),
    ],
)
def test_a_misspelt_or_lower_case_segment_id_is_masked_too(site, sent, as_sent) -> None:
    """A viewer sees no member data in a segment whose id is lower case or not the guide's:
    it carries what its segment would (the 999 says `nm1` as sent). Only the guide's member
    data segments were masked, by their exact id, so `nm1`, `NMI`, `DM6` showed in full."""
    changed = BAD.replace(sent, as_sent, 1)
    assert changed != BAD
    changed = changed.replace(b"000043303", b"000043404").replace(b"*43303*", b"*43404*")
    with unit_of_work(site.gw.sessions) as s:
        va_id = s.scalar(select(Partner.id).where(Partner.name == "va"))
    rid = send(site.gw, va_id, changed, f"{as_sent[:3].decode().strip()}.834")
    process_all(site.gw)
    page = site.client("victor").get(f"/dashboard/interchanges/{rid}").text
    for value in ("915830264", "ODUYA", "KWAME", "19801345", "2318 FLOYD"):
        assert value not in page, value


def test_a_file_sent_again_under_another_name_is_found_under_that_name(tmp_path) -> None:
    """The sender asks about `resend-0412.834`; it held the bytes of a file received before, so
    it was answered by that file (a line on its timeline). A file-name search found nothing,
    as if it never came. Now it finds the original; another name still finds nothing."""
    settings = Settings(data_dir=tmp_path / "var", database_url="", worker_enabled=False)
    gw = Gateway.open(settings)
    try:
        upgrade(settings.sqlalchemy_url)
        with unit_of_work(gw.sessions) as s:
            va, _ = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
            add_operator(s, "alice", PASSWORD, "admin")
            va_id = va.id
        original = send(gw, va_id, GOOD, "daily-0411.834")
        assert send(gw, va_id, GOOD, "resend-0412.834") == original  # the same receipt
        process_all(gw)
        c = Site(gw, {}).client("alice")
        for typed in ("resend-0412", "RESEND", "0412.834"):
            found = listed(c.get("/dashboard/rejects", params={"file": typed}).text)
            assert found == {original}, typed
        assert listed(c.get("/dashboard/rejects", params={"file": "again"}).text) == set()
        assert listed(c.get("/dashboard/rejects", params={"file": "0413"}).text) == set()
    finally:
        gw.close()


def test_a_csv_export_in_progress_never_holds_up_a_write(tmp_path) -> None:
    """On SQLite the export read through a write transaction (BEGIN IMMEDIATE) and held the
    lock while it streamed: with 100,000 rows, seven seconds in which uploads, logins and the
    worker waited (`bench_dashboard.py`: the overview 7.3 s during an export; its login touch
    writes). Mid-stream, with its cursor open, a write now goes through at once."""
    settings = Settings(
        data_dir=tmp_path / "var", database_url="", worker_enabled=False, db_busy_timeout_ms=300
    )
    gw = Gateway.open(settings)
    try:
        upgrade(settings.sqlalchemy_url)
        with unit_of_work(gw.sessions) as s:
            va, _ = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
            s.flush()
            s.execute(
                insert(Receipt),
                [
                    {"partner_id": va.id, "channel": "http", "sha256": f"{n:064x}", "size": 1,
                     "blob_path": f"x/{n}", "status": "processed", "outcome": "rejected"}
                    for n in range(1200)
                ],
            )  # fmt: skip
        stream = rejects_module._csv_rows(gw, reports.RejectFilter(result="all"))
        header, first = next(stream), next(stream)  # 500 rows out, the cursor open
        assert header.startswith("id,received_at,")
        assert first.count("\n") == 500
        # A write unit of work (BEGIN IMMEDIATE): behind a held write lock it would wait out the
        # 300 ms busy timeout and fail, "database is locked".
        with unit_of_work(gw.sessions) as s:
            s.execute(update(Partner).values(timezone="America/New_York"))
        with gw.reads() as s:
            assert s.scalar(select(Partner.timezone)) == "America/New_York"
        rest = "".join(stream)
        assert (first + rest).count("\n") == 1200
    finally:
        gw.close()


def test_a_page_asked_for_after_the_session_idled_out_says_why_the_login_is_back(site) -> None:
    """An analyst back from lunch clicks a link and lands on the login form: it says the session
    ended (and after how long idle), and the login goes back to that page. Before, a bare form,
    as if something had broken. A first visit, with no session at all, says nothing."""
    c = site.client("victor")
    assert c.get("/dashboard/rejects").status_code == 200
    with unit_of_work(site.gw.sessions) as s:
        s.execute(
            update(OperatorSession).values(
                last_seen_at=utcnow()
                - dt.timedelta(minutes=site.gw.settings.session_idle_minutes + 1)
            )
        )
    r = c.get("/dashboard/rejects", params={"result": "all"}, follow_redirects=False)
    assert r.status_code == 303
    assert "ended=1" in r.headers["location"] and "next=" in r.headers["location"]
    page = c.get(r.headers["location"]).text
    minutes = site.gw.settings.session_idle_minutes
    assert f"Your session ended (idle for {minutes} minutes" in page
    assert 'name="next" value="/dashboard/rejects?result=all"' in page
    fresh = TestClient(create_dashboard(site.gw), base_url="http://dash.test")
    first = fresh.get("/dashboard/rejects", follow_redirects=False)
    assert "ended" not in first.headers["location"]
    assert "session ended" not in fresh.get(first.headers["location"]).text


@pytest.mark.parametrize("key", ["received", "partner", "outcome", "members"])
def test_the_column_sorted_by_shows_its_arrow_and_aria_sort(site, key) -> None:
    """Sorted by Members, its header showed no arrow (the others did), and no header told a
    screen reader the list's order (found by the operations analyst's run)."""
    c = site.client("victor")
    for order, arrow, said in (("desc", "▼", "descending"), ("asc", "▲", "ascending")):
        page = c.get("/dashboard/rejects", params={"sort": key, "order": order}).text
        headers = re.findall(r"<th scope=\"col\"([^>]*)><a href=\"[^\"]*\">([^<]*)</a></th>", page)
        marked = [(attrs, text) for attrs, text in headers if "aria-sort" in attrs]
        assert len(marked) == 1, headers
        attrs, text = marked[0]
        assert f'aria-sort="{said}"' in attrs
        assert text.lower().startswith(key) and text.endswith(f" {arrow}"), text
        assert sum(arrow in t for _, t in headers) == 1


def test_a_sort_or_order_the_list_does_not_know_is_said_not_ignored(site) -> None:
    """As for every other filter: the page says what it could not read and what it did."""
    c = site.client("victor")
    page = c.get("/dashboard/rejects?result=all&sort=bogus&order=sideways").text
    assert "is not a column to sort by; sorted by received." in page
    assert "is not asc or desc; newest first." in page
    assert "not a column" not in c.get("/dashboard/rejects?result=all&sort=size").text


def test_the_database_going_away_is_a_page_not_a_500(postgres, tmp_path):
    """PostgreSQL refusing connections (a restart, a failover) while an operator is logged in:
    503 with a page that says so and a way to reload, then the dashboard again once it answers
    (found by an on-call drill: a bare "Internal Server Error")."""
    import psycopg

    name = f"dash_away_{time.time_ns()}"
    settings = Settings(
        data_dir=tmp_path / "var", database_url=postgres.create_database(name), worker_enabled=False
    )
    gw = Gateway.open(settings)
    upgrade(settings.sqlalchemy_url)
    try:
        with unit_of_work(gw.sessions) as s:
            add_operator(s, "alice", PASSWORD, "admin")
        c = Site(gw, {}).client()
        assert c.get("/dashboard").status_code == 200
        with psycopg.connect(postgres.conninfo(), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            try:
                for path in ("/dashboard", "/dashboard/rejects", "/dashboard/audit"):
                    r = c.get(path)
                    assert r.status_code == 503, (path, r.status_code)
                    assert r.headers["content-type"].startswith("text/html")
                    assert "<h1>Database unavailable</h1>" in r.text and 'id="back"' in r.text
                    assert r.headers["retry-after"] == "5"
                # /metrics still answers, and says its database gauges are old.
                health = TestClient(create_health_app(gw))
                assert "edi834_database_up 0.0" in health.get("/metrics").text
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert c.get("/dashboard").status_code == 200
        assert "edi834_database_up 1.0" in health.get("/metrics").text
    finally:
        gw.close()


def test_ledger_reads_at_a_terminal_are_audited(tmp_path, capsys) -> None:
    """`edi834 ledger members|history|months` print member data (with --show-names, names) to
    a person at a terminal: each run is in the audit log as a dashboard view is — who (--by,
    else cli:<OS user>), which command, of which partner, and for history which member by the
    ledger's own id — never the member's key or name."""
    from gateway.cli import _run, build_parser
    from gateway.db.models import LedgerMember

    settings = Settings(data_dir=tmp_path / "var", database_url="", worker_enabled=False)
    gw = Gateway.open(settings)
    upgrade(settings.sqlalchemy_url)
    with unit_of_work(gw.sessions) as s:
        va, _ = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
        va_id = va.id
    send(gw, va_id, GOOD, "add.834")
    worker = Worker(gw)
    while worker.run_once():
        pass
    while worker.apply_ledger_once():
        pass
    try:
        base = ["--data-dir", str(settings.data_dir)]
        for argv in (
            ["ledger", "members", "--partner", "va", "--show-names", "--by", "carol", *base],
            ["ledger", "history", "--partner", "va", "0004718293", "--by", "carol", *base],
            ["ledger", "months", "--partner", "va", "--policy", "21846603", "--from", "2026-06"],
        ):
            argv = argv if "--data-dir" in argv else [*argv, *base]
            assert _run(build_parser().parse_args(argv)) == 0
        printed = capsys.readouterr().out
        assert "OKAFOR" in printed  # what the audit entries stand for
        with gw.reads() as s:
            key = LedgerMember.member_key == "0004718293"
            member = s.scalar(select(LedgerMember.id).where(key))
            entries = s.execute(
                select(AuditEntry.operator, AuditEntry.action, AuditEntry.detail).order_by(
                    AuditEntry.id
                )
            ).all()
        assert [tuple(e) for e in entries[:2]] == [
            ("carol", "cli_ledger_members", "members of va with names"),
            ("carol", "cli_ledger_history", f"ledger member {member} of va"),
        ]
        who, action, detail = entries[2]
        assert who.startswith("cli:") and action == "cli_ledger_months"
        assert detail == "a policy's months of va"
        for _, _, detail in entries:
            assert "0004718293" not in detail and "OKAFOR" not in detail
    finally:
        gw.close()


@pytest.mark.parametrize(
    ("params", "prev_label", "next_label"),
    [
        ({}, "← Newer", "Older →"),
        ({"order": "asc"}, "← Older", "Newer →"),
        ({"sort": "partner"}, "← Previous", "Next →"),
        ({"sort": "outcome", "order": "asc"}, "← Previous", "Next →"),
    ],
)
def test_the_rejects_pages_are_named_by_the_order_shown(
    site, monkeypatch, params, prev_label, next_label
):
    """The pager said "Older →" whatever the sort: sorted oldest first, "Older" led to newer
    files, and sorted by partner or outcome to neither."""
    monkeypatch.setattr("gateway.dashboard.rejects.PAGE", 1)
    c = site.client("victor")
    page = c.get("/dashboard/rejects", params={"result": "all", "page": 2, **params}).text
    pager = re.search(r'<nav aria-label="Pages" class="pages">(.*?)</nav>', page, re.S).group(1)
    assert re.search(rf'rel="prev">{prev_label}</a>', pager), pager
    assert re.search(rf'rel="next">{next_label}</a>', pager), pager
