from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers import (
    NEED_DATA,
    Delimiters,
    EnvelopeReader,
    GroupEnd,
    InterchangeEnd,
    InterchangeStart,
    OversizedSegment,
    Segment,
    SegmentReader,
    StraySegment,
    TransactionSetEnd,
    TransactionSetStart,
    Unusable,
    UnusableReason,
    read_events,
    render_segments,
)
from parsers.envelope import AT_END, TRANSITIONS, State, transition
from parsers.tokenizer import BOM
from parsers.writer import segment
from tests.conftest import peer_params, sample_files
from tests.x12build import TS, Group, x12


def events_of(data: bytes, chunk: int | None = None, **kw: int) -> list[object]:
    if chunk is None:
        return list(read_events([data], **kw))
    return list(read_events([data[i : i + chunk] for i in range(0, len(data), chunk)], **kw))


def kinds(events: list[object]) -> list[str]:
    return [type(e).__name__ for e in events]


class TestSegmentReader:
    def test_detects_delimiters_from_isa_offsets(self) -> None:
        data = x12(isa_kwargs={"rep": "!", "comp": ">"}, term="'", sep="|")
        reader = SegmentReader()
        reader.feed(data)
        reader.feed(b"")
        token = reader.next_token()
        assert reader.delimiters == Delimiters(
            element="|", repetition="!", component=">", segment="'"
        )
        assert token is not None and token is not NEED_DATA

    @pytest.mark.parametrize("line_break", ["\n", "\r\n", "\r"])
    def test_tolerates_line_breaks_after_terminators(self, line_break: str) -> None:
        plain = events_of(x12())
        broken = events_of(x12(line_break=line_break))
        assert [getattr(e, "tag", None) for e in broken] == [getattr(e, "tag", None) for e in plain]
        assert all(not getattr(e, "tag", "x").startswith(("\r", "\n")) for e in broken)

    def test_newline_as_segment_terminator_with_crlf(self) -> None:
        data = x12(term="\n").replace(b"\n", b"\r\n")
        segs = [e for e in events_of(data) if isinstance(e, Segment)]
        assert segs and all(not s.elements or not s.elements[-1].endswith("\r") for s in segs)

    def test_positions_count_from_st(self) -> None:
        evs = events_of(x12())
        st = next(e for e in evs if isinstance(e, TransactionSetStart))
        body = [e for e in evs if isinstance(e, Segment)]
        end = next(e for e in evs if isinstance(e, TransactionSetEnd))
        assert st.st.index == 1
        assert [s.index for s in body] == list(range(2, 2 + len(body)))
        assert end.se is not None and end.se.index == end.segment_count == len(body) + 2

    def test_byte_offsets_point_at_the_segment(self) -> None:
        data = x12(line_break="\r\n")
        for e in events_of(data):
            if isinstance(e, Segment):
                assert data[e.offset : e.offset + len(e.tag)].decode() == e.tag

    def test_isa_inside_data_is_not_an_interchange(self) -> None:
        body = TS(body=["BGN*00*1*20260101*1200****2", "NM1*IL*1*ISAAC*ISA"])
        evs = events_of(x12(Group(sets=[body])))
        assert kinds(evs).count("InterchangeStart") == 1
        assert any(isinstance(e, Segment) and "ISAAC" in e.elements for e in evs)

    def test_caps_segment_size_without_buffering(self) -> None:
        huge = "NM1*IL*1*" + "A" * 5000
        data = x12(Group(sets=[TS(body=["BGN*00*1*20260101*1200****2", huge])]))
        evs = events_of(data, chunk=512, max_segment_bytes=1024)
        over = [e for e in evs if isinstance(e, OversizedSegment)]
        assert len(over) == 1
        assert over[0].tag_prefix == "NM1" and over[0].index == 3
        # The set still ends properly after the oversized segment.
        assert any(isinstance(e, TransactionSetEnd) and e.se is not None for e in evs)

    def test_hostile_unterminated_segment_keeps_memory_bounded(self) -> None:
        reader = SegmentReader(max_segment_bytes=4096)
        reader.feed(x12()[:-30])
        while reader.next_token() not in (NEED_DATA, None):
            pass
        for _ in range(200):  # 12.8 MB of one "segment"
            reader.feed(b"A" * 65536)
            while (tok := reader.next_token()) not in (NEED_DATA, None):
                assert isinstance(tok, (Segment, OversizedSegment))
        assert len(reader._buf) < 3 * 65536
        reader.feed(b"")
        tail = []
        while (tok := reader.next_token()) is not None:
            tail.append(tok)
        assert any(isinstance(t, OversizedSegment) for t in tail)

    def test_mispadded_isa_is_read_by_separators(self) -> None:
        data = x12().replace(b"VA0FFM         ", b"VA0FFM", 1)
        start = next(e for e in events_of(data) if isinstance(e, InterchangeStart))
        assert start.isa.element(6) == "VA0FFM"
        assert not start.fixed_width
        assert start.delimiters.component == ":"

    def test_bom_before_isa_is_counted(self) -> None:
        start = next(
            e for e in events_of(b"\xef\xbb\xbf" + x12()) if isinstance(e, InterchangeStart)
        )
        assert start.leading_bytes == 3


