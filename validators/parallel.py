"""Pure; no I/O. Checking one large transaction set in parallel: cut its body into blocks of
whole members (2000 loops), check each block on its own, merge the findings in order — the
same findings, in the same order, as checking the set from ST to SE in one go.

Why a block can be checked alone: pyx12's walk only moves forward, and an INS that opens a
member resets every count below the 2000 loop. So a block that starts at an INS only needs a
checker that has just entered 2000 (`CompiledTransactionSetChecker.prime`). Two things cross a
block boundary, and both are handed over explicitly:
- the walk of the next block's INS reports what the previous member lacks ("required segment
  missing"): the block that ends there walks that INS too (its *lookahead*) and keeps only those
  findings; the next block keeps only the INS's own findings;
- X231 CTX names a member by its REF*0F, which comes after its INS: the lookahead findings get
  the subscriber number the next block found for its first member.
If a lookahead INS did not open a member the way the block after it assumed
(`PartResult.joined` false), the set is checked again in one go — correctness first.

The caller owns I/O and processes: `plan_sets` reads a buffer (an mmap in the gateway) and
`check_part` takes the bytes of one part.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from parsers.delimiters import Delimiters
from parsers.events import NEED_DATA, Isa, OversizedSegment, Segment
from parsers.tokenizer import SegmentReader
from validators.compiled import CompiledTransactionSetChecker
from validators.envelope import GUIDE_VERSION, TRANSACTION_SET_ID
from validators.issues import Issue, Level, SegmentSyntaxError

MEMBERS_PER_PART = 2_000
_ENVELOPE = (b"ISA", b"IEA", b"GS", b"GE", b"ST", b"SE")


@dataclass(frozen=True, slots=True)
class Part:
    """One block of a set: bytes [start, end) hold its segments, then (if `lookahead`) the next
    block's INS. `first_index` is the set position (IK302) of its first segment."""

    start: int
    end: int
    first_index: int
    resume: bool  # starts at an INS in the middle of the set
    lookahead: bool  # its last segment is the next part's INS
    lookahead_at: int = -1  # where that INS starts, counted from `start`


@dataclass(frozen=True, slots=True)
class PlannedSet:
    st_offset: int
    se_offset: int
    end: int  # just past the SE's terminator
    segment_count: int  # SE's position: the envelope reader must count the same
    delimiters: Delimiters
    parts: tuple[Part, ...]


@dataclass(slots=True)
class PartResult:
    issues: list[Issue] = field(default_factory=list)
    truncated: int = 0
    members: int = 0
    lookahead_findings: int = 0  # the last n issues: the next part's INS walk
    first_subscriber: str | None = None  # REF*0F of the part's first member
    joined: bool = True  # the lookahead INS opened a member as the next part assumes


def plan_sets(
    buf: bytes,
    *,
    members_per_part: int = MEMBERS_PER_PART,
    max_segment_bytes: int = 65_536,
) -> Iterator[PlannedSet]:
    """The 834 sets of a file worth splitting (more than one part), in file order. A set is
    left out — checked in one go — when anything about it is unusual: a terminator that is
    also whitespace, a set that does not end with its SE before the next envelope segment, a
    set that is not 834/005010X220A1."""
    delims: Delimiters | None = None
    pattern: re.Pattern[bytes] | None = None
    at = 0
    while True:
        if delims is None or pattern is None:
            isa_at = buf.find(b"ISA", at)
            if isa_at < 0:
                return
            delims = _delimiters_at(buf, isa_at, max_segment_bytes)
            if delims is None or delims.segment in "\r\n \t":
                return
            term, elem = delims.segment.encode("latin-1"), delims.element.encode("latin-1")
            tags = b"|".join([*_ENVELOPE, b"INS"])
            pattern = re.compile(re.escape(term) + rb"[\r\n \t]*(" + tags + rb")" + re.escape(elem))
            at = isa_at + 3
        st: int | None = None
        st_ok = False
        inses: list[int] = []
        for m in pattern.finditer(buf, at):
            tag, start = m.group(1), m.start(1)
            if tag == b"INS":
                if st is not None:
                    inses.append(start)
                continue
            if st is not None and tag == b"SE" and st_ok:
                end = buf.find(term, start)
                if end >= 0:
                    planned = _plan(
                        buf, st, start, end + 1, inses, delims, members_per_part, max_segment_bytes
                    )
                    if planned is not None:
                        yield planned
            st, inses = None, []
            if tag == b"ST":
                st = start
                head = bytes(buf[start : start + 64]).split(term, 1)[0].decode("latin-1")
                parts = head.split(delims.element)
                st_ok = (
                    len(parts) > 3 and parts[1] == TRANSACTION_SET_ID and parts[3] == GUIDE_VERSION
                )
            elif tag == b"ISA":
                # A new interchange may bring new delimiters.
                at = start
                delims = pattern = None
                break
        else:
            return


def _delimiters_at(buf: bytes, at: int, max_segment_bytes: int) -> Delimiters | None:
    reader = SegmentReader(max_segment_bytes=max_segment_bytes)
    reader.feed(bytes(buf[at : at + 512]))
    reader.feed(b"")
    token = reader.next_token()
    return token.delimiters if isinstance(token, Isa) else None


