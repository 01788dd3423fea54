from __future__ import annotations

import fastapi.routing
import pytest

from tests.gateway.harness import GatewayProcess


@pytest.fixture
def gateway(tmp_path, database_url):
    """A running `edi834 serve` on loopback (SQLite, then PostgreSQL)."""
    gw = GatewayProcess(data_dir=tmp_path / "var", database_url=database_url)
    yield gw
    gw.kill()


@pytest.fixture
def running(tmp_path, database_url):
    """A running `edi834 serve` with two partners: va (824s on) and md; yields the gateway and
    their API keys. The ledger's order window is 5 s (files sent together apply in order)."""
    gw = GatewayProcess(data_dir=tmp_path / "var", database_url=database_url)
    va = gw.add_partner("va", "VA0FFM")
    other = gw.add_partner("md", "MD0SBE")
    gw.cli("partner", "rules", "va", "--send-824")
    gw.start(EDI834_LEDGER_ORDER_WINDOW_SECONDS="5")
    yield gw, va, other
    gw.kill()


@pytest.fixture
def solved(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every time FastAPI solves a route's dependencies (the declared path)."""
    calls: list[object] = []
    solve = fastapi.routing.solve_dependencies

    async def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("dependant"))
        return await solve(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", spy)
    return calls
