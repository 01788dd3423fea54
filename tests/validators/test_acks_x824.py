from __future__ import annotations

import datetime as dt
import importlib.resources
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cache

import pytest
import pyx12.errors
import pyx12.map_if
import pyx12.params
import pyx12.segment
import pyx12.validation
import pyx12.x12n_document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers import (
    Delimiters,
    GroupEnd,
    GroupStart,
    InterchangeEnd,
    InterchangeStart,
    Segment,
    StraySegment,
    TransactionSetEnd,
    TransactionSetStart,
    read_events,
    render_segments,
)
from validators.acks.x824 import (
    ACK_VERSION,
    ActionCode,
    ApplicationAcknowledgmentCode,
    ApplicationErrorConditionCode,
    BusinessError,
    SetAdvice,
    build_824,
    clean_text,
)
from validators.control import check_ge, check_iea, check_isa, check_se

NOW = dt.datetime(2026, 3, 4, 5, 6, tzinfo=dt.UTC)
US = ("ZZ", "EDI834GATEWAY")
THEM = ("ZZ", "VA0FFM")


def advice(**kwargs: object) -> SetAdvice:
    values: dict[str, object] = {
        "st01": "834",
        "st02": "0001",
        "gs06": "101",
        "gs01": "BE",
        "gs08": "005010X220A1",
        "gs04": "20260421",
        "gs05": "0221",
        "bgn02": "REF12345",
        "action": "TP",
        "errors": (
            BusinessError(
                code="024",
                message="Duplicate enrollment for an active member",
                segment_id="INS",
                segment_position=5,
                loop_id="2000",
                element_position=3,
                bad_value="021",
            ),
        ),
    }
    values.update(kwargs)
    return SetAdvice(**values)  # type: ignore[arg-type]


def build(advices: list[SetAdvice] | None = None, **kwargs: object) -> bytes:
    options: dict[str, object] = {
        "control_number": 42,
        "now": NOW,
        "sender": US,
        "receiver": THEM,
    }
    options.update(kwargs)
    return build_824(advices if advices is not None else [advice()], **options)  # type: ignore[arg-type]


@dataclass
class ParsedSet:
    st: Segment
    body: list[Segment] = field(default_factory=list)
    se: Segment | None = None
    segment_count: int = 0


@dataclass
class Parsed:
    """The repo's own reader's view of an interchange."""

    isa: Segment
    delimiters: Delimiters
    fixed_width: bool
    gs: Segment | None = None
    sets: list[ParsedSet] = field(default_factory=list)
    ge: Segment | None = None
    ge_set_count: int = 0
    iea: Segment | None = None
    stray: list[Segment] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)


def parse(data: bytes) -> Parsed:
    events = list(read_events([data]))
    start = events[0]
    assert isinstance(start, InterchangeStart)
    out = Parsed(isa=start.isa, delimiters=start.delimiters, fixed_width=start.fixed_width)
    out.segments.append(start.isa)
    for e in events[1:]:
        if isinstance(e, GroupStart):
            out.gs = e.gs
            out.segments.append(e.gs)
        elif isinstance(e, TransactionSetStart):
            out.sets.append(ParsedSet(st=e.st))
            out.segments.append(e.st)
        elif isinstance(e, Segment):
            out.sets[-1].body.append(e)
            out.segments.append(e)
        elif isinstance(e, TransactionSetEnd):
            out.sets[-1].se, out.sets[-1].segment_count = e.se, e.segment_count
            assert e.se is not None
            out.segments.append(e.se)
        elif isinstance(e, GroupEnd):
            out.ge, out.ge_set_count = e.ge, e.transaction_set_count
            assert e.ge is not None
            out.segments.append(e.ge)
        elif isinstance(e, InterchangeEnd):
            out.iea = e.iea
            assert e.iea is not None
            out.segments.append(e.iea)
        elif isinstance(e, StraySegment):
            out.stray.append(e.segment)
        else:  # pragma: no cover - the reader yields nothing else for a well-formed interchange
            raise AssertionError(f"unexpected event {e!r}")
    return out


def tagged(parsed_set: ParsedSet, tag: str) -> list[Segment]:
    return [s for s in parsed_set.body if s.tag == tag]


