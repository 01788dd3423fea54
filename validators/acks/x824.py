"""Pure, deterministic; no I/O, no clock (`now` is an argument). The 824 Application Advice
(005010X186A1): one interchange answering one received interchange, holding one GS*AG group with
one ST*824 per original 834 transaction set that had business-rule findings.

    ST*824*0001*005010X186A1
    BGN*11*<our reference>*<CCYYMMDD>*<HHMM>**<original BGN02>**<WQ|U>
    N1*41*<submitter name>*46*<our id>              loop 1000A, submitter (us)
    N1*40*<receiver name>*46*<their id>             loop 1000B, receiver (the 834's sender)
    OTI*<TA|TE|TP|TR>*TN*<original BGN02>***<GS04>*<GS05>*<GS06>*<ST02>*<ST01>*<GS08>   loop 2000
    TED*<647>*<message>*<segment id>*<position from ST>*<element position>**<bad value>  loop 2100
    SE

TED follows the 005010 segment: TED05 is the composite C030 (element position in segment) and
TED06 the composite C999 (data element reference numbers); there is no loop identifier in a
005010 TED, so `BusinessError.loop_id` is not written.

Sources: the layout and the codes BGN01 11, BGN08 WQ/U, N1*41/N1*40 with 46, OTI02 TN and the
OTI06..OTI11 order come from the X186A1 guide's own examples (`BGN*11*...**123456789**WQ`,
`OTI*TA*TN*NA***20020709*0902*2*0001*834*005010X220A1`, `TED*024**VEH*36*2`); lengths and types
from the 005010 data element dictionary. pyx12 ships no 824 map, so the code lists below are the
element 110 / 647 codes the gateway needs, checked against the 005010 dictionary only.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from parsers.delimiters import DEFAULT_DELIMITERS, Delimiters
from parsers.events import Segment
from parsers.writer import render_segments, segment
from validators.acks.reply import iea, reply_isa, with_component

ACK_VERSION = "005010X186A1"
FUNCTIONAL_ID = "AG"
TRANSACTION_SET_ID = "824"


class ApplicationAcknowledgmentCode(enum.Enum):
    """OTI01 — element 110, the transaction-set codes the gateway sends."""

    ACCEPTED = "TA"
    ACCEPTED_WITH_ERRORS = "TE"
    PARTIALLY_ACCEPTED = "TP"
    REJECTED = "TR"


class ApplicationErrorConditionCode(enum.Enum):
    """TED01 — element 647, the codes the gateway's business rules report."""

    DUPLICATE = "006"
    MISSING_DATA = "007"
    OUT_OF_RANGE = "008"
    INVALID_DATE = "009"
    TOTAL_OUT_OF_BALANCE = "010"
    NOT_MATCHING = "011"
    INVALID_COMBINATION = "012"
    OTHER_UNLISTED_REASON = "024"
    INCORRECT_DATA = "848"


class ActionCode(enum.Enum):
    """BGN08 — element 306: WQ accept, U reject."""

    ACCEPT = "WQ"
    REJECT = "U"


# BGN01 — element 353: the 824 is a response to the original transaction.
PURPOSE_RESPONSE = "11"
# N101 — element 98: 41 submitter (loop 1000A), 40 receiver (loop 1000B).
SUBMITTER = "41"
RECEIVER = "40"
# N103 — element 66: 46 Electronic Transmitter Identification Number (ETIN).
ETIN = "46"
# OTI02 — element 128: TN transaction reference number (OTI03 carries the original BGN02).
TRANSACTION_REFERENCE = "TN"
# OTI03 is mandatory; the guide's own example sends NA when there is no reference to quote.
NO_REFERENCE = "NA"

