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

The caller owns I/O and processes: `plan_sets` reads the file's bytes as chunks (one pass,
bounded memory) and `check_part` takes the bytes of one part.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from parsers.delimiters import Delimiters
from parsers.events import NEED_DATA, Isa, OversizedSegment, Segment
from parsers.tokenizer import SegmentReader
from validators.compiled import CompiledTransactionSetChecker
from validators.control import GUIDE_VERSION, TRANSACTION_SET_ID
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
    subscribers: int = 0  # INS01 Y
    lookahead_findings: int = 0  # the last n issues: the next part's INS walk
    first_subscriber: str | None = None  # REF*0F of the part's first member
    joined: bool = True  # the lookahead INS opened a member as the next part assumes


def plan_sets(
    chunks: Iterable[bytes],
    *,
    members_per_part: int = MEMBERS_PER_PART,
    max_segment_bytes: int = 65_536,
) -> Iterator[PlannedSet]:
    """The 834 sets of a file worth splitting (more than one part), in file order, from its
    bytes in chunks of any size: one pass, memory bounded by a chunk and the plan. A set is
    left out — checked in one go — when anything about it is unusual: a terminator that is
    also whitespace, a set that does not end with its SE before the next envelope segment, a
    set that is not 834/005010X220A1, a cut INS longer than a segment may be."""
    planner = _Planner(members_per_part, max_segment_bytes)
    for chunk in chunks:
        if chunk:
            yield from planner.feed(chunk)
    yield from planner.feed(b"", eof=True)


