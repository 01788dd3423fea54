"""Differential: our accept/reject verdict per transaction set equals pyx12's (the reference,
as `x12valid` runs it) on every sample and peer file, except the listed cases where pyx12 is
wrong. Envelope rejections (TA1, AK905) are compared elsewhere: pyx12's per-set code
ignores them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import peer_files, peer_params, sample_files
from tests.validators.pyx12_reference import pyx12_set_verdicts
from validators.interchange import InterchangeResult, validate_stream

# file -> why pyx12 is wrong there (each also has a focused test in test_implementation.py or
# test_conformance.py)
KNOWN_DEVIATIONS = {
    "bad_ak905_2_gs08_version.834": "pyx12 raises 'Map not found' for GS08 005010X220",
    "bad_ta1_003_isa12_version.834": "pyx12 raises 'Map not found' for ISA12 00401",
    "bad_ta1_027_component_equals_element.834": "pyx12 raises X12Error on the ISA",
    "bad_ik502_19_st03.834": "pyx12 accepts ST03 005010X221A1 in an 834",
    "bad_ik502_6_st01_835.834": "pyx12 skips an ST*835 inside a BE group",
    "bad_ta1_022_utf8_bom.834": "pyx12 reads nothing after a byte-order mark",
    # issue 16: pyx12 never splits ISA11 repetitions and has no LS/LE pairing
    "good_dmg05_two_repetitions.834": "pyx12 raises IndexError on a repeated DMG05",
    "good_dmg05_ten_repetitions.834": "pyx12 raises IndexError on a repeated DMG05",
    "bad_ik403_12_dmg05_eleven_repetitions.834": "pyx12 raises IndexError on a repeated DMG05",
    "bad_ik403_13_dmg05_extra_component.834": "pyx12 raises IndexError on a repeated DMG05",
    "bad_ik403_12_ref17_repetition.834": "pyx12 accepts a repeated REF02",
    "bad_ik304_3_le_missing.834": "pyx12 accepts an LS never closed by its LE",
}

FILES = sample_files() + peer_files()


def our_set_verdicts(path: Path) -> dict[tuple[str, str, str], str]:
    verdicts = {}
    for result in validate_stream([path.read_bytes()]):
        if isinstance(result, InterchangeResult):
            for g in result.groups:
                for s in g.sets:
                    verdicts[(result.isa13, g.gs.element(6), s.st02)] = "A" if s.accepted else "R"
    return verdicts


def test_deviations_are_real_files() -> None:
    names = {p.name for p in FILES}
    assert set(KNOWN_DEVIATIONS) <= names


@pytest.mark.parametrize(
    "path", [pytest.param(p, id=p.name) for p in sample_files()] + peer_params()
)
def test_set_verdicts_match_pyx12(path: Path) -> None:
    ours = our_set_verdicts(path)
    if path.name in KNOWN_DEVIATIONS:
        try:
            theirs = pyx12_set_verdicts(path)
        except Exception:
            return
        assert {k: v in "AE" for k, v in theirs.items()} != {k: v == "A" for k, v in ours.items()}
        return
    theirs = pyx12_set_verdicts(path)
    assert ours == {k: "A" if v in "AE" else "R" for k, v in theirs.items()}
