"""Our 999s against pyx12's own 005010X231A1 map (what `x12valid` runs): the golden ones, and
those answering inputs whose values cannot be copied as they came — a strict translator on
the sender's side must be able to read every 999 we send (found by a run with files nobody on
the team wrote: CTX01-1 was `SUBSCRIBER NUMBER`, IK303 `2100A`, IK404 a NUL byte)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import pyx12.params
import pyx12.x12n_document

from tests.conftest import SAMPLES
from tests.validators.golden import produce

logging.getLogger("pyx12").addHandler(logging.NullHandler())
logging.getLogger("pyx12").propagate = False

BASE = (SAMPLES / "bad_ik403_8_dmg02_date.834").read_bytes()
REF0F = b"REF*0F*0004931685~"


def x231_problems(data: bytes) -> list[str]:
    """pyx12's findings on a 999 (its verdict, and the error segments of its own 999)."""
    out = io.StringIO()
    ok = pyx12.x12n_document.x12n_document(
        pyx12.params.ParamsBase(), io.StringIO(data.decode("latin-1")), out, None
    )
    findings = [s for s in out.getvalue().split("~") if s.startswith(("IK3", "IK4", "AK9*R"))]
    return [] if ok and not findings else findings or ["x12n_document says not OK"]


def answer(tmp_path: Path, content: bytes) -> bytes:
    src = tmp_path / "in.834"
    src.write_bytes(content)
    (tmp_path / "in.expect.json").write_text("{}")  # no --sender: the ISA's is expected
    out = tmp_path / "out"
    out.mkdir()
    produce(src, out)
    return (out / "in.999").read_bytes()


@pytest.mark.parametrize("golden", sorted(SAMPLES.glob("*.999")), ids=lambda p: p.stem)
def test_every_golden_999_passes_the_x231a1_map(golden: Path) -> None:
    assert x231_problems(golden.read_bytes()) == []


def _with(old: bytes, new: bytes, content: bytes = BASE) -> bytes:
    assert old in content
    return content.replace(old, new, 1)


CASES = {
    # CTX01-2 is AN 1/35: a 50-character REF*0F is cut, not copied whole.
    "subscriber number over 35": (
        _with(REF0F, b"REF*0F*" + b"7" * 50 + b"~"),
        b":" + b"7" * 35 + b"~",
    ),
    # IK404 is a copy only in X12's character sets: a NUL, a tab, Latin-1 are left out.
    "NUL in a name": (_with(b"*KWAME*", b"*KWA\x00ME*"), b"IK4*4*1036*6~"),
    "tab in an address": (_with(b"N3*2318 FLOYD", b"N3*2318\tFLOYD"), b"IK4*1*166*6~"),
    "Latin-1 in a name": (_with(b"*KWAME*", b"*KW\xc9ME*"), b"IK4*4*1036*6~"),
    # An AN value has no trailing spaces (X12.6): a value sent with one is not copied into
    # IK404, and a REF*0F cut to CTX01-2's 35 characters does not end in the space it cut at.
    "trailing space in an SSN": (_with(b"*915830264~", b"*915830264 ~"), b"IK4*9*67*6~"),
    "subscriber number cut at a space": (
        _with(REF0F, b"REF*0F*" + b"1" * 34 + b" 9~"),
        b":" + b"1" * 34 + b"~",
    ),
    # A lower-case segment id is still the segment named in IK301.
    "lower-case segment id": (_with(b"PER*IP", b"per*IP"), b"IK3*per*"),
}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_999_answering_values_it_cannot_copy_still_passes(tmp_path: Path, case: str) -> None:
    content, expected = CASES[case]
    ack = answer(tmp_path, content)
    assert expected in ack, ack
    assert b"CTX*SUBSCRIBER NUMBER REF02:" in ack and b"*2100*" in ack  # CTX01-1, IK303 1/4
    assert x231_problems(ack) == []


def test_ctx_names_a_member_only_for_findings_in_its_loops(tmp_path: Path) -> None:
    """The SE after the last member and the header's 1000 loops are not the member's."""
    se01 = BASE.index(b"~SE*") + 4
    se_wrong = BASE[:se01] + b"6A" + BASE[BASE.index(b"*", se01) :]  # SE01 not a number
    ack = answer(tmp_path, se_wrong)
    segments = ack.split(b"~")
    [at] = [n for n, seg in enumerate(segments) if seg.startswith(b"IK3*SE*")]
    assert segments[at + 1].startswith(b"IK4*1*96*6"), ack  # not a CTX naming a member
    assert segments[at - 2].startswith(b"CTX*SUBSCRIBER NUMBER REF02:")  # the DMG's has one
    assert x231_problems(ack) == []


def test_an_834_sent_in_a_gs01_fa_group_is_answered(tmp_path: Path) -> None:
    """FA is the acknowledgments' group (never answered); an 834 in it is: AK905 1."""
    good = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
    ack = answer(tmp_path, _with(b"GS*BE*", b"GS*FA*", good))
    assert b"AK1*FA*" in ack and b"AK9*R*1*1*1*1~" in ack, ack


def test_an_st02_with_a_leading_space_is_echoed_as_sent(tmp_path: Path) -> None:
    """AN: leading spaces are the value's, trailing ones are suppressed (X12.6). An ST02 of
    ` 0001` was answered `AK202 0001`, which the sender's translator cannot match."""
    content = BASE.replace(b"ST*834*0001*", b"ST*834* 0001*", 1).replace(
        b"*0001~GE*", b"* 0001~GE*", 1
    )
    assert b"ST*834* 0001*" in content and b"SE*45* 0001~" in content
    ack = answer(tmp_path, content)
    assert b"AK2*834* 0001*005010X220A1~" in ack
    assert x231_problems(ack) == []
