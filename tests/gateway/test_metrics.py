"""/metrics as an SRE's alerts read it (issue 18): parsed with prometheus_client's own parser;
the known series exist at zero before any event, no `_created` duplicates, no core lag on a
deployment without a core system, HTTP requests by route template and status, SFTP sessions and
uploads."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import CORE_LAG, set_core_backlog
from tests.conftest import SAMPLES
from tests.gateway.harness import GatewayProcess, submit, wait_ledger

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()


def scrape(gw: GatewayProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    text = httpx.get(f"{gw.url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path]]:
    tmp = Path(tmp_path_factory.mktemp("metrics"))
    gw = GatewayProcess(data_dir=tmp / "var")
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(tmp / "id_va")
    key.write_public_key(tmp / "id_va.pub")
    gw.extra_env["API_KEY"] = gw.add_partner("va", "VA0FFM", sftp_key=tmp / "id_va.pub")
    gw.start()
    yield gw, tmp
    gw.kill()


class TestBeforeAnyEvent:
    """Runs first in this module: nothing has been sent yet."""

    def test_known_series_exist_at_zero(self, served: tuple[GatewayProcess, Path]) -> None:
        samples = scrape(served[0])
        for name, labels in (
            ("edi834_files_received_total", (("channel", "http"),)),
            ("edi834_files_received_total", (("channel", "sftp"),)),
            ("edi834_intake_refused_total", (("reason", "rate_limited"),)),
            ("edi834_files_processed_total", (("outcome", "rejected"),)),
            ("edi834_sftp_uploads_total", (("result", "partial"),)),
            ("edi834_sftp_uploads_total", (("result", "complete"),)),
            ("edi834_delivery_failures_total", (("kind", "ack"),)),
            ("edi834_delivery_failures_total", (("kind", "webhook"),)),
            ("edi834_delivery_failures_total", (("kind", "notice"),)),
            ("edi834_ledger_out_of_order_total", ()),
            ("edi834_http_unauthorized_total", ()),
            ("edi834_sftp_sessions", ()),
            ("edi834_core_lag_seconds", ()),
            ("edi834_core_delivery_configured", ()),
            ("edi834_queue_oldest_seconds", ()),
        ):
            assert samples.get((name, labels)) == 0.0, (name, labels)
        info = [labels for (name, labels) in samples if name == "edi834_build_info"]
        assert len(info) == 1 and ("version", "0.1.0") in info[0]

    def test_no_created_duplicates(self, served: tuple[GatewayProcess, Path]) -> None:
        assert not [name for name, _ in scrape(served[0]) if name.endswith("_created")]


class TestAfterTraffic:
    def test_no_core_system_means_no_lag_however_long_events_wait(
        self, served: tuple[GatewayProcess, Path]
    ) -> None:
        gw, _ = served
        with gw.client(gw.extra_env["API_KEY"]) as c:
            rid = submit(c, GOOD).json()["id"]
            assert wait_ledger(c, rid)["ledger_status"] == "applied"
        samples = scrape(gw)
        assert samples[("edi834_core_pending_events", ())] > 0  # kept in the outbox
        assert samples[("edi834_core_lag_seconds", ())] == 0.0
        assert samples[("edi834_core_delivery_configured", ())] == 0.0

    def test_http_requests_by_route_template_and_status(
        self, served: tuple[GatewayProcess, Path]
    ) -> None:
        gw, _ = served
        with gw.client(gw.extra_env["API_KEY"]) as c:
            rid = submit(c, GOOD).json()["id"]  # the same bytes: 200, the original receipt
            assert c.get(f"/v1/interchanges/{rid}").status_code == 200
        assert httpx.get(f"{gw.url}/v1/interchanges", timeout=10).status_code == 401
        assert httpx.get(f"{gw.url}/openapi.json", timeout=10).status_code == 200
        assert httpx.get(f"{gw.url}/v1/no-such/0004718293", timeout=10).status_code == 404
        samples = scrape(gw)
        # FastAPI's own routes by their path too; an unknown path is "unmatched", never sent
        get = (("method", "GET"),)
        assert samples[("edi834_http_requests_total", (*get, ("route", "/openapi.json"),
                                                       ("status", "200")))] >= 1  # fmt: skip
        assert samples[("edi834_http_requests_total", (*get, ("route", "unmatched"),
                                                       ("status", "404")))] >= 1  # fmt: skip
        assert not [labels for name, labels in samples if "0004718293" in str(labels)]
        route = "/v1/interchanges/{interchange_id}"
        key = (
            "edi834_http_requests_total",
            (("method", "GET"), ("route", route), ("status", "200")),
        )
        assert samples[key] >= 1
        assert not [labels for name, labels in samples if rid in str(labels)]  # no ids
        assert samples[("edi834_http_unauthorized_total", ())] >= 1
        assert (
            samples[
                (
                    "edi834_http_request_seconds_count",
                    (("method", "POST"), ("route", "/v1/interchanges")),
                )
            ]
            >= 1
        )

    def test_sftp_sessions_and_uploads(self, served: tuple[GatewayProcess, Path]) -> None:
        gw, tmp = served
        key = asyncssh.read_private_key(tmp / "id_va")

        async def scenario() -> None:
            async with (
                asyncssh.connect(
                    "127.0.0.1",
                    gw.sftp_port,
                    username="va",
                    client_keys=[key],
                    known_hosts=None,
                ) as conn,
                conn.start_sftp_client() as sftp,
            ):
                assert scrape(gw)[("edi834_sftp_sessions", ())] == 1.0
                async with sftp.open("inbound/m.834", "wb") as f:
                    await f.write(GOOD.replace(b"*000000001*", b"*000000002*", 1))
            await asyncio.sleep(0.3)

        asyncio.run(scenario())
        samples = scrape(gw)
        assert samples[("edi834_sftp_sessions", ())] == 0.0
        assert samples[("edi834_sftp_uploads_total", (("result", "complete"),))] == 1.0


def test_age_of_the_oldest_waiting_file(tmp_path: Path) -> None:
    gw = GatewayProcess(data_dir=tmp_path / "var")
    key = gw.add_partner("va", "VA0FFM")
    gw.start(EDI834_WORKER_ENABLED="false", EDI834_SFTP_ENABLED="false")
    try:
        with gw.client(key) as c:
            assert submit(c, GOOD).status_code == 202
        time.sleep(1.2)
        assert scrape(gw)[("edi834_queue_oldest_seconds", ())] >= 1.0
    finally:
        gw.kill()


class TestCoreBacklog:
    def test_lag_only_when_a_core_system_is_configured(self) -> None:
        now = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
        oldest = now - dt.timedelta(seconds=90)
        set_core_backlog(pending=3, oldest=oldest, configured=True, now=now)
        assert CORE_LAG._value.get() == 90.0
        set_core_backlog(pending=3, oldest=oldest, configured=False, now=now)
        assert CORE_LAG._value.get() == 0.0
