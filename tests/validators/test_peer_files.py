"""The 16 files other projects wrote (../shared/peer-834) give the verdict in their .verdict
file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import needs_peer_corpus, peer_files, peer_params
from validators.interchange import InterchangeResult, validate_stream


@pytest.mark.parametrize("path", peer_params())
def test_peer_file_verdict(path: Path) -> None:
    expected = path.with_suffix(".verdict").read_text().strip()
    results = list(validate_stream([path.read_bytes()]))
    assert results and all(isinstance(r, InterchangeResult) for r in results)
    verdicts = {g.ack_code.value for r in results for g in r.groups}  # type: ignore[union-attr]
    assert verdicts == {expected}


@needs_peer_corpus()
def test_all_sixteen_are_there() -> None:
    assert len(peer_files()) == 16
