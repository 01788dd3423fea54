from __future__ import annotations

import pytest

from tests.gateway.harness import GatewayProcess


@pytest.fixture
def gateway(tmp_path, database_url):
    """A running `edi834 serve` on loopback (SQLite, then PostgreSQL)."""
    gw = GatewayProcess(data_dir=tmp_path / "var", database_url=database_url)
    yield gw
    gw.kill()