class _Planner:
    """Finds segment starts (after a terminator and any whitespace) of the envelope tags and
    INS, counting terminators (so segment positions) on the way. Works on whole segments: the
    buffer is scanned up to its last terminator; the rest waits for the next chunk."""

    def __init__(self, members_per_part: int, max_segment_bytes: int) -> None:
        self.per_part = members_per_part
        self.max_segment = max_segment_bytes
        self.buf = b""
        self.base = 0  # absolute offset of buf[0]
        self.pos = 0  # scan position in buf
        self.counted_at = 0  # terminators counted in buf[:counted_at]
        self.terms = 0  # terminators before base + counted_at
        self.delims: Delimiters | None = None
        self.term = b""
        self.pattern: re.Pattern[bytes] | None = None
        self.done = False
        # Inside a segment longer than a segment may be: its bytes are skipped up to its
        # terminator, not buffered (as the tokenizer's discard mode does).
        self.discarding = False
        self._new_set(None)

    def _new_set(self, st: int | None, st_terms: int = 0, ok: bool = False) -> None:
        self.st, self.st_terms, self.st_ok = st, st_terms, ok
        self.members = 0
        self.cuts: list[tuple[int, int, int]] = []  # (offset, terminators before, its end)

    def _terms_before(self, i: int) -> int:
        self.terms += self.buf.count(self.term, self.counted_at, i)
        self.counted_at = i
        return self.terms

    def feed(self, chunk: bytes, *, eof: bool = False) -> Iterator[PlannedSet]:
        if self.done:
            return
        if self.discarding:
            end = chunk.find(self.term)
            if end < 0:
                self.base += len(chunk)
                self.done = eof
                return
            # The oversized segment ends here: scanning resumes at its terminator.
            self.base += end
            chunk = chunk[end:]
            self.discarding = False
        self.buf = self.buf[self.pos :] + chunk if self.pos else self.buf + chunk
        self.base += self.pos
        # (terminators are only counted while a pattern is known, up to where it was kept)
        self.counted_at = max(self.counted_at - self.pos, 0)
        self.pos = 0
        while True:
            if self.pattern is None:
                isa = self.buf.find(b"ISA", self.pos)
                if isa < 0:
                    if eof:
                        self.done = True
                    self._keep(max(len(self.buf) - 2, self.pos))
                    return
                if len(self.buf) - isa < 512 and not eof:
                    self._keep(isa)
                    return
                if not self._read_isa(isa):
                    self.done = True
                    return
            limit = self.buf.rfind(self.term, self.pos)
            if limit < 0:  # pragma: no cover - pos is at a terminator, or just after an ISA's tag
                self.done = True
                return
            isa_seen = False
            pattern = self.pattern
            if pattern is None:  # pragma: no cover - set by _read_isa above
                return
            for m in pattern.finditer(self.buf, self.pos, limit):
                planned, isa_seen = self._match(m.group(1), m.start(1))
                if planned is not None:
                    yield planned
                if isa_seen:
                    break
            if not isa_seen:
                self._terms_before(limit)
                self._keep(limit)
                if eof:
                    self.done = True
                elif len(self.buf) - limit - 1 > self.max_segment:
                    self._discard(limit)
                return

    def _discard(self, term_at: int) -> None:
        """More than a segment's worth of bytes after the last terminator: an oversized segment
        (or not a segment at all). Its set is left to one go, whose reader reports it; the scan
        drops the bytes up to its terminator. Whitespace or an ISA there is not one segment to
        the tokenizer: the rest of the file is left to one go."""
        tail = self.buf[term_at + 1 : term_at + 1 + self.max_segment].lstrip(b"\r\n \t")
        if not tail or tail.startswith(b"ISA"):
            self.done = True
            return
        self._terms_before(term_at + 1)  # the terminator before the oversized segment
        self.st_ok = False
        self.base += len(self.buf)
        self.buf = b""
        self.pos = self.counted_at = 0
        self.discarding = True

    def _keep(self, at: int) -> None:
        """Scanned up to `at`: the next feed starts there."""
        self.pos = at

    def _read_isa(self, isa: int) -> bool:
        reader = SegmentReader(max_segment_bytes=self.max_segment)
        reader.feed(self.buf[isa : isa + 512])
        reader.feed(b"")
        token = reader.next_token()
        if not isinstance(token, Isa) or token.delimiters.segment in "\r\n \t":
            return False
        self.delims = token.delimiters
        self.term = token.delimiters.segment.encode("latin-1")
        elem = token.delimiters.element.encode("latin-1")
        tags = b"|".join([*_ENVELOPE, b"INS"])
        # A segment start: after a terminator and any whitespace, a tag, then an element
        # separator or the terminator (a segment with no elements).
        self.pattern = re.compile(
            re.escape(self.term)
            + rb"[\r\n \t]*("
            + tags
            + rb")(?:"
            + re.escape(elem)
            + b"|"
            + re.escape(self.term)
            + b")"
        )
        self._terms_before(isa)
        self.pos = isa + 3
        self._new_set(None)
        return True

    def _match(self, tag: bytes, at: int) -> tuple[PlannedSet | None, bool]:
        buf, term = self.buf, self.term
        if tag == b"INS":
            if self.st is not None:
                if self.members and self.members % self.per_part == 0:
                    stop = buf.find(term, at)
                    self.cuts.append((self.base + at, self._terms_before(at), self.base + stop))
                self.members += 1
            return None, False
        planned = None
        if self.st is not None and tag == b"SE" and self.st_ok:
            end = buf.find(term, at)
            planned = self._plan(self.base + at, self._terms_before(at), self.base + end + 1)
        self._new_set(None)
        if tag == b"ST":
            head = buf[at : buf.find(term, at)].decode("latin-1")
            parts = head.split(self.delims.element if self.delims else "*")
            ok = len(parts) > 3 and parts[1] == TRANSACTION_SET_ID and parts[3] == GUIDE_VERSION
            self._new_set(self.base + at, self._terms_before(at), ok)
        elif tag == b"ISA":
            # A new interchange may bring new delimiters.
            self._terms_before(at)
            self.pos = at
            self.pattern = None
            return planned, True
        return planned, False

    def _plan(self, se: int, se_terms: int, end: int) -> PlannedSet | None:
        if not self.cuts or self.st is None or self.delims is None:
            return None
        if any(stop - cut > self.max_segment for cut, _t, stop in self.cuts):
            return None  # a cut INS must be an ordinary segment, not an oversized one
        starts = [(self.st, self.st_terms), *((c, t) for c, t, _s in self.cuts)]
        parts: list[Part] = []
        for i, (a, a_terms) in enumerate(starts):
            last = i == len(starts) - 1
            # up to and including the next part's INS and its terminator
            stop = end if last else self.cuts[i][2] + 1
            parts.append(
                Part(
                    start=a,
                    end=stop,
                    first_index=a_terms - self.st_terms + 1,
                    resume=i > 0,
                    lookahead=not last,
                    lookahead_at=-1 if last else self.cuts[i][0] - a,
                )
            )
        return PlannedSet(
            st_offset=self.st,
            se_offset=se,
            end=end,
            segment_count=se_terms - self.st_terms + 1,
            delimiters=self.delims,
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
            add([oversized_issue(token, index, max_segment_bytes)])
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
            out.subscribers += token.element(1) == "Y"
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


def oversized_issue(event: OversizedSegment, index: int, max_segment_bytes: int) -> Issue:
    """A segment too long to read: IK304 8 at its position (the set is rejected)."""
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


def merge(results: list[PartResult]) -> tuple[list[Issue], int, int, int]:
    """(issues in set order, truncated, members, subscribers) from the parts' results, CTX
    handed over."""
    issues: list[Issue] = []
    truncated = 0
    members = subscribers = 0
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
        subscribers += result.subscribers
    return issues, truncated, members, subscribers


class LocalSetChecks:
    """`SetChecks` in this process, over a buffer holding the whole file: for tests, and for
    comparing the split check with the check in one go."""

    def __init__(self, buf: bytes, *, members_per_part: int = MEMBERS_PER_PART) -> None:
        self._buf = buf
        self._plans = {p.st_offset: p for p in plan_sets([buf], members_per_part=members_per_part)}

    def planned(self, st_offset: int) -> PlannedSet | None:
        return self._plans.get(st_offset)

    def run(self, planned: PlannedSet, parts: tuple[Part, ...]) -> list[PartResult]:
        return [check_part(self._buf[p.start : p.end], p, planned.delimiters) for p in parts]
