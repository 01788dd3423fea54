"""The operators' dashboard in a real browser (Debian's chromium, headless) against one real
`edi834 serve` on loopback (SQLite), seeded over HTTP through the partner API and the worker."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import update

from gateway.context import Gateway
from gateway.dashboard.app import create_dashboard
from gateway.db.migrate import upgrade
from gateway.db.models import Receipt
from gateway.db.session import unit_of_work
from gateway.operators import add_operator
from gateway.partners import add_partner, set_schedule
from gateway.settings import Settings
from tests.conftest import ROOT, SAMPLES
from tests.gateway.harness import GatewayProcess, free_port, submit, wait_final
from tests.gateway.test_dashboard_inprocess import GOOD, send
from tests.gateway.test_watch import NY, Clock, arrive, partner_id

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
ADMIN = ("ada", "correct horse battery staple")
VIEWER = ("vic", "viewer pass phrase 42")
CELLS = (
    "received",
    "accepted",
    "accepted_with_errors",
    "partially_accepted",
    "rejected",
    "failed",
    "pending",
    "partial",
)

DMG_FILE = "bad_ik403_8_dmg02_date.834"
TWO_DMG_FILE = "bad_ik304_5_two_dmg.834"
# What bad_ik403_8_dmg02_date.834 says about its one member (NM1, N3, DMG02, REF*0F):
# none of it may reach a page unless an admin reveals it.
SURNAME = "ODUYA"
BIRTH_DATE = "19801345"
STREET = "2318 FLOYD AVE"
SUBSCRIBER = "0004931685"
MASK = "•••••"
# X220A1 2100A NM1 at position 12, within the context around the DMG at 16.
NM1_MASKED = re.compile(rf"^\s*12 NM1\*IL\*1\*{MASK}\*{MASK}\*")


def _md_bad_birth_date() -> bytes:
    """An MD0SBE file with an impossible DMG02 (IK403 8), so the code filter must also
    separate partners."""
    good = (SAMPLES / "good_newborn_dependent_add.834").read_bytes()
    bad = good.replace(b"DMG*D8*20260309*F~", b"DMG*D8*20261345*F~")
    assert bad != good
    return bad


SEED = {
    "va": [
        ("good_exchange_new_enrollment.834", SAMPLES / "good_exchange_new_enrollment.834"),
        (DMG_FILE, SAMPLES / DMG_FILE),
        (TWO_DMG_FILE, SAMPLES / TWO_DMG_FILE),
    ],
    "md": [
        ("good_change_of_address.834", SAMPLES / "good_change_of_address.834"),
        ("newborn_bad_dmg02.834", None),
    ],
}


@dataclass
class Seeded:
    gateway: GatewayProcess
    keys: dict[str, str]  # partner name -> API key
    ids: dict[str, str]  # filename -> receipt id

    @property
    def url(self) -> str:
        return self.gateway.dashboard_url


@pytest.fixture(scope="class")
def seeded(tmp_path_factory) -> Iterator[Seeded]:
    """One server for the whole class, SQLite only (the empty URL is the default file)."""
    gw = GatewayProcess(data_dir=tmp_path_factory.mktemp("dashboard") / "var", database_url="")
    keys = {"va": gw.add_partner("va", "VA0FFM"), "md": gw.add_partner("md", "MD0SBE")}
    gw.add_operator(*ADMIN, role="admin")
    gw.add_operator(*VIEWER, role="viewer")
    ids: dict[str, str] = {}
    try:
        gw.start()
        for partner, files in SEED.items():
            with gw.client(keys[partner]) as c:
                for name, path in files:
                    content = path.read_bytes() if path else _md_bad_birth_date()
                    r = submit(c, content, name)
                    assert r.status_code == 202, r.text
                    ids[name] = r.json()["id"]
                for name, _ in files:
                    wait_final(c, ids[name])
        yield Seeded(gw, keys, ids)
    finally:
        gw.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the file (each test's pages get their own context: `new_page`); it was
    launched once per class and once more for the module's own tests."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def new_page(browser) -> Iterator[Callable[..., Page]]:
    """A page in a fresh context (own cookies); `new_page(width=390)` for a phone."""
    contexts = []

    def make(width: int = 1280, height: int = 900) -> Page:
        ctx = browser.new_context(viewport={"width": width, "height": height})
        ctx.set_default_timeout(10_000)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()


def log_in(page: Page, base: str, user: tuple[str, str]) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("User name").fill(user[0])
    page.get_by_label("Password").fill(user[1])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base}/dashboard")


def row_ids(page: Page) -> set[str]:
    return set(
        page.locator("#rejects tbody tr[data-id]").evaluate_all("rs => rs.map(r => r.dataset.id)")
    )


def finding(page: Page, code: str):
    return page.locator("article.finding").filter(has=page.locator("h3", has_text=code))


def filters(url: str) -> tuple[str, str, str]:
    """(partner, code, result) as the URL carries them."""
    q = parse_qs(urlsplit(url).query)
    return q.get("partner", [""])[0], q.get("code", [""])[0], q.get("result", [""])[0]


def query(url: str, *names: str) -> list[str]:
    """The values the URL carries for these names ("" when absent)."""
    q = parse_qs(urlsplit(url).query)
    return [q.get(name, [""])[0] for name in names]


def utc_yesterday_and_today(page: Page) -> tuple[str, str]:
    """The browser's (UTC) dates of yesterday and today. A date filter runs from yesterday:
    what the class seeded may predate midnight (a CI run that crossed it found none "today")."""
    yesterday, today = page.evaluate(
        "[new Date(Date.now() - 864e5), new Date()].map(d => d.toISOString().slice(0, 10))"
    )
    return yesterday, today


def acks_section(page: Page):
    return page.locator('section[aria-labelledby="acks-h"] details')


def control_numbers(acks) -> set[str]:
    return set(re.findall(r"control number (\d+)", " ".join(acks.all_inner_texts())))


def reprocess_and_wait(page: Page, base: str, rid: str) -> set[str]:
    """Click Reprocess, see it in the history, reload until the worker has answered again;
    the control numbers of the acks shown before."""
    page.goto(f"{base}/dashboard/interchanges/{rid}")
    old_numbers = control_numbers(acks_section(page))
    assert len(old_numbers) == 2  # TA1 (ISA14 = 1) and 999
    history = page.locator("ol.history li")
    answered = history.filter(has_text=re.compile(r"\bprocessed: rejected$"))
    delivered = history.filter(has_text="ack delivered")
    expect(answered).to_have_count(1)
    expect(delivered).to_have_count(2)
    page.locator("#reprocess").click()
    expect(page).to_have_url(f"{base}/dashboard/interchanges/{rid}")
    # Not necessarily last: the worker may already have claimed it again.
    expect(history.filter(has_text="reprocess requested: by ada; was rejected")).to_have_count(1)
    deadline = time.monotonic() + 20
    while answered.count() < 2 or delivered.count() < 4:  # worker, then outbox
        assert time.monotonic() < deadline, "reprocess not answered within 20 s"
        page.wait_for_timeout(150)
        page.reload()
    return old_numbers


class TestDashboardInBrowser:
    def test_keyboard_only_login(self, seeded, new_page):
        page = new_page()
        page.goto(f"{seeded.url}/dashboard")
        expect(page).to_have_url(re.compile(r"/login\?next=%2Fdashboard$"))
        username = page.locator("#username")
        expect(username).to_be_focused()  # autofocus: a keyboard user starts typing
        page.keyboard.type(VIEWER[0])
        page.keyboard.press("Tab")
        expect(page.locator("#password")).to_be_focused()
        page.keyboard.type(VIEWER[1])
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="Log in")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page).to_have_url(f"{seeded.url}/dashboard")
        expect(page.locator("header .who")).to_have_text("vic (viewer)")

    def test_overview_counts_match_the_partner_api(self, seeded, new_page):
        page = new_page()
        log_in(page, seeded.url, ADMIN)
        totals: Counter[str] = Counter()
        for partner, key in seeded.keys.items():
            with seeded.gateway.client(key) as c:
                body = c.get("/v1/interchanges", params={"limit": 200}).json()
            assert body["next_cursor"] is None
            want: Counter[str] = Counter(received=len(body["items"]))
            for item in body["items"]:
                if item["status"] == "processed":
                    want[item["outcome"]] += 1
                elif item["status"] in ("failed", "partial"):
                    want[item["status"]] += 1
                else:
                    want["pending"] += 1
            assert want["accepted"] >= 1 and want["rejected"] >= 1, want  # not vacuous
            row = page.locator(f'#counts tr[data-partner="{partner}"]')
            shown = {k: int(row.locator(f'td[data-k="{k}"]').inner_text()) for k in CELLS}
            assert shown == {k: want[k] for k in CELLS}, partner
            totals.update(want)
            # One definition of rejected: the chart's legend counts what the table's column does.
            expect(page.locator(".legend")).to_contain_text(f"{partner}: {want['rejected']}")
        row = page.locator('#counts tr[data-partner="All partners"]')
        assert {k: int(row.locator(f'td[data-k="{k}"]').inner_text()) for k in CELLS} == {
            k: totals[k] for k in CELLS
        }
        expect(page.locator('svg.chart[role="img"] rect')).not_to_have_count(0)
        expect(page.locator("#codes")).to_contain_text("IK403 8")
        expect(page.locator("#codes")).to_contain_text("IK304 5")
        expect(page.locator("#waiting")).to_have_count(0)  # everything was processed
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "dashboard-overview.png", full_page=True)

    def test_rejects_filtered_by_partner_and_code_then_opened(self, seeded, new_page):
        page = new_page()
        log_in(page, seeded.url, VIEWER)
        page.get_by_role("link", name="Rejects", exact=True).click()
        expect(page).to_have_url(f"{seeded.url}/dashboard/rejects")
        va_dmg, md_dmg = seeded.ids[DMG_FILE], seeded.ids["newborn_bad_dmg02.834"]
        for partner, want in (("va", {va_dmg}), ("md", {md_dmg}), ("", {va_dmg, md_dmg})):
            page.get_by_label("Partner").select_option(partner)
            page.get_by_label("Error code").fill("IK403:8")
            page.get_by_role("button", name="Filter").click()
            page.wait_for_url(lambda url, p=partner: filters(url) == (p, "IK403:8", "problems"))
            assert row_ids(page) == want, partner
            expect(page.locator("#total")).to_have_text(str(len(want)))
        page.get_by_label("Partner").select_option("va")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(lambda url: filters(url) == ("va", "IK403:8", "problems"))
        page.locator(f'#rejects tr[data-id="{va_dmg}"] a').click()
        expect(page).to_have_url(f"{seeded.url}/dashboard/interchanges/{va_dmg}")
        expect(page.locator("h1")).to_have_text(DMG_FILE)

    def test_viewer_sees_masked_member_data_and_no_admin_actions(self, seeded, new_page):
        page = new_page()
        log_in(page, seeded.url, VIEWER)
        page.goto(f"{seeded.url}/dashboard/interchanges/{seeded.ids[DMG_FILE]}")
        context = finding(page, "IK403 8").locator("pre.context")
        expect(context.locator("mark")).to_have_text(MASK)
        expect(context.locator(".line").filter(has_text=" NM1*IL*1*")).to_have_text(NM1_MASKED)
        for selector in ("#reveal", "#reprocess", "#resolve", "#note"):
            expect(page.locator(selector)).to_have_count(0)
        expect(page.get_by_role("link", name="Audit log")).to_have_count(0)
        html = page.content()
        for secret in (SURNAME, BIRTH_DATE, STREET, SUBSCRIBER):
            assert secret not in html
        page.goto(f"{seeded.url}/dashboard/audit")
        expect(page.locator("#problem")).to_have_text("This needs the admin role.")
        expect(page.get_by_role("link", name="Overview")).to_have_count(1)  # a way back

    def test_admin_reveal_is_audited(self, seeded, new_page):
        page = new_page()
        log_in(page, seeded.url, ADMIN)
        rid = seeded.ids[DMG_FILE]
        page.goto(f"{seeded.url}/dashboard/interchanges/{rid}")
        context = finding(page, "IK403 8").locator("pre.context")
        target = context.locator(".line.target")
        expect(target).to_have_count(1)
        expect(target).to_have_text(re.compile(r"^\s*16 DMG\*D8\*"))  # IK302: position 16
        expect(target.locator("mark")).to_have_text(MASK)  # DMG02 highlighted, still masked
        name = context.locator(".line").filter(has_text=" NM1*IL*1*")
        expect(name).to_have_text(NM1_MASKED)  # the member's name, masked
        expect(name.locator("span.masked").first).to_have_text(MASK)
        html = page.content()
        for secret in (SURNAME, BIRTH_DATE, STREET, SUBSCRIBER):
            assert secret not in html
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "dashboard-detail.png", full_page=True)

        page.get_by_role("button", name=re.compile("Reveal member data")).click()
        expect(page.locator("p.note.reveal")).to_contain_text("revealed to ada")
        context = finding(page, "IK403 8").locator("pre.context")
        expect(context.locator(".line.target mark")).to_have_text(BIRTH_DATE)
        expect(context.locator(".line").filter(has_text=" NM1*IL*1*")).to_contain_text(
            f"NM1*IL*1*{SURNAME}*"
        )
        expect(context).to_contain_text(STREET)
        expect(context.locator("span.masked")).to_have_count(0)
        expect(finding(page, "IK403 8").locator("dd.value").first).to_have_text(BIRTH_DATE)
        expect(page.locator("#reveal")).to_have_count(0)

        page.get_by_role("link", name="Audit log").click()
        entry = page.locator("#audit tbody tr").filter(has_text="reveal member data")
        expect(entry).to_have_count(1)
        expect(entry.locator("td").nth(1)).to_have_text("ada")
        expect(entry.locator(f'a[href="/dashboard/interchanges/{rid}"]')).to_have_count(1)

    def test_reprocess_supersedes_the_old_acks(self, seeded, new_page):
        page = new_page()
        log_in(page, seeded.url, ADMIN)
        rid = seeded.ids[DMG_FILE]
        old_numbers = reprocess_and_wait(page, seeded.url, rid)
        expect(page.locator("#outcome")).to_have_text("rejected")
        acks = acks_section(page)
        old = acks.filter(has_text="superseded by a reprocess")
        new = acks.filter(has_not_text="superseded by a reprocess")
        expect(old).to_have_count(2)
        expect(new).to_have_count(2)  # TA1 (ISA14 = 1) and 999
        for i in range(2):
            expect(new.nth(i)).to_have_attribute("open", "")
            expect(old.nth(i)).not_to_have_attribute("open", "")
        assert control_numbers(old) == old_numbers
        new_numbers = control_numbers(new)
        assert len(new_numbers) == 2 and not new_numbers & old_numbers
        with seeded.gateway.client(seeded.keys["va"]) as c:
            assert wait_final(c, rid)["outcome"] == "rejected"

    def test_resolve_keeps_the_note(self, seeded, new_page):
        page = new_page()
        log_in(page, seeded.url, ADMIN)
        rid = seeded.ids[DMG_FILE]
        page.goto(f"{seeded.url}/dashboard/interchanges/{rid}")
        note = "Sender confirmed the birth date; corrected file due Friday"
        page.get_by_label("Resolution note").fill(note)
        page.get_by_role("button", name="Mark resolved").click()
        expect(page).to_have_url(f"{seeded.url}/dashboard/interchanges/{rid}")
        expect(page.locator(".status-line")).to_contain_text("resolved by ada")
        expect(page.locator(".status-line")).to_contain_text(note)
        expect(page.locator("ol.history")).to_contain_text(f"resolved: by ada: {note}")
        page.goto(f"{seeded.url}/dashboard/rejects?result=all&resolved=yes")
        assert row_ids(page) == {rid}

    def test_logout_then_back_shows_the_login_page(self, seeded, new_page):
        page = new_page()
        log_in(page, seeded.url, ADMIN)
        rid = seeded.ids[DMG_FILE]
        detail = f"{seeded.url}/dashboard/interchanges/{rid}"
        page.goto(detail)
        expect(page.locator("h1")).to_have_text(DMG_FILE)
        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(f"{seeded.url}/login")
        assert not [c for c in page.context.cookies() if c["name"] == "edi834_session"]

        page.go_back()  # no-store: the browser asks again and is sent to the login
        expect(page).to_have_url(re.compile(r"/login\?next="))
        expect(page.locator("h1")).to_have_text("Log in")
        html = page.content()
        assert DMG_FILE not in html and "Findings" not in html
        page.goto(detail)
        expect(page).to_have_url(re.compile(r"/login\?next=%2Fdashboard%2Finterchanges%2F"))
        expect(page.locator("h1")).to_have_text("Log in")

    def test_a_form_sent_after_the_session_ended_says_so_and_leads_back(self, seeded, new_page):
        """A form sent once the session had ended (idle, or logged out in another tab) got a
        bare "Log in first." with no title and no link; now a page says what happened and
        logs in back to the form's page."""
        page = new_page()
        log_in(page, seeded.url, ADMIN)
        listing = f"{seeded.url}/dashboard/rejects?result=all&resolved=no"
        page.goto(listing)
        other = page.context.new_page()  # another tab of the same browser logs out
        other.goto(f"{seeded.url}/dashboard")
        other.get_by_role("button", name="Log out").click()
        expect(other).to_have_url(f"{seeded.url}/login")

        page.locator('#rejects tbody input[type="checkbox"]').first.check()
        page.get_by_role("button", name="Mark ticked files resolved").click()
        expect(page.locator("h1")).to_have_text("Session ended")
        expect(page.locator("#problem")).to_contain_text("was not done")
        page.get_by_role("link", name="Log in again").click()
        expect(page.locator("h1")).to_have_text("Log in")
        page.get_by_label("User name").fill(ADMIN[0])
        page.get_by_label("Password").fill(ADMIN[1])
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(listing)

    def test_rejects_page_fits_a_390px_phone(self, seeded, new_page):
        page = new_page(width=390, height=844)
        log_in(page, seeded.url, VIEWER)
        page.goto(f"{seeded.url}/dashboard/rejects?result=all")
        expect(page.locator("#rejects tbody tr[data-id]")).to_have_count(
            sum(len(files) for files in SEED.values())
        )
        scroll_width, inner_width = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert inner_width == 390
        assert scroll_width <= inner_width
        overflow = page.locator("#rejects").evaluate(
            "t => { const s = t.closest('.scroll'); return s && getComputedStyle(s).overflowX }"
        )
        assert overflow in ("auto", "scroll")

    def test_detail_page_fits_a_390px_phone(self, seeded, new_page):
        page = new_page(width=390, height=844)
        log_in(page, seeded.url, VIEWER)
        page.goto(f"{seeded.url}/dashboard/rejects?result=rejected")
        page.locator("#rejects tbody tr[data-id] a").first.click()
        expect(page.locator("article.finding").first).to_be_visible()
        assert page.evaluate("innerWidth") == 390
        assert_fits(page, "detail")

    def test_code_filter_reads_codes_as_the_pages_show_them(self, seeded, new_page):
        page = new_page()
        log_in(page, seeded.url, VIEWER)
        both = {seeded.ids[DMG_FILE], seeded.ids["newborn_bad_dmg02.834"]}
        # The overview lists the code as "IK403 8" and links to the list filtered on it.
        page.locator("#codes a", has_text="IK403 8").click()
        page.wait_for_url(lambda url: filters(url)[1] == "IK403 8")
        assert row_ids(page) == both
        expect(page.locator("#code-note")).to_contain_text("Files with IK403 8:")
        box = page.get_by_label("Error code")
        expect(box).to_have_value("IK403 8")
        for typed in ("IK403 8", "ik403-08", "IK403:8"):  # as shown, as mistyped, as before
            page.goto(f"{seeded.url}/dashboard/rejects")
            page.get_by_label("Error code").fill(typed)
            page.get_by_role("button", name="Filter").click()
            page.wait_for_url(lambda url, t=typed: filters(url) == ("", t, "problems"))
            assert row_ids(page) == both, typed
            expect(page.locator("#code-note .code")).to_have_text("IK403 8")
            expect(page.locator("#code-problem")).to_have_count(0)
        for typed, problem in (
            ("IK403 99", "IK403 99 is not a code the gateway sends."),
            ("ZZ999 1", "ZZ999 is not an error code family"),
            ("birth date", "“birth date” is not an error code."),
        ):
            page.get_by_label("Error code").fill(typed)
            page.get_by_role("button", name="Filter").click()
            page.wait_for_url(lambda url, t=typed: filters(url)[1] == t)
            # Not silently ignored: nothing matches, the box keeps the text and says why.
            expect(page.locator("#code-problem")).to_contain_text(problem)
            expect(page.locator("#code-problem")).to_be_visible()
            expect(page.locator("#total")).to_have_text("0")
            expect(page.locator("#rejects tbody tr[data-id]")).to_have_count(0)
            expect(page.get_by_label("Error code")).to_have_value(typed)
        page.get_by_label("Error code").fill("TA105 6")  # TA105 codes are three digits
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(lambda url: filters(url)[1] == "TA105 6")
        expect(page.locator("#code-note .code")).to_have_text("TA105 006")
        expect(page.locator("#code-problem")).to_have_count(0)

    def test_bulk_resolve(self, seeded, new_page):
        page = new_page()
        log_in(page, seeded.url, ADMIN)
        picked = {seeded.ids[TWO_DMG_FILE], seeded.ids["newborn_bad_dmg02.834"]}
        page.goto(f"{seeded.url}/dashboard/rejects?result=all&resolved=no")
        for rid in picked:
            page.locator(f'#rejects tr[data-id="{rid}"] input[type="checkbox"]').check()
        note = "Both senders re-sending corrected files"
        page.get_by_label("Note for the files ticked below").fill(note)
        page.get_by_role("button", name="Mark ticked files resolved").click()
        page.wait_for_url(re.compile(r"done=resolve%3A2%3A2%3A[0-9a-f]{16}"))
        expect(page.locator("#done")).to_have_text("2 files marked resolved.")
        # Back on the same filtered list (redirect-after-POST): the resolved files left it.
        assert filters(page.url)[2] == "all"
        assert not row_ids(page) & picked
        page.goto(f"{seeded.url}/dashboard/rejects?result=all&resolved=yes")
        assert picked <= row_ids(page)
        for rid in picked:
            expect(page.locator(f'#rejects tr[data-id="{rid}"] td').last).to_have_text("✔ ada")
        for rid in picked:
            page.goto(f"{seeded.url}/dashboard/interchanges/{rid}")
            expect(page.locator(".status-line")).to_contain_text("resolved by ada")
            expect(page.locator(".status-line")).to_contain_text(note)
            expect(page.locator("#resolve")).to_have_count(0)  # not offered again
            expect(page.locator("#reopen")).to_have_count(1)
        page.goto(f"{seeded.url}/dashboard/audit")
        resolved = page.locator("#audit tbody tr").filter(has_text=note)
        expect(resolved).to_have_count(2)
        for rid in picked:
            expect(resolved.locator(f'a[href="/dashboard/interchanges/{rid}"]')).to_have_count(1)

    def test_every_page_fits_a_390px_phone(self, seeded, new_page):
        page = new_page(width=390, height=844)
        page.goto(f"{seeded.url}/login")
        assert_fits(page, "login")
        log_in(page, seeded.url, ADMIN)
        rid = seeded.ids[DMG_FILE]
        for path in (
            "/dashboard",
            "/dashboard/rejects?result=all",
            "/dashboard/rejects?code=IK403+99",
            "/dashboard/business",
            "/dashboard/business?since=2000-01-01&member=0004931685",
            f"/dashboard/interchanges/{rid}",
            "/dashboard/audit",
            "/dashboard/no-such-page",
            "/dashboard/rejects?page=abc",
        ):
            page.goto(seeded.url + path)
            expect(page.locator("h1")).to_be_visible()
            assert_fits(page, path)

    def test_audit_log_names_files_and_filters_in_the_address(self, seeded, new_page):
        wrong = new_page()
        wrong.goto(f"{seeded.url}/login")
        wrong.get_by_label("User name").fill(VIEWER[0])
        wrong.get_by_label("Password").fill("not the pass phrase")
        wrong.get_by_role("button", name="Log in").click()
        expect(wrong.locator(".error")).to_be_visible()
        vic = new_page()
        log_in(vic, seeded.url, VIEWER)
        vic.goto(f"{seeded.url}/dashboard/rejects?partner=md")
        with vic.expect_download() as download:
            vic.get_by_role("link", name="Download CSV").click()
        assert download.value.suggested_filename == "edi834-rejects.csv"
        vic.get_by_role("button", name="Log out").click()

        page = new_page()
        log_in(page, seeded.url, ADMIN)
        rid = seeded.ids["newborn_bad_dmg02.834"]
        page.goto(f"{seeded.url}/dashboard/interchanges/{rid}")
        page.get_by_role("button", name=re.compile("Reveal member data")).click()
        expect(page.locator("p.note.reveal")).to_contain_text("revealed to ada")

        page.get_by_role("link", name="Audit log").click()
        rows = page.locator("#audit tbody tr")
        for action, who in (
            ("login_failed", "vic"),
            ("login", "vic"),
            ("export_csv", "vic"),
            ("logout", "vic"),
            ("login", "ada"),
        ):
            who_cell = page.locator(f'td:nth-child(2):text-is("{who}")')
            entry = page.locator(f'#audit tbody tr[data-action="{action}"]').filter(has=who_cell)
            expect(entry).not_to_have_count(0)
        # The file by its name and partner, not a 12-character receipt id.
        page.get_by_label("Action").select_option("reveal_member_data")
        page.get_by_label("Partner").select_option("md")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(
            lambda url: query(url, "action", "partner") == ["reveal_member_data", "md"]
        )
        expect(rows).to_have_count(1)
        expect(rows.locator("td").nth(1)).to_have_text("ada")
        link = rows.locator(f'a[href="/dashboard/interchanges/{rid}"]')
        expect(link).to_have_text("newborn_bad_dmg02.834")
        expect(rows.locator('td[data-k="partner"]')).to_have_text("md")

        page.goto(f"{seeded.url}/dashboard/audit?action=export_csv&operator=vic")
        expect(page.get_by_label("Action")).to_have_value("export_csv")
        expect(page.get_by_label("Operator")).to_have_value("vic")
        expect(rows).to_have_count(1)
        expect(rows.locator("td.detail")).to_contain_text("partner=md")
        yesterday, today = utc_yesterday_and_today(page)
        page.get_by_label("From", exact=True).fill(yesterday)
        page.get_by_label("To", exact=True).fill(today)
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(
            lambda url: query(url, "operator", "since", "until") == ["vic", yesterday, today]
        )
        expect(rows).to_have_count(1)
        page.goto(f"{seeded.url}/dashboard/audit?operator=vic&until=2000-01-01")
        expect(rows).to_have_count(1)
        expect(rows).to_have_text("No entries match.")

        phone = new_page(width=390, height=844)
        log_in(phone, seeded.url, ADMIN)
        phone.goto(f"{seeded.url}/dashboard/audit")
        expect(phone.locator("#audit tbody tr").first).to_be_visible()
        assert_fits(phone, "audit")

    def test_business_rejects_by_date_and_an_audited_reveal_redirects(self, seeded, new_page):
        page = new_page()
        log_in(page, seeded.url, ADMIN)
        page.get_by_role("link", name="Business rejects").click()
        yesterday, today = utc_yesterday_and_today(page)
        page.get_by_label("From", exact=True).fill(yesterday)
        page.get_by_label("To", exact=True).fill(today)
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(lambda url: query(url, "since", "until") == [yesterday, today])
        rows = page.locator("#business tbody tr[data-id]")
        total = int(page.locator("#total").inner_text())
        assert total >= 1  # md's change of address names a member the ledger does not hold
        expect(rows).to_have_count(min(total, 50))
        expect(rows.locator("span.masked").first).to_be_visible()
        page.get_by_label("From", exact=True).fill("2000-01-01")
        page.get_by_label("To", exact=True).fill("2000-01-31")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(lambda url: query(url, "since") == ["2000-01-01"])
        expect(page.locator("#total")).to_have_text("0")
        expect(page.locator("#reveal")).to_have_count(0)  # nothing to reveal

        page.goto(f"{seeded.url}/dashboard/business?since={yesterday}")
        page.get_by_role("button", name=re.compile("Reveal member data")).click()
        # Redirect-after-POST: a GET address with the filters, pinned to the findings shown.
        page.wait_for_url(lambda url: bool(query(url, "reveal")[0]))
        assert query(page.url, "since")[0] == yesterday and query(page.url, "before")[0]
        expect(page.locator("p.note.reveal")).to_contain_text("revealed to ada")
        expect(rows.locator("span.masked")).to_have_count(0)
        page.reload()  # no form re-submitted: still shown from the same address
        expect(page.locator("p.note.reveal")).to_be_visible()
        page.goto(f"{seeded.url}/dashboard/audit?action=reveal_member_data")
        expect(
            page.locator("#audit tbody tr").filter(has_text="business rejects list")
        ).not_to_have_count(0)


