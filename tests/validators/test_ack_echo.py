"""Our acks cannot be made to carry forged segments: whatever a received ISA or GS holds, every
TA1 and 999 we write parses back, with our own reader, into exactly the segments we meant (issue
16). Values are echoed only when valid for their element (`validators.acks.echo`)."""

from __future__ import annotations

import datetime as dt
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers import InterchangeStart, Segment, StraySegment, read_events
from parsers.delimiters import DEFAULT_DELIMITERS
from tests.x12build import HEADER, MEMBER
from validators.acks import build_999, build_ta1
from validators.acks.echo import an, clean, code, digits, fixed
from validators.interchange import InterchangeResult, ValidationOptions, validate_stream

NOW = dt.datetime(2026, 3, 4, 5, 6, tzinfo=dt.UTC)
D = DEFAULT_DELIMITERS
# What a 999 is, segment by segment (X231A1): anything else is an injected segment.
SHAPE_999 = re.compile(r"ISA GS (ST AK1 (AK2 (IK3 (CTX )?(IK4 )*)*IK5 )*AK9 SE )+GE IEA ")
MAX_ELEMENTS = {"ISA": 16, "GS": 8, "ST": 3, "AK1": 3, "AK2": 3, "IK3": 4, "CTX": 1, "IK4": 4,
                "IK5": 6, "AK9": 9, "SE": 2, "GE": 2, "IEA": 2, "TA1": 5}  # fmt: skip


COMPOSITES = {("CTX", 1), ("IK4", 1)}  # C998 context identification, C030 position in segment


def parsed(data: bytes) -> list[Segment]:
    """Every segment of an ack as our reader sees it, envelope included, in order."""
    out: list[Segment] = []
    for e in read_events([data]):
        if isinstance(e, InterchangeStart):
            out.append(e.isa)
        elif isinstance(e, Segment | StraySegment):
            out.append(e if isinstance(e, Segment) else e.segment)
        for name in ("gs", "st", "se", "ge", "iea"):
            seg = getattr(e, name, None)
            if isinstance(seg, Segment):
                out.append(seg)
    return out


def assert_well_formed(ack: bytes, kind: str, groups: int) -> None:
    segments = parsed(ack)
    tags = " ".join(s.tag for s in segments) + " "
    if kind == "ta1":
        assert tags == "ISA TA1 IEA ", tags
    else:
        assert SHAPE_999.fullmatch(tags), tags
        assert tags.count("AK1 ") == groups
    isa = segments[0]
    repetition, component = isa.element(11), isa.element(16)
    for s in segments:
        assert len(s.elements) <= MAX_ELEMENTS[s.tag], (s.tag, s.elements)
        if s.tag == "ISA":
            continue
        for n, value in enumerate(s.elements, start=1):
            assert repetition not in value, (s.tag, n, value)  # no element repeats in these
            if (s.tag, n) not in COMPOSITES:
                assert component not in value, (s.tag, n, value)  # no injected component
    if kind == "999":
        assert_counts_agree(segments)
    ta1 = [s for s in segments if s.tag == "TA1"]
    if ta1:
        assert re.fullmatch(r"[0-9]{9}", ta1[0].element(1)), ta1[0].elements
        assert re.fullmatch(r"[0-9]{6}", ta1[0].element(2))
        assert re.fullmatch(r"[0-9]{4}", ta1[0].element(3))


def assert_counts_agree(segments: list[Segment]) -> None:
    """Each 999 set's AK9 agrees with its own IK5s (X12-REFERENCE §3): AK903 the AK2s, AK904
    the IK5s A or E; AK901 R on any AK905, else A / E / P / R from the counts."""
    ik5: list[str] = []
    for s in segments:
        if s.tag == "AK1":
            ik5 = []
        elif s.tag == "IK5":
            ik5.append(s.element(1))
        elif s.tag == "AK9":
            accepted = sum(code in ("A", "E") for code in ik5)
            assert (s.element(3), s.element(4)) == (str(len(ik5)), str(accepted)), s.elements
            if len(s.elements) > 4 or accepted == 0:
                assert s.element(1) == "R", s.elements
            elif accepted < len(ik5):
                assert s.element(1) == "P", s.elements
            else:
                assert s.element(1) in ("A", "E"), s.elements


def interchange(isa_fields: list[str], gs_fields: list[str], st02: str) -> bytes:
    widths = (2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1)
    padded = [f[:w].ljust(w) for f, w in zip(isa_fields, widths, strict=True)]
    isa = "ISA*" + "*".join(padded) + "*:"
    gs = "GS*" + "*".join(gs_fields)
    body = [f"ST*834*{st02}*005010X220A1", *HEADER, *MEMBER]
    segs = [isa, gs, *body, f"SE*{len(body) + 1}*{st02}", "GE*1*1", "IEA*1*000000001"]
    return ("~".join(segs) + "~").encode("latin-1")


# Printable ASCII, with our delimiters (and digits and letters) drawn often.
FIELD = st.text(
    alphabet=st.sampled_from(list("*~:^0123ABZ "))
    | st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    max_size=16,
)
REAL_ISA = ["00", "", "00", "", "ZZ", "VA0FFM", "ZZ", "EDI834GATEWAY", "260421", "0221", "^",
            "00501", "000000101", "1", "P"]  # fmt: skip
REAL_GS = ["BE", "VA0", "EDI834GATEWAY", "20260421", "0221", "101", "X", "005010X220A1"]