class TestBuild824:
    def test_envelope_counts_and_control_numbers(self) -> None:
        first = advice()
        second = advice(
            st02="0002",
            action="TR",
            errors=(
                BusinessError(code="007", message="Term for unknown member"),
                BusinessError(code="006", message="Duplicate", segment_id="REF"),
            ),
        )
        clean = advice(st02="0003", action="TA", errors=())
        p = parse(build([first, second, clean], control_number=424242))
        assert p.stray == []
        assert p.isa.element(13) == "000424242"
        assert p.gs is not None and p.gs.element(6) == "424242"
        assert (p.gs.element(1), p.gs.element(8)) == ("AG", ACK_VERSION)
        assert [s.st.elements for s in p.sets] == [
            ("824", "0001", ACK_VERSION),
            ("824", "0002", ACK_VERSION),
            ("824", "0003", ACK_VERSION),
        ]
        for s in p.sets:
            assert s.se is not None
            # SE01 counts ST..SE; the reader counts them independently.
            assert s.se.element(1) == str(s.segment_count)
            assert s.se.element(2) == s.st.element(2)
            assert check_se(s.st, s.se, s.segment_count) == []
        assert [len(tagged(s, "OTI")) for s in p.sets] == [1, 1, 1]
        assert [len(tagged(s, "TED")) for s in p.sets] == [1, 2, 0]
        assert p.ge is not None and p.ge.elements == ("3", "424242")
        assert check_ge(p.gs, p.ge, p.ge_set_count) == []
        assert p.iea is not None and p.iea.elements == ("1", "000424242")
        assert check_iea(p.isa, p.iea, 1) == []

    def test_isa_is_fixed_width_and_addressed_back(self) -> None:
        data = build(usage="T")
        p = parse(data)
        assert p.fixed_width and len(data.split(b"~")[0]) + 1 == 106
        e = p.isa.element
        assert (e(5), e(6)) == ("ZZ", "EDI834GATEWAY  ")
        assert (e(7), e(8)) == ("ZZ", "VA0FFM         ")
        assert (e(9), e(10), e(11), e(12), e(14), e(15), e(16)) == (
            "260304",
            "0506",
            "^",
            "00501",
            "0",
            "T",
            ":",
        )
        assert check_isa(p.isa, p.delimiters, fixed_width=p.fixed_width) == []

    def test_transaction_set_follows_the_x186_loops(self) -> None:
        p = parse(build([advice()]))
        (s,) = p.sets
        assert [x.tag for x in s.body] == ["BGN", "N1", "N1", "OTI", "TED"]
        bgn, submitter, receiver = s.body[:3]
        assert bgn.elements == (
            "11",
            "0000000420001",
            "20260304",
            "0506",
            "",
            "REF12345",
            "",
            "U",
        )
        assert submitter.elements == ("41", "EDI834GATEWAY", "46", "EDI834GATEWAY")
        assert receiver.elements == ("40", "VA0FFM", "46", "VA0FFM")

    def test_oti_identifies_the_original_set(self) -> None:
        p = parse(build([advice(st02="0007", gs06="5150", bgn02="FILE-77", action="TE")]))
        (oti,) = tagged(p.sets[0], "OTI")
        assert oti.elements == (
            "TE",
            "TN",
            "FILE-77",
            "",
            "",
            "20260421",
            "0221",
            "5150",
            "0007",
            "834",
            "005010X220A1",
        )

    def test_one_ted_per_error_with_positions(self) -> None:
        errors = (
            BusinessError(
                code="024",
                message="Duplicate enrollment for an active member",
                segment_id="INS",
                segment_position=5,
                loop_id="2000",
                element_position=3,
                bad_value="021",
            ),
            BusinessError(code="848", message="Term for unknown member", segment_id="REF"),
            BusinessError(code="012", message="", segment_position=40),
        )
        p = parse(build([advice(errors=errors)]))
        teds = tagged(p.sets[0], "TED")
        assert [t.elements for t in teds] == [
            # TED05 is C030 (element position); TED06 C999 unused; no loop id in a 005010 TED.
            ("024", "Duplicate enrollment for an active member", "INS", "5", "3", "", "021"),
            ("848", "Term for unknown member", "REF"),
            ("012", "", "", "40"),
        ]
        assert all("2000" not in t.elements for t in teds)

    @pytest.mark.parametrize(
        ("action", "bgn08"),
        [("TA", "WQ"), ("TE", "WQ"), ("TP", "U"), ("TR", "U")],
    )
    def test_bgn08_says_whether_anything_must_be_sent_again(self, action: str, bgn08: str) -> None:
        p = parse(build([advice(action=action)]))
        assert tagged(p.sets[0], "BGN")[0].element(8) == bgn08
        assert tagged(p.sets[0], "OTI")[0].element(1) == action

    def test_free_text_never_carries_delimiters(self) -> None:
        nasty = "A*B~C:D^E\r\nF\tG é ☃ " + "x" * 80
        p = parse(build([advice(errors=(BusinessError("024", nasty, bad_value="1*2~3^4:5"),))]))
        (ted,) = tagged(p.sets[0], "TED")
        assert ted.element(2) == ("A B C D E F G " + "x" * 80)[:60]
        assert ted.element(7) == "1 2 3 4 5"
        assert len(ted.elements) == 7  # nothing spilled into extra elements
        assert [s.tag for s in p.sets[0].body] == ["BGN", "N1", "N1", "OTI", "TED"]

    def test_values_that_do_not_fit_their_element_are_left_out(self) -> None:
        errors = (
            BusinessError("024", "m", segment_id="in s", segment_position=0, element_position=100),
            BusinessError("024", "m", segment_id="TOOLONG", segment_position=1_000_000),
            BusinessError("024", "   ", bad_value=" \x00 "),
        )
        p = parse(build([advice(errors=errors, bgn02="*~*", gs04="2026-04-21", gs05="2:21")]))
        assert [t.elements for t in tagged(p.sets[0], "TED")] == [
            ("024", "m"),
            ("024", "m"),
            ("024",),
        ]
        (oti,) = tagged(p.sets[0], "OTI")
        # OTI03 is mandatory: NA, as in the guide's own example; no group date, so no time.
        assert oti.elements[:7] == ("TP", "TN", "NA", "", "", "", "")
        assert tagged(p.sets[0], "BGN")[0].element(6) == ""

    def test_answers_in_any_legal_delimiters(self) -> None:
        d = Delimiters(element="|", repetition="!", component=">", segment="'")
        data = build(delimiters=d)
        assert data.startswith(b"ISA|") and b"'ST|824|0001|005010X186A1'" in data
        p = parse(data)
        assert p.delimiters == d and p.isa.element(11) == "!" and p.isa.element(16) == ">"
        assert tagged(p.sets[0], "TED")[0].element(1) == "024"

    def test_group_codes_and_party_names(self) -> None:
        p = parse(
            build(
                gs02="QHP12345",
                gs03="VA0",
                submitter_name="Blue Ridge Health*Plan",
                receiver_name="Virginia Exchange",
            )
        )
        assert p.gs is not None and (p.gs.element(2), p.gs.element(3)) == ("QHP12345", "VA0")
        n1 = tagged(p.sets[0], "N1")
        assert [x.element(2) for x in n1] == ["Blue Ridge Health Plan", "Virginia Exchange"]

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"now": NOW.replace(tzinfo=None)}, "timezone"),
            ({"control_number": 0}, "control_number"),
            ({"control_number": 1_000_000_000}, "control_number"),
            ({"usage": "X"}, "usage"),
            ({"sender": ("ZZ", "US*")}, "sender id"),
            ({"receiver": ("ZZ", " ")}, "receiver id"),
            ({"gs03": "V~A"}, "gs03"),
            ({"delimiters": Delimiters(element="*", component="*")}, "delimiters"),
        ],
    )
    def test_caller_mistakes_raise(self, kwargs: dict[str, object], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            build(**kwargs)

    @pytest.mark.parametrize(
        ("advices", "message"),
        [
            ([], "at least one"),
            ([advice(action="TC")], "OTI01"),
            ([advice(errors=(BusinessError(code="IID", message="unverified"),))], "TED01"),
        ],
    )
    def test_unknown_codes_and_empty_input_raise(
        self, advices: list[SetAdvice], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            build(advices)

    def test_builder_is_deterministic(self) -> None:
        assert build() == build()
        assert build(control_number=43) != build()

    def test_code_lists(self) -> None:
        assert {c.value for c in ApplicationAcknowledgmentCode} == {"TA", "TE", "TP", "TR"}
        assert {c.value for c in ActionCode} == {"WQ", "U"}
        assert "024" in {c.value for c in ApplicationErrorConditionCode}


# --- Independent checks: pyx12's control map and its 005010 data element dictionary ----------

# Element reference numbers per segment, from the X12 005010 segment directory.
SEGMENT_ELEMENTS: dict[str, tuple[str, ...]] = {
    "ST": ("143", "329", "1705"),
    "BGN": ("353", "127", "373", "337", "623", "127", "640", "306", "786"),
    "N1": ("98", "93", "66", "67", "706", "98"),
    "OTI": ("110", "128", "127", "142", "124", "373", "337", "28", "329", "143", "480"),
    "TED": ("647", "3", "721", "719", "722", "725", "724", "961"),  # 05/06: C030-01, C999-01
    "SE": ("96", "329"),
}
# Elements pyx12's dictionary lacks (no HIPAA map of pyx12 uses them), from the X12 dictionary.
MISSING_FROM_PYX12 = {"110": ("ID", 1, 2), "647": ("ID", 1, 3), "3": ("AN", 1, 60)}


@cache
def data_elements() -> dict[str, tuple[str, int, int]]:
    text = importlib.resources.files("pyx12.map").joinpath("dataele.xml").read_text("utf-8")
    table = {
        node.attrib["ele_num"]: (
            node.attrib["data_type"],
            int(node.attrib["min_len"]),
            int(node.attrib["max_len"]),
        )
        for node in ET.fromstring(text).iter("data_ele")  # noqa: S314 - pyx12's packaged file
    }
    return {**MISSING_FROM_PYX12, **table}


@cache
def control_map() -> object:
    return pyx12.map_if.load_map_file("x12.control.00501.xml", pyx12.params.ParamsBase())


def raw_segments(data: bytes, d: Delimiters) -> list[str]:
    return [s for s in data.decode("latin-1").split(d.segment) if s]


def dictionary_problems(data: bytes, d: Delimiters) -> list[str]:
    """Every element of every 824 segment against pyx12's type rules and the dictionary's
    lengths (extended character set, 00501)."""
    problems: list[str] = []
    for raw in raw_segments(data, d):
        tag, *elements = raw.split(d.element)
        refs = SEGMENT_ELEMENTS.get(tag)
        if refs is None:
            continue
        if len(elements) > len(refs):
            problems.append(f"{tag} has {len(elements)} elements")
            continue
        for n, (value, ref) in enumerate(zip(elements, refs, strict=False), start=1):
            if value == "":
                continue
            data_type, low, high = data_elements()[ref]
            if not low <= len(value) <= high:
                problems.append(f"{tag}{n:02d} {value!r}: length outside {low}/{high}")
            if not pyx12.validation.IsValidDataType(value, data_type, "E", "00501"):
                problems.append(f"{tag}{n:02d} {value!r}: not a valid {data_type}")
            if data_type == "AN" and value != value.strip():
                problems.append(f"{tag}{n:02d} {value!r}: leading or trailing spaces")
    return problems


class TestAgainstPyx12:
    def test_pyx12_has_no_824_map(self) -> None:
        # So the 824 body cannot be walked by pyx12; if a later pyx12 ships 005010X186A1,
        # this fails: replace the dictionary checks below with a full x12n_document run.
        with pytest.raises(pyx12.errors.EngineError, match="Map not found"):
            pyx12.x12n_document.x12n_document(
                pyx12.params.ParamsBase(),
                io.StringIO(build().decode("latin-1")),
                io.StringIO(),
                None,
            )

    def test_envelope_passes_the_00501_control_map(self) -> None:
        d = Delimiters()
        paths = {
            "ISA": "/ISA_LOOP/ISA",
            "GS": "/ISA_LOOP/GS_LOOP/GS",
            "GE": "/ISA_LOOP/GS_LOOP/GE",
            "IEA": "/ISA_LOOP/IEA",
        }
        found: dict[str, list[tuple[str, str]]] = {}
        for raw in raw_segments(build([advice(), advice(st02="0002")]), d):
            tag = raw.split(d.element)[0]
            if tag in paths:
                node = control_map().getnodebypath(paths[tag])  # type: ignore[attr-defined]
                seg = pyx12.segment.Segment(raw, d.segment, d.element, d.component, d.repetition)
                _ok, errors = node.is_valid_errors(seg)
                found[tag] = [(e.err_cde, e.err_val) for e in errors]
        # pyx12's GS lists only the HIPAA groups and guides it ships maps for: AG and X186A1
        # are the only findings, both code values outside that list.
        assert found == {
            "ISA": [],
            "GS": [("7", "AG"), ("7", ACK_VERSION)],
            "GE": [],
            "IEA": [],
        }

    def test_every_element_fits_the_005010_dictionary(self) -> None:
        errors = (
            BusinessError("024", "x" * 200, "INS", 999_999, "2000", 99, "y" * 300),
            BusinessError("006", "Duplicate enrollment", "REF", 1, None, 1, "S"),
        )
        data = build([advice(errors=errors), advice(st02="123456789", errors=())])
        assert dictionary_problems(data, Delimiters()) == []


# --- Properties ---------------------------------------------------------------------------------

DELIMITER_POOL = "*~:^|!>'`\"#$%&()+,-./;<=?@[]\\{}_"


@st.composite
def delimiters(draw: st.DrawFn) -> Delimiters:
    element, repetition, component, segment = draw(
        st.lists(st.sampled_from(DELIMITER_POOL), min_size=4, max_size=4, unique=True)
    )
    return Delimiters(element=element, repetition=repetition, component=component, segment=segment)


TEXT = st.text(
    alphabet=st.one_of(st.sampled_from(DELIMITER_POOL + " \r\n\t\x00"), st.characters()),
    max_size=150,
)
ERRORS = st.builds(
    BusinessError,
    code=st.sampled_from([c.value for c in ApplicationErrorConditionCode]),
    message=TEXT,
    segment_id=st.one_of(st.none(), TEXT, st.sampled_from(["INS", "REF", "DTP", "HD"])),
    segment_position=st.one_of(st.none(), st.integers(-5, 2_000_000)),
    loop_id=st.one_of(st.none(), TEXT),
    element_position=st.one_of(st.none(), st.integers(-5, 200)),
    bad_value=st.one_of(st.none(), TEXT),
)
ADVICES = st.lists(
    st.builds(
        SetAdvice,
        st01=st.just("834"),
        st02=st.from_regex(r"\A[0-9]{4,9}\Z"),
        gs06=st.from_regex(r"\A[1-9][0-9]{0,8}\Z"),
        gs01=st.just("BE"),
        gs08=st.just("005010X220A1"),
        gs04=st.one_of(st.just("20260421"), TEXT),
        gs05=st.one_of(st.just("0221"), TEXT),
        bgn02=TEXT,
        action=st.sampled_from([c.value for c in ApplicationAcknowledgmentCode]),
        errors=st.lists(ERRORS, max_size=5).map(tuple),
    ),
    min_size=1,
    max_size=4,
)


class TestProperties:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(advices=ADVICES, d=delimiters(), control=st.integers(1, 999_999_999))
    def test_arbitrary_text_never_breaks_the_envelope(
        self, advices: list[SetAdvice], d: Delimiters, control: int
    ) -> None:
        data = build(advices, delimiters=d, control_number=control)
        assert data.isascii()
        p = parse(data)
        assert p.stray == [] and p.delimiters == d
        assert p.isa.element(13) == f"{control:09d}"
        assert p.gs is not None and p.ge is not None and p.iea is not None
        assert check_isa(p.isa, d, fixed_width=p.fixed_width) == []
        assert check_ge(p.gs, p.ge, p.ge_set_count) == []
        assert check_iea(p.isa, p.iea, 1) == []
        assert len(p.sets) == len(advices)
        for n, (parsed, original) in enumerate(zip(p.sets, advices, strict=True), start=1):
            assert parsed.st.element(2) == f"{n:04d}"
            assert check_se(parsed.st, parsed.se, parsed.segment_count) == []
            teds = tagged(parsed, "TED")
            assert [t.element(1) for t in teds] == [e.code for e in original.errors]
            for ted, error in zip(teds, original.errors, strict=True):
                assert len(ted.elements) <= 7
                assert ted.element(2) == clean_text(error.message, d, 60)
                assert ted.element(7) == clean_text(error.bad_value or "", d, 99)
            assert [s.tag for s in parsed.body] == [
                "BGN",
                "N1",
                "N1",
                "OTI",
                *["TED"] * len(original.errors),
            ]
        assert dictionary_problems(data, d) == []
        # Parse round trip: the reader's segments, written again, are the same bytes.
        assert render_segments(p.segments, d) == data

    @given(value=TEXT, d=delimiters(), limit=st.integers(1, 99))
    def test_clean_text_is_x12_safe(self, value: str, d: Delimiters, limit: int) -> None:
        cleaned = clean_text(value, d, limit)
        assert len(cleaned) <= limit
        assert cleaned == cleaned.strip() and "  " not in cleaned
        assert all(" " <= ch <= "~" for ch in cleaned)
        assert not {d.element, d.component, d.segment, d.repetition} & set(cleaned)
        assert re.fullmatch(r"[^\r\n\t]*", cleaned)
