"""No one sees what isn't theirs: every route needs a partner key (health, metrics and the API's
own documentation aside), and a partner's key never opens another partner's interchanges."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
from sqlalchemy import update
from starlette.routing import Route

from gateway.api.app import create_app
from gateway.context import Gateway
from gateway.db.models import Partner
from gateway.db.session import unit_of_work
from gateway.settings import Settings
from tests.conftest import SAMPLES
from tests.gateway.harness import submit, wait_final

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
OTHER = (SAMPLES / "good_add_family.834").read_bytes()  # sender ZZ:SUMMITBENEFITS
PUBLIC = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/docs/assets/{asset}",
    "/openapi.json",
}


def _routes() -> list[tuple[str, str]]:
    """Every route the app serves, from the app itself (not only what the schema shows)."""
    from gateway.settings import Settings

    class _Stub:
        settings = Settings()

    app = create_app(_Stub())  # type: ignore[arg-type]
    out = []
    for route in app.routes:
        assert isinstance(route, Route)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                out.append((method, route.path))
    return out


def _fill(path: str, receipt_id: str) -> str:
    return path.replace("{interchange_id}", receipt_id).replace("{kind}", "999")


class TestAuthentication:
    def test_every_route_but_health_and_docs_refuses_without_a_valid_key(self, gateway):
        key = gateway.add_partner("va", "VA0FFM")
        gateway.start()
        with gateway.client(key) as c:
            rid = submit(c, GOOD).json()["id"]
            wait_final(c, rid)
        routes = _routes()
        assert {p for _, p in routes} >= {"/v1/interchanges", "/v1/interchanges/{interchange_id}"}
        assert {p for _, p in routes if p in PUBLIC} == set(PUBLIC)
        checked = 0
        for method, path in routes:
            if path in PUBLIC:
                continue
            url = gateway.url + _fill(path, rid)
            for headers in (
                {},
                {"Authorization": "Bearer not-a-key"},
                {"Authorization": f"Basic {key}"},
                {"Authorization": key},
            ):
                r = httpx.request(method, url, headers=headers, content=GOOD, timeout=10)
                assert r.status_code == 401, (method, path, headers, r.status_code)
                assert rid not in r.text and "ISA*" not in r.text
                checked += 1
        assert checked >= 5 * 4
        # Health and metrics carry no partner data.
        for path in ("/healthz", "/readyz", "/metrics"):
            r = httpx.get(gateway.url + path)
            assert r.status_code == 200 and rid not in r.text

    def test_disabled_partner_and_rotated_keys_are_refused(self, gateway):
        key = gateway.add_partner("va", "VA0FFM")
        # Keys not remembered: refused at once (remembered, within the TTL: test_api_capacity).
        gateway.start(EDI834_API_KEY_CACHE_SECONDS="0")
        assert gateway.client(key).get("/v1/interchanges").status_code == 200
        new = gateway.cli("partner", "rotate-key", "va", "--json").stdout
        assert gateway.client(key).get("/v1/interchanges").status_code == 401
        import json

        new_key = json.loads(new)["api_key"]
        assert gateway.client(new_key).get("/v1/interchanges").status_code == 200
        # --keep-old: the old key keeps working beside the new one until its time is up, so
        # a partner switches without an outage; another rotation or disabling ends it.
        kept = json.loads(
            gateway.cli("partner", "rotate-key", "va", "--keep-old", "10", "--json").stdout
        )
        newest = kept["api_key"]
        assert kept["old_key_minutes"] == 10
        assert gateway.client(new_key).get("/v1/interchanges").status_code == 200
        assert gateway.client(newest).get("/v1/interchanges").status_code == 200
        assert gateway.client(key).get("/v1/interchanges").status_code == 401  # two back: no
        settings = Settings(data_dir=gateway.data_dir, database_url=gateway.database_url)
        gw = Gateway.open(settings)
        try:

            def kept_until(when: dt.datetime) -> None:
                with unit_of_work(gw.sessions) as s:
                    s.execute(update(Partner).values(previous_api_key_until=when))

            kept_until(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))  # its time is up
            assert gateway.client(new_key).get("/v1/interchanges").status_code == 401
            kept_until(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
            assert gateway.client(new_key).get("/v1/interchanges").status_code == 200
        finally:
            gw.close()
        new_key = newest
        gateway.cli("partner", "disable", "va")
        assert gateway.client(new_key).get("/v1/interchanges").status_code == 401
        assert gateway.client(json.loads(new)["api_key"]).get("/v1/interchanges").status_code == 401
        assert submit(gateway.client(new_key), GOOD).status_code == 401
        listing = gateway.cli("partner", "list", "--json").stdout
        assert new_key not in listing and key not in listing


class TestIsolation:
    def test_partner_a_never_reads_partner_b(self, gateway):
        key_a = gateway.add_partner("va", "VA0FFM")
        key_b = gateway.add_partner("summit", "SUMMITBENEFITS")
        gateway.start()
        a, b = gateway.client(key_a), gateway.client(key_b)
        id_a = submit(a, GOOD).json()["id"]
        id_b = submit(b, OTHER).json()["id"]
        wait_final(a, id_a)
        body_b = wait_final(b, id_b)
        missing = uuid.uuid4().hex
        id_paths = [p for m, p in _routes() if m == "GET" and "{interchange_id}" in p]
        assert len(id_paths) >= 3
        for client, own, other in ((a, id_a, id_b), (b, id_b, id_a)):
            for path in id_paths:
                for kind in ("ta1", "999", "rejection"):
                    foreign = client.get(_fill(path, other).replace("/999", f"/{kind}"))
                    absent = client.get(_fill(path, missing).replace("/999", f"/{kind}"))
                    assert foreign.status_code == 404, (path, kind)
                    # Indistinguishable from an id that does not exist: nothing leaks.
                    assert foreign.json() == absent.json()
                    assert other not in foreign.text
                mine = client.get(_fill(path, own))
                if "reconciliation" in path:  # these files are not audits: nothing to compare
                    assert mine.status_code == 404
                    assert mine.json()["detail"] == "no such reconciliation"
                else:
                    assert mine.status_code == 200, path
            listed = [i["id"] for i in client.get("/v1/interchanges").json()["items"]]
            assert listed == [own]
        isa13_b = body_b["isa13"][0]
        assert a.get("/v1/interchanges", params={"isa13": isa13_b}).json()["items"] == []
        # The same bytes from two partners are two receipts, each its own.
        again = submit(a, OTHER)
        assert again.status_code == 202 and again.json()["id"] != id_b
        spoofed = wait_final(a, again.json()["id"])
        assert spoofed["interchanges"][0]["ta1_note"] == "006"  # A cannot send as B
