"""A group's set results in bounded memory (validators.setlist) and its ST02s in a compact set
(validators.st02): the same answers as a plain list and a plain set, whatever the order."""

from __future__ import annotations

import datetime as dt
import io
import pickle
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import validators.setlist as setlist
import validators.st02 as st02
from parsers.writer import segment
from tests.benchmarks.generate_834 import write_834
from validators.acks.x999 import build_999
from validators.interchange import (
    AckCode,
    InterchangeResult,
    TransactionSetResult,
    ValidationOptions,
    validate_stream,
)
from validators.issues import Issue, Level, Severity
from validators.setlist import SetList, Totals
from validators.st02 import ControlNumbers

NOW = dt.datetime(2027, 1, 4, 9, 30, tzinfo=dt.UTC)


class ListSpill:
    """A spill in memory, pickled as the gateway's file is, so a result must survive the trip."""

    opened = 0

    def __init__(self) -> None:
        self.batches: list[bytes] = []
        self.closed = False
        ListSpill.opened += 1

    def write(self, items: list[TransactionSetResult]) -> None:
        assert not self.closed
        self.batches.append(pickle.dumps(items))

    def read(self) -> Iterator[TransactionSetResult]:
        for batch in self.batches:
            yield from pickle.loads(batch)  # noqa: S301 - the test's own bytes

    def close(self) -> None:
        self.closed = True


def _result(n: int, kind: str, members: int) -> TransactionSetResult:
    r = TransactionSetResult(st=segment("ST", "834", f"{n:04d}", "005010X220A1"))
    r.member_count = members
    if kind != "A":
        severity = Severity.REJECT if kind == "R" else Severity.WARN
        r.issues.append(Issue(level=Level.SEGMENT, code="8", message="x", severity=severity))
    return r


def _summary(r: TransactionSetResult) -> tuple[str, AckCode, int, int]:
    return r.st02, r.ack_code, r.member_count, len(r.issues)


def _totals(results: list[TransactionSetResult]) -> tuple[int, int, int, int, set[AckCode]]:
    t = Totals()
    for r in results:
        t.add(r)
    return t.sets, t.accepted, t.members, t.members_accepted, t.codes


sets_strategy = st.lists(
    st.tuples(st.sampled_from("AER"), st.integers(min_value=0, max_value=30)), max_size=60
)


class TestSetList:
    @settings(max_examples=150, deadline=None)
    @given(items=sets_strategy, keep=st.integers(min_value=2, max_value=7), spill=st.booleans())
    def test_reads_back_what_was_appended_with_its_totals(self, items, keep, spill):
        made = [_result(n, kind, members) for n, (kind, members) in enumerate(items)]
        sets = SetList(ListSpill if spill else None, keep=keep)
        for r in made:
            sets.append(r)
        assert len(sets) == len(made)
        assert [_summary(r) for r in sets] == [_summary(r) for r in made]
        assert [_summary(sets[i]) for i in range(len(made))] == [_summary(r) for r in made]
        if made:
            assert _summary(sets[-1]) == _summary(made[-1])
        with pytest.raises(IndexError):
            sets[len(made)]
        t = sets.totals()
        assert (t.sets, t.accepted, t.members, t.members_accepted, t.codes) == _totals(made)
        # Memory holds at most `keep` results once there is a spill; without one, all of them.
        in_memory = len(made) - sets.spilled
        assert in_memory <= (keep if spill else len(made))
        assert (sets.spilled > 0) == (spill and len(made) > keep)

    def test_the_last_result_stays_in_memory_while_its_set_is_read(self):
        sets = SetList(ListSpill, keep=2)
        made = [_result(n, "A", 1) for n in range(3)]
        for r in made:
            sets.append(r)
        assert sets.spilled == 2
        # The validator still adds the last set's findings until its SE: they must count.
        made[-1].issues.append(Issue(level=Level.SEGMENT, code="8", message="late"))
        assert sets.totals().accepted == 2
        assert sets[-1].ack_code is AckCode.REJECTED

    def test_closing_lets_the_spill_go(self):
        opened = ListSpill.opened
        sets = SetList(ListSpill, keep=2)
        for n in range(5):
            sets.append(_result(n, "A", 1))
        assert ListSpill.opened == opened + 1  # one spill per group, however many batches
        spill = sets._spill
        assert isinstance(spill, ListSpill) and len(spill.batches) == 2
        sets.close()
        assert spill.closed and len(sets) == 0


