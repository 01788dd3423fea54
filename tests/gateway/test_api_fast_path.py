"""The hot routes' fast paths (gateway.api.lean, issue 19) answer exactly what the routes as
declared answer: each request below is sent to an app whose API keys are remembered (the fast
path, once the key was looked up) and to one that remembers none (FastAPI's dependencies and
parameter validation, every time), and the two answers — status, headers, body — must be the
same bytes. Requests a fast path must not take (a malformed header, a key not remembered) reach
FastAPI; the ones it takes do not."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from gateway.api.apikeys import ApiKeyCache
from gateway.api.app import create_app
from gateway.api.lean import add_threads, install_fast_path
from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.session import unit_of_work
from gateway.partners import add_partner, set_enabled
from tests.conftest import SAMPLES
from tests.gateway.harness import in_process_gateway
from tests.gateway.test_http_e2e import _with_isa13

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
EDI = {"Content-Type": "application/edi-x12"}
MISSING = "/v1/interchanges/" + "0" * 32


@dataclass
class Site:
    gw: Gateway
    key: str
    other_key: str
    fast: TestClient  # keys remembered: the fast paths
    declared: TestClient  # no key remembered: every request through FastAPI


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Iterator[Site]:
    for gw in in_process_gateway(tmp_path / "var", database_url):
        with unit_of_work(gw.sessions) as s:
            _, key = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
            _, other = add_partner(s, name="ny", isa_qualifier="ZZ", isa_id="NY0FFM")
        fast_app, declared_app = create_app(gw), create_app(gw)
        declared_app.state.api_keys = ApiKeyCache(0)
        with TestClient(fast_app) as fast, TestClient(declared_app) as declared:
            yield Site(gw, key, other, fast, declared)


# Each app has its own token bucket, refilled as time passes: these two say how full it is.
BUCKET = {"ratelimit-remaining", "ratelimit-reset"}


def answer(r: object) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers (the date left out, the bucket's levels as "n") and body bytes."""
    headers = [
        (k, "n" if k in BUCKET else v)
        for k, v in r.headers.multi_items()  # type: ignore[attr-defined]
        if k != "date"
    ]
    return r.status_code, headers, r.content  # type: ignore[attr-defined]


def auth(key: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **more}


class TestStatusRead:
    def test_the_same_answers_and_no_dependencies_solved(
        self, site: Site, solved: list[object]
    ) -> None:
        r = site.fast.post("/v1/interchanges", content=GOOD, headers=auth(site.key, **EDI))
        assert r.status_code == 202, r.text
        own = r.json()["id"]
        r = site.fast.post("/v1/interchanges", content=GOOD, headers=auth(site.other_key, **EDI))
        theirs = r.json()["id"]
        site.fast.get(f"/v1/interchanges/{own}", headers=auth(site.other_key))  # remembered
        solved.clear()
        cases = [
            (site.key, own),
            (site.key, theirs),  # another partner's: the 404 of an id that does not exist
            (site.key, "0" * 32),
            (site.other_key, own),
            (site.other_key, theirs),
        ]
        for key, rid in cases:
            path = f"/v1/interchanges/{rid}"
            assert answer(site.fast.get(path, headers=auth(key))) == answer(
                site.declared.get(path, headers=auth(key))
            ), (key == site.key, rid)
        assert len(solved) == len(cases)  # the declared app's; none from the fast one
        assert (
            answer(site.fast.get(f"/v1/interchanges/{theirs}", headers=auth(site.key)))[2]
            == answer(site.fast.get("/v1/interchanges/" + "0" * 32, headers=auth(site.key)))[2]
        )

    @pytest.mark.parametrize(
        "authorization",
        ["", "Bearer", "Bearer ", "Basic abc", "bearer edi834_unknown", "Bearer edi834_unknown"],
    )
    def test_what_is_not_a_remembered_key_is_fastapis_to_answer(
        self, site: Site, solved: list[object], authorization: str
    ) -> None:
        path = "/v1/interchanges/" + "0" * 32
        headers = {"Authorization": authorization} if authorization else {}
        got = site.fast.get(path, headers=headers)
        assert got.status_code == 401
        assert solved  # not the fast path
        assert answer(got) == answer(site.declared.get(path, headers=headers))

    def test_the_scheme_in_any_case_and_spaces_around_the_key(self, site: Site) -> None:
        r = site.fast.post("/v1/interchanges", content=GOOD, headers=auth(site.key, **EDI))
        path = f"/v1/interchanges/{r.json()['id']}"
        for value in (f"bearer {site.key}", f"BEARER  {site.key} "):
            got = site.fast.get(path, headers={"Authorization": value})
            assert answer(got) == answer(site.declared.get(path, headers={"Authorization": value}))
            assert got.status_code == 200
        for value in (f"Basic {site.key}", f"Bearer{site.key}", site.key):  # remembered, but…
            got = site.fast.get(path, headers={"Authorization": value})
            assert answer(got) == answer(site.declared.get(path, headers={"Authorization": value}))
            assert got.status_code == 401


