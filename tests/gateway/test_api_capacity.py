"""The partner API's cost per request (issue 19): API-key look-ups remembered for a bounded time
(a rotated or disabled key stops working within it, and never works again after it), and a
connection pool as large as the threadpool (a busy API opens no new database connections)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from sqlalchemy import event, text

from gateway import context
from gateway.api.apikeys import ApiKeyCache, KeyOwner
from gateway.context import Gateway
from gateway.db.session import make_engine, pool_size_for
from gateway.settings import Settings
from tests.gateway.harness import GatewayProcess

VA = KeyOwner(id=1, name="va")
TTL = 1.0
EPSILON = 0.5  # a request's own time, on a busy machine


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestApiKeyCache:
    def test_remembered_until_ttl_after_the_look_up_and_never_after(self) -> None:
        clock = Clock()
        cache = ApiKeyCache(5.0, clock=clock)
        asked_at = cache.now()
        clock.now += 0.2  # the database's answer took this long
        cache.put("h1", VA, looked_up_at=asked_at)
        assert cache.get("h1") == VA
        clock.now = asked_at + 4.999
        assert cache.get("h1") == VA
        clock.now = asked_at + 5.0  # the bound runs from the question, not the answer
        assert cache.get("h1") is None
        clock.now += 100
        assert cache.get("h1") is None

    def test_zero_ttl_remembers_nothing(self) -> None:
        cache = ApiKeyCache(0.0, clock=Clock())
        cache.put("h1", VA, looked_up_at=cache.now())
        assert cache.get("h1") is None

    def test_bounded_in_size_oldest_forgotten_first(self) -> None:
        clock = Clock()
        cache = ApiKeyCache(60.0, max_entries=3, clock=clock)
        for n in range(5):
            cache.put(f"h{n}", KeyOwner(n, f"p{n}"), looked_up_at=clock.now)
            clock.now += 1
        remembered = [cache.get(f"h{n}") is not None for n in range(5)]
        assert remembered == [False, False, True, True, True]

    def test_expired_entries_make_room_before_live_ones(self) -> None:
        clock = Clock()
        cache = ApiKeyCache(10.0, max_entries=2, clock=clock)
        cache.put("live", VA, looked_up_at=clock.now)
        cache.put("old", VA, looked_up_at=clock.now - 20)  # already past its time
        cache.put("new", VA, looked_up_at=clock.now)
        assert cache.get("live") == VA and cache.get("new") == VA

    def test_due_once_in_the_last_fifth_then_refreshed_from_the_new_question(self) -> None:
        clock = Clock()
        cache = ApiKeyCache(5.0, clock=clock)
        cache.put("h1", VA, looked_up_at=clock.now)  # expires at 105
        clock.now = 103.9
        assert not cache.due("h1")  # more than 1 s (a fifth of 5 s) left
        clock.now = 104.1
        assert cache.due("h1")
        assert not cache.due("h1")  # one refresh at a time
        asked_at = clock.now
        cache.refreshed("h1", VA, looked_up_at=asked_at)
        clock.now = asked_at + 4.999
        assert cache.get("h1") == VA  # remembered from the new question on
        clock.now = asked_at + 5.0
        assert cache.get("h1") is None  # and never after it

    def test_a_refresh_that_finds_no_partner_forgets_at_once(self) -> None:
        clock = Clock()
        cache = ApiKeyCache(5.0, clock=clock)
        cache.put("h1", VA, looked_up_at=clock.now)
        clock.now += 4.5
        assert cache.due("h1")
        cache.refreshed("h1", None, looked_up_at=clock.now)  # disabled or rotated meanwhile
        assert cache.get("h1") is None

    def test_a_failed_refresh_leaves_the_answer_to_its_time_and_may_be_tried_again(self) -> None:
        clock = Clock()
        cache = ApiKeyCache(5.0, clock=clock)
        cache.put("h1", VA, looked_up_at=clock.now)
        clock.now += 4.5
        assert cache.due("h1")
        cache.refreshed("h1", None, looked_up_at=None)  # the database did not answer
        assert cache.get("h1") == VA
        assert cache.due("h1")
        clock.now += 0.5
        assert cache.get("h1") is None


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[tuple[GatewayProcess, str]]:
    gw = GatewayProcess(data_dir=tmp_path / "var", database_url=database_url)
    key = gw.add_partner("va", "VA0FFM")
    gw.start(EDI834_SFTP_ENABLED="false", EDI834_API_KEY_CACHE_SECONDS=str(TTL))
    yield gw, key
    gw.kill()


def _fails_within_ttl(gw: GatewayProcess, key: str, revoked_at: float) -> None:
    """Refused at most TTL (+ a request's time) after `revoked_at`, and every time after."""
    with gw.client(key) as c:
        while c.get("/v1/interchanges").status_code == 200:
            assert time.monotonic() - revoked_at <= TTL + EPSILON, "still accepted after the TTL"
            time.sleep(0.02)
        refused_at = time.monotonic()
        while time.monotonic() - refused_at < TTL + EPSILON:
            assert c.get("/v1/interchanges").status_code == 401
            time.sleep(0.05)


class TestRevocation:
    def test_rotated_key_fails_within_the_ttl_and_the_new_one_works_at_once(
        self, served: tuple[GatewayProcess, str]
    ) -> None:
        gw, key = served
        with gw.client(key) as c:
            assert c.get("/v1/interchanges").status_code == 200  # now remembered
        new_key = gw.cli("partner", "rotate-key", "va").stdout.strip().split()[-1]
        revoked_at = time.monotonic()
        with gw.client(new_key) as c:
            assert c.get("/v1/interchanges").status_code == 200  # unknown keys are not cached
        _fails_within_ttl(gw, key, revoked_at)

    def test_disabled_partner_fails_within_the_ttl(
        self, served: tuple[GatewayProcess, str]
    ) -> None:
        gw, key = served
        with gw.client(key) as c:
            assert c.get("/v1/interchanges").status_code == 200
        gw.cli("partner", "disable", "va")
        revoked_at = time.monotonic()
        _fails_within_ttl(gw, key, revoked_at)
        gw.cli("partner", "enable", "va")
        with gw.client(key) as c:
            assert c.get("/v1/interchanges").status_code == 200  # a refusal is not remembered


class TestPool:
    def test_pool_is_as_large_as_the_threads_that_use_it(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path)
        engine = make_engine(settings.sqlalchemy_url, pool_size=pool_size_for(settings.api_threads))
        try:
            assert engine.pool.size() >= settings.api_threads  # type: ignore[attr-defined]
        finally:
            engine.dispose()

    def test_the_counters_see_a_pool_too_small_for_its_threads(self, tmp_path: Path) -> None:
        """What the next test relies on: connections a pool closes and opens again are counted."""
        gw = Gateway.open(Settings(data_dir=tmp_path))
        small = make_engine(gw.settings.sqlalchemy_url, pool_size=1, max_overflow=8)
        event.listen(small, "connect", context._count_opened)
        event.listen(small, "close", context._count_closed)
        before = _counts()
        barrier = threading.Barrier(4)

        def hold() -> None:
            with small.connect() as conn:
                barrier.wait(timeout=10)  # four at once: three beyond the pool of one
                conn.execute(text("SELECT 1"))

        try:
            for _ in range(3):
                threads = [threading.Thread(target=hold) for _ in range(4)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            opened, closed = (now - then for now, then in zip(_counts(), before, strict=True))
            # 1 kept + 3 overflow opened and closed each round.
            assert (opened, closed) == (1 + 3 * 3, 3 * 3)
        finally:
            small.dispose()
            gw.close()

    def test_a_busy_api_reuses_its_connections(self, tmp_path: Path, database_url: str) -> None:
        gw = GatewayProcess(data_dir=tmp_path / "var", database_url=database_url)
        key = gw.add_partner("va", "VA0FFM")
        gw.start(EDI834_SFTP_ENABLED="false")
        try:

            def counts() -> tuple[float, float]:
                # Counted by the process itself (pool events), exact at once; PostgreSQL's
                # pg_stat_database.sessions is flushed by each backend up to 10 s later under
                # load, which made this test fail on a busy machine.
                return _counts(httpx.get(f"{gw.url}/metrics", timeout=30).text)

            async def load(rounds: int) -> None:
                # A connection idle for uvicorn's keep-alive (5 s, reached between rounds on a
                # busy machine) is closed by the server as the client may reuse it ("Server
                # disconnected without sending a response"): the client lets go sooner.
                limits = httpx.Limits(
                    max_connections=32, max_keepalive_connections=32, keepalive_expiry=2
                )
                async with httpx.AsyncClient(
                    base_url=gw.url,
                    headers={"Authorization": f"Bearer {key}"},
                    limits=limits,
                    timeout=60,
                ) as c:
                    for _ in range(rounds):
                        got = await asyncio.gather(*(c.get("/v1/interchanges") for _ in range(32)))
                        assert {r.status_code for r in got} == {200}

            asyncio.run(load(3))
            opened_before, closed_before = counts()
            assert opened_before >= 1
            asyncio.run(load(20))  # 640 requests, 32 at a time
            opened, closed = counts()
            # A pool smaller than the threadpool closed and reopened one for about every second
            # request here. The pool may still grow to the peak concurrency (32 requests and
            # the background loops), never beyond the threads that can hold a connection.
            assert closed - closed_before == 0, f"{closed - closed_before} connections churned"
            assert opened <= gw_pool_bound(), f"{opened} connections opened"
        finally:
            gw.kill()


def gw_pool_bound() -> int:
    return pool_size_for(Settings().api_threads)


def _counts(text_format: str | None = None) -> tuple[float, float]:
    found: dict[str, float] = {}
    for line in (text_format or generate_latest().decode()).splitlines():
        name, _, value = line.partition(" ")
        if name in ("edi834_db_connections_opened_total", "edi834_db_connections_closed_total"):
            found[name] = float(value)
    return (
        found["edi834_db_connections_opened_total"],
        found["edi834_db_connections_closed_total"],
    )