class TestForgedEchoes:
    def test_an_isa13_holding_a_ta1_does_not_become_a_second_ta1(self) -> None:
        isa = REAL_ISA.copy()
        isa[12] = "1~TA1*X*Y"
        (result,) = list(validate_stream([interchange(isa, REAL_GS, "0001")]))
        assert isinstance(result, InterchangeResult)
        ack = build_ta1(result, control_number=7, now=NOW, sender=("ZZ", "EDI834GATEWAY"))
        assert ack.count(b"TA1*") == 1
        assert_well_formed(ack, "ta1", 0)

    def test_an_isa05_of_delimiters_does_not_break_our_isa(self) -> None:
        isa = REAL_ISA.copy()
        isa[4] = ":~"
        results = list(validate_stream([interchange(isa, REAL_GS, "0001")]))
        for result in results:
            if isinstance(result, InterchangeResult):
                ack = build_ta1(result, control_number=7, now=NOW, sender=("ZZ", "EDI834GATEWAY"))
                assert_well_formed(ack, "ta1", 0)
                assert parsed(ack)[0].element(7) == "ZZ"  # a neutral qualifier, not ':~'

    def test_gs_and_st_values_with_delimiters_are_not_echoed(self) -> None:
        gs = REAL_GS.copy()
        gs[7] = "00501~ZZ*1"
        (result,) = list(validate_stream([interchange(REAL_ISA, gs, "00~1")]))
        assert isinstance(result, InterchangeResult)
        ack = build_999(result, control_number=8, now=NOW, sender=("ZZ", "EDI834GATEWAY"))
        assert_well_formed(ack, "999", len(result.groups))


class TestEcho:
    def test_values_valid_for_their_element_are_echoed_as_received(self) -> None:
        assert digits("000000101", min_len=9, max_len=9, neutral="0") == "000000101"
        assert code("BE", min_len=2, max_len=2, neutral="XX") == "BE"
        assert an("0001", D, min_len=4, max_len=9, neutral="x") == "0001"
        assert fixed("VA0FFM", D, width=15, neutral="U") == "VA0FFM         "

    def test_anything_else_is_neutral(self) -> None:
        assert digits("A00B71C02", min_len=9, max_len=9, neutral="000000000") == "000000000"
        assert digits("²²", min_len=1, max_len=9, neutral="0") == "0"
        assert code("b~", min_len=2, max_len=2, neutral="ZZ") == "ZZ"
        assert an("00~1", D, min_len=4, max_len=9, neutral="0000") == "0000"
        assert an("é", D, max_len=9, neutral="") == ""
        assert fixed("A*B", D, width=15, neutral="UNKNOWN") == "UNKNOWN        "
        assert not clean("a\x00", D) and clean("A B-1", D)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    isa=st.lists(FIELD, min_size=15, max_size=15),
    gs=st.lists(FIELD, min_size=8, max_size=8),
    st02=FIELD,
    which=st.integers(0, 23),
)
def test_any_received_envelope_gets_acks_that_parse_back_as_meant(isa, gs, st02, which) -> None:
    # Mostly-real envelopes with one or a few arbitrary fields reach deeper than all-random ones.
    real_isa, real_gs = REAL_ISA.copy(), REAL_GS.copy()
    if which < 15:
        real_isa[which] = isa[which]
    elif which < 23:
        real_gs[which - 15] = gs[which - 15]
    else:
        real_isa, real_gs = isa, gs
    data = interchange(real_isa, real_gs, st02 or "0001")
    for result in validate_stream([data], ValidationOptions()):
        if not isinstance(result, InterchangeResult):
            continue
        ta1 = build_ta1(result, control_number=7, now=NOW, sender=("ZZ", "EDI834GATEWAY"))
        assert_well_formed(ta1, "ta1", 0)
        if result.groups:
            x999 = build_999(result, control_number=8, now=NOW, sender=("ZZ", "EDI834GATEWAY"))
            assert_well_formed(x999, "999", len(result.groups))


# Printable ASCII but the sender's element separator and terminator (they would end the value).
VALUE = st.text(
    alphabet=st.sampled_from(list(":^>|!{}\\ 0A"))
    | st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    min_size=1,
    max_size=30,
).filter(lambda v: "*" not in v and "~" not in v)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUE)
def test_a_bad_value_is_copied_as_sent_and_cannot_split_the_999(value: str) -> None:
    """Issue 16: an IK404 is a copy of the bad element as sent — its ':' or '^' included — and
    the 999 still parses back as meant: it answers in separators the copies do not hold."""
    body = [*HEADER, *(f"REF*17*{value}" if s.startswith("REF*17") else s for s in MEMBER)]
    data = interchange(REAL_ISA, REAL_GS, "0001").replace(
        "~".join([*HEADER, *MEMBER]).encode(), "~".join(body).encode("latin-1")
    )
    (result,) = validate_stream([data], ValidationOptions())
    assert isinstance(result, InterchangeResult)
    x999 = build_999(result, control_number=8, now=NOW, sender=("ZZ", "EDI834GATEWAY"))
    assert_well_formed(x999, "999", 1)
    copies = [s.element(4) for s in parsed(x999) if s.tag == "IK4"]
    meant = [
        # not copied: a value of spaces, or one ending in a space (X12.6 suppresses it)
        i.bad_value[:99]
        if i.code != "1"
        and i.bad_value
        and i.bad_value[:99].strip()
        and not i.bad_value[:99].endswith(" ")
        else ""
        for i in result.groups[0].sets[0].issues
        if i.family == "IK403"
    ]
    assert copies == meant