def _control_numbers() -> st.SearchStrategy[list[str]]:
    """Mostly what senders do (runs of one width, restarts, repeats), plus anything at all."""
    run = st.tuples(
        st.integers(min_value=1, max_value=9), st.integers(0, 30), st.integers(1, 12)
    ).map(lambda t: [f"{n:0{t[0]}d}"[-t[0] :] for n in range(t[1], t[1] + t[2])])
    odd = st.text(alphabet="0123456789 A٣-", min_size=0, max_size=5).map(lambda s: [s])
    runs = st.lists(st.one_of(run, run, odd), max_size=12)
    return runs.map(lambda xs: [v for x in xs for v in x])


class TestControlNumbers:
    @settings(max_examples=300, deadline=None)
    @given(values=_control_numbers(), probes=st.lists(st.text(max_size=4), max_size=5))
    def test_the_same_answers_as_a_set(self, values, probes):
        seen: set[str] = set()
        compact = ControlNumbers()
        for v in values:
            assert (v in compact) == (v in seen), v
            compact.add(v)
            seen.add(v)
        for p in [*probes, *values, "0", "00", "1" * 9]:
            assert (p in compact) == (p in seen), p

    @settings(max_examples=150, deadline=None)
    @given(values=st.lists(st.integers(min_value=0, max_value=60), max_size=80))
    def test_numbers_past_the_bound_on_ranges_are_kept_one_by_one(self, values):
        compact = ControlNumbers()
        with pytest.MonkeyPatch.context() as m:
            m.setattr(st02, "MAX_RANGES", 3)
            for n in values:
                compact.add(f"{n:04d}")
        for n in range(62):
            assert (f"{n:04d}" in compact) == (n in values)
            assert f"{n}" not in compact or f"{n}" == f"{n:04d}"

    def test_a_million_numbers_in_order_are_one_range(self):
        compact = ControlNumbers()
        for n in range(1, 1_000_001):
            compact.add(f"{n:09d}")
        ranges = compact._ranges[9]
        assert (ranges.starts, ranges.ends) == ([1], [1_000_000])
        assert "000500000" in compact and "500000" not in compact and "001000001" not in compact


def _many_sets(count: int) -> bytes:
    out = io.BytesIO()
    write_834(out, count, seed=7, sets=count)
    return out.getvalue()


def _validate(data: bytes, spill: setlist.SpillFactory | None) -> InterchangeResult:
    (result,) = validate_stream([data], ValidationOptions(spill=spill))
    assert isinstance(result, InterchangeResult)
    return result


class TestManySets:
    def test_a_spilled_group_is_acknowledged_as_one_kept_in_memory(self, monkeypatch):
        data = _many_sets(40)
        # Damage a few sets so that the answers differ from set to set.
        data = data.replace(b"ST*834*0007*", b"ST*834*0006*").replace(
            b"INS*Y*18*021", b"INS*Y*99*021", 3
        )
        kept = _validate(data, None)
        monkeypatch.setattr(setlist, "KEEP", 3)
        spilled = _validate(data, ListSpill)
        assert spilled.groups[0].sets.spilled == 39
        assert kept.groups[0].sets.spilled == 0
        assert spilled.counts() == kept.counts() and spilled.outcome is kept.outcome
        assert spilled.groups[0].ack_code is kept.groups[0].ack_code is AckCode.PARTIALLY_ACCEPTED
        assert build_999(spilled, control_number=9, now=NOW) == build_999(
            kept, control_number=9, now=NOW
        )
