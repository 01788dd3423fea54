"""The operators' dashboard over plain HTTP: who may see and do what (server-side), CSRF, login
lockout and idle sessions, member data never in a viewer's HTML, and reprocessing."""

from __future__ import annotations

import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from starlette.routing import Mount, Route

from gateway.dashboard.app import create_dashboard
from tests.conftest import SAMPLES
from tests.gateway.harness import (
    OPERATOR_PASSWORD,
    GatewayProcess,
    csrf_of,
    login,
    submit,
    wait_final,
)

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
BAD = (SAMPLES / "bad_ik403_8_dmg02_date.834").read_bytes()
# Member data in BAD: name, SSN (NM109), subscriber and member ids, phone, address, birth date.
PHI = (
    "ODUYA",
    "KWAME",
    "915830264",
    "0004931685",
    "8045550120",
    "2318 FLOYD",
    "RICHMOND",
    "23220",
    "19801345",
)


Seed = tuple[str, str, str]  # the partner's API key, the good file's id, the bad file's id


def _seed(gateway: GatewayProcess) -> Seed:
    """Partner va, admin alice and viewer victor, and GOOD and BAD sent and processed."""
    key = gateway.add_partner("va", "VA0FFM")
    gateway.add_operator("alice", OPERATOR_PASSWORD, "admin", cli=True)  # `edi834 operator add`
    gateway.add_operator("victor", OPERATOR_PASSWORD, "viewer")
    gateway.start()
    with gateway.client(key) as api:
        good = submit(api, GOOD, "good.834").json()["id"]
        bad = submit(api, BAD, "bad.834").json()["id"]
        wait_final(api, good)
        wait_final(api, bad)
    return key, good, bad


@pytest.fixture(scope="module")
def seeded_sqlite(tmp_path_factory) -> tuple[Path, Seed]:
    """The SQLite seed, made once per module by a gateway that then stops cleanly: its data
    directory (database, blobs, SFTP roots, host key) is what `_seed` leaves behind."""
    gw = GatewayProcess(data_dir=tmp_path_factory.mktemp("dashboard-seed") / "var")
    try:
        ids = _seed(gw)
        assert gw.stop() == 0
    finally:
        gw.kill()
    return gw.data_dir, ids


@pytest.fixture
def seeded(gateway, request) -> Seed:
    """Every test still gets its own server and its own database in the seeded state: on SQLite
    a copy of the module's seeded data directory (the CLI and the two files are run once, not
    per test), on PostgreSQL seeded afresh."""
    if gateway.database_url:
        return _seed(gateway)
    template, ids = request.getfixturevalue("seeded_sqlite")
    shutil.copytree(template, gateway.data_dir)
    gateway.start()
    return ids


@pytest.fixture(scope="module")
def shared(seeded_sqlite, tmp_path_factory):
    """One server on a copy of the seed for the tests that change nothing another one reads
    (refused requests, their own sessions): a start per test cost ~1.6 s of CPU each."""
    template, ids = seeded_sqlite
    gw = GatewayProcess(data_dir=tmp_path_factory.mktemp("dashboard-shared") / "var")
    shutil.copytree(template, gw.data_dir)
    gw.start()
    try:
        yield gw, ids
    finally:
        gw.kill()


def _dashboard_routes() -> list[tuple[str, str]]:
    from gateway.settings import Settings

    class _Stub:
        settings = Settings()

    out = []
    for route in create_dashboard(_Stub()).routes:  # type: ignore[arg-type]
        if isinstance(route, Mount):
            continue
        assert isinstance(route, Route)
        out += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return out