# Maximum lengths from the 005010 data element dictionary.
MAX_REFERENCE = 50  # 127 Reference Identification, AN 1/50 (BGN02, BGN06, OTI03)
MAX_NAME = 60  # 93 Name, AN 1/60 (N102)
MAX_ID_CODE = 80  # 67 Identification Code, AN 2/80 (N104)
MAX_MESSAGE = 60  # 3 Free-form Message, AN 1/60 (TED02)
MAX_BAD_VALUE = 99  # 724 Copy of Bad Data Element, AN 1/99 (TED07)
MAX_VERSION = 12  # 480 Version/Release/Industry Identifier Code, AN 1/12 (OTI11)
MAX_SEGMENT_POSITION = 999_999  # 719 Segment Position in Transaction Set, N0 1/6
MAX_ELEMENT_POSITION = 99  # 722 Element Position in Segment, N0 1/2

_ACTIONS = {c.value for c in ApplicationAcknowledgmentCode}
_ERROR_CODES = {c.value for c in ApplicationErrorConditionCode}
# TR and TP both report transaction sets (or parts of them) the sender must send again.
_REJECTING = {
    ApplicationAcknowledgmentCode.REJECTED.value,
    ApplicationAcknowledgmentCode.PARTIALLY_ACCEPTED.value,
}
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{1,2}")
_ST01 = re.compile(r"[0-9A-Z]{3}")
_DATE = re.compile(r"\d{8}")
_TIME = re.compile(r"\d{4}(\d{2}(\d{1,2})?)?")
_GROUP_CONTROL = re.compile(r"\d{1,9}")


@dataclass(frozen=True, slots=True)
class BusinessError:
    """One business-rule finding on the original transaction set: one TED (loop 2100)."""

    code: str
    """TED01 — an `ApplicationErrorConditionCode` value, e.g. "024" other unlisted reason."""
    message: str
    """TED02 — free text; delimiters and non-printable characters become spaces; 60 at most."""
    segment_id: str | None = None
    """TED03 — the segment in error, e.g. "INS"."""
    segment_position: int | None = None
    """TED04 — position of that segment in the original set, counted from ST = 1."""
    loop_id: str | None = None
    """Kept for the caller's records; a 005010 TED has no loop identifier, so it is not sent."""
    element_position: int | None = None
    """TED05 (C030-01) — position of the element in error within its segment, 1-based."""
    bad_value: str | None = None
    """TED07 — copy of the data element in error (cleaned like TED02; 99 at most)."""


@dataclass(frozen=True, slots=True)
class SetAdvice:
    """The business-rule verdict on one original 834 transaction set: one ST*824 (loop 2000)."""

    st01: str
    """Original ST01 (OTI10)."""
    st02: str
    """Original ST02 (OTI09)."""
    gs06: str
    """Original GS06 (OTI08)."""
    gs01: str
    """Original GS01; no OTI element carries it, so it identifies the group for the caller only."""
    gs08: str
    """Original GS08 (OTI11), e.g. 005010X220A1."""
    gs04: str
    """Original GS04, CCYYMMDD (OTI06)."""
    gs05: str
    """Original GS05, HHMM[SS[D[D]]] (OTI07)."""
    bgn02: str
    """Original BGN02, the 834's transaction set reference number (OTI03 and BGN06)."""
    action: str
    """OTI01 — an `ApplicationAcknowledgmentCode` value: TA, TE, TP or TR."""
    errors: tuple[BusinessError, ...]
    members_total: int = 0
    """Kept for the caller's records; not sent (no count segment is used in loop 2000)."""
    members_rejected: int = 0
    """Kept for the caller's records; not sent."""


