"""Where both engines depart from pyx12 on purpose (issue 16, `validators/conformance.py`): one
focused test per class, each run on both engines (the differential tests hold them identical
everywhere else)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers import InterchangeStart, Segment, read_events
from parsers.delimiters import Delimiters
from tests.validators.helpers import all_issues, one
from tests.x12build import HEADER, MEMBER, TS, Group, isa, x12
from validators.acks import build_999
from validators.interchange import AckCode, Engine, InterchangeResult
from validators.issues import Issue, Level

ENGINES = pytest.mark.parametrize("engine", list(Engine), ids=lambda e: e.value)
RACE = "C:RET:2186-5"  # DMG05 C056: race code, code list qualifier, industry code
REPORTING = [
    "LS*2700",
    "LX*1",
    "N1*75*APTC AMT",
    "REF*9V*120.00",
    "DTP*007*RD8*20260601-20261231",
]


def member(**replace: str) -> list[str]:
    out = list(MEMBER)
    for old, new in replace.items():
        out = [new if s.startswith(old.replace("_", "*")) else s for s in out]
    return out


def check(segments: list[str], engine: Engine, **x12_kwargs: object) -> InterchangeResult:
    return one(x12(Group(sets=[TS(body=segments)]), **x12_kwargs), engine=engine)  # type: ignore[arg-type]


def findings(result: InterchangeResult) -> list[tuple[object, ...]]:
    """(IK3/IK4 family, code, segment, position, loop, element, component, repetition, IK402,
    bad value) for every finding of the set."""
    return [
        (
            i.family,
            i.code,
            i.segment_id,
            i.segment_position,
            i.loop_id,
            i.element_position,
            i.component_position,
            i.repetition_position,
            i.element_ref,
            i.bad_value,
        )
        for i in all_issues(result)
    ]


def element_findings(result: InterchangeResult) -> list[Issue]:
    return [i for i in all_issues(result) if i.level is Level.ELEMENT]


def dmg(race: str) -> str:
    return f"DMG*D8*19910323*F**{race}"


class TestRepetitions:
    """ISA11 splits an element into repetitions (X12.6); DMG05 repeats up to 10 in X220A1."""

    @ENGINES
    @pytest.mark.parametrize("count", [2, 10])
    def test_dmg05_repeated_within_its_limit_is_accepted(self, engine: Engine, count: int) -> None:
        result = check([*HEADER, *member(DMG=dmg("^".join([RACE] * count)))], engine)
        assert findings(result) == []
        assert result.groups[0].sets[0].ack_code is AckCode.ACCEPTED

    @ENGINES
    def test_eleven_repetitions_is_ik403_12_on_the_element(self, engine: Engine) -> None:
        result = check([*HEADER, *member(DMG=dmg("^".join([RACE] * 10 + ["A:RET:1"])))], engine)
        assert findings(result) == [
            ("IK304", "8", "DMG", 12, "2100A", None, None, None, None, None),
            ("IK403", "12", "DMG", 12, "2100A", 5, None, 11, None, "A:RET:1"),
        ]

    @ENGINES
    def test_a_repetition_of_an_element_that_does_not_repeat_is_ik403_12(
        self, engine: Engine
    ) -> None:
        result = check([*HEADER, *member(REF_17="REF*17*MEM1000001^MEM1000002")], engine)
        assert findings(result) == [
            ("IK304", "8", "REF", 7, "2000", None, None, None, None, None),
            ("IK403", "12", "REF", 7, "2000", 2, None, 2, "127", "MEM1000002"),
        ]

    @ENGINES
    def test_too_many_components_in_a_repetition_is_ik403_13(self, engine: Engine) -> None:
        race = f"{RACE}^C:RET:2186-5:EXTRA"
        result = check([*HEADER, *member(DMG=dmg(race))], engine)
        assert [(i.code, i.element_position, i.component_position, i.repetition_position,
                 i.bad_value) for i in element_findings(result)] == [
            ("13", 5, 4, 2, "C:RET:2186-5:EXTRA")
        ]  # fmt: skip

    @ENGINES
    def test_every_repetition_is_checked_as_the_element(self, engine: Engine) -> None:
        result = check([*HEADER, *member(DMG=dmg(f"{RACE}^Q:RET"))], engine)
        assert [(i.code, i.element_position, i.component_position, i.repetition_position,
                 i.element_ref, i.bad_value) for i in element_findings(result)] == [
            ("7", 5, 1, 2, "1109", "Q")
        ]  # fmt: skip

    @ENGINES
    def test_any_repetition_separator_the_isa_declares(self, engine: Engine) -> None:
        segments = [*HEADER, *member(DMG=dmg("{".join([RACE.replace(":", ">")] * 3)))]
        data = x12(Group(sets=[TS(body=segments)]), isa_kwargs={"rep": "{", "comp": ">"})
        assert findings(one(data, engine=engine)) == []

    @ENGINES
    def test_an_isa11_that_is_no_separator_splits_nothing(self, engine: Engine) -> None:
        # ISA11 'U' in 00501 is TA105 016; its letter is data, never a repetition separator.
        segments = [*HEADER, *member(NM1="NM1*IL*1*DUNN*URSULA*A***34*915830264")]
        data = x12(Group(sets=[TS(body=segments)]), isa_kwargs={"rep": "U"})
        result = one(data, engine=engine)
        assert [(i.family, i.code) for i in all_issues(result)] == [("TA105", "016")]


class TestComponentInASimpleElement:
    @ENGINES
    def test_is_ik403_13_with_the_value_as_sent(self, engine: Engine) -> None:
        # pyx12: IK403 6 ("invalid composite").
        result = check([*HEADER, *member(REF_17="REF*17*10000:00000")], engine)
        assert findings(result) == [
            ("IK304", "8", "REF", 7, "2000", None, None, None, None, None),
            ("IK403", "13", "REF", 7, "2000", 2, None, None, "127", "10000:00000"),
        ]

    @ENGINES
    def test_is_ik403_13_alone_not_also_a_finding_on_its_first_component(
        self, engine: Engine
    ) -> None:
        # The engine is handed the element's first component (to check the other elements):
        # what it finds there is about a value nobody sent — RD8 20260601 an invalid date,
        # NM109 9 too short.
        range_ = "DTP*007*RD8*20260601:20261231"
        nm1 = "NM1*IL*1*DOE*JANE*A***34*9:15830264"
        segs = [*HEADER, *member(NM1=nm1), *REPORTING[:4], range_, "LE*2700"]
        assert [f for f in findings(check(segs, engine)) if f[0] == "IK403"] == [
            ("IK403", "13", "NM1", 9, "2100A", 9, None, None, "67", "9:15830264"),
            ("IK403", "13", "DTP", 20, "2750", 3, None, None, "1251", "20260601:20261231"),
        ]

    def test_the_999_copies_the_separator_in_separators_of_its_own(self) -> None:
        # IK404 keeps the ':' as sent; the 999 then answers with another ISA16, so the copy
        # can neither split into components nor forge anything.
        result = check([*HEADER, *member(REF_17="REF*17*10000:00000")], Engine.FAST)
        ack = build_999(result, control_number=5, now=dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
        segments: list[Segment] = []
        for event in read_events([ack]):
            if isinstance(event, InterchangeStart):
                segments.append(event.isa)
            elif isinstance(event, Segment):
                segments.append(event)
        isa = segments[0]
        assert isa.element(16) not in ":~*^"
        (ik4,) = [s for s in segments if s.tag == "IK4"]
        assert ik4.elements == ("2", "127", "13", "10000:00000")
        (ctx,) = [s for s in segments if s.tag == "CTX"]
        assert ctx.element(1) == f"SUBSCRIBER NUMBER REF02{isa.element(16)}SUB1000001"


class TestNotUsedElements:
    """X231A1 I10 "implementation 'Not Used' data element present" (pyx12: 10, X231A1's
    "exclusion condition violated"; 5 for a composite)."""

    @ENGINES
    @pytest.mark.parametrize(
        ("segments", "where"),
        [
            pytest.param(
                member(INS="INS*Y*18*021*EC*A***AC******RICHMOND"),
                ("INS", 5, "2000", 14, None, "19", "RICHMOND"),
                id="INS14",
            ),
            pytest.param(
                member(HD="HD*021*AI*HLT**IND"),
                ("HD", 13, "2300", 2, None, "1203", "AI"),
                id="HD02",
            ),
            pytest.param(
                [*MEMBER[:7], "NM1*31*1*DOE", "N3*PO BOX 8", "N4*RICHMOND*VA*23220", *MEMBER[7:]],
                ("NM1", 12, "2100C", 3, None, "1035", "DOE"),
                id="2100C-NM103",
            ),
            pytest.param(
                member(INS="INS*Y*18*021*EC*A*C::AB**AC"),
                ("INS", 5, "2000", 6, 3, "1701", "AB"),
                id="INS06-3-component",
            ),
            pytest.param(
                member(REF_17="REF*17*MEM1000001**ZZ:1"),
                ("REF", 7, "2000", 4, None, None, "ZZ:1"),
                id="REF04-composite",
            ),
        ],
    )
    def test_present_is_ik403_i10(
        self, engine: Engine, segments: list[str], where: tuple[object, ...]
    ) -> None:
        tag, position, loop, element, component, ref, bad = where
        result = check([*HEADER, *segments], engine)
        ik4 = [f for f in findings(result) if f[0] == "IK403"]
        assert ik4 == [("IK403", "I10", tag, position, loop, element, component, None, ref, bad)]


class TestSyntaxNotes:
    """X12.6 syntax notes: IK403 2 names the element that is missing (pyx12: the note's first
    element, the one that is there); IK403 10 the second of the exclusive ones present."""

    @ENGINES
    @pytest.mark.parametrize(
        ("segments", "expected"),
        [
            pytest.param(
                member(NM1="NM1*IL*1*DOE*JANE*A***34"),
                ("2", "NM1", 9, "67"),
                id="P0809-NM1",
            ),
            pytest.param(
                member(INS="INS*Y*18*021*EC*A***AC***D8"),
                ("2", "INS", 12, "1251"),
                id="P1112-INS",
            ),
            pytest.param(
                [*MEMBER[:5], "PER*IP**HP*8045550120*EM", *MEMBER[5:]],
                ("2", "PER", 6, "364"),
                id="P0506-PER",
            ),
            pytest.param(
                member(N4="N4*RICHMOND*VA*23220*US***VA"),
                ("10", "N4", 7, "1715"),
                id="E0207-N4",
            ),
        ],
    )
    def test_the_ik4_points_at_the_element_to_fix(
        self, engine: Engine, segments: list[str], expected: tuple[object, ...]
    ) -> None:
        result = check([*HEADER, *segments], engine)
        assert [
            (i.code, i.segment_id, i.element_position, i.element_ref)
            for i in element_findings(result)
        ] == [expected]

    @ENGINES
    def test_c0704_on_n4_points_at_the_country(self, engine: Engine) -> None:
        # N407 (country subdivision) needs N404 (country): pyx12 names N407.
        result = check([*HEADER, *member(N4="N4*RICHMOND**23220****VA")], engine)
        assert [(i.code, i.segment_id, i.element_position) for i in element_findings(result)] == [
            ("2", "N4", 4)
        ]

    @ENGINES
    def test_a_note_on_an_element_the_guide_requires_is_not_said_twice(
        self, engine: Engine
    ) -> None:
        # BGN05 needs BGN04 (C0504), which X220A1 requires anyway: IK403 1 only.
        header = ["BGN*00*REF12345*20260412**ET***2", *HEADER[1:]]
        result = check([*header, *MEMBER], engine)
        assert [(i.code, i.segment_id, i.element_position) for i in element_findings(result)] == [
            ("1", "BGN", 4)
        ]


class TestSpacesAlone:
    """An element of spaces alone is no value (X12.6 suppresses trailing spaces): pyx12 took
    `REF*0F*   ` as a subscriber number and `BGN*00* *` as a reference."""

    @ENGINES
    @pytest.mark.parametrize(
        ("replace", "expected"),
        [
            # required: IK403 1, nothing copied
            ({"REF_0F": "REF*0F*     "}, [("REF", 6, 2, "127", "1")]),
            ({"REF_0F": "REF*0F* "}, [("REF", 6, 2, "127", "1")]),
            ({"NM1": "NM1*IL*1*   *JANE*A***34*915830264"}, [("NM1", 9, 3, "1035", "1")]),
            # NM109 with NM108: the syntax note's IK403 2, not also 6
            ({"NM1": "NM1*IL*1*DOE*JANE*A***34*         "}, [("NM1", 9, 9, "67", "2")]),
            # optional: IK403 6
            ({"NM1": "NM1*IL*1*DOE*  *A***34*915830264"}, [("NM1", 9, 4, "1036", "6")]),
        ],
        ids=["REF02 spaces", "REF02 one space", "NM103", "NM109", "NM104"],
    )
    def test_spaces_alone_are_no_value(
        self, engine: Engine, replace: dict[str, str], expected: list[tuple[object, ...]]
    ) -> None:
        result = check([*HEADER, *member(**replace)], engine)
        got = [
            (i.segment_id, i.segment_position, i.element_position, i.element_ref, i.code)
            for i in element_findings(result)
        ]
        assert got == expected

    @ENGINES
    def test_a_reference_of_one_space_is_missing(self, engine: Engine) -> None:
        result = check(["BGN*00* *20260412*021530*ET***2", *HEADER[1:], *MEMBER], engine)
        got = [(i.segment_id, i.element_position, i.code) for i in element_findings(result)]
        assert got == [("BGN", 2, "1")]


class TestLoopPairs:
    """X12.6: an LS opens a loop that its LE closes (pyx12's map has LE situational)."""

    @ENGINES
    def test_ls_without_le_before_the_next_member_is_ik304_3(self, engine: Engine) -> None:
        result = check([*HEADER, *MEMBER, *REPORTING, *MEMBER], engine)
        # reported where it is found missing: the next member's INS, position 21
        assert findings(result) == [("IK304", "3", "LE", 21, "2000", None, None, None, None, None)]
        assert result.groups[0].sets[0].ack_code is AckCode.REJECTED

    @ENGINES
    def test_ls_without_le_at_the_end_of_the_set_is_ik304_3(self, engine: Engine) -> None:
        result = check([*HEADER, *MEMBER, *REPORTING], engine)
        assert findings(result) == [("IK304", "3", "LE", 21, "2000", None, None, None, None, None)]

    @ENGINES
    def test_ls_closed_by_le_is_accepted(self, engine: Engine) -> None:
        result = check([*HEADER, *MEMBER, *REPORTING, "LE*2700", *MEMBER], engine)
        assert findings(result) == []

    @ENGINES
    def test_ls_and_le_are_segments_of_loop_2000(self, engine: Engine) -> None:
        # pyx12 names its wrapper loop: IK303 "LS_LOOP", which no guide has.
        result = check([*HEADER, *MEMBER, "LS*2701", *REPORTING[1:], "LE*2700"], engine)
        assert {i.loop_id for i in all_issues(result) if i.segment_id == "LS"} == {"2000"}


class TestSegmentOverMaximumUse:
    """pyx12 wraps the header and LS..LE in loops of its own (HEADER, LS_LOOP, repeat 1): a
    second BGN or a second LS in a member is "loop over maximum" (4) there; X220A1 has them as
    segments of maximum use 1, so X231A1's code is 5."""

    @ENGINES
    def test_a_second_bgn_is_ik304_5(self, engine: Engine) -> None:
        result = check([*HEADER[:1], *HEADER, *MEMBER], engine)
        assert findings(result) == [("IK304", "5", "BGN", 3, None, None, None, None, None, None)]

    @ENGINES
    def test_a_second_ls_in_a_member_is_ik304_5_in_loop_2000(self, engine: Engine) -> None:
        segs = [*HEADER, *MEMBER, *REPORTING, "LE*2700", *REPORTING, "LE*2700"]
        assert findings(check(segs, engine)) == [
            ("IK304", "5", "LS", 22, "2000", None, None, None, None, None)
        ]

    @ENGINES
    def test_a_guide_loop_over_its_maximum_is_still_ik304_4(self, engine: Engine) -> None:
        coverages = ["HD*021**HLT**IND", "DTP*348*D8*20260601"] * 100
        found = findings(check([*HEADER, *MEMBER[:8], *coverages], engine))
        assert [f[:5] for f in found] == [("IK304", "4", "HD", 211, "2300")]


# -- any legal delimiters ---------------------------------------------------------------------

# Separators X12 allows (one character, not a letter, digit or space) that the family's data
# does not use ('.' and '-' are in its amounts and dates): the usual ones, X12's information
# separators and a line feed.
SEPARATORS = [*"*~:^|!>{}\\/#$%&+;<=?@[]_`\"'()", "\x1c", "\x1d", "\x1e", "\x1f", "\n"]
RACES = [
    *("C:RET:2106-3", "B:RET:2054-5", "A:RET:2028-9", "I:RET:1002-5", "J:RET:2076-8"),
    *("H:RET:2135-2", "Z:RET:2039-6", "Z:RET:2040-4", "Z:RET:2047-9", "Z:RET:2036-2"),
]
SPOUSE = [
    "INS*N*01*021*EC*A",
    "REF*0F*SUB1000001",
    "REF*17*MEM1000002",
    "DTP*356*D8*20260601",
    "NM1*IL*1*DOE*JOHN*B***34*915830271",
    "DMG*D8*19890711*M",
    "HD*021**HLT**FAM",
    "DTP*348*D8*20260601",
    "REF*CE*48213VA004000701",
    "LS*2700",
    "LX*1",
    "N1*75*PRE AMT 1",
    "REF*9X*287.25",
    "DTP*007*RD8*20260601-20261231",
    "LE*2700",
]


def family_file(d: Delimiters, races: tuple[list[str], list[str]]) -> bytes:
    """A subscriber and spouse, each with DMG05 repeated as drawn, in delimiters `d` (the
    body is written in * : ^ ~ and translated at once, so any permutation is safe)."""
    subscriber = [s if not s.startswith("DMG") else f"{s}**{'^'.join(races[0])}" for s in MEMBER]
    spouse = [s if not s.startswith("DMG") else f"{s}**{'^'.join(races[1])}" for s in SPOUSE]
    body = TS(body=[*HEADER, *subscriber, *spouse]).segments()
    group = [
        "GS*BE*VA0FFM*EDI834GATEWAY*20260421*0221*101*X*005010X220A1",
        *body,
        "GE*1*101",
        "IEA*1*000000101",
    ]
    table = str.maketrans({"*": d.element, ":": d.component, "^": d.repetition})
    head = isa(sep=d.element, rep=d.repetition, comp=d.component)
    text = "".join(s + d.segment for s in [head, *(g.translate(table) for g in group)])
    return text.encode("latin-1")


DELIMITERS = st.lists(st.sampled_from(SEPARATORS), min_size=4, max_size=4, unique=True).map(
    lambda c: Delimiters(element=c[0], component=c[1], repetition=c[2], segment=c[3])
)
REPEATED = st.lists(st.sampled_from(RACES), min_size=1, max_size=10)


class TestRepeatedDmg05InAnyDelimiters:
    """Hypothesis (issue 16): whatever legal delimiters the ISA declares, repetition separator
    included, a valid family with DMG05 repeated up to ten times is accepted — and eleven
    times is IK403 12 — on both engines."""

    @ENGINES
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(d=DELIMITERS, subscriber=REPEATED, spouse=REPEATED)
    def test_accepted(
        self, engine: Engine, d: Delimiters, subscriber: list[str], spouse: list[str]
    ) -> None:
        result = one(family_file(d, (subscriber, spouse)), engine=engine)
        assert findings(result) == [], d
        assert result.groups[0].sets[0].ack_code is AckCode.ACCEPTED
        assert result.groups[0].sets[0].member_count == 2

    @ENGINES
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(d=DELIMITERS)
    def test_eleven_is_too_many(self, engine: Engine, d: Delimiters) -> None:
        result = one(family_file(d, ([*RACES, "Z:RET:2034-7"], RACES[:1])), engine=engine)
        assert [(i.code, i.segment_id, i.element_position, i.repetition_position)
                for i in element_findings(result)] == [("12", "DMG", 5, 11)]  # fmt: skip
