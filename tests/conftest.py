from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
# 834 files other projects wrote, each beside a .verdict: ../shared/peer-834 in our set-up and
# in CI; a user's clone has no ../shared — point EDI834_PEER_CORPUS at a copy to run them.
PEER = Path(os.environ.get("EDI834_PEER_CORPUS") or ROOT.parent / "shared" / "peer-834")
PEER_ABSENT = (
    f"the peer 834 corpus is not at {PEER} (set EDI834_PEER_CORPUS to a folder of *.834 files "
    "with their .verdict files to run these)"
)


def sample_files() -> list[Path]:
    return sorted(SAMPLES.glob("*.834"))


def peer_files() -> list[Path]:
    """The peer corpus, or [] when it is absent (see `peer_params`)."""
    return sorted(PEER.glob("*.834"))


def peer_params() -> list[Any]:
    """Peer files as pytest params: one skipped param saying why when the corpus is absent, so
    a run without it shows what it did not check instead of silently checking less."""
    files = peer_files()
    if files:
        return [pytest.param(p, id=p.name) for p in files]
    return [pytest.param(None, id="peer-corpus-absent", marks=pytest.mark.skip(reason=PEER_ABSENT))]


def needs_peer_corpus() -> Any:
    return pytest.mark.skipif(not peer_files(), reason=PEER_ABSENT)


def pytest_report_header() -> str:
    found = len(peer_files())
    return f"peer 834 corpus: {found} files at {PEER}" if found else f"SKIPPING: {PEER_ABSENT}"


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


def _database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    server = request.getfixturevalue("postgres")
    return str(server.create_database(f"gw_{next(_db_counter)}"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str:
    """Each gateway test runs on SQLite and again on a fresh PostgreSQL database.
    SQLite: the empty string, i.e. the gateway's default file in its data directory."""
    return _database_url(request)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database_url(request) -> str:
    """The same, once per test module: for a module that shares one running gateway."""
    return _database_url(request)
