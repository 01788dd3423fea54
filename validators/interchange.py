"""Pure; no I/O, no clock. Drives the envelope reader and the checkers over a stream of bytes
and yields one result per interchange (or one `UnusableResult`), in file order, in bounded
memory: only findings (capped per set) and per-set summaries are kept, never segments, and a
group's older summaries go to the caller's spill (validators.setlist) when one is given."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from parsers.delimiters import DEFAULT_DELIMITERS, Delimiters
from parsers.envelope import EnvelopeReader
from parsers.events import (
    NEED_DATA,
    Event,
    GroupEnd,
    GroupStart,
    InterchangeEnd,
    InterchangeStart,
    OversizedSegment,
    Segment,
    StraySegment,
    TrailingData,
    TransactionSetEnd,
    TransactionSetStart,
    Unusable,
    UnusableReason,
)
from parsers.tokenizer import DEFAULT_MAX_SEGMENT_BYTES
from validators.compiled import CompiledTransactionSetChecker
from validators.control import (
    ACKNOWLEDGMENT_GROUP,
    ACKNOWLEDGMENT_SETS,
    GE_ELEMENTS,
    GUIDE_VERSION,
    TRANSACTION_SET_ID,
    check_ge,
    check_gs,
    check_gs_content,
    check_iea,
    check_isa,
    check_se,
    check_st,
    declared_count,
    extra_elements,
)
from validators.engine import Engine as Engine  # its home is validators.engine (cli)
from validators.implementation import TransactionSetChecker
from validators.issues import (
    InterchangeNoteCode,
    Issue,
    Level,
    SegmentSyntaxError,
    Severity,
    TransactionSetErrorCode,
    meaning,
)
from validators.parallel import PlannedSet, SetChecks, merge, oversized_issue, whole_set
from validators.setlist import SetList, SpillFactory
from validators.st02 import ControlNumbers

MAX_AK902 = 999_999  # AK902 is N0 1/6

# Segments out of their place in the envelope are listed one by one up to this many per
# interchange, then counted: a file of stray segments must not become a list of findings.
MAX_STRAY_FINDINGS = 100
_STRAY_CODES = frozenset(
    {InterchangeNoteCode.INVALID_CONTENT.value, InterchangeNoteCode.INVALID_CONTROL_STRUCTURE.value}
)

DuplicateCheck = Callable[[str, str, str], bool]
"""(ISA05, ISA06 unpadded, ISA13) -> True when this sender used this ISA13 before."""


class AckCode(enum.Enum):
    ACCEPTED = "A"
    ACCEPTED_WITH_ERRORS = "E"
    PARTIALLY_ACCEPTED = "P"
    REJECTED = "R"


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    ACCEPTED_WITH_ERRORS = "accepted_with_errors"
    PARTIALLY_ACCEPTED = "partially_accepted"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ValidationOptions:
    expected_sender: tuple[str, str] | None = None
    expected_receiver: tuple[str, str] | None = None
    is_duplicate: DuplicateCheck | None = None
    max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES
    max_issues_per_set: int = 10_000
    engine: Engine = Engine.FAST
    # Large 834 sets checked in parts elsewhere (other processes); None: all here.
    set_checks: SetChecks | None = None
    # Where a group's older set results go once it holds many (validators.setlist); None:
    # every result stays in memory.
    spill: SpillFactory | None = None


def _ack_of(issues: Iterable[Issue]) -> AckCode:
    worst = AckCode.ACCEPTED
    for issue in issues:
        if issue.severity is Severity.REJECT:
            return AckCode.REJECTED
        worst = AckCode.ACCEPTED_WITH_ERRORS
    return worst


@dataclass(slots=True)
class TransactionSetResult:
    st: Segment
    issues: list[Issue] = field(default_factory=list)
    segment_count: int = 0
    member_count: int = 0  # INS loops (2000)
    subscriber_count: int = 0  # of which INS01 Y; the rest are dependents
    issues_truncated: int = 0

    @property
    def st01(self) -> str:
        return self.st.element(1)

    @property
    def st02(self) -> str:
        return self.st.element(2)

    @property
    def st03(self) -> str:
        return self.st.element(3)

    @property
    def ack_code(self) -> AckCode:
        return _ack_of(self.issues)

    @property
    def set_error_codes(self) -> list[str]:
        """IK502..IK506: envelope codes first, then 5 when any segment is in error — I5 when
        every one of those errors is against the implementation guide rather than the X12
        standard (an I code in IK304 or IK403; X12 RFI 2502: the I codes are "reported
        against the instructions in an implementation guide"). IK304 8 only says that the
        segment's elements are in error, so it is judged by its IK403s."""
        codes = [i.code for i in self.issues if i.level is Level.TRANSACTION]
        found = [
            i.code
            for i in self.issues
            if i.level in (Level.SEGMENT, Level.ELEMENT)
            and not (
                i.level is Level.SEGMENT and i.code == SegmentSyntaxError.DATA_ELEMENT_ERRORS.value
            )
        ]
        if any(i.level in (Level.SEGMENT, Level.ELEMENT) for i in self.issues):
            codes.append(
                TransactionSetErrorCode.IMPLEMENTATION_SEGMENTS_IN_ERROR.value
                if found and all(code.startswith("I") for code in found)
                else TransactionSetErrorCode.SEGMENTS_IN_ERROR.value
            )
        return list(dict.fromkeys(codes))[:5]

    @property
    def accepted(self) -> bool:
        return self.ack_code in (AckCode.ACCEPTED, AckCode.ACCEPTED_WITH_ERRORS)


@dataclass(slots=True)
class GroupResult:
    gs: Segment
    ge: Segment | None = None
    issues: list[Issue] = field(default_factory=list)
    sets: SetList = field(default_factory=SetList)

    @property
    def sets_included(self) -> int:
        """AK902: the count the sender declared in GE01, else what we received. AK902 is N0
        1/6: a declared count that cannot fit (a 20-digit GE01) is not echoed; AK905 5 says
        it was wrong."""
        declared = declared_count(self.ge.element(1)) if self.ge is not None else None
        if declared is not None and declared <= MAX_AK902:
            return declared
        return len(self.sets)

    @property
    def ak904(self) -> int:
        """AK904: the sets whose IK501 is A or E (X12-REFERENCE §3), whatever the group's own
        AK905 says: a rejected group (AK901 R) can still count a set it did not find wrong,
        and the 999 then agrees with its IK5s."""
        return self.sets.totals().accepted

    @property
    def sets_accepted(self) -> int:
        """The sets the gateway accepts: none in a group with a reject-level AK905 (its AK901
        is R), else AK904."""
        if any(i.severity is Severity.REJECT for i in self.issues):
            return 0
        return self.sets.totals().accepted

    @property
    def ack_code(self) -> AckCode:
        """AK901: A / E / P (0 < accepted < received) / R. A group of no sets that says so
        (GE01 0) and has nothing wrong is accepted: there is nothing in it to refuse, and a
        rejection would have no reason to give (no AK905 fits)."""
        accepted = self.sets_accepted
        if not self.sets and not self.issues:
            return AckCode.ACCEPTED
        if accepted == 0:
            return AckCode.REJECTED
        if accepted < len(self.sets):
            return AckCode.PARTIALLY_ACCEPTED
        codes = self.sets.totals().codes
        if AckCode.ACCEPTED_WITH_ERRORS in codes or self.issues:
            return AckCode.ACCEPTED_WITH_ERRORS
        return AckCode.ACCEPTED


@dataclass(slots=True)
class InterchangeResult:
    isa: Segment
    delimiters: Delimiters
    offset: int
    iea: Segment | None = None
    end_offset: int = 0
    issues: list[Issue] = field(default_factory=list)
    groups: list[GroupResult] = field(default_factory=list)
    strays: int = 0  # segments where the envelope allows none; the first MAX_STRAY_FINDINGS listed

    @property
    def isa13(self) -> str:
        return self.isa.element(13)

    @property
    def sender(self) -> tuple[str, str]:
        return self.isa.element(5), self.isa.element(6).strip()

    @property
    def receiver(self) -> tuple[str, str]:
        return self.isa.element(7), self.isa.element(8).strip()

    @property
    def ta1_code(self) -> AckCode:
        return _ack_of(self.issues)

    @property
    def ta1_note(self) -> str:
        """TA105: the first interchange finding, in the order the checks ran; 000 when none."""
        return self.issues[0].code if self.issues else InterchangeNoteCode.NO_ERROR.value

    @property
    def ta1_required(self) -> bool:
        """A TA1 goes back when ISA14 = 1 or when the envelope has an error."""
        return self.isa.element(14) == "1" or bool(self.issues)

    @property
    def acknowledged_groups(self) -> list[GroupResult]:
        """The groups a 999 answers: all but acknowledgments (GS01 FA holding only 997s and
        999s), which X12 says are never acknowledged — answering them invites an endless
        exchange of acks. An 834 sent in a GS01 FA group is answered (AK905 1): silence would
        leave its sender believing it was delivered."""
        return [g for g in self.groups if not _acknowledgment_group(g)]

    @property
    def wants_999(self) -> bool:
        """A 999 goes back unless the TA1 rejects the interchange or it holds no group to
        answer."""
        return self.ta1_code is not AckCode.REJECTED and bool(self.acknowledged_groups)

    @property
    def reply_delimiters(self) -> Delimiters:
        """Answer in the sender's delimiters when they are usable, else the defaults."""
        return self.delimiters if not self.delimiters.problems() else DEFAULT_DELIMITERS

    @property
    def sets(self) -> Iterator[TransactionSetResult]:
        for group in self.groups:
            yield from group.sets

    @property
    def outcome(self) -> Outcome:
        if self.ta1_code is AckCode.REJECTED:
            return Outcome.REJECTED
        if not self.groups:
            # Only the envelope — an empty interchange (IEA01 0), or a partner's TA1s
            # acknowledging what we sent: nothing in it was refused, so not "rejected".
            if self.ta1_code is AckCode.ACCEPTED_WITH_ERRORS:
                return Outcome.ACCEPTED_WITH_ERRORS
            return Outcome.ACCEPTED
        codes = {g.ack_code for g in self.groups}
        if AckCode.REJECTED in codes and not any(g.sets_accepted for g in self.groups):
            return Outcome.REJECTED  # (an empty group beside a rejected one accepts nothing)
        if codes & {AckCode.REJECTED, AckCode.PARTIALLY_ACCEPTED}:
            return Outcome.PARTIALLY_ACCEPTED
        if AckCode.ACCEPTED_WITH_ERRORS in codes or self.ta1_code is AckCode.ACCEPTED_WITH_ERRORS:
            return Outcome.ACCEPTED_WITH_ERRORS
        return Outcome.ACCEPTED

    def counts(self) -> dict[str, int]:
        """Transaction sets and members received / accepted / rejected; they always add up."""
        rejected_interchange = self.ta1_code is AckCode.REJECTED
        out = dict.fromkeys(
            (
                "sets_received",
                "sets_accepted",
                "sets_rejected",
                "members_received",
                "members_accepted",
                "members_rejected",
            ),
            0,
        )
        for group in self.groups:
            totals = group.sets.totals()
            ok = group.sets_accepted > 0 and not rejected_interchange
            sets_ok = totals.accepted if ok else 0
            members_ok = totals.members_accepted if ok else 0
            out["sets_received"] += totals.sets
            out["sets_accepted"] += sets_ok
            out["sets_rejected"] += totals.sets - sets_ok
            out["members_received"] += totals.members
            out["members_accepted"] += members_ok
            out["members_rejected"] += totals.members - members_ok
        return out

    def close(self) -> None:
        """Let go of the sets' spill files (validators.setlist); the result is spent."""
        for group in self.groups:
            group.sets.close()


@dataclass(frozen=True, slots=True)
class UnusableResult:
    reason: UnusableReason
    offset: int
    message: str


def _stray_issue(code: InterchangeNoteCode, event: StraySegment, severity: Severity) -> Issue:
    return Issue(
        level=Level.INTERCHANGE,
        code=code.value,
        message=f"{meaning('TA105', code.value)} A {event.segment.tag or 'blank'} segment "
        f"appears {event.context}.",
        segment_id=event.segment.tag or None,
        severity=severity,
    )


def _close_strays(result: InterchangeResult) -> None:
    """One closing finding for the stray segments not listed one by one, with the code and
    severity of the last one listed (strays inside the interchange all come before those after
    its IEA), so the TA1 is the same as if every one were listed."""
    unlisted = result.strays - MAX_STRAY_FINDINGS
    if unlisted <= 0:
        return
    last = next(i for i in reversed(result.issues) if i.code in _STRAY_CODES)
    result.issues.append(
        Issue(
            level=Level.INTERCHANGE,
            code=last.code,
            message=f"{meaning('TA105', last.code)} {unlisted} more segments appear where the "
            f"envelope allows none; only the first {MAX_STRAY_FINDINGS} are listed.",
            severity=last.severity,
        )
    )


class InterchangeValidator:
    """Consumes envelope events; emits results. Sans-IO: feed events, collect results."""

    def __init__(self, options: ValidationOptions) -> None:
        self.options = options
        self._current: InterchangeResult | None = None
        self._done: InterchangeResult | None = None  # ended, may still get trailing findings
        self._group: GroupResult | None = None
        self._set: TransactionSetResult | None = None
        self._checker: TransactionSetChecker | CompiledTransactionSetChecker | None = None
        self._planned: PlannedSet | None = None
        self._planned_end = 0
        # (offset, segments): the body segments a reader may skip, once asked, then None.
        self.skip: tuple[int, int] | None = None
        self._seen_isa: set[tuple[str, str, str]] = set()
        self._seen_gs06: set[str] = set()
        self._seen_st02 = ControlNumbers()
        self._member_start = 0  # index in the set's issues where the current member's begin
        self._subscriber: str | None = None

    # -- results -----------------------------------------------------------
    def _flush_done(self) -> list[InterchangeResult | UnusableResult]:
        out: list[InterchangeResult | UnusableResult] = []
        if self._done is not None:
            _close_strays(self._done)
            out.append(self._done)
            self._done = None
        return out

    def on_event(self, event: Event) -> list[InterchangeResult | UnusableResult]:
        """Handle one event; return the results it completed."""
        if type(event) is Segment:  # most events: a body segment
            self._body(event)
            return []
        if isinstance(event, InterchangeStart):
            out = self._flush_done()
            self._start_interchange(event)
            return out
        if isinstance(event, InterchangeEnd):
            self._end_interchange(event)
            return []
        if isinstance(event, GroupStart):
            self._start_group(event.gs)
        elif isinstance(event, GroupEnd):
            self._end_group(event)
        elif isinstance(event, TransactionSetStart):
            self._start_set(event.st)
        elif isinstance(event, TransactionSetEnd):
            self._end_set(event)
        elif isinstance(event, Segment):
            self._body(event)
        elif isinstance(event, OversizedSegment):
            self._oversized(event)
        elif isinstance(event, StraySegment):
            self._stray(event)
        elif isinstance(event, TrailingData):
            if self._done is not None:
                self._done.issues.append(
                    Issue(
                        level=Level.INTERCHANGE,
                        code=InterchangeNoteCode.INVALID_CONTROL_STRUCTURE.value,
                        message=meaning("TA105", "022") + " Data follows the IEA.",
                        severity=Severity.WARN,
                    )
                )
        elif isinstance(event, Unusable):
            out = self._flush_done()
            out.append(UnusableResult(event.reason, event.offset, event.message))
            return out
        return []

    def finish(self) -> list[InterchangeResult | UnusableResult]:
        return self._flush_done()

    # -- interchange ---------------------------------------------------------
    def _start_interchange(self, event: InterchangeStart) -> None:
        isa = event.isa
        result = InterchangeResult(isa=isa, delimiters=event.delimiters, offset=isa.offset)
        result.issues.extend(
            check_isa(
                isa,
                event.delimiters,
                fixed_width=event.fixed_width,
                leading_bytes=event.leading_bytes,
                expected_sender=self.options.expected_sender,
                expected_receiver=self.options.expected_receiver,
            )
        )
        key = (isa.element(5), isa.element(6).strip(), isa.element(13))
        duplicate = key in self._seen_isa or (
            self.options.is_duplicate is not None and self.options.is_duplicate(*key)
        )
        if duplicate:
            result.issues.append(
                Issue(
                    level=Level.INTERCHANGE,
                    code=InterchangeNoteCode.DUPLICATE_CONTROL_NUMBER.value,
                    message=meaning("TA105", "025"),
                    segment_id="ISA",
                )
            )
        self._seen_isa.add(key)
        self._seen_gs06 = set()
        self._current = result

    def _end_interchange(self, event: InterchangeEnd) -> None:
        result = self._current
        if result is None:  # pragma: no cover - the reader never ends what it did not start
            return
        result.iea = event.iea
        result.end_offset = event.offset
        result.issues.extend(check_iea(result.isa, event.iea, len(result.groups)))
        self._current = None
        self._done = result

    def _stray(self, event: StraySegment) -> None:
        result = self._current or self._done
        if result is None:
            return
        result.strays += 1
        if result.strays > MAX_STRAY_FINDINGS:
            return  # counted: a file of stray segments must not become a list of findings
        if result is self._current:
            result.issues.append(
                _stray_issue(InterchangeNoteCode.INVALID_CONTENT, event, Severity.REJECT)
            )
        else:
            # After the IEA: the interchange itself was whole; note it, do not reject it.
            result.issues.append(
                _stray_issue(InterchangeNoteCode.INVALID_CONTROL_STRUCTURE, event, Severity.WARN)
            )

    # -- group -------------------------------------------------------------
    def _start_group(self, gs: Segment) -> None:
        if self._current is None:  # pragma: no cover - GS only comes inside an interchange
            return
        group = GroupResult(gs=gs, sets=SetList(self.options.spill))
        group.issues.extend(check_gs(gs, seen_gs06=self._seen_gs06))
        if gs.terminated:  # a GS the file ends inside is a premature end (023), not content
            self._current.issues.extend(check_gs_content(gs, self._current.delimiters))
        self._seen_gs06.add(gs.element(6))
        self._seen_st02 = ControlNumbers()
        self._current.groups.append(group)
        self._group = group

    def _end_group(self, event: GroupEnd) -> None:
        group = self._group
        if group is None:  # pragma: no cover - the reader only ends groups it started
            return
        group.ge = event.ge
        group.issues.extend(check_ge(group.gs, event.ge, event.transaction_set_count))
        if event.ge is not None and self._current is not None:
            self._current.issues.extend(extra_elements(event.ge, GE_ELEMENTS))
        self._group = None

    # -- transaction set ---------------------------------------------------
    def _start_set(self, st: Segment) -> None:
        if self._group is None or self._current is None:  # pragma: no cover - see the reader
            return
        result = TransactionSetResult(st=st)
        envelope = check_st(st, seen_st02=self._seen_st02)
        self._seen_st02.add(st.element(2))
        result.issues.extend(envelope)
        self._group.sets.append(result)
        self._set = result
        self._member_start = 0
        self._subscriber = None
        self._checker = None
        self._planned = None
        if st.element(1) == TRANSACTION_SET_ID and st.element(3) == GUIDE_VERSION:
            checks = self.options.set_checks
            if checks is not None and self.options.engine is Engine.FAST:
                self._planned = checks.planned(st.offset)
                if self._planned is not None:
                    self._planned_end = st.offset + st.length + 1
                    # The reader may skip the body up to the SE: the parts read it.
                    self.skip = (self._planned.se_offset, self._planned.segment_count - 2)
                    return
            checker = (
                CompiledTransactionSetChecker
                if self.options.engine is Engine.FAST
                else TransactionSetChecker
            )
            self._checker = checker(self._current.delimiters)
            self._add(self._checker.check(st))

    def _add(self, issues: list[Issue]) -> None:
        result = self._set
        if result is None or not issues:
            return
        room = self.options.max_issues_per_set - len(result.issues)
        if room < len(issues):
            result.issues_truncated += len(issues) - max(room, 0)
            issues = issues[: max(room, 0)]
        if self._subscriber is not None:
            issues = [dataclasses.replace(i, business_unit=self._subscriber) for i in issues]
        result.issues.extend(issues)

    def _body(self, segment: Segment) -> None:
        result = self._set
        if result is None:  # an interchange-level control segment (TA1): nothing to validate
            return
        if self._planned is not None:  # checked in parts elsewhere
            self._planned_end = segment.offset + segment.length + 1
            return
        if segment.tag == "INS":
            result.member_count += 1
            result.subscriber_count += segment.element(1) == "Y"
            self._member_start = len(result.issues)
            self._subscriber = None
        elif (
            segment.tag == "REF"
            and segment.element(1) == "0F"
            and self._subscriber is None
            and result.member_count
        ):
            # X231 CTX: name the member in error by its subscriber number, back-filling the
            # findings already made on this member (the INS comes before its REF*0F).
            self._subscriber = segment.element(2)
            for i in range(self._member_start, len(result.issues)):
                result.issues[i] = dataclasses.replace(
                    result.issues[i], business_unit=self._subscriber
                )
        if self._checker is not None:
            self._add(self._checker.check(segment))

    def _oversized(self, event: OversizedSegment) -> None:
        if self._planned is not None:  # checked in parts elsewhere
            self._planned_end = event.offset + event.length + 1
            return
        if self._set is not None and event.index is not None:
            self._add([oversized_issue(event, event.index, self.options.max_segment_bytes)])
        elif self._current is not None:
            self._current.issues.append(
                Issue(
                    level=Level.INTERCHANGE,
                    code=InterchangeNoteCode.INVALID_CONTENT.value,
                    message=f"{meaning('TA105', '024')} A segment of {event.length} bytes "
                    f"exceeds the {self.options.max_segment_bytes}-byte limit.",
                )
            )

    def _end_set(self, event: TransactionSetEnd) -> None:
        result = self._set
        if result is None:  # pragma: no cover - the reader only ends sets it started
            return
        result.segment_count = event.segment_count
        if self._checker is not None and event.se is not None:
            self._add(self._checker.check(event.se))
        if self._planned is not None:
            self._merge_parts(result, self._planned, event)
        # Envelope findings are not about a member.
        self._subscriber = None
        self._add(check_se(result.st, event.se, event.segment_count))
        # X231: IK3 loops in segment order; pyx12 reports a missing segment when its loop closes.
        result.issues.sort(
            key=lambda i: (i.level is not Level.TRANSACTION, i.segment_position or 0)
        )
        self._set = None
        self._checker = None
        self._planned = None

    def _merge_parts(
        self, result: TransactionSetResult, planned: PlannedSet, event: TransactionSetEnd
    ) -> None:
        checks = self.options.set_checks
        if checks is None:  # pragma: no cover - a plan comes from set_checks
            return
        se = event.se
        if se is not None:
            self._planned_end = se.offset + se.length + 1
        results = None
        if (
            se is not None
            and se.offset == planned.se_offset
            and event.segment_count == planned.segment_count
        ):
            results = checks.run(planned, planned.parts)
            if not all(r.joined for r in results[:-1]):
                results = None
        if results is None:
            # The parts did not join up (or the set is not the one planned): check the set as
            # the envelope reader saw it, in one go.
            end = self._planned_end if se is not None else max(self._planned_end, planned.end)
            results = checks.run(planned, whole_set(planned.st_offset, end))
        issues, truncated, members, subscribers = merge(results)
        result.member_count = members
        result.subscriber_count = subscribers
        self._add(issues)
        result.issues_truncated += truncated


def validate_events(
    events: Iterable[Event], options: ValidationOptions | None = None
) -> Iterator[InterchangeResult | UnusableResult]:
    validator = InterchangeValidator(options or ValidationOptions())
    for event in events:
        yield from validator.on_event(event)
    yield from validator.finish()


def validate_stream(
    chunks: Iterable[bytes], options: ValidationOptions | None = None
) -> Iterator[InterchangeResult | UnusableResult]:
    """Every interchange of a byte stream, validated; results in file order, streaming."""
    opts = options or ValidationOptions()
    reader = EnvelopeReader(max_segment_bytes=opts.max_segment_bytes)
    validator = InterchangeValidator(opts)

    def drain() -> Iterator[InterchangeResult | UnusableResult]:
        while True:
            event = reader.next_event()
            if event is NEED_DATA or event is None:
                return
            yield from validator.on_event(event)  # type: ignore[arg-type]
            if validator.skip is not None:
                reader.skip_body(*validator.skip)
                validator.skip = None

    for chunk in chunks:
        if chunk:
            reader.feed(chunk)
            yield from drain()
    reader.feed(b"")
    yield from drain()
    yield from validator.finish()


def _acknowledgment_group(group: GroupResult) -> bool:
    return group.gs.element(1) == ACKNOWLEDGMENT_GROUP and all(
        ts.st01 in ACKNOWLEDGMENT_SETS for ts in group.sets
    )
