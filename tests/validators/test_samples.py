"""Golden files: every sample reproduces its acknowledgements and its expected codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import sample_files
from tests.validators.golden import SUFFIXES, codes_of, expectation, produce

SAMPLES = sample_files()


def test_corpus_is_large_enough() -> None:
    good = [s for s in SAMPLES if expectation(s)["verdict"] == "accepted"]
    bad = [s for s in SAMPLES if expectation(s)["verdict"] != "accepted"]
    assert len(good) >= 15
    assert len(bad) >= 25


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_sample_reproduces_golden_acks(sample: Path, tmp_path: Path) -> None:
    report = produce(sample, tmp_path)
    expected = {s: sample.with_suffix(s) for s in SUFFIXES if sample.with_suffix(s).exists()}
    made = {
        s: tmp_path / f"{sample.stem}{s}"
        for s in SUFFIXES
        if (tmp_path / f"{sample.stem}{s}").exists()
    }
    assert set(made) == set(expected)
    for suffix, golden in expected.items():
        assert made[suffix].read_bytes() == golden.read_bytes(), suffix
    want = expectation(sample)
    summary = report.as_dict()
    assert summary["verdict"] == want["verdict"]
    missing = set(want["codes"]) - codes_of(summary)
    assert not missing


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_counts_add_up(sample: Path, tmp_path: Path) -> None:
    for ic in produce(sample, tmp_path).interchanges:
        c = ic["counts"]
        assert c["sets_accepted"] + c["sets_rejected"] == c["sets_received"]
        assert c["members_accepted"] + c["members_rejected"] == c["members_received"]
