from __future__ import annotations

import datetime as dt
import re

import pytest

from parsers import InterchangeStart, Segment, StraySegment, TransactionSetEnd, read_events
from tests.validators.helpers import one
from tests.x12build import HEADER, MEMBER, TS, Group, ack_group, x12
from validators.acks import build_999, build_ta1
from validators.interchange import TransactionSetResult
from validators.issues import Issue, Level

NOW = dt.datetime(2026, 3, 4, 5, 6, tzinfo=dt.UTC)


def segs(data: bytes) -> list[Segment]:
    out: list[Segment] = []
    for e in read_events([data]):
        if isinstance(e, Segment | StraySegment):
            out.append(e if isinstance(e, Segment) else e.segment)
        elif isinstance(e, InterchangeStart):
            out.append(e.isa)
        elif isinstance(e, TransactionSetEnd) and e.se is not None:
            out.append(e.se)
        for name in ("gs", "ge", "st", "iea"):
            seg = getattr(e, name, None)
            if isinstance(seg, Segment):
                out.append(seg)
    return out


class TestBuildTa1:
    def test_ta1_envelope_and_content(self) -> None:
        result = one(x12(iea02="000000999"))
        ack = build_ta1(result, control_number=42, now=NOW)
        s = segs(ack)
        assert [x.tag for x in s] == ["ISA", "TA1", "IEA"]
        isa, ta1, iea = s
        assert len(ack.split(b"~")[0]) + 1 == 106
        assert (isa.element(6).strip(), isa.element(8).strip()) == ("EDI834GATEWAY", "VA0FFM")
        assert isa.element(13) == "000000042" and iea.elements == ("0", "000000042")
        assert ta1.elements == ("000000101", "260421", "0221", "R", "001")

    def test_builder_is_deterministic_and_needs_an_aware_clock(self) -> None:
        result = one(x12())
        assert build_ta1(result, control_number=1, now=NOW) == build_ta1(
            result, control_number=1, now=NOW
        )
        with pytest.raises(ValueError, match="timezone"):
            build_ta1(result, control_number=1, now=NOW.replace(tzinfo=None))

    def test_answers_in_the_senders_delimiters(self) -> None:
        data = x12(isa_kwargs={"rep": "!", "comp": ">"}, sep="|", term="'")
        ack = build_999(one(data), control_number=7, now=NOW)
        assert ack.startswith(b"ISA|") and b"'ST|999|0001|005010X231A1'" in ack


@pytest.mark.parametrize("junk", ["", "**", "ABCD*1", "A-B*1"])
def test_a_segment_without_a_usable_id_gets_no_ik3_and_the_999_stays_valid(junk: str) -> None:
    """IK301 is a mandatory ID (2-3 letters and digits). An empty segment (`~~`), one with an
    empty tag (`***`) or a tag no ID can be (four characters, a hyphen) cannot be named: no
    IK3 for it, the set still rejected (IK5 R 5) — and every IK3 names a real segment ID. A
    lower-case tag (`abc`) is named as sent: `test_999_is_valid_x231`."""
    body = [*HEADER, *MEMBER[:7], junk, *MEMBER[7:]]
    result = one(x12(Group(sets=[TS(body=body)])))
    (ts,) = result.sets
    assert any(i.segment_position == 12 for i in ts.issues)  # the finding is kept (API)
    s = segs(build_999(result, control_number=5, now=NOW))
    ik3 = [x for x in s if x.tag == "IK3"]
    assert all(re.fullmatch(r"[0-9A-Za-z]{2,3}", x.element(1)) for x in ik3), ik3
    assert [x.element(2) for x in ik3].count("12") == 0
    (ik5,) = [x for x in s if x.tag == "IK5"]
    assert ik5.element(1) == "R" and "5" in ik5.elements[1:]


