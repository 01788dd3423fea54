"""Memory does not follow hostile input (issue 13, item 5): a file of stray segments is a few
findings and a count; the block planner skips a segment with no terminator instead of
buffering it. Bounds on what is held (tracemalloc), never on RSS or time."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable, Iterator

from tests.benchmarks.generate_834 import write_834
from tests.validators.helpers import one
from tests.x12build import x12
from validators.interchange import (
    MAX_STRAY_FINDINGS,
    InterchangeResult,
    ValidationOptions,
    validate_stream,
)
from validators.parallel import plan_sets

MB = 1 << 20


def traced_peak(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def repeated(head: bytes, unit: bytes, total: int, tail: bytes = b"") -> Iterator[bytes]:
    """`head`, then `unit` repeated to `total` bytes in 64 KiB chunks, then `tail`."""
    yield head
    chunk = unit * ((64 << 10) // len(unit))
    for _ in range(total // len(chunk)):
        yield chunk
    if tail:
        yield tail


def generated(members: int) -> bytes:
    buf = io.BytesIO()
    write_834(buf, members, seed=7)
    return buf.getvalue()


class TestStraySegments:
    def test_listed_up_to_the_cap_then_counted_in_one_finding(self) -> None:
        data = x12()
        iea = data.rindex(b"IEA")
        many = MAX_STRAY_FINDINGS + 50
        inside = data[:iea] + b"ZZZ*1~" * many + data[iea:]
        result = one(inside)
        strays = [i for i in result.issues if i.code == "024"]
        assert len(strays) == MAX_STRAY_FINDINGS + 1
        assert "50 more segments" in strays[-1].message
        assert result.ta1_code.value == "R" and result.ta1_note == "024"
        after = one(data + b"ZZZ*1~" * many)
        assert after.ta1_code.value == "E" and after.ta1_note == "022"
        assert after.outcome.value == one(data + b"ZZZ*1~").outcome.value

    def test_stray_segments_hold_a_bounded_list(self) -> None:
        data = x12()
        results: list[object] = []

        def run() -> None:
            results.extend(validate_stream(repeated(data, b"X~", MB // 16), ValidationOptions()))

        # (listed one by one, 32 Ki strays would hold about 10 MB of findings)
        assert traced_peak(run) < 2 * MB
        (result,) = results
        assert isinstance(result, InterchangeResult)
        assert result.strays == 32 << 10
        assert len(result.issues) == MAX_STRAY_FINDINGS + 1

    def test_50_mb_of_nuls_hold_a_bounded_buffer(self) -> None:
        results: list[object] = []

        def run() -> None:
            results.extend(validate_stream(repeated(b"", b"\0", 50 * MB), ValidationOptions()))

        assert traced_peak(run) < 1 * MB
        assert [type(r).__name__ for r in results] == ["UnusableResult"]


class TestPlannerOversizedSegment:
    def test_50_mb_without_a_terminator_is_skipped_not_buffered(self) -> None:
        big = generated(40)
        cut = big.index(b"INS*", big.index(b"INS*") + 1)
        head = big[:cut]
        planner_peak = traced_peak(
            lambda: list(plan_sets(repeated(head, b"A", 50 * MB), members_per_part=5))
        )
        assert planner_peak < 4 * MB

    def test_the_set_with_it_is_left_to_one_go_and_later_sets_are_planned(self) -> None:
        big = generated(40)
        cut = big.index(b"INS*", big.index(b"INS*") + 1)
        # An oversized segment (1 MB, then its terminator) in the first interchange's set; a
        # second interchange after it is planned at its own offsets.
        first = big[:cut] + b"A" * MB + b"~" + big[cut:]
        data = first + big
        chunks = [data[i : i + (64 << 10)] for i in range(0, len(data), 64 << 10)]
        plans = list(plan_sets(chunks, members_per_part=5))
        assert [p.st_offset for p in plans] == [len(first) + big.index(b"ST*")]
        (alone,) = plan_sets([big], members_per_part=5)
        shift = len(first)
        assert plans[0].segment_count == alone.segment_count
        assert [(p.start - shift, p.end - shift, p.first_index) for p in plans[0].parts] == [
            (p.start, p.end, p.first_index) for p in alone.parts
        ]
