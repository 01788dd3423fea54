"""The dashboard's view of the enrollment ledger, against one real `edi834 serve` (SQLite) whose
ledger rows are written straight into its database: business rejects (filters, paging, the
per-rule summary), the ledger and reconciliation on an interchange page, the reconciliation
CSV (audited), the outbox backlog on the overview — with member data masked until revealed."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.db.base import utcnow
from gateway.db.migrate import upgrade
from gateway.db.models import (
    Ack,
    AuditEntry,
    BusinessFinding,
    CoreDelivery,
    MemberEventRow,
    Partner,
    Receipt,
    ReceiptEvent,
    Reconciliation,
    ReconciliationItem,
    Status,
)
from gateway.db.session import make_engine, make_session_factory, unit_of_work
from gateway.enrollment.queries import CSV_COLUMNS
from gateway.enrollment.rules import RULES
from gateway.operators import add_operator
from gateway.partners import add_partner
from gateway.settings import Settings
from tests.gateway.harness import OPERATOR_PASSWORD, GatewayProcess, csrf_of, login

# Every value that is member data (member keys, messages, compared values, a traceback's
# message) carries this marker, so "no member data on the page" is one substring check.
PHI = "ZQX"
NJ_FILLER = 51  # one more than a page of business findings


@dataclass
class Seeded:
    gateway: GatewayProcess
    sessions: sessionmaker[Session]
    receipts: dict[str, str]  # name -> receipt id
    findings: dict[str, int]  # name -> business finding id
    admin: httpx.Client
    viewer: httpx.Client


def _receipt(s: Session, partner: Partner, *, name: str, **values: object) -> Receipt:
    values.setdefault("processed_at", utcnow())
    r = Receipt(
        partner_id=partner.id,
        channel="http",
        filename=name,
        sha256=f"{len(name):064d}",
        size=1000,
        blob_path=f"none/{name}",  # never read: these receipts have no 999 findings
        status=Status.PROCESSED,
        outcome="accepted",
        **values,
    )
    s.add(r)
    s.flush()
    return r


def _member(
    s: Session, r: Receipt, *, seq: int, key: str, outcome: str, ins03: str = "021"
) -> MemberEventRow:
    e = MemberEventRow(
        partner_id=r.partner_id,
        receipt_id=r.id,
        seq=seq,
        envelope_seq=0,
        group_seq=0,
        set_seq=0,
        isa13="000000101",
        gs06="101",
        st02="0001",
        segment_position=4 + 20 * seq,
        member_key=key,
        subscriber=True,
        relationship_code="18",
        maintenance_type=ins03,
        maintenance_reason="EC",
        outcome=outcome,
        payload="{}",
    )
    s.add(e)
    s.flush()
    return e


def _finding(
    s: Session,
    r: Receipt,
    *,
    rule: str,
    severity: str,
    message: str,
    event: MemberEventRow | None = None,
    **values: object,
) -> BusinessFinding:
    f = BusinessFinding(
        receipt_id=r.id,
        partner_id=r.partner_id,
        event_id=event.id if event else None,
        envelope_seq=0,
        group_seq=0,
        set_seq=0,
        st02="0001",
        rule=rule,
        snip=RULES[rule].snip,
        severity=severity,
        message=message,
        segment_id="INS" if event else None,
        segment_position=event.segment_position if event else None,
        **values,
    )
    s.add(f)
    s.flush()
    return f


def _seed_waiting(s: Session) -> str:
    """A file waiting for the ledger, leased "elsewhere" so this server's worker leaves it be:
    written once the server runs, as a (single-process) start frees every ledger lease."""
    now = utcnow()
    va = s.scalars(select(Partner).where(Partner.name == "va")).one()
    waiting = _receipt(
        s,
        va,
        name="va-waiting.834",
        ledger_status="pending",
        lease_owner="another-host",
        lease_expires_at=now + dt.timedelta(days=1),
        processed_at=now - dt.timedelta(minutes=5),
    )
    return waiting.id


def _seed(s: Session) -> tuple[dict[str, str], dict[str, int]]:
    now = utcnow()
    va, _ = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
    md, _ = add_partner(s, name="md", isa_qualifier="ZZ", isa_id="MD0SBE")
    nj, _ = add_partner(s, name="nj", isa_qualifier="ZZ", isa_id="NJ0SBE")
    add_operator(s, "alice", OPERATOR_PASSWORD, "admin")
    add_operator(s, "victor", OPERATOR_PASSWORD, "viewer")

    # Older than a week (not in the summary) and older than everything else (ids first).
    filler = _receipt(s, nj, name="nj-daily.834", ledger_status="applied")
    for n in range(NJ_FILLER):
        _finding(
            s,
            filler,
            rule="member-twice-in-file",
            severity="warn",
            message=f"{PHI} twice {n}",
            created_at=now - dt.timedelta(days=10),
        )

    daily = _receipt(
        s,
        va,
        name="va-daily.834",
        ledger_status="applied",
        members_applied=2,
        members_business_rejected=1,
        ledger_applied_at=now,
    )
    applied = _member(s, daily, seq=0, key=f"{PHI}KEYAPPLIED01", outcome="applied")
    rejected = _member(s, daily, seq=1, key=f"{PHI}KEYREJECTED02", outcome="rejected", ins03="024")
    applied_too = _member(s, daily, seq=2, key=f"{PHI}KEYAPPLIED03", outcome="applied")
    old = _finding(
        s,
        daily,
        rule="duplicate-add",
        severity="reject",
        message=f"addition of {PHI}OLDSURNAME",
        created_at=now - dt.timedelta(days=30),
    )
    unknown = _finding(
        s,
        daily,
        rule="unknown-member",
        severity="reject",
        message=f"termination (INS03 024) for {PHI}SURNAMEONE born 19700101",
        event=rejected,
    )
    warn = _finding(
        s,
        daily,
        rule="repeating-digits",
        severity="warn",
        message=f"telephone {PHI}5550000 is a placeholder",
        event=applied,
    )

    # The 824 sent for it: a business rule's message and a bad value are member data.
    ted = f"TED*024*dependent of subscriber {PHI}0415*INS*8*2**{PHI}BAD~"
    text = (
        "ISA*00*          *00*          *ZZ*INSURER        *ZZ*VA0FFM         *261201*1200*^*"
        "00501*000000101*0*P*:~GS*AG*INSURER*VA0FFM*20261201*1200*101*X*005010X186A1~"
        "ST*824*0001*005010X186A1~BGN*00*101*20261201~N1*41*INSURER~N1*40*VA0FFM~"
        f"OTI*TR*TN*NA***20261201*1200*1*0001*834*005010X220A1~{ted}SE*7*0001~GE*1*101~"
        "IEA*1*000000101~"
    )
    ack = Ack(
        receipt_id=daily.id,
        kind="824",
        filename="va-daily.824",
        content=text.encode(),
        sha256="0" * 64,
    )
    s.add(ack)
    s.flush()

    audit = _receipt(s, md, name="md-audit.834", ledger_status="reconciled")
    audited = _member(s, audit, seq=0, key=f"{PHI}KEYAUDIT01", outcome="audited", ins03="030")
    _member(s, audit, seq=1, key=f"{PHI}KEYAUDIT02", outcome="audited", ins03="030")
    plan = _finding(
        s,
        audit,
        rule="plan-not-listed",
        severity="reject",
        message=f"plan {PHI}PLAN is not listed",
        event=audited,
    )
    rec = Reconciliation(
        receipt_id=audit.id,
        partner_id=md.id,
        members_in_file=2,
        members_matched=0,
        missing_in_ledger=1,
        missing_in_file=1,
        mismatches=2,
    )
    s.add(rec)
    s.flush()
    items = [
        ("missing_in_ledger", f"{PHI}KEYAUDIT01", "", "", "", 4),
        ("mismatch", f"{PHI}KEYAUDIT02", "last_name", f"{PHI}FILESURNAME", f"{PHI}LEDGERNAME", 24),
        ("mismatch", f"{PHI}KEYAUDIT02", "city", f"={PHI}CITY()", "RICHMOND", 24),
        ("missing_in_file", f"{PHI}KEYGONE09", "", "", "", None),
    ]
    for seq, (kind, key, field, file_value, ledger_value, position) in enumerate(items):
        s.add(
            ReconciliationItem(
                reconciliation_id=rec.id,
                seq=seq,
                kind=kind,
                member_key=key,
                field=field,
                file_value=file_value,
                ledger_value=ledger_value,
                st02="0001",
                segment_position=position,
            )
        )

    failed = _receipt(
        s,
        va,
        name="va-failed.834",
        ledger_status="failed",
        ledger_attempts=5,
        ledger_error='Traceback (most recent call last):\n  File "ledger.py", line 1\n'
        f"ValueError: no date in {PHI}ERRORSURNAME",
    )
    s.add(ReceiptEvent(receipt_id=failed.id, event="ledger_failed", detail=failed.ledger_error))

    # The core outbox: two changes not delivered, the older one failing with HTTP 503.
    for n, (event, attempts, error) in enumerate(
        [(applied, 3, "CoreRefused: HTTP 503"), (applied_too, 0, None)]
    ):
        s.add(
            CoreDelivery(
                event_id=event.id,
                partner_id=va.id,
                idempotency_key=f"{n:064d}",
                payload="{}",
                created_at=now - dt.timedelta(hours=3 - n),
                attempts=attempts,
                last_error=error,
            )
        )
    receipts = {
        "daily": daily.id,
        "audit": audit.id,
        "failed": failed.id,
    }
    findings = {
        "old": old.id,
        "unknown": unknown.id,
        "warn": warn.id,
        "plan": plan.id,
        "ack_824": ack.id,
    }
    return receipts, findings


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Iterator[Seeded]:
    """One server for the whole file, its database seeded before it starts (and the one file
    waiting for the ledger once it runs)."""
    gw = GatewayProcess(data_dir=tmp_path_factory.mktemp("dashboard-ledger") / "var")
    gw.data_dir.mkdir(parents=True)
    url = Settings(data_dir=gw.data_dir).sqlalchemy_url
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with unit_of_work(sessions) as s:
        receipts, findings = _seed(s)
    try:
        gw.start()
        with unit_of_work(sessions) as s:
            receipts["waiting"] = _seed_waiting(s)
        admin, r = login(gw, "alice")
        assert r.status_code == 303, r.text
        viewer, r = login(gw, "victor")
        assert r.status_code == 303, r.text
        yield Seeded(gw, sessions, receipts, findings, admin, viewer)
        admin.close()
        viewer.close()
    finally:
        gw.kill()
        engine.dispose()


def _business_rows(page: str) -> list[tuple[int, str, str, str]]:
    """(finding id, rule, severity, the row's HTML, unescaped) of the business rejects table, in
    order."""
    return [
        (int(i), rule, severity, html.unescape(row))
        for i, rule, severity, row in re.findall(
            r'<tr data-id="(\d+)" data-rule="([^"]+)" data-severity="(\w+)">(.*?)</tr>', page, re.S
        )
    ]


def _fact(page: str, key: str) -> str:
    found = re.search(rf'data-k="{key}"[^>]*>([^<]*)<', page)
    assert found, key
    return found.group(1).strip()


def _audits(seeded: Seeded, action: str, receipt_id: str, operator: str = "alice") -> int:
    with seeded.sessions() as s:
        return int(
            s.scalar(
                select(func.count()).where(
                    AuditEntry.action == action,
                    AuditEntry.receipt_id == receipt_id,
                    AuditEntry.operator == operator,
                )
            )
            or 0
        )


class TestAccess:
    def test_every_new_page_needs_a_session(self, seeded):
        daily, audit = seeded.receipts["daily"], seeded.receipts["audit"]
        base = seeded.gateway.dashboard_url
        gets = [
            "/dashboard/business",
            "/dashboard/business?partner=va&rule=unknown-member&severity=reject&before=999",
            f"/dashboard/interchanges/{daily}",
            f"/dashboard/interchanges/{audit}/reconciliation.csv",
        ]
        for cookies in ({}, {"edi834_session": "forged"}):
            for path in gets:
                r = httpx.get(base + path, cookies=cookies)
                assert r.status_code == 303, path
                assert r.headers["location"].startswith("/login?next=%2Fdashboard%2F"), path
                assert PHI not in r.text
            r = httpx.post(
                base + "/dashboard/business/reveal", data={"csrf_token": "x"}, cookies=cookies
            )
            assert r.status_code == 401 and PHI not in r.text

    def test_only_an_admin_with_the_form_token_reveals_the_list(self, seeded):
        page = seeded.viewer.get("/dashboard/business")
        assert 'id="reveal"' not in page.text
        r = seeded.viewer.post(
            "/dashboard/business/reveal", data={"csrf_token": csrf_of(page.text)}
        )
        assert r.status_code == 403 and PHI not in r.text
        r = seeded.admin.post("/dashboard/business/reveal", data={"csrf_token": "0" * 64})
        assert r.status_code == 403 and PHI not in r.text

    def test_the_nav_links_business_rejects_beside_the_999_rejects(self, seeded):
        page = seeded.viewer.get("/dashboard").text
        nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', page, re.S).group(1)
        assert re.search(
            r'href="/dashboard/rejects">Rejects</a>\s*<a href="/dashboard/business"', nav
        )


class TestBusinessRejects:
    def test_newest_first_masked_with_rule_title_and_remedy(self, seeded):
        page = seeded.viewer.get("/dashboard/business")
        assert page.status_code == 200
        rows = _business_rows(page.text)
        ids = [i for i, *_ in rows]
        assert ids == sorted(ids, reverse=True) and len(rows) == 50  # a page
        assert seeded.findings["plan"] == ids[0]  # the newest
        assert PHI not in page.text  # member keys and messages masked, for admins too
        assert PHI not in seeded.admin.get("/dashboard/business").text
        by_id = {i: row for i, _, _, row in rows}
        row = by_id[seeded.findings["unknown"]]
        assert RULES["unknown-member"].title in row and RULES["unknown-member"].remedy in row
        assert (
            f"SNIP {RULES['unknown-member'].snip}" in row
            and "va-daily.834" in row
            and "INS at position 24" in row
        )
        assert f'href="/dashboard/interchanges/{seeded.receipts["daily"]}"' in row
        assert row.count('<span class="masked">•••••</span>') == 1  # the message
        assert "…ED02" in html.unescape(row)  # the member id's last four (dashboard_member_id)

    def test_filters_exclude_what_they_do_not_match(self, seeded):
        def ids(**params: str) -> set[int]:
            page = seeded.viewer.get("/dashboard/business", params=params)
            assert page.status_code == 200
            return {i for i, *_ in _business_rows(page.text)}

        f = seeded.findings
        assert ids(partner="md") == {f["plan"]}
        va = ids(partner="va")
        assert va == {f["old"], f["unknown"], f["warn"]}
        assert ids(partner="va", severity="warn") == {f["warn"]}
        assert ids(partner="va", severity="reject") == {f["old"], f["unknown"]}
        assert ids(rule="unknown-member") == {f["unknown"]}
        assert ids(rule="plan-not-listed", partner="va") == set()
        assert ids(partner="nobody") == set()  # an unknown partner matches nothing, not all
        assert ids(partner="va", before=str(f["warn"])) == {f["old"], f["unknown"]}
        assert ids(partner="va", severity="anything") == va  # not a severity: ignored

    def test_pages_older_by_the_before_cursor(self, seeded):
        first = seeded.viewer.get("/dashboard/business", params={"partner": "nj"}).text
        assert len(_business_rows(first)) == 50 and 'id="newest"' not in first
        older = html.unescape(re.search(r'href="([^"]+)"[^>]*id="older"', first).group(1))
        assert "partner=nj" in older and "before=" in older
        second = seeded.viewer.get(older).text
        rows = _business_rows(second)
        assert len(rows) == NJ_FILLER - 50 and rows[0][0] < min(
            i for i, *_ in _business_rows(first)
        )
        assert 'id="older"' not in second and 'id="newest"' in second

    def test_summary_counts_the_last_seven_days_per_rule(self, seeded):
        page = seeded.viewer.get("/dashboard/business").text
        table = page[page.index('id="rule-counts"') :]
        summary = html.unescape(table[: table.index("</table>")])
        counts = {
            (rule, severity): int(n)
            for rule, severity, n in re.findall(
                r'<tr data-rule="([^"]+)" data-severity="(\w+)">.*?data-k="count">(\d+)<',
                summary,
                re.S,
            )
        }
        assert counts == {
            ("unknown-member", "reject"): 1,
            ("repeating-digits", "warn"): 1,
            ("plan-not-listed", "reject"): 1,
        }
        assert 'href="/dashboard/business?rule=unknown-member&severity=reject"' in summary
        assert RULES["plan-not-listed"].title in summary

    def test_an_admin_reveal_shows_member_data_and_audits_each_file(self, seeded):
        daily, audit = seeded.receipts["daily"], seeded.receipts["audit"]
        before = _audits(seeded, "reveal_member_data", daily)
        before_md = _audits(seeded, "reveal_member_data", audit)
        page = seeded.admin.get("/dashboard/business", params={"partner": "va"}).text
        posted = seeded.admin.post(
            "/dashboard/business/reveal",
            data={"csrf_token": csrf_of(page), "partner": "va", "severity": "reject"},
        )
        # Redirect-after-POST, to the same filters pinned to the findings revealed.
        assert posted.status_code == 303
        target = posted.headers["location"]
        assert target.startswith("/dashboard/business?partner=va&severity=reject&before=")
        assert "&reveal=" in target
        shown = seeded.admin.get(target)
        assert shown.status_code == 200
        rows = _business_rows(shown.text)
        assert {i for i, *_ in rows} == {seeded.findings["old"], seeded.findings["unknown"]}
        assert (
            f"{PHI}SURNAMEONE born 19700101" in shown.text and f"{PHI}KEYREJECTED02" in shown.text
        )
        assert f"{PHI}5550000" not in shown.text  # filtered out: neither shown nor revealed
        assert _audits(seeded, "reveal_member_data", daily) == before + 1
        assert _audits(seeded, "reveal_member_data", audit) == before_md  # not shown
        again = seeded.admin.get(target)  # a reload: shown again, not posted nor audited again
        assert f"{PHI}KEYREJECTED02" in again.text
        assert _audits(seeded, "reveal_member_data", daily) == before + 1
        # The link opens nothing for another operator, other filters or a forged token.
        assert PHI not in seeded.viewer.get(target).text
        assert PHI not in seeded.admin.get(target.replace("severity=reject", "rule=x")).text
        forged = re.sub(r"reveal=[^&#]+", "reveal=9999999999.00", target)
        assert PHI not in seeded.admin.get(forged).text

    def test_a_viewer_sees_an_824_with_its_member_data_masked(self, seeded):
        """TED02 (the rule's message) and TED07 (the bad value) are member data: masked for a
        viewer on the file's page and in the download, as the page says; an admin sees the 824
        as sent. Only IK4 and CTX were masked, so a viewer read the subscriber's number."""
        daily, ack_id = seeded.receipts["daily"], seeded.findings["ack_824"]
        page = seeded.viewer.get(f"/dashboard/interchanges/{daily}")
        assert page.status_code == 200 and "TED*024*" in html.unescape(page.text)
        download = seeded.viewer.get(f"/dashboard/interchanges/{daily}/acks/{ack_id}")
        assert download.status_code == 200 and download.content.startswith(b"ISA")
        for shown in (page.text, download.text):
            assert PHI not in shown
        as_sent = seeded.admin.get(f"/dashboard/interchanges/{daily}/acks/{ack_id}")
        assert f"subscriber {PHI}0415".encode() in as_sent.content

    def test_a_date_range_and_a_count(self, seeded):
        f = seeded.findings
        today = utcnow().date()

        def listed(who: httpx.Client, **params: str) -> tuple[set[int], int, str]:
            page = who.get("/dashboard/business", params=params)
            assert page.status_code == 200
            total = int(re.search(r'id="total">(\d+)<', page.text).group(1))
            return {i for i, *_ in _business_rows(page.text)}, total, page.text

        week_ago = (today - dt.timedelta(days=7)).isoformat()
        assert listed(seeded.viewer, since=week_ago)[:2] == (
            {f["unknown"], f["warn"], f["plan"]},
            3,
        )
        month = (today - dt.timedelta(days=20)).isoformat()
        assert listed(seeded.viewer, until=month)[:2] == ({f["old"]}, 1)
        # The filler, 10 days old: a page of 50, and the count says 51.
        ids, total, page = listed(
            seeded.viewer,
            since=(today - dt.timedelta(days=12)).isoformat(),
            until=(today - dt.timedelta(days=8)).isoformat(),
        )
        assert (len(ids), total) == (50, NJ_FILLER)
        older = html.unescape(re.search(r'href="([^"]+)"[^>]*id="older"', page).group(1))
        assert "since=" in older and "until=" in older  # paging keeps the range
        ids, total, page = listed(seeded.viewer, since="31/12/2026", partner="md")
        assert (ids, total) == ({f["plan"]}, 1)
        assert "“31/12/2026” is not a date (YYYY-MM-DD); it was left out." in html.unescape(page)

    def test_member_search_is_for_admins_and_audited(self, seeded):
        f = seeded.findings

        def searches() -> list[tuple[str | None, str]]:
            with seeded.sessions() as s:
                return [
                    (rid, detail or "")
                    for rid, detail in s.execute(
                        select(AuditEntry.receipt_id, AuditEntry.detail)
                        .where(AuditEntry.action == "search_member", AuditEntry.operator == "alice")
                        .order_by(AuditEntry.id)
                    )
                ]

        before = len(searches())
        page = seeded.admin.get("/dashboard/business", params={"member": f"{PHI}KEYREJECTED02"})
        assert {i for i, *_ in _business_rows(page.text)} == {f["unknown"]}
        assert PHI not in page.text.replace(f'value="{PHI}KEYREJECTED02"', "")  # still masked
        # One entry per file found: who looked this member up is answered by its files.
        with seeded.sessions() as s:
            (receipt,) = s.scalars(
                select(BusinessFinding.receipt_id).where(BusinessFinding.id == f["unknown"])
            )
        assert searches()[before:] == [(receipt, "business rejects by member ID: 1 files found")]
        page = seeded.admin.get("/dashboard/business", params={"member": f"{PHI}NOBODY"})
        assert _business_rows(page.text) == []
        assert searches()[before + 1 :] == [(None, "business rejects by member ID: nothing found")]
        # The rejects page searches the same way: its file, one entry.
        page = seeded.admin.get("/dashboard/rejects", params={"member": f"{PHI}KEYREJECTED02"})
        assert receipt in page.text
        assert searches()[before + 2 :] == [
            (receipt, "rejects searched by member ID: 1 files found")
        ]
        assert not any(PHI in detail for _, detail in searches())  # never the ID searched
        page = seeded.viewer.get("/dashboard/business", params={"member": f"{PHI}KEYREJECTED02"})
        assert "Searching by member ID needs the admin role." in page.text
        assert 'id="member"' not in page.text and len(_business_rows(page.text)) == 50


class TestAuditLog:
    def test_names_files_and_filters_by_partner(self, seeded):
        daily = seeded.receipts["daily"]
        page = seeded.admin.get(f"/dashboard/interchanges/{daily}").text
        r = seeded.admin.post(
            f"/dashboard/interchanges/{daily}/reveal", data={"csrf_token": csrf_of(page)}
        )
        assert r.status_code == 303  # audited
        page = seeded.admin.get("/dashboard/audit", params={"partner": "va"})
        assert page.status_code == 200
        rows = re.findall(r'<tr data-action="(\w+)">(.*?)</tr>', page.text, re.S)
        assert rows and all('data-k="partner">va<' in row for _, row in rows)
        assert any(f'href="/dashboard/interchanges/{daily}">va-daily.834</a>' in r for _, r in rows)
        for params in (
            {"partner": "nobody"},
            {"action": "no_such_action"},
            {"until": "2000-01-01"},
        ):
            page = seeded.admin.get("/dashboard/audit", params=params)
            assert page.status_code == 200 and "No entries match." in page.text, params

    def test_odd_addresses_are_pages_not_errors(self, seeded):
        for params in (
            {"page": "0"},
            {"page": "99999999999999999999"},
            {"since": "0001-01-01", "until": "9999-12-31"},
            {"operator": "x" * 500},
        ):
            r = seeded.admin.get("/dashboard/audit", params=params)
            assert r.status_code == 200, params
        r = seeded.admin.get("/dashboard/audit", params={"page": "abc"})
        assert r.status_code == 400 and 'href="/dashboard/audit"' in r.text
        r = seeded.viewer.get("/dashboard/audit", params={"partner": "va"})
        assert r.status_code == 403 and "va-daily.834" not in r.text


class TestInterchangeLedger:
    def test_members_and_findings_masked_for_a_viewer(self, seeded):
        page = seeded.viewer.get(f"/dashboard/interchanges/{seeded.receipts['daily']}").text
        assert PHI not in page
        assert re.search(r'id="ledger-status"[^>]*>applied<', page)
        assert (_fact(page, "applied"), _fact(page, "rejected"), _fact(page, "audited")) == (
            "2",
            "1",
            "0",
        )
        members = re.findall(r'<tr data-seq="(\d+)">(.*?)</tr>', page, re.S)
        assert [seq for seq, _ in members] == ["0", "1", "2"]
        rejected = html.unescape(members[1][1])
        assert "024 cancellation or termination" in rejected and "member-rejected" in rejected
        assert RULES["unknown-member"].title in rejected
        assert RULES["unknown-member"].remedy in rejected
        assert 'id="reveal-ledger"' not in page and "reconciliation.csv" not in page
        # The minimum necessary to brief the exchange: the member id's last four characters
        # (dashboard_member_id = "last4", the default), never the whole id.
        assert "…ED02" in html.unescape(page) and "KEYREJECTED02" not in page

    def test_an_admin_reveal_shows_the_messages_and_keys(self, seeded):
        daily = seeded.receipts["daily"]
        page = seeded.admin.get(f"/dashboard/interchanges/{daily}").text
        assert PHI not in page and 'id="reveal-ledger"' in page
        before = _audits(seeded, "reveal_member_data", daily)
        shown = seeded.admin.post(
            f"/dashboard/interchanges/{daily}/reveal",
            data={"csrf_token": csrf_of(page)},
            follow_redirects=True,  # redirect-after-POST to the revealed page
        ).text
        assert f"{PHI}KEYREJECTED02" in shown and f"{PHI}SURNAMEONE born 19700101" in shown
        assert _audits(seeded, "reveal_member_data", daily) == before + 1

    def test_reconciliation_summary_and_items(self, seeded):
        audit = seeded.receipts["audit"]
        page = seeded.viewer.get(f"/dashboard/interchanges/{audit}").text
        assert PHI not in page
        assert re.search(r'id="ledger-status"[^>]*>reconciled<', page)
        assert _fact(page, "audited") == "2"
        summary = {
            k: _fact(page, k)
            for k in (
                "members_in_file",
                "members_matched",
                "missing_in_ledger",
                "missing_in_file",
                "mismatches",
            )
        }
        assert summary == {
            "members_in_file": "2",
            "members_matched": "0",
            "missing_in_ledger": "1",
            "missing_in_file": "1",
            "mismatches": "2",
        }
        kinds = re.findall(r'<tr data-kind="(\w+)">', page)
        assert kinds == ["missing_in_ledger", "mismatch", "mismatch", "missing_in_file"]
        assert "<td>last_name</td>" in page and "<td>city</td>" in page
        assert "reconciliation.csv" not in page  # member data: admins only
        admin = seeded.admin.get(f"/dashboard/interchanges/{audit}").text
        assert f'href="/dashboard/interchanges/{audit}/reconciliation.csv"' in admin
        assert PHI not in admin

    def test_pending_and_failed_ledger_states(self, seeded):
        waiting = seeded.viewer.get(f"/dashboard/interchanges/{seeded.receipts['waiting']}").text
        assert re.search(r'id="ledger-status"[^>]*>pending<', waiting)
        assert "No member has been applied yet." in waiting
        failed_id = seeded.receipts["failed"]
        failed = seeded.viewer.get(f"/dashboard/interchanges/{failed_id}").text
        assert "failed 5 times (ValueError)" in failed and PHI not in failed
        assert "ledger failed: ValueError (the full error" in failed  # its history, too
        page = seeded.admin.get(f"/dashboard/interchanges/{failed_id}").text
        shown = seeded.admin.post(
            f"/dashboard/interchanges/{failed_id}/reveal",
            data={"csrf_token": csrf_of(page)},
            follow_redirects=True,  # redirect-after-POST to the revealed page
        ).text
        assert f"{PHI}ERRORSURNAME" in shown


class TestReconciliationCsv:
    def test_the_csv_has_every_item_and_its_download_is_audited(self, seeded):
        audit = seeded.receipts["audit"]
        before = _audits(seeded, "download_reconciliation", audit)
        r = seeded.admin.get(f"/dashboard/interchanges/{audit}/reconciliation.csv")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        assert r.headers["content-disposition"] == (
            f'attachment; filename="reconciliation-{audit}.csv"'
        )
        rows = list(csv.reader(io.StringIO(r.text)))
        assert rows[0] == list(CSV_COLUMNS)
        assert rows[1:] == [
            ["missing_in_ledger", f"{PHI}KEYAUDIT01", "", "", "", "0001", "4"],
            [
                "mismatch",
                f"{PHI}KEYAUDIT02",
                "last_name",
                f"{PHI}FILESURNAME",
                f"{PHI}LEDGERNAME",
                "0001",
                "24",
            ],
            ["mismatch", f"{PHI}KEYAUDIT02", "city", f"'={PHI}CITY()", "RICHMOND", "0001", "24"],
            ["missing_in_file", f"{PHI}KEYGONE09", "", "", "", "0001", ""],
        ]
        assert _audits(seeded, "download_reconciliation", audit) == before + 1
        assert "download reconciliation" in seeded.admin.get("/dashboard/audit").text

    def test_viewers_and_files_without_a_reconciliation_get_nothing(self, seeded):
        audit, daily = seeded.receipts["audit"], seeded.receipts["daily"]
        r = seeded.viewer.get(f"/dashboard/interchanges/{audit}/reconciliation.csv")
        assert r.status_code == 403 and PHI not in r.text
        assert _audits(seeded, "download_reconciliation", audit, operator="victor") == 0
        r = seeded.admin.get(f"/dashboard/interchanges/{daily}/reconciliation.csv")
        assert r.status_code == 404
        assert _audits(seeded, "download_reconciliation", daily) == 0


class TestOverview:
    def test_outbox_and_ledger_backlog(self, seeded):
        page = seeded.viewer.get("/dashboard").text
        assert PHI not in page
        assert _fact(page, "core_pending") == "2"
        assert _fact(page, "core_oldest") == "3 h"
        assert _fact(page, "core_failing") == "1"
        assert _fact(page, "core_error") == "the core system refused the event (HTTP 503)"
        assert "No core system is configured" in page
        assert _fact(page, "ledger_pending") == "1"
        assert _fact(page, "ledger_oldest") in ("5 min", "6 min")
        assert _fact(page, "ledger_failed") == "1"
        failures = page[page.index('id="ledger-failed"') :]
        assert f'href="/dashboard/interchanges/{seeded.receipts["failed"]}"' in failures
        assert seeded.receipts["waiting"] not in failures


def test_member_id_shows_what_the_setting_allows() -> None:
    from gateway.dashboard.formatting import MASK, member_id

    assert member_id("0005100003", reveal=False) == "…0003"  # the default, last4
    assert member_id("0005100003", reveal=False, shown="masked") == MASK
    assert member_id("0005100003", reveal=False, shown="full") == "0005100003"
    assert member_id("0005100003", reveal=True, shown="masked") == "0005100003"  # audited reveal
    assert member_id("0003", reveal=False) == MASK  # too short to show a part of
    assert member_id(None, reveal=False) is None
