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