def build_824(
    advices: Sequence[SetAdvice],
    *,
    control_number: int,
    now: dt.datetime,
    sender: tuple[str, str],
    receiver: tuple[str, str],
    usage: str = "P",
    gs02: str | None = None,
    gs03: str | None = None,
    delimiters: Delimiters = DEFAULT_DELIMITERS,
    submitter_name: str | None = None,
    receiver_name: str | None = None,
) -> bytes:
    """One interchange: ISA, GS*AG, an ST*824 per advice (ST02 0001, 0002, ...), GE, IEA.

    `sender` is our (qualifier, id) for ISA05/ISA06, `receiver` the original sender's for
    ISA07/ISA08; `control_number` is ISA13 (9 digits) and GS06. GS02/GS03 default to the two
    ids. N102 (submitter / receiver name) defaults to the party's id when no name is given.
    Text copied from the caller never carries a delimiter: see `clean_text`.

    Raises ValueError for a caller's mistake (naive clock, unknown code, unusable delimiters,
    an identifier that contains a delimiter, no advice); X12 content is never rejected.
    """
    d = delimiters
    _check_arguments(advices, control_number, now, sender, receiver, usage, gs02, gs03, d)
    isa = with_component(
        reply_isa(
            _received_isa(sender, receiver, usage),
            control_number=control_number,
            now=now,
            repetition=d.repetition,
            sender=sender,
        ),
        d.component,
    )
    gs = segment(
        "GS",
        FUNCTIONAL_ID,
        gs02 if gs02 is not None else sender[1].strip(),
        gs03 if gs03 is not None else receiver[1].strip(),
        now.strftime("%Y%m%d"),
        now.strftime("%H%M"),
        str(control_number),
        "X",
        ACK_VERSION,
    )
    parties = (
        segment(
            "N1",
            SUBMITTER,
            clean_text(submitter_name or sender[1], d, MAX_NAME) or sender[1].strip(),
            ETIN,
            sender[1].strip()[:MAX_ID_CODE],
        ),
        segment(
            "N1",
            RECEIVER,
            clean_text(receiver_name or receiver[1], d, MAX_NAME) or receiver[1].strip(),
            ETIN,
            receiver[1].strip()[:MAX_ID_CODE],
        ),
    )
    segments: list[Segment] = [isa, gs]
    for n, advice in enumerate(advices, start=1):
        segments.extend(_transaction(advice, f"{n:04d}", control_number, now, parties, d))
    segments.append(segment("GE", str(len(advices)), str(control_number)))
    segments.append(iea(1, control_number))
    return render_segments(segments, d)


def clean_text(value: str, delimiters: Delimiters, max_length: int) -> str:
    """An AN value that is safe in our own interchange: the four delimiters, control characters
    and anything outside printable ASCII become spaces, runs of spaces collapse to one, and the
    result is trimmed and cut to `max_length`. Empty when nothing printable is left."""
    unsafe = {delimiters.element, delimiters.component, delimiters.segment, delimiters.repetition}
    kept = "".join(ch if " " <= ch <= "~" and ch not in unsafe else " " for ch in value)
    return " ".join(kept.split())[:max_length].rstrip()


def action_code(action: str) -> ActionCode:
    """BGN08 for a set's OTI01: reject (U) when any of it must be sent again, else accept (WQ)."""
    return ActionCode.REJECT if action in _REJECTING else ActionCode.ACCEPT


def _transaction(
    advice: SetAdvice,
    st02: str,
    control_number: int,
    now: dt.datetime,
    parties: tuple[Segment, Segment],
    d: Delimiters,
) -> list[Segment]:
    original_reference = clean_text(advice.bgn02, d, MAX_REFERENCE)
    body: list[Segment] = [
        segment("ST", TRANSACTION_SET_ID, st02, ACK_VERSION),
        segment(
            "BGN",
            PURPOSE_RESPONSE,
            # Unique per 824 set, as ISA13 is per interchange; digits only, so it can never
            # collide with a delimiter the partner chose.
            f"{control_number:09d}{st02}",
            now.strftime("%Y%m%d"),
            now.strftime("%H%M"),
            "",
            original_reference,
            "",
            action_code(advice.action).value,
        ),
        *parties,
        _oti(advice, original_reference or NO_REFERENCE, d),
    ]
    body.extend(_ted(error, d) for error in advice.errors)
    body.append(segment("SE", str(len(body) + 1), st02))
    return body