def _plan(
    buf: bytes,
    st: int,
    se: int,
    end: int,
    inses: list[int],
    delims: Delimiters,
    members_per_part: int,
    max_segment_bytes: int,
) -> PlannedSet | None:
    cuts = inses[members_per_part::members_per_part]
    if not cuts:
        return None
    term = delims.segment.encode("latin-1")
    for cut in cuts:  # a cut INS must be an ordinary segment, not an oversized one
        stop = buf.find(term, cut)
        if stop < 0 or stop - cut > max_segment_bytes:
            return None
    starts = [st, *cuts]
    ends = [*cuts, end]
    parts: list[Part] = []
    index = 1
    for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
        last = i == len(starts) - 1
        # the next part's INS, up to and including its terminator
        stop = b if last else buf.find(term, b) + 1
        if stop <= 0:
            return None
        parts.append(
            Part(
                start=a,
                end=stop,
                first_index=index,
                resume=i > 0,
                lookahead=not last,
                lookahead_at=-1 if last else b - a,
            )
        )
        index += bytes(buf[a:b]).count(term)
    return PlannedSet(
        st_offset=st,
        se_offset=se,
        end=end,
        segment_count=index - 1,
        delimiters=delims,
        parts=tuple(parts),
    )


def check_part(
    data: bytes,
    part: Part,
    delimiters: Delimiters,
    *,
    max_segment_bytes: int = 65_536,
    max_issues: int = 10_000,
) -> PartResult:
    """The findings of one part, as the sequential check would make them for these segments."""
    reader = SegmentReader.inside_interchange(delimiters, max_segment_bytes=max_segment_bytes)
    reader.feed(data)
    reader.feed(b"")
    checker = CompiledTransactionSetChecker(delimiters)
    if part.resume:
        checker.prime()
    out = PartResult()
    issues = out.issues
    subscriber: str | None = None
    member_start = 0
    index = part.first_index - 1
    first = part.resume  # the INS a resumed part starts with: its walk findings are not ours
    lookahead_at = part.lookahead_at if part.lookahead else -1
    check = checker.check
    replace = dataclasses.replace

    def add(found: list[Issue]) -> None:
        room = max_issues - len(issues)
        if room < len(found):
            out.truncated += len(found) - max(room, 0)
            found = found[: max(room, 0)]
        if subscriber is not None:
            found = [replace(i, business_unit=subscriber) for i in found]
        issues.extend(found)

    while True:
        token = reader.next_token()
        if token is None or token is NEED_DATA:
            break
        if isinstance(token, OversizedSegment):
            index += 1
            add([_oversized(token, index, max_segment_bytes)])
            first = False
            continue
        if not isinstance(token, Segment):  # pragma: no cover - a part holds segments only
            continue
        index += 1
        # The tokenizer made this segment for us alone: set its position in place.
        object.__setattr__(token, "index", index)
        tag = token.tag
        if lookahead_at >= 0 and token.offset >= lookahead_at:
            found = check(token)
            subscriber = None
            before = len(issues)
            add(found[: checker.walk_findings])
            out.lookahead_findings = len(issues) - before
            out.joined = checker.at_member_start()
            break
        if tag == "INS":
            out.members += 1
            member_start = len(issues)
            subscriber = None
        elif tag == "REF" and subscriber is None and out.members and token.element(1) == "0F":
            subscriber = token.element(2)
            for i in range(member_start, len(issues)):
                issues[i] = replace(issues[i], business_unit=subscriber)
            if out.members == 1 and part.resume:
                out.first_subscriber = subscriber
        found = check(token)
        if found:
            add(found[checker.walk_findings :] if first else found)
        first = False
    return out


def _oversized(event: OversizedSegment, index: int, max_segment_bytes: int) -> Issue:
    return Issue(
        level=Level.SEGMENT,
        code=SegmentSyntaxError.DATA_ELEMENT_ERRORS.value,
        message=f"A segment of {event.length} bytes exceeds the "
        f"{max_segment_bytes}-byte limit and was not read.",
        segment_id=event.tag_prefix or None,
        segment_position=index,
    )


class SetChecks(Protocol):
    """Where a planned set's parts are checked (the gateway: a process pool reading the file)."""

    def planned(self, st_offset: int) -> PlannedSet | None:
        """The plan for the set whose ST starts at this offset, if it was split."""

    def run(self, planned: PlannedSet, parts: tuple[Part, ...]) -> list[PartResult]:
        """The results of these parts of the set, in order (waits for them)."""


def whole_set(start: int, end: int) -> tuple[Part, ...]:
    """The one part that checks a set in one go: the fallback."""
    return (Part(start=start, end=end, first_index=1, resume=False, lookahead=False),)


def merge(results: list[PartResult]) -> tuple[list[Issue], int, int]:
    """(issues in set order, truncated, members) from the parts' results, CTX handed over."""
    issues: list[Issue] = []
    truncated = 0
    members = 0
    for i, result in enumerate(results):
        part_issues = result.issues
        n = result.lookahead_findings
        if n and i + 1 < len(results) and results[i + 1].first_subscriber is not None:
            unit = results[i + 1].first_subscriber
            part_issues = part_issues[: len(part_issues) - n] + [
                dataclasses.replace(x, business_unit=unit) for x in part_issues[-n:]
            ]
        issues.extend(part_issues)
        truncated += result.truncated
        members += result.members
    return issues, truncated, members


class LocalSetChecks:
    """`SetChecks` in this process, over a buffer holding the whole file: for tests, and for
    comparing the split check with the check in one go."""

    def __init__(self, buf: bytes, *, members_per_part: int = MEMBERS_PER_PART) -> None:
        self._buf = buf
        self._plans = {p.st_offset: p for p in plan_sets(buf, members_per_part=members_per_part)}

    def planned(self, st_offset: int) -> PlannedSet | None:
        return self._plans.get(st_offset)

    def run(self, planned: PlannedSet, parts: tuple[Part, ...]) -> list[PartResult]:
        return [check_part(self._buf[p.start : p.end], p, planned.delimiters) for p in parts]