class TestIntake:
    def test_the_same_receipts(self, site: Site, solved: list[object]) -> None:
        site.fast.get("/v1/interchanges/" + "0" * 32, headers=auth(site.key))  # remembered
        solved.clear()
        first = site.fast.post(
            "/v1/interchanges", content=GOOD, headers=auth(site.key, **EDI, **{"X-Filename": "a"})
        )
        assert first.status_code == 202
        assert not solved
        site.declared.post("/v1/interchanges", content=GOOD, headers=auth(site.key, **EDI))
        # The same bytes again, each way: the original receipt (200), the same answer.
        again = site.fast.post("/v1/interchanges", content=GOOD, headers=auth(site.key, **EDI))
        assert answer(again) == answer(
            site.declared.post("/v1/interchanges", content=GOOD, headers=auth(site.key, **EDI))
        )
        assert again.status_code == 200
        assert again.json()["id"] == first.json()["id"]

    @pytest.mark.parametrize(
        ("header", "value", "fast"),
        [
            ("X-Filename", "f" * 255, True),
            ("X-Filename", "f" * 256, False),
            ("X-Filename", "", True),
            ("Idempotency-Key", "k" * 255, True),
            ("Idempotency-Key", "k" * 256, False),
            ("Idempotency-Key", "", False),
            ("Idempotency-Key", "a\x7fb", False),
            ("Idempotency-Key", "caf\xe9", False),
            ("Idempotency-Key", " a key with spaces ~", True),
        ],
    )
    def test_headers_fastapi_would_refuse_are_refused_by_fastapi(
        self, site: Site, solved: list[object], header: str, value: str, fast: bool
    ) -> None:
        site.fast.get("/v1/interchanges/" + "0" * 32, headers=auth(site.key))  # remembered
        solved.clear()
        body = _with_isa13(GOOD, 123_456_789)
        headers: dict[str, str | bytes] = {**auth(site.key, **EDI), header: value.encode("latin-1")}
        got = site.fast.post("/v1/interchanges", content=body, headers=headers)
        assert bool(solved) is not fast
        assert got.status_code == (202 if fast else 422), got.text
        declared = site.declared.post("/v1/interchanges", content=body, headers=headers)
        if fast:  # the same bytes again: the original receipt
            assert declared.status_code == 200
            assert declared.json()["id"] == got.json()["id"]
        else:
            assert answer(got) == answer(declared)

    def test_a_reused_idempotency_key_and_refused_bodies(self, site: Site) -> None:
        key = {"Idempotency-Key": "one"}
        for client in (site.fast, site.declared):
            client.post("/v1/interchanges", content=GOOD, headers=auth(site.key, **EDI, **key))
        other = _with_isa13(GOOD, 987_654_321)
        for headers, content in [
            (auth(site.key, **EDI, **key), other),  # 422 idempotency_key_reused
            (auth(site.key, **{"Content-Type": "text/csv"}), other),  # 415
            (auth(site.key, **EDI), b""),  # 400 empty_body
        ]:
            got = site.fast.post("/v1/interchanges", content=content, headers=headers)
            assert got.status_code in (400, 415, 422)
            assert answer(got) == answer(
                site.declared.post("/v1/interchanges", content=content, headers=headers)
            )