class TestAcknowledgmentsAreNotAcknowledged:
    """X12: neither a 997 nor a 999 is acknowledged (GS01 FA) — answering one invites an
    endless exchange of acks between two translators."""

    def test_a_group_of_acks_gets_no_999(self) -> None:
        result = one(x12(ack_group(gs06="7")))
        assert result.groups and not result.acknowledged_groups
        assert not result.wants_999

    def test_beside_an_834_group_only_the_834_group_is_answered(self) -> None:
        result = one(x12(Group(gs06="101"), ack_group(gs06="102")))
        assert result.wants_999
        s = segs(build_999(result, control_number=5, now=NOW))
        assert [x.elements[:2] for x in s if x.tag == "AK1"] == [("BE", "101")]
        assert [x.element(1) for x in s if x.tag == "GE"] == ["1"]
        assert [x.tag for x in s].count("ST") == 1

    def test_other_unsupported_groups_are_still_answered(self) -> None:
        result = one(x12(Group(sets=[TS(st01="270")], gs01="HS", gs08="005010X279A1")))
        assert result.wants_999
        s = segs(build_999(result, control_number=5, now=NOW))
        assert [x.element(1) for x in s if x.tag == "AK1"] == ["HS"]


class TestBuild999:
    def test_clean_group(self) -> None:
        s = segs(build_999(one(x12()), control_number=9, now=NOW))
        tags = [x.tag for x in s]
        assert tags == ["ISA", "GS", "ST", "AK1", "AK2", "IK5", "AK9", "SE", "GE", "IEA"]
        gs = s[1]
        assert gs.element(1) == "FA" and gs.element(8) == "005010X231A1" and gs.element(6) == "9"
        assert s[2].elements == ("999", "0001", "005010X231A1")
        assert s[3].elements == ("BE", "101", "005010X220A1")
        assert s[6].elements == ("A", "1", "1", "1")
        assert s[7].element(1) == "6"  # ST..SE

    def test_partial_group_ik3_ik4_ctx(self) -> None:
        bad = TS(
            st02="0002", body=[b.replace("DMG*D8*19910323", "DMG*D8*19911345") for b in TS().body]
        )
        data = x12(Group(sets=[TS(st02="0001"), bad]))
        s = segs(build_999(one(data), control_number=9, now=NOW))
        body = [
            (x.tag, x.elements) for x in s if x.tag in ("AK2", "IK3", "CTX", "IK4", "IK5", "AK9")
        ]
        assert body == [
            ("AK2", ("834", "0001", "005010X220A1")),
            ("IK5", ("A",)),
            ("AK2", ("834", "0002", "005010X220A1")),
            ("IK3", ("DMG", "12", "2100", "8")),
            ("CTX", ("SUBSCRIBER NUMBER REF02:SUB1000001",)),
            ("IK4", ("2", "1251", "8", "19911345")),
            ("IK5", ("R", "5")),
            ("AK9", ("P", "2", "2", "1")),
        ]

    def test_one_999_per_group_and_ak905(self) -> None:
        data = x12(Group(gs06="1"), Group(gs06="2", ge02="9"))
        s = segs(build_999(one(data), control_number=9, now=NOW))
        assert [x.element(1) for x in s if x.tag == "ST"] == ["999", "999"]
        # AK904 counts the sets with IK501 A or E, also in a group its AK905 rejects: the
        # 999 agrees with its own IK5s (X12-REFERENCE §3).
        assert [x.elements for x in s if x.tag == "AK9"] == [
            ("A", "1", "1", "1"),
            ("R", "1", "1", "1", "4"),
        ]
        assert [x.elements for x in s if x.tag == "IK5"] == [("A",), ("A",)]
        assert next(x for x in s if x.tag == "GE").element(1) == "2"

    def test_an_empty_group_that_says_so_is_accepted_one_that_does_not_is_ak905_5(self) -> None:
        """GS..GE*0 with no ST: nothing in it to refuse, and no AK905 would say why (it was
        AK9*R*0*0*0 with no reason). GE01 1 for no set is a wrong count; beside a rejected
        group, an empty one accepts nothing."""
        from validators.interchange import Outcome

        empty = one(x12(Group(gs06="1", sets=[])))
        s = segs(build_999(empty, control_number=9, now=NOW))
        assert [x.elements for x in s if x.tag == "AK9"] == [("A", "0", "0", "0")]
        assert empty.outcome is Outcome.ACCEPTED
        miscounted = one(x12(Group(gs06="1", sets=[], ge01="1")))
        s = segs(build_999(miscounted, control_number=9, now=NOW))
        assert [x.elements for x in s if x.tag == "AK9"] == [("R", "1", "0", "0", "5")]
        assert miscounted.outcome is Outcome.REJECTED
        beside = one(x12(Group(gs06="1", sets=[]), Group(gs06="2", ge02="9")))
        assert [g.ack_code.value for g in beside.groups] == ["A", "R"]
        assert beside.outcome is Outcome.REJECTED

    def test_missing_element_has_no_bad_value(self) -> None:
        bad = TS(body=[b.replace("NM1*IL*1*DOE", "NM1*IL*1*") for b in TS().body])
        s = segs(build_999(one(x12(Group(sets=[bad]))), control_number=9, now=NOW))
        ik4 = [x for x in s if x.tag == "IK4"]
        assert ik4 and ik4[0].elements == ("3", "1035", "1")


