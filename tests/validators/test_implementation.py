"""005010X220A1 through pyx12: one focused test per IK304 / IK403 code we emit, and where our
layer deliberately differs from pyx12."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import SAMPLES
from tests.validators.helpers import all_issues, codes, one
from tests.x12build import HEADER, MEMBER, TS, Group, x12
from validators.acks import build_999
from validators.interchange import AckCode, Engine, ValidationOptions, validate_stream
from validators.issues import Level


def member(**replace: str) -> list[str]:
    out = list(MEMBER)
    for old, new in replace.items():
        out = [new if s.startswith(old.replace("_", "*")) else s for s in out]
    return out


def body(segments: list[str]) -> bytes:
    return x12(Group(sets=[TS(body=segments)]))


class TestSegmentCodes:
    def test_ik304_1_unrecognized_segment(self) -> None:
        result = one(body([*HEADER, *MEMBER[:2], "ZZZ*1", *MEMBER[2:]]))
        seg = [i for i in all_issues(result) if i.level is Level.SEGMENT]
        assert [(i.code, i.segment_id, i.segment_position) for i in seg] == [("1", "ZZZ", 7)]

    def test_ik304_2_unexpected_segment(self) -> None:
        # A BGN inside loop 2000 is an 834 segment in the wrong place (pyx12 says 1).
        result = one(body([*HEADER, *MEMBER[:5], "BGN*00*X*20260101*1200****2", *MEMBER[5:]]))
        seg = [i for i in all_issues(result) if i.level is Level.SEGMENT]
        assert [(i.code, i.segment_id) for i in seg] == [("2", "BGN")]

    def test_ik304_7_segment_out_of_sequence(self) -> None:
        # PER belongs in 2100A, but before N3/N4 (pyx12 says 1).
        result = one(body([*HEADER, *MEMBER[:8], "PER*IP**HP*8045550120", *MEMBER[8:]]))
        seg = [i for i in all_issues(result) if i.level is Level.SEGMENT]
        assert [(i.code, i.segment_id, i.loop_id) for i in seg] == [("7", "PER", "2100A")]

    def test_ik304_3_required_segment_missing(self) -> None:
        result = one(body([h for h in HEADER if not h.startswith("N1*IN")] + MEMBER))
        missing = [i for i in all_issues(result) if i.code == "3" and i.level is Level.SEGMENT]
        assert missing and missing[0].segment_id == "N1"
        assert missing[0].loop_id == "1000B"

    def test_ik304_5_segment_over_maximum_use(self) -> None:
        segs = [*HEADER, *MEMBER[:8], "DMG*D8*19910323*F", *MEMBER[8:]]
        assert "IK304:5" in codes(one(body(segs)))

    def test_ik304_4_loop_over_maximum(self) -> None:
        coverages = ["HD*021**HLT**IND", "DTP*348*D8*20260601"] * 100
        assert "IK304:4" in codes(one(body([*HEADER, *MEMBER[:8], *coverages])))

    def test_ik304_8_with_loop_and_position(self) -> None:
        result = one(body([*HEADER, *member(DMG="DMG*D8*19911345*F")]))
        seg = [i for i in all_issues(result) if i.level is Level.SEGMENT]
        assert [(i.code, i.segment_id, i.segment_position, i.loop_id) for i in seg] == [
            ("8", "DMG", 12, "2100A")
        ]


class TestElementCodes:
    @pytest.mark.parametrize(
        ("replace", "code", "where"),
        [
            ({"NM1": "NM1*IL*1**JANE*A***34*915830264"}, "1", ("NM1", 3, "1035")),
            ({"INS": "INS*Y*18*099*EC*A***AC"}, "7", ("INS", 3, "875")),
            ({"DMG": "DMG*D8*19911345*F"}, "8", ("DMG", 2, "1251")),
            ({"N4": "N4*RICHMOND*V*23220"}, "4", ("N4", 2, "156")),
            ({"REF_0F": "REF*0F*" + "1" * 51}, "5", ("REF", 2, "127")),
            ({"DMG": "DMG*D8*19910323*F****************"}, "3", ("DMG", None, None)),
        ],
    )
    def test_ik403(self, replace: dict[str, str], code: str, where: tuple[object, ...]) -> None:
        result = one(body([*HEADER, *member(**replace)]))
        found = [i for i in all_issues(result) if i.level is Level.ELEMENT and i.code == code]
        assert found, codes(result)
        tag, pos, ref = where
        assert found[0].segment_id == tag
        if pos is not None:
            assert (found[0].element_position, found[0].element_ref) == (pos, ref)
        assert result.groups[0].sets[0].ack_code is AckCode.REJECTED

    def test_ik403_9_invalid_time(self) -> None:
        header = ["BGN*00*REF12345*20260412*2599*ET***2", *HEADER[1:]]
        found = [i for i in all_issues(one(body([*header, *MEMBER]))) if i.code == "9"]
        assert found and found[0].segment_id == "BGN" and found[0].element_position == 4

    def test_ik403_6_invalid_character(self) -> None:
        result = one(body([*HEADER, *member(N3="N3*2318 FLOYD AVE\x07")]))
        assert "IK403:6" in codes(result)

    def test_bad_value_is_kept_for_ik404(self) -> None:
        result = one(body([*HEADER, *member(INS="INS*Y*18*099*EC*A***AC")]))
        found = [i for i in all_issues(result) if i.code == "7"]
        assert found[0].bad_value == "099"

    def test_business_unit_is_the_members_subscriber_number(self) -> None:
        # The INS error comes before REF*0F: it is back-filled for the 999's CTX.
        result = one(body([*HEADER, *member(INS="INS*Y*18*099*EC*A***AC")]))
        assert {
            i.business_unit for i in all_issues(result) if i.level is not Level.TRANSACTION
        } == {"SUB1000001"}


class TestDeviationsFromPyx12:
    """Where pyx12 is wrong or silent, our layer is right."""

    def test_stray_segment_between_gs_and_st_is_rejected(self) -> None:
        # pyx12 accepts a segment between GS and ST.
        data = x12().replace(b"~ST*", b"~BGN*00*X*20260101*1200****2~ST*", 1)
        result = one(data)
        assert "TA105:024" in codes(result)
        assert result.ta1_code is AckCode.REJECTED

    def test_st01_other_than_834_in_a_be_group(self) -> None:
        # pyx12 accepts ST*835 inside a BE group.
        result = one(x12(Group(sets=[TS(st01="835")])))
        assert result.groups[0].sets[0].set_error_codes == ["6"]

    def test_empty_segment_does_not_end_parsing(self) -> None:
        # pyx12 silently stops at '~~'; we report the empty segment and read on.
        data = x12().replace(b"~N3*", b"~~N3*", 1)
        result = one(data)
        s = result.groups[0].sets[0]
        assert s.ack_code is AckCode.REJECTED
        assert result.iea is not None  # read to the end

    def test_unsupported_version_is_a_finding_not_an_exception(self) -> None:
        # pyx12 raises "Map not found" on an unsupported GS08 or ISA12.
        result = one(x12(Group(gs08="004010X095A1"), isa_kwargs={"version": "00401"}))
        assert {"AK905:2", "TA105:003"} <= codes(result)

    def test_lx_inside_ls_le_and_2310_lx(self) -> None:
        provider = ["LX*1", "NM1*P3*1*WELBY*MARCUS****XX*1234567893*25"]
        reporting = [
            "LS*2700",
            "LX*1",
            "N1*75*APTC AMT",
            "REF*9V*120.00",
            "DTP*007*RD8*20260601-20261231",
            "LE*2700",
        ]
        result = one(body([*HEADER, *MEMBER, *provider, *reporting]))
        assert codes(result) == set(), codes(result)


class TestALoopsOnlySegmentWithABadCode:
    """A segment the guide has once, found by its element 01 code, is placed even when that
    code is bad: one IK3 (8) with the IK4 naming the code — not IK304 2 on it and on each
    segment of its loop after it, which pyx12's walker alone gives (found by a new-user run).
    Both engines walk the same way."""

    BASE = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()

    @pytest.mark.parametrize(
        ("old", "new", "expected"),
        [
            (b"HD*021*", b"HD*099*", [("HD", "2300", "8", "1", "875", "7", "099")]),
            (b"INS*Y*", b"INS**", [("INS", "2000", "8", "1", "1073", "1", "")]),
            (b"BGN*00*", b"BGN*11*", [("BGN", "", "8", "1", "353", "7", "11")]),
            (b"QTY*TO*", b"QTY*XX*", [("QTY", "", "8", "1", "673", "7", "XX")]),
        ],
        ids=["hd01", "ins01-empty", "bgn01", "qty01"],
    )
    @pytest.mark.parametrize("engine", [Engine.FAST, Engine.PYX12], ids=lambda e: e.name)
    def test_is_one_finding_at_the_code(
        self, engine: Engine, old: bytes, new: bytes, expected: list[tuple[str, ...]]
    ) -> None:
        assert old in self.BASE
        (result,) = list(
            validate_stream([self.BASE.replace(old, new, 1)], ValidationOptions(engine=engine))
        )
        ack = build_999(result, control_number=1, now=dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
        segments = [s.split("*") for s in ack.decode().split("~")]
        ik3 = [s for s in segments if s[0] == "IK3"]
        ik4 = [s for s in segments if s[0] == "IK4"]
        assert len(ik3) == len(ik4) == 1, ack
        (tag, _pos, loop, code), (_, element, ref, ik403, *bad) = ik3[0][1:], ik4[0]
        assert [(tag, loop, code, element, ref, ik403, bad[0] if bad else "")] == expected

    def test_a_segment_of_several_loops_with_an_unknown_code_is_still_unexpected(self) -> None:
        """NM1 opens 2100A…H, 2310 and 2330, told apart by NM101: NM1*QQ belongs nowhere."""
        data = self.BASE.replace(b"NM1*IL*", b"NM1*QQ*", 1)
        (result,) = list(validate_stream([data], ValidationOptions(engine=Engine.FAST)))
        ack = build_999(result, control_number=1, now=dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
        assert b"IK3*NM1*" in ack and b"*2~" in ack