@pytest.fixture
def database_url(request) -> str:
    """SQLite for this file; PostgreSQL where a test asks for it (TestOnPostgres)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return ""
    return request.getfixturevalue("postgres").create_database(f"dash_{time.time_ns()}")


class TestAccess:
    def test_no_page_answers_without_a_session(self, shared):
        gateway, seeded = shared
        key, _, bad = seeded
        routes = _dashboard_routes()
        assert len(routes) >= 12
        for method, path in routes:
            if path in ("/login", "/"):
                continue
            url = path.replace("{receipt_id}", bad).replace("{ack_id}", "1")
            url = url.replace("{ledger_id}", "1")
            for headers in (
                {},
                {"Authorization": f"Bearer {key}"},
                {"Cookie": "edi834_session=forged"},
            ):
                r = httpx.request(
                    method, gateway.dashboard_url + url, headers=headers, data={"csrf_token": "x"}
                )
                if method == "GET":
                    assert r.status_code == 303, (path, r.status_code)
                    assert r.headers["location"].startswith("/login?next=")
                else:
                    assert r.status_code == 401, (path, r.status_code)
                assert "ODUYA" not in r.text and bad not in r.text

    def test_the_two_surfaces_are_apart(self, shared):
        gateway, seeded = shared
        _, _, bad = seeded
        dash, r = login(gateway, "alice")
        assert r.status_code == 303
        cookie = dash.cookies["edi834_session"]
        # The operator surface is not on the partner port, nor the partner API on the dashboard.
        assert httpx.get(f"{gateway.url}/dashboard").status_code == 404
        assert httpx.get(f"{gateway.url}/login").status_code == 404
        assert dash.get("/v1/interchanges").status_code == 404
        # An operator session never opens the partner API.
        r = httpx.get(f"{gateway.url}/v1/interchanges/{bad}", cookies={"edi834_session": cookie})
        assert r.status_code == 401

    def test_session_cookie_flags_and_logout(self, shared):
        gateway = shared[0]
        dash, r = login(gateway, "alice")
        set_cookie = r.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie
        assert dash.get("/dashboard").status_code == 200
        logout = dash.post("/logout", data={"csrf_token": csrf_of(dash.get("/dashboard").text)})
        assert logout.status_code == 303
        stale = httpx.get(
            gateway.dashboard_url + "/dashboard",
            cookies={"edi834_session": r.cookies["edi834_session"]},
        )
        assert stale.status_code == 303  # the server forgot the session, not just the browser

    def test_cookies_are_secure_behind_a_tls_proxy(self, shared):
        """nginx terminating TLS says `X-Forwarded-Proto: https` from loopback (an address
        uvicorn trusts): the cookies are then Secure, as with the gateway's own certificate."""
        gateway = shared[0]
        proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
        with httpx.Client(base_url=gateway.dashboard_url, timeout=30, headers=proxied) as c:
            page = c.get("/login")
            assert "; secure" in page.headers["set-cookie"].lower()
            token = csrf_of(page.text)
            c.cookies.set("edi834_login_csrf", token)  # httpx keeps no Secure cookie over http
            r = c.post(
                "/login",
                data={"username": "alice", "password": OPERATOR_PASSWORD, "csrf_token": token},
            )
            assert r.status_code == 303
            session = [v for v in r.headers.get_list("set-cookie") if "edi834_session=" in v]
            assert session and "; secure" in session[0].lower()
            assert r.headers["strict-transport-security"].startswith("max-age=")
        # Straight to the plain-HTTP port, no proxy: a Secure cookie would never come back.
        plain = httpx.get(gateway.dashboard_url + "/login")
        assert "secure" not in plain.headers["set-cookie"].lower()

    def test_security_headers(self, shared):
        gateway = shared[0]
        dash, _ = login(gateway, "alice")
        r = dash.get("/dashboard")
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-frame-options"] == "DENY"