def _set_with(*issues: tuple[str, str]) -> list[str]:
    levels = {"ik304": Level.SEGMENT, "ik403": Level.ELEMENT, "ik502": Level.TRANSACTION}
    result = TransactionSetResult(st=Segment(tag="ST", elements=("834", "0001", "005010X220A1")))
    result.issues = [Issue(level=levels[where], code=code, message="") for where, code in issues]
    return result.set_error_codes


@pytest.mark.parametrize(
    ("issues", "ik502"),
    [
        ((("ik304", "8"), ("ik403", "I10")), ["I5"]),  # IK304 8 judged by its IK403s
        ((("ik304", "I4"),), ["I5"]),
        ((("ik304", "8"), ("ik403", "I10"), ("ik304", "I7")), ["I5"]),
        ((("ik304", "8"), ("ik403", "I10"), ("ik403", "7")), ["5"]),  # any standard code: 5
        ((("ik304", "2"),), ["5"]),
        ((("ik304", "8"), ("ik403", "1")), ["5"]),
        ((("ik304", "8"),), ["5"]),  # elements in error, none listed: not known to be I
        ((("ik502", "4"), ("ik304", "I6")), ["4", "I5"]),
        ((("ik502", "4"),), ["4"]),
        ((), []),
    ],
)
def test_ik502_is_i5_only_when_every_segment_error_is_against_the_guide(
    issues: tuple[tuple[str, str], ...], ik502: list[str]
) -> None:
    assert _set_with(*issues) == ik502


class TestAcksAreAddressedToWhoSentTheFile:
    """The gateway knows who sent a file (its API key or SSH key): the ack's ISA07/ISA08 are
    that partner's registered identity — not UNKNOWN when the received ISA06 cannot be
    echoed, nor the party a spoofed ISA06 names (TA1 006)."""

    def test_an_isa06_with_a_control_character(self) -> None:
        result = one(x12(isa_kwargs={"sender": "VA0\x01FFM"}), expected_sender=("ZZ", "VA0FFM"))
        for ack in (
            build_ta1(result, control_number=1, now=NOW, receiver=("ZZ", "VA0FFM")),
            build_999(result, control_number=2, now=NOW, receiver=("ZZ", "VA0FFM")),
        ):
            isa = segs(ack)[0]
            assert (isa.element(7), isa.element(8)) == ("ZZ", "VA0FFM".ljust(15)), ack
        alone = segs(build_ta1(result, control_number=1, now=NOW))[0]  # nothing known
        assert alone.element(8) == "UNKNOWN".ljust(15)

    def test_a_spoofed_isa06(self) -> None:
        result = one(x12(isa_kwargs={"sender": "MD0SBE"}), expected_sender=("ZZ", "VA0FFM"))
        ta1 = build_ta1(result, control_number=1, now=NOW, receiver=("ZZ", "VA0FFM"))
        assert b"*R*006~" in ta1 and segs(ta1)[0].element(8) == "VA0FFM".ljust(15)
