"""Pure, deterministic. The 999 implementation acknowledgment (005010X231A1): one ST*999 per
received functional group, with an AK2/IK5 for every transaction set, IK3/IK4 for every
segment and element finding, CTX naming the member, and AK9 counts (P when partial)."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterable, Iterator

from parsers.delimiters import Delimiters
from parsers.events import Segment
from parsers.writer import render_segment, segment
from validators.acks import echo
from validators.acks.reply import UNKNOWN_PARTY, iea, reply_isa, with_component
from validators.control import printable
from validators.interchange import GroupResult, InterchangeResult, TransactionSetResult
from validators.issues import Issue, Level

ACK_VERSION = "005010X231A1"
MAX_BAD_VALUE = 99  # IK404 is AN 1/99
MAX_LOOP_ID = 4
"""IK303 (element 447, Loop Identifier Code) is AN 1/4: the standard's loop id — `2100` for
the guide's 2100A..2100H, `1000` for 1000A..C. A five-character TR3 name fails a strict
translator's check of our 999 (pyx12's x12valid: "IK303 is too long")."""
CTX_BUSINESS_UNIT = "SUBSCRIBER NUMBER REF02"
"""X231A1 2100 CTX01-1 for an 834 (its code list: TRN02, NM109, PATIENT NAME NM109, SUBSCRIBER
NAME NM109, ENT01, SUBSCRIBER NUMBER REF02, CLM01)."""
MAX_CONTEXT_REFERENCE = 35  # CTX01-2 (element 9998) is AN 1/35
_SEGMENT_ID = re.compile(r"[0-9A-Za-z]{2,3}")


def build_999(
    result: InterchangeResult,
    *,
    control_number: int,
    now: dt.datetime,
    sender: tuple[str, str] | None = None,
    receiver: tuple[str, str] | None = None,
) -> bytes:
    """One interchange holding one GS*FA group with a 999 per received functional group
    (`InterchangeResult.acknowledged_groups`: a received 997 or 999 is not acknowledged).

    `control_number` is used for ISA13 and GS06; ST02 counts 0001, 0002, ... within the group.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    # A bad value is copied as sent (IK404): the 999 answers in separators it does not hold.
    d = echo.reply_delimiters(result.reply_delimiters, _copied_values(result))
    isa = with_component(
        reply_isa(
            result.isa,
            control_number=control_number,
            now=now,
            repetition=d.repetition,
            sender=sender,
            receiver=receiver,
            delimiters=d,
        ),
        d.component,
    )
    groups = result.acknowledged_groups
    first_gs = groups[0].gs if groups else None
    # GS02/GS03: our application code is the received GS03, theirs the received GS02.
    ours = (sender or result.receiver)[1].strip()
    theirs = result.isa.element(6).strip()
    gs = segment(
        "GS",
        "FA",
        echo.an(
            first_gs.element(3) if first_gs else ours,
            d,
            min_len=2,
            max_len=15,
            neutral=echo.an(ours, d, min_len=2, max_len=15, neutral=UNKNOWN_PARTY),
        ),
        echo.an(
            first_gs.element(2) if first_gs else theirs,
            d,
            min_len=2,
            max_len=15,
            neutral=echo.an(theirs, d, min_len=2, max_len=15, neutral=UNKNOWN_PARTY),
        ),
        now.strftime("%Y%m%d"),
        now.strftime("%H%M"),
        str(control_number),
        "X",
        ACK_VERSION,
    )
    # Written as it is made: a group of a million sets is a million AK2 loops, and only their
    # bytes are held, never their segments.
    out = io.BytesIO()
    for s in _segments(groups, isa, gs, control_number, d):
        out.write(render_segment(s, d).encode("latin-1"))
    return out.getvalue()


def _segments(
    groups: list[GroupResult], isa: Segment, gs: Segment, control_number: int, d: Delimiters
) -> Iterator[Segment]:
    yield isa
    yield gs
    for n, group in enumerate(groups, start=1):
        yield from _transaction(group, f"{n:04d}", d)
    yield segment("GE", str(len(groups)), str(control_number))
    yield iea(1, control_number)


def _copied_values(result: InterchangeResult) -> Iterable[str]:
    """What the 999 copies from the received sets: IK404 bad values, CTX subscriber numbers."""
    for ts in result.sets:
        for issue in ts.issues:
            if issue.level is Level.ELEMENT and issue.code != "1" and issue.bad_value:
                yield issue.bad_value[:MAX_BAD_VALUE]
            if _names_member(issue):
                yield _context_reference(issue)