def _oti(advice: SetAdvice, original_reference: str, d: Delimiters) -> Segment:
    gs04 = _matching(advice.gs04, _DATE, d)
    gs05 = _matching(advice.gs05, _TIME, d) if gs04 else ""
    # OTI08..OTI11 each need the one before them (group, set, set id, version): stop at a gap.
    trail: list[str] = []
    for value in (
        _matching(advice.gs06, _GROUP_CONTROL, d),
        _st02(advice.st02, d),
        _matching(advice.st01, _ST01, d),
        clean_text(advice.gs08, d, MAX_VERSION),
    ):
        if not value:
            break
        trail.append(value)
    return segment(
        "OTI",
        advice.action,
        TRANSACTION_REFERENCE,
        original_reference,
        "",
        "",
        gs04,
        gs05,
        *trail,
    )


def _ted(error: BusinessError, d: Delimiters) -> Segment:
    segment_id = clean_text(error.segment_id or "", d, MAX_NAME)
    position = error.segment_position
    element = error.element_position
    return segment(
        "TED",
        error.code,
        clean_text(error.message, d, MAX_MESSAGE),
        segment_id if _SEGMENT_ID.fullmatch(segment_id) else "",
        str(position) if position is not None and 1 <= position <= MAX_SEGMENT_POSITION else "",
        str(element) if element is not None and 1 <= element <= MAX_ELEMENT_POSITION else "",
        "",  # TED06 (C999 data element reference numbers): the finding does not carry them
        clean_text(error.bad_value or "", d, MAX_BAD_VALUE),
    )


def _matching(value: str, pattern: re.Pattern[str], d: Delimiters) -> str:
    cleaned = clean_text(value, d, 99)
    return cleaned if pattern.fullmatch(cleaned) else ""


def _st02(value: str, d: Delimiters) -> str:
    cleaned = clean_text(value, d, 9)
    return cleaned if len(cleaned) >= 4 and cleaned == value else ""


def _received_isa(sender: tuple[str, str], receiver: tuple[str, str], usage: str) -> Segment:
    """The addressing `reply_isa` answers: the original sender (`receiver`) in ISA05/ISA06, us
    in ISA07/ISA08, and the test/production indicator in ISA15."""
    elements = [""] * 16
    elements[4], elements[5] = receiver
    elements[6], elements[7] = sender
    elements[14] = usage
    return Segment(tag="ISA", elements=tuple(elements))


def _check_arguments(
    advices: Sequence[SetAdvice],
    control_number: int,
    now: dt.datetime,
    sender: tuple[str, str],
    receiver: tuple[str, str],
    usage: str,
    gs02: str | None,
    gs03: str | None,
    d: Delimiters,
) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not 1 <= control_number <= 999_999_999:
        raise ValueError("control_number must fit ISA13 (1 to 999999999)")
    if usage not in ("P", "T"):
        raise ValueError("usage must be P or T")
    if d.problems():
        raise ValueError(f"unusable delimiters: {', '.join(d.problems())}")
    if not advices:
        raise ValueError("an 824 needs at least one transaction set advice")
    unsafe = {d.element, d.component, d.segment, d.repetition}
    identifiers = {
        "sender qualifier": sender[0],
        "sender id": sender[1],
        "receiver qualifier": receiver[0],
        "receiver id": receiver[1],
        "gs02": gs02,
        "gs03": gs03,
    }
    for name, value in identifiers.items():
        # Identities are configuration, not content: refuse rather than rewrite them.
        if value is not None and (
            not value.strip()
            or not (value.isascii() and value.isprintable())
            or unsafe.intersection(value)
        ):
            raise ValueError(f"{name} {value!r} is empty, not printable ASCII, or has a delimiter")
    for advice in advices:
        if advice.action not in _ACTIONS:
            raise ValueError(f"OTI01 {advice.action!r} is not one of {sorted(_ACTIONS)}")
        for error in advice.errors:
            if error.code not in _ERROR_CODES:
                raise ValueError(f"TED01 {error.code!r} is not one of {sorted(_ERROR_CODES)}")