class TestRoles:
    def test_a_viewer_cannot_reveal_download_reprocess_resolve_or_audit(self, shared):
        gateway, seeded = shared
        _, _, bad = seeded
        dash, _ = login(gateway, "victor")
        page = dash.get(f"/dashboard/interchanges/{bad}")
        assert page.status_code == 200
        assert 'id="reveal"' not in page.text and 'id="reprocess"' not in page.text
        token = csrf_of(page.text)  # a valid form token: the refusal is the role, server-side
        for action in ("reveal", "reprocess", "resolve"):
            r = dash.post(f"/dashboard/interchanges/{bad}/{action}", data={"csrf_token": token})
            assert r.status_code == 403, action
            assert "ODUYA" not in r.text
        assert dash.get(f"/dashboard/interchanges/{bad}/raw").status_code == 403
        assert dash.get("/dashboard/audit").status_code == 403
        admin, _ = login(gateway, "alice")
        audit = admin.get("/dashboard/audit").text
        assert "reveal member data" not in audit and "reprocess" not in audit

    def test_member_data_never_reaches_a_viewer(self, shared):
        gateway, seeded = shared
        _, good, bad = seeded
        dash, _ = login(gateway, "victor")
        pages = [dash.get(f"/dashboard/interchanges/{rid}").text for rid in (good, bad)]
        export = dash.get("/dashboard/rejects.csv?result=all").text
        assert {good, bad} <= {line.split(",")[0] for line in export.splitlines()[1:]}, export
        pages += [
            dash.get("/dashboard").text,
            dash.get("/dashboard/rejects?result=all").text,
            export,
        ]
        detail = dash.get(f"/dashboard/interchanges/{bad}")
        ack_ids = re.findall(rf"/dashboard/interchanges/{bad}/acks/(\d+)", detail.text)
        assert ack_ids
        pages += [dash.get(f"/dashboard/interchanges/{bad}/acks/{a}").text for a in ack_ids]
        for text in pages:
            for value in PHI:
                assert value not in text, value
        assert "<mark>•••••</mark>" in detail.text  # the offending element, highlighted, masked
        assert "IK403 8" in detail.text and "DMG02" in detail.text
        assert "Send a real calendar date" in detail.text  # what the sender must fix

    def test_admin_reveal_and_raw_download_are_audited(self, gateway, seeded):
        _, _, bad = seeded
        dash, _ = login(gateway, "alice")
        page = dash.get(f"/dashboard/interchanges/{bad}")
        assert "ODUYA" not in page.text  # masked by default, for admins too
        posted = dash.post(
            f"/dashboard/interchanges/{bad}/reveal", data={"csrf_token": csrf_of(page.text)}
        )
        assert posted.status_code == 303  # redirect-after-POST: a reload does not re-submit
        shown = dash.get(posted.headers["location"])
        assert shown.status_code == 200
        assert "ODUYA" in shown.text and "<mark>19801345</mark>" in shown.text
        assert "2318 FLOYD AVE" in shown.text
        raw = dash.get(f"/dashboard/interchanges/{bad}/raw")
        assert raw.status_code == 200 and raw.content == BAD
        audit = dash.get("/dashboard/audit").text
        assert "reveal member data" in audit and "download raw file" in audit
        assert audit.count("alice") >= 2


class TestCsrf:
    def test_posts_without_the_form_token_are_refused(self, shared):
        gateway, seeded = shared
        _, _, bad = seeded
        dash, _ = login(gateway, "alice")
        token = csrf_of(dash.get("/dashboard").text)
        for path in (
            f"/dashboard/interchanges/{bad}/reveal",
            f"/dashboard/interchanges/{bad}/reprocess",
            f"/dashboard/interchanges/{bad}/resolve",
            "/logout",
        ):
            assert dash.post(path, data={}).status_code == 403, path
            assert dash.post(path, data={"csrf_token": "0" * 64}).status_code == 403, path
            r = dash.post(
                path, data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
            )
            assert r.status_code == 403, path
        assert dash.get("/dashboard").status_code == 200  # still logged in: nothing happened
        assert "reprocess" not in dash.get("/dashboard/audit").text

    def test_login_needs_its_own_token(self, shared):
        gateway = shared[0]
        r = httpx.post(
            gateway.dashboard_url + "/login",
            data={"username": "alice", "password": OPERATOR_PASSWORD, "csrf_token": "x"},
        )
        assert r.status_code == 403 and "edi834_session" not in r.cookies