class TestUnusableInput:
    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"", UnusableReason.EMPTY),
            (b"  \r\n ", UnusableReason.EMPTY),
            (bytes(range(256)), UnusableReason.BINARY),
            (b"member_id,first_name\n1,JANE\n", UnusableReason.NOT_X12),
            (b"ISA*00*          *00*     ", UnusableReason.TRUNCATED_ISA),
            (b"ISA", UnusableReason.TRUNCATED_ISA),
            (b"ISA*" + b"X" * 400, UnusableReason.MALFORMED_ISA),
        ],
    )
    def test_reported_as_a_typed_finding(self, data: bytes, reason: UnusableReason) -> None:
        evs = events_of(data)
        assert len(evs) == 1
        assert isinstance(evs[0], Unusable)
        assert evs[0].reason is reason
        assert evs[0].message

    @pytest.mark.parametrize("head", [b"\x00" * 512, b"member_id,first_name\n"])
    def test_the_rest_is_counted_never_kept(self, head: bytes) -> None:
        # Judged from a bounded prefix; 50 MB more of it is counted, not buffered.
        chunk = head[:1] * (64 << 10)
        reader = SegmentReader()
        reader.feed(head)
        tracemalloc.start()
        try:
            for _ in range(800):
                reader.feed(chunk)
                while (token := reader.next_token()) is not NEED_DATA and token is not None:
                    assert isinstance(token, Unusable)
            reader.feed(b"")
            assert reader.next_token() is None
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 256 << 10
        assert reader.unread_bytes == len(head) + 800 * len(chunk)


class TestEnvelope:
    def test_several_interchanges_groups_and_sets(self) -> None:
        one = x12(Group(sets=[TS(st02="0001"), TS(st02="0002")]), Group(gs06="102"))
        two = x12(isa_kwargs={"control": "000000102", "sep": "|"}, sep="|")
        evs = events_of(one + b"\n" + two)
        assert kinds(evs).count("InterchangeStart") == 2
        assert kinds(evs).count("GroupStart") == 3
        assert kinds(evs).count("TransactionSetStart") == 4
        ends = [e for e in evs if isinstance(e, InterchangeEnd)]
        assert all(e.iea is not None for e in ends)

    def test_missing_trailers_end_with_none(self) -> None:
        data = x12(Group(sets=[TS(trailer=False)], trailer=False), iea=False)
        evs = events_of(data)
        assert isinstance(evs[-3], TransactionSetEnd) and evs[-3].se is None
        assert isinstance(evs[-2], GroupEnd) and evs[-2].ge is None
        assert isinstance(evs[-1], InterchangeEnd) and evs[-1].iea is None

    def test_stray_segment_between_gs_and_st(self) -> None:
        data = x12().replace(b"~ST*", b"~BGN*00*X*20260101*1200****2~ST*", 1)
        stray = [e for e in events_of(data) if isinstance(e, StraySegment)]
        assert len(stray) == 1 and stray[0].context == State.GROUP.value

    @pytest.mark.parametrize("state", list(State))
    @pytest.mark.parametrize("tag", ["ISA", "IEA", "GS", "GE", "ST", "SE", "NM1", ""])
    def test_every_state_and_segment_lands_in_a_known_state(self, state: State, tag: str) -> None:
        actions, nxt = transition(state, tag)
        assert actions
        assert nxt in State
        if (state, tag) not in TRANSITIONS and (state, "*") not in TRANSITIONS:
            assert nxt is state  # stray segments change nothing

    def test_at_end_closes_everything(self) -> None:
        assert set(AT_END) == set(State)