class TestList:
    def seed(self, site: Site) -> tuple[list[str], list[str]]:
        """Three files of each partner, and both keys remembered by the fast app."""
        own, theirs = [], []
        for n in range(3):
            for key, ids in ((site.key, own), (site.other_key, theirs)):
                body = _with_isa13(GOOD, 100 + n)
                r = site.fast.post("/v1/interchanges", content=body, headers=auth(key, **EDI))
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
        return own, theirs

    # Each case below only reads: one site seeded once serves them all, each a subtest.
    PAGES = ("", "?limit=2", "?limit=200", "?limit=1&status=received", "?status=processed",
             "?status=received&limit=3")  # fmt: skip

    def test_the_same_pages_and_no_dependencies_solved(
        self, site: Site, solved: list[object], subtests: pytest.Subtests
    ) -> None:
        self.seed(site)
        for query in self.PAGES:
            with subtests.test(query=query):
                solved.clear()
                for key in (site.key, site.other_key):
                    fast = site.fast.get(f"/v1/interchanges{query}", headers=auth(key))
                    assert fast.status_code == 200
                    assert answer(fast) == answer(
                        site.declared.get(f"/v1/interchanges{query}", headers=auth(key))
                    )
                assert len(solved) == 2  # the declared app's; none from the fast one

    def test_a_partner_pages_through_its_own_files_only(
        self, site: Site, solved: list[object]
    ) -> None:
        own, theirs = self.seed(site)
        solved.clear()
        for key, mine in ((site.key, own), (site.other_key, theirs)):
            seen: list[str] = []
            path = "/v1/interchanges?limit=1"
            while True:
                page = site.fast.get(path, headers=auth(key)).json()
                assert page == site.declared.get(path, headers=auth(key)).json()
                seen += [item["id"] for item in page["items"]]
                if page["next_cursor"] is None:
                    break
                path = f"/v1/interchanges?limit=1&cursor={page['next_cursor']}"
            assert seen == mine[::-1]  # newest first, and nothing of the other partner's
        assert len(solved) == len(own) + len(theirs)  # the declared app's only

    NOT_TAKEN = (  # (query, FastAPI's status)
        ("?limit=0", 422),
        ("?limit=201", 422),
        ("?limit=-1", 422),
        ("?limit=x", 422),
        ("?limit=", 422),
        ("?limit=050", 200),  # pydantic's int; not the fast path's plain number
        ("?limit=%2B5", 200),
        ("?limit=2&limit=3", 200),  # FastAPI takes the last
        ("?status=nope", 422),
        ("?status=", 422),
        ("?status=RECEIVED", 422),
        ("?cursor=", 200),
        ("?cursor=not-a-cursor", 400),
        ("?cursor=" + "A" * 201, 422),
        ("?outcome=rejected", 200),  # a filter the fast path does not take
        ("?outcome=nope", 422),
        ("?since=2026-01-01T00:00:00", 422),  # a time without a zone
        ("?since=2026-01-01T00:00:00Z", 200),
        ("?unknown=1", 200),
    )

    def test_what_the_fast_path_does_not_take_is_fastapis_to_answer(
        self, site: Site, solved: list[object], subtests: pytest.Subtests
    ) -> None:
        self.seed(site)
        for query, status in self.NOT_TAKEN:
            with subtests.test(query=query):
                solved.clear()
                got = site.fast.get(f"/v1/interchanges{query}", headers=auth(site.key))
                assert got.status_code == status, got.text
                assert solved  # not the fast path
                assert answer(got) == answer(
                    site.declared.get(f"/v1/interchanges{query}", headers=auth(site.key))
                )

    @pytest.mark.parametrize("authorization", ["", "Basic abc", "Bearer edi834_unknown"])
    def test_what_is_not_a_remembered_key_is_fastapis_to_answer(
        self, site: Site, solved: list[object], authorization: str
    ) -> None:
        headers = {"Authorization": authorization} if authorization else {}
        got = site.fast.get("/v1/interchanges", headers=headers)
        assert got.status_code == 401
        assert solved
        assert answer(got) == answer(site.declared.get("/v1/interchanges", headers=headers))


class TestInstall:
    def test_none_goes_to_the_route_as_declared(self) -> None:
        app = FastAPI()
        seen: list[str] = []

        @app.get("/x/{name}")
        def declared(name: str) -> dict[str, str]:
            seen.append(name)
            return {"declared": name}

        async def fast(request: Request) -> Response | None:
            name = request.path_params["name"]
            return PlainTextResponse(f"fast {name}") if name == "quick" else None

        install_fast_path(app, declared, fast)
        with TestClient(app) as c:
            assert c.get("/x/quick").text == "fast quick"
            assert c.get("/x/slow").json() == {"declared": "slow"}
        assert seen == ["slow"]

    def test_one_route_or_none(self) -> None:
        app = FastAPI()

        def nowhere() -> None: ...

        with pytest.raises(LookupError):
            install_fast_path(app, nowhere, lambda request: None)  # type: ignore[arg-type,return-value]

    def test_at_most_the_api_threads_and_four_a_cpu(self) -> None:
        for size, expected in [(1, 1), (10_000, 4 * (os.cpu_count() or 1))]:
            app = FastAPI()
            add_threads(app, size)
            assert app.state.lean_threads._max_workers == expected


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the background refresh did not answer"
        time.sleep(0.01)


class TestKeyRefresh:
    """A remembered key in use is looked up again shortly before its answer expires, in the
    background: its requests stay on the fast path across the expiry, and a key disabled
    meanwhile is forgotten when the refresh finds no partner."""

    def remember(self, site: Site) -> tuple[ApiKeyCache, Clock, str]:
        clock = Clock()
        keys = ApiKeyCache(5.0, clock=clock)
        site.fast.app.state.api_keys = keys  # type: ignore[attr-defined]
        assert site.fast.get(MISSING, headers=auth(site.key)).status_code == 404  # looked up
        return keys, clock, repo.hash_api_key(site.key)

    def test_in_use_it_never_expires_under_its_requests(
        self, site: Site, solved: list[object]
    ) -> None:
        keys, clock, key_hash = self.remember(site)
        solved.clear()
        clock.now = 104.5  # within the last second of its 5
        assert site.fast.get(MISSING, headers=auth(site.key)).status_code == 404
        wait_for(lambda: keys._entries[key_hash][0] == 109.5)  # asked again at 104.5
        clock.now = 106.0  # past the first answer's time
        assert site.fast.get(MISSING, headers=auth(site.key)).status_code == 404
        assert not solved  # every one of them on the fast path

    def test_a_key_disabled_meanwhile_is_forgotten(self, site: Site) -> None:
        keys, clock, key_hash = self.remember(site)
        with unit_of_work(site.gw.sessions) as s:
            set_enabled(s, "va", False)
        clock.now = 104.5
        assert site.fast.get(MISSING, headers=auth(site.key)).status_code == 404  # remembered
        wait_for(lambda: key_hash not in keys._entries)
        assert site.fast.get(MISSING, headers=auth(site.key)).status_code == 401