class TestLogin:
    def test_failures_lock_the_account_with_the_same_message_for_unknown_users(
        self, gateway, seeded
    ):
        messages = set()
        for user in ("alice", "nobody"):
            _, r = login(gateway, user, "wrong password!")
            assert r.status_code == 401
            messages.add(re.search(r'role="alert">([^<]+)<', r.text).group(1))
        assert messages == {"Invalid username or password."}
        for _ in range(4):
            login(gateway, "victor", "wrong password!")
        _, r = login(gateway, "victor", "wrong password!")  # 5th failure locks
        _, r = login(gateway, "victor")  # the right password, but locked
        assert r.status_code == 401 and "Too many failed attempts" in r.text
        _, ok = login(gateway, "alice")  # others are not affected
        assert ok.status_code == 303
        # A name that is no operator locks the same way: the form cannot tell which exist.
        for _ in range(5):
            _, r = login(gateway, "nobody-at-all", "wrong password!")
        _, r = login(gateway, "nobody-at-all", "any password!")
        assert r.status_code == 401 and "Too many failed attempts" in r.text

    @pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
    def test_a_burst_of_wrong_passwords_locks_after_the_limit(self, gateway, database_url):
        """Sent at once, 5 failures still lock: every later attempt is refused unverified. On
        PostgreSQL the failures read without a lock overwrote each other, so a burst of 30
        wrong passwords was verified in full and the account never locked; an unknown name's
        count had the same race."""
        gateway.add_operator("victor", OPERATOR_PASSWORD, "viewer")
        gateway.start()
        pages = []
        for _ in range(30):  # each attempt with its own login form, fetched beforehand
            c = httpx.Client(base_url=gateway.dashboard_url, timeout=60)
            pages.append((c, csrf_of(c.get("/login").text)))

        def attempt(user: str, page: tuple[httpx.Client, str]) -> str:
            c, csrf = page
            r = c.post(
                "/login",
                data={"username": user, "password": "wrong password!", "csrf_token": csrf},
            )
            assert r.status_code == 401
            return re.search(r'role="alert">([^<]+)<', r.text).group(1)

        for user, batch in (("nobody-at-all", pages[15:]), ("victor", pages[:15])):
            with ThreadPoolExecutor(15) as pool:
                said = list(pool.map(lambda p, u=user: attempt(u, p), batch))
            verified = said.count("Invalid username or password.")
            assert verified == 5, (user, said)
            assert all(m.startswith("Too many failed attempts") for m in said if "Invalid" not in m)
        _, r = login(gateway, "victor")  # the right password, but locked
        assert r.status_code == 401 and "Too many failed attempts" in r.text

    def test_idle_sessions_expire(self, gateway):
        gateway.add_operator("alice", OPERATOR_PASSWORD, "admin")
        gateway.start(EDI834_SESSION_IDLE_MINUTES="0")
        dash, r = login(gateway, "alice")
        assert r.status_code == 303
        time.sleep(0.05)
        assert dash.get("/dashboard").status_code == 303

    def test_open_redirects_are_refused(self, shared):
        gateway = shared[0]
        c = httpx.Client(base_url=gateway.dashboard_url)
        page = c.get("/login", params={"next": "https://evil.example/"})
        r = c.post(
            "/login",
            data={
                "username": "alice",
                "password": OPERATOR_PASSWORD,
                "csrf_token": csrf_of(page.text),
                "next": "//evil.example",
            },
        )
        assert r.status_code == 303 and r.headers["location"] == "/dashboard"


class TestActions:
    def test_reprocess_gives_new_acks_and_keeps_the_old_ones(self, gateway, seeded):
        key, _, bad = seeded
        with gateway.client(key) as api:
            before = {a["kind"]: a for a in api.get(f"/v1/interchanges/{bad}/acks").json()}
        dash, _ = login(gateway, "alice")
        token = csrf_of(dash.get(f"/dashboard/interchanges/{bad}").text)
        r = dash.post(f"/dashboard/interchanges/{bad}/reprocess", data={"csrf_token": token})
        assert r.status_code == 303
        with gateway.client(key) as api:
            body = wait_final(api, bad)
            assert body["outcome"] == "rejected"
            after = {a["kind"]: a for a in api.get(f"/v1/interchanges/{bad}/acks").json()}
        assert set(after) == set(before) == {"ta1", "999"}
        for kind in after:
            assert after[kind]["control_number"] > before[kind]["control_number"]
        page = dash.get(f"/dashboard/interchanges/{bad}").text
        assert page.count("superseded by a reprocess") == 2
        assert "reprocess requested: by alice" in page
        resolved = dash.post(
            f"/dashboard/interchanges/{bad}/resolve",
            data={"csrf_token": token, "note": "VA re-sent with a fixed DOB"},
        )
        assert resolved.status_code == 303
        page = dash.get(f"/dashboard/interchanges/{bad}").text
        assert "resolved by alice" in page and "fixed DOB" in page
        listing = dash.get("/dashboard/rejects", params={"resolved": "no"}).text
        assert bad not in listing
        assert bad in dash.get("/dashboard/rejects", params={"resolved": "yes"}).text


class TestOnPostgres:
    @pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
    def test_overview_rejects_and_detail(self, gateway, seeded):
        _, good, bad = seeded
        dash, _ = login(gateway, "alice")
        overview = dash.get("/dashboard").text
        row = re.search(r'<tr data-partner="va">(.*?)</tr>', overview, re.S).group(1)
        cells = dict(re.findall(r'data-k="(\w+)">(?:<a [^>]*>)?(\d+)', row))
        assert cells["received"] == "2" and cells["accepted"] == "1"
        assert cells["rejected"] == "1"
        assert "IK403 8" in overview and "<svg" in overview
        listing = dash.get("/dashboard/rejects", params={"code": "IK403:8"}).text
        assert bad in listing and good not in listing
        detail = dash.get(f"/dashboard/interchanges/{bad}").text
        assert "<mark>•••••</mark>" in detail and "ODUYA" not in detail
