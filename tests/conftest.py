from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
PEER = ROOT.parent / "shared" / "peer-834"


def sample_files() -> list[Path]:
    return sorted(SAMPLES.glob("*.834"))


def peer_files() -> list[Path]:
    files = sorted(PEER.glob("*.834"))
    if not files:
        raise RuntimeError(f"no peer files found in {PEER}")
    return files


@pytest.fixture
def edi834() -> Path:
    path = ROOT / ".venv" / "bin" / "edi834"
    assert path.exists(), "make test installs .venv/bin/edi834"
    return path


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server (Debian's package) for the whole run."""
    from tests.pgserver import PostgresServer

    with PostgresServer() as server:
        yield server


_db_counter = iter(range(1, 1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """Each gateway test runs on SQLite and again on a fresh PostgreSQL database.
    SQLite: the empty string, i.e. the gateway's default file in its data directory."""
    if request.param == "sqlite":
        return ""
    server = request.getfixturevalue("postgres")
    return server.create_database(f"gw_{next(_db_counter)}")