def _transaction(group: GroupResult, st02: str, d: Delimiters) -> Iterator[Segment]:
    """One ST*999 for a received group: ST, AK1, every set's response, AK9, SE (counted)."""
    yield segment("ST", "999", st02, ACK_VERSION)
    yield segment(
        "AK1",
        echo.code(group.gs.element(1), min_len=2, max_len=2, neutral="BE"),
        echo.digits(group.gs.element(6), min_len=1, max_len=9, neutral="0"),
        echo.an(group.gs.element(8), d, max_len=12, neutral=""),
    )
    count = 2
    for ts in group.sets:
        response = _set_response(ts, d)
        count += len(response)
        yield from response
    ak905 = list(dict.fromkeys(i.code for i in group.issues if i.level is Level.GROUP))[:5]
    yield segment(
        "AK9",
        group.ack_code.value,
        str(group.sets_included),
        str(len(group.sets)),
        str(group.ak904),
        *ak905,
    )
    yield segment("SE", str(count + 2), st02)


def _set_response(ts: TransactionSetResult, d: Delimiters) -> list[Segment]:
    out = [
        segment(
            "AK2",
            echo.code(ts.st01, min_len=3, max_len=3, neutral="834"),
            echo.an(ts.st02, d, min_len=4, max_len=9, neutral="0000"),
            echo.an(ts.st03, d, max_len=35, neutral=""),
        )
    ]
    current: tuple[str | None, int | None] | None = None
    for issue in ts.issues:
        if issue.level not in (Level.SEGMENT, Level.ELEMENT):
            continue
        # IK301: the segment's ID as received when it is one (a mandatory ID, 2-3 letters and
        # digits). A segment whose ID is empty (`~~`) or unusable cannot be named, so it gets
        # no IK3 (nor IK4s) — a 999 its sender's translator cannot parse answers nothing. IK5
        # still rejects the set (5).
        # A lower-case ID (`dmg`) is still named as sent: it is the segment in error.
        ik301 = issue.segment_id or ""
        if not _SEGMENT_ID.fullmatch(ik301):
            continue
        loop_id = (issue.loop_id or "")[:MAX_LOOP_ID]
        if issue.level is Level.SEGMENT:
            out.append(
                segment(
                    "IK3",
                    ik301,
                    str(issue.segment_position or 0),
                    loop_id,
                    issue.code,
                )
            )
            current = (issue.segment_id, issue.segment_position)
            if _names_member(issue):
                out.append(
                    segment(
                        "CTX",
                        f"{CTX_BUSINESS_UNIT}{d.component}{_clean(_context_reference(issue), d)}",
                    )
                )
        else:
            if current != (issue.segment_id, issue.segment_position):
                # An IK4 always sits under its segment's IK3 (IK304 = 8).
                out.append(
                    segment(
                        "IK3",
                        ik301,
                        str(issue.segment_position or 0),
                        loop_id,
                        "8",
                    )
                )
                current = (issue.segment_id, issue.segment_position)
            out.append(_ik4(issue, d))
    out.append(segment("IK5", ts.ack_code.value, *ts.set_error_codes))
    return out


def _ik4(issue: Issue, d: Delimiters) -> Segment:
    position = str(issue.element_position or 0)
    if issue.component_position or issue.repetition_position:
        position += d.component + str(issue.component_position or "")
        if issue.repetition_position:
            position += d.component + str(issue.repetition_position)
    bad = ""
    if issue.code != "1" and issue.bad_value:
        bad = _clean(issue.bad_value, d)[:MAX_BAD_VALUE]
        # IK404 is a copy of the bad element: only when the copy is in X12's basic and
        # extended character sets. A NUL, a tab or a Latin-1/UTF-8 byte in our 999 would make
        # it as invalid as what it answers; IK403 (6, invalid character) says what was wrong.
        # So would a trailing space (an AN value's trailing spaces are suppressed, X12.6), and
        # a copy without it would not be the value sent.
        if (
            not bad.strip()
            or bad.endswith(" ")
            or not printable(bad)
            or _CONTROL_NAME.fullmatch(bad)
        ):
            bad = ""
    return segment("IK4", position, issue.element_ref or "", issue.code, bad)


_CONTROL_NAME = re.compile(r"<[A-Z]{2,3}>")
"""pyx12's name for a control character it found (`<HT>`): a description, not a copy."""


def _names_member(issue: Issue) -> bool:
    """CTX names the member (its REF*0F) for a finding inside a member's loops (2000 and under,
    all numbered 2xxx), not for the header (1000A..C) or the SE after the last member."""
    return bool(_context_reference(issue)) and (issue.loop_id or "").startswith("2")


def _context_reference(issue: Issue) -> str:
    """CTX01-2, AN 1/35: the subscriber number cut to 35, without the spaces a cut can leave
    at its end (an AN value has no trailing spaces)."""
    return (issue.business_unit or "").strip()[:MAX_CONTEXT_REFERENCE].rstrip()


def _clean(value: str, d: Delimiters) -> str:
    """A value copied into the ack must not carry the ack's own delimiters."""
    for ch in (d.element, d.component, d.segment, d.repetition):
        value = value.replace(ch, " ")
    return value