def assert_fits(page: Page, what: str) -> None:
    """No horizontal overflow at the page's width: wide tables scroll inside their own box.

    Measured once the page has loaded: after a click or a redirect the DOM can be there before
    the stylesheet, and a layout forced then is the unstyled page (CI saw 1,527 px so)."""
    page.wait_for_load_state("load")
    wide = page.evaluate(
        "() => [...document.querySelectorAll('body *')].filter(e => !e.closest('.scroll')"
        " && e.getBoundingClientRect().right > innerWidth + 1).map(e => e.tagName + '#' + e.id"
        " + '.' + e.className)"
    )
    scroll_width, inner_width = page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert scroll_width <= inner_width, (what, scroll_width, wide)


class _Server(uvicorn.Server):
    """uvicorn in a thread: no signal handlers (only the main thread may install them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Watched:
    gw: Gateway
    url: str


@pytest.fixture
def watched(tmp_path) -> Iterator[Watched]:
    """The dashboard in this process (uvicorn in a thread) so the test owns the clock: va
    (SFTP) is expected daily by 06:00 New York time, md is not watched."""
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url="",
        worker_enabled=False,
        ack_sla_seconds=3600,
        pickup_hours=24,
        stuck_minutes=30,
    )
    gw = Gateway.open(settings)
    upgrade(settings.sqlalchemy_url)
    gw.clock = Clock()
    with unit_of_work(gw.sessions) as s:
        va, _ = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
        va.sftp_keys = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA test"
        add_partner(s, name="md", isa_qualifier="ZZ", isa_id="MD0SBE")
        set_schedule(s, "va", "daily 06:00", NY)
        add_operator(s, *ADMIN, "admin")
    port = free_port()
    server = _Server(
        uvicorn.Config(
            create_dashboard(gw), host="127.0.0.1", port=port, log_config=None, lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "dashboard did not start"
        time.sleep(0.05)
    try:
        yield Watched(gw, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(10)
        gw.close()


def incident(page: Page, kind: str, partner: str | None = None):
    where = f'#incidents li[data-kind="{kind}"]'
    return page.locator(where + (f'[data-partner="{partner}"]' if partner else ""))


class TestWhatDidNotHappenInBrowser:
    def test_missing_file_latency_pick_up_and_stuck_on_the_overview(self, watched, new_page):
        gw = watched.gw
        arrive(gw, "va")
        for n in range(2):  # md's acks took two hours: over the one-hour SLA
            rid = arrive(gw, "md", GOOD + b"\n" * n)
            with unit_of_work(gw.sessions) as s:
                s.execute(
                    update(Receipt)
                    .where(Receipt.id == rid)
                    .values(received_at=gw.clock() - dt.timedelta(hours=2))
                )
        stuck = send(gw, partner_id(gw, "md"), GOOD + b"\n\n", "stuck.834")  # no worker
        page = new_page()
        log_in(page, watched.url, ADMIN)
        expect(incident(page, "missing_file")).to_have_count(0)
        expect(incident(page, "ack_latency", "md")).to_have_count(1)
        va = page.locator('#partners-watch tr[data-watched="va"]')
        expect(va.locator('td[data-k="file_status"]')).to_contain_text("on time · next due")

        gw.clock.advance(days=2)  # two 06:00 deadlines pass with no file from va
        page.reload()
        missing = incident(page, "missing_file", "va")
        expect(missing).to_have_count(1)
        expect(missing).to_contain_text("va: no file since")
        expect(missing).to_contain_text("expected daily by 06:00")
        expect(va.locator('td[data-k="file_status"]')).to_contain_text("missing: due")
        expect(va.locator('td[data-k="last_file"]')).to_contain_text("days ago")
        # Its acks sat in outbound/ for two days: never picked up.
        expect(incident(page, "ack_pickup", "va")).to_contain_text("not picked up after 24 h")
        expect(va.locator('td[data-k="unpicked"]')).to_contain_text("2 (oldest 2 days)")
        md = page.locator('#partners-watch tr[data-watched="md"]')
        expect(md.locator('td[data-k="p95"]')).to_have_text("2.0 h (over SLA)")
        expect(md.locator('td[data-k="acked"]')).to_have_text("2 (2 late)")
        expect(md.locator('td[data-k="schedule"]')).to_have_text("not watched")
        expect(incident(page, "stuck")).to_contain_text("1 file(s) received and not processed")
        expect(page.locator(f'#stuck a[href="/dashboard/interchanges/{stuck}"]')).to_have_text(
            "stuck.834"
        )
        expect(page.locator("#no-incidents")).to_have_count(0)

        phone = new_page(width=390, height=844)
        log_in(phone, watched.url, ADMIN)
        expect(phone.locator("#stuck")).to_be_visible()
        assert_fits(phone, "overview with incidents and stuck files")

        arrive(gw, "va", GOOD + b"\n" * 3)  # late, but it came; the worker takes stuck.834 too
        page.reload()
        expect(incident(page, "missing_file")).to_have_count(0)
        expect(incident(page, "stuck")).to_have_count(0)
        expect(page.locator("#stuck")).to_have_count(0)
        expect(va.locator('td[data-k="file_status"]')).to_contain_text("on time · next due")
        expect(incident(page, "ack_pickup", "va")).to_have_count(1)  # the old acks: not fetched


def test_a_long_file_name_wraps_and_leaves_the_columns_in_view(tmp_path, new_page) -> None:
    """A sender's 250-character file name made the rejects table 3,146 px wide at 1280: every
    column after it was off-screen for every row (found by a new-user run)."""
    gw = GatewayProcess(data_dir=tmp_path / "var", database_url="")
    key = gw.add_partner("va", "VA0FFM")
    gw.add_operator(*ADMIN, role="admin")
    try:
        gw.start()
        with gw.client(key) as c:
            r = submit(c, (SAMPLES / "bad_ik403_8_dmg02_date.834").read_bytes(), "a" * 250 + ".834")
            assert r.status_code == 202, r.text
            wait_final(c, r.json()["id"])
        page = new_page(width=1280, height=900)
        log_in(page, gw.dashboard_url, ADMIN)
        page.goto(f"{gw.dashboard_url}/dashboard/rejects?result=all")
        expect(page.locator("#rejects tbody tr[data-id]")).to_have_count(1)
        page.wait_for_load_state("load")
        width = page.locator("#rejects").evaluate("t => t.getBoundingClientRect().width")
        assert width <= 1280, width
        resolved = page.locator("#rejects thead th").last
        assert resolved.evaluate("e => e.getBoundingClientRect().right") <= 1280
    finally:
        gw.kill()