def _sample_inputs() -> list[Any]:
    return [pytest.param(p, id=p.name) for p in sample_files()] + peer_params()


class TestIncrementalFeeding:
    @pytest.mark.parametrize("path", _sample_inputs())
    def test_whole_and_byte_at_a_time_give_identical_events(self, path: Path) -> None:
        data = path.read_bytes()
        if len(data) > 200_000:
            pytest.skip("large sample: fed in 7-byte chunks below")
        assert events_of(data) == events_of(data, chunk=1)

    @pytest.mark.parametrize("path", _sample_inputs())
    def test_odd_chunks_give_identical_events(self, path: Path) -> None:
        data = path.read_bytes()
        assert events_of(data) == events_of(data, chunk=7)


_delimiter = st.sampled_from(list("*|!^:>\\~'{}+#&@%?=`"))
_text = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .-/()", min_size=0, max_size=12)


@st.composite
def delimiters_and_segments(draw: st.DrawFn) -> tuple[Delimiters, list[Segment]]:
    chars = draw(st.lists(_delimiter, min_size=4, max_size=4, unique=True))
    d = Delimiters(element=chars[0], repetition=chars[1], component=chars[2], segment=chars[3])
    segs = []
    for _ in range(draw(st.integers(1, 8))):
        tag = draw(st.sampled_from(["NM1", "REF", "DTP", "INS", "HD", "N3", "N4", "DMG"]))
        elements = draw(st.lists(_text, min_size=1, max_size=6))
        while elements and elements[-1] == "":
            elements.pop()
        segs.append(segment(tag, *elements))
    return d, segs


class TestWriterRoundTrip:
    @settings(max_examples=150, deadline=None)
    @given(delimiters_and_segments())
    def test_parse_of_write_is_identity(self, case: tuple[Delimiters, list[Segment]]) -> None:
        d, segs = case
        body = [segment("ST", "834", "0001", "005010X220A1"), *segs, segment("SE", "2", "0001")]
        head = x12(
            isa_kwargs={"sep": d.element, "rep": d.repetition, "comp": d.component}, term=d.segment
        )
        isa_bytes = head[:106]
        data = (
            isa_bytes
            + render_segments(
                [segment("GS", "BE", "A", "B", "20260101", "1200", "1", "X", "005010X220A1")],
                d,
            )
            + render_segments(body, d)
        )
        parsed = [e for e in events_of(data) if isinstance(e, Segment)]
        assert parsed == segs
        start = next(e for e in events_of(data) if isinstance(e, InterchangeStart))
        assert start.delimiters == d


class TestArbitraryBytes:
    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=600))
    def test_never_raises(self, data: bytes) -> None:
        events_of(data)
        events_of(data, chunk=3)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=300), st.integers(0, 400))
    def test_never_raises_after_a_real_isa(self, tail: bytes, cut: int) -> None:
        data = x12()[:cut] + tail
        events_of(data)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(st.sampled_from([b"\xef\xbb\xbf", b"\x00", b"ISA", b"~", b" "]), max_size=4),
        st.binary(max_size=700),
        st.integers(1, 23),
    )
    def test_chunking_never_changes_what_is_read(
        self, prefix: list[bytes], body: bytes, chunk: int
    ) -> None:
        """Whole, byte at a time, in 7-byte and in odd chunks give identical events, leading
        BOMs and all (two BOMs used to read `binary` in chunks of <= 22 bytes and `not_x12`
        whole)."""
        data = b"".join(prefix) + body
        whole = events_of(data)
        assert events_of(data, chunk=1) == whole
        assert events_of(data, chunk=7) == whole
        assert events_of(data, chunk=chunk) == whole

    def test_two_boms_then_text_is_not_x12_however_it_is_cut(self) -> None:
        data = BOM * 2 + b"hello, this is a letter and not an interchange at all. " * 4
        for chunk in (1, 7, 22, len(data)):
            (found,) = [e for e in events_of(data, chunk=chunk) if isinstance(e, Unusable)]
            assert found.reason is UnusableReason.NOT_X12, chunk

    def test_reader_refuses_feed_after_end(self) -> None:
        reader = EnvelopeReader()
        reader.feed(b"")
        with pytest.raises(RuntimeError):
            reader.feed(b"ISA")
