"""Pure; no I/O, no clock. The control segments' checks — ISA/IEA (TA105), GS/GE (AK905) and
ST/SE (IK502) — the envelope rules of X12.6. Each function returns every issue it finds.
(`parsers.envelope` reads the envelope; this module judges it.)"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Container

from parsers.delimiters import Delimiters, is_delimiter_char
from parsers.events import Segment
from parsers.tokenizer import ISA_WIDTHS
from validators.issues import (
    GroupErrorCode,
    InterchangeNoteCode,
    Issue,
    Level,
    TransactionSetErrorCode,
    meaning,
)

SUPPORTED_ISA12 = "00501"
FUNCTIONAL_ID = "BE"
RESPONSIBLE_AGENCY = "X"  # GS07: Accredited Standards Committee X12
ACKNOWLEDGMENT_GROUP = "FA"  # GS01 of a 997 or 999 (and of the 999s we send)
ACKNOWLEDGMENT_SETS = frozenset({"997", "999"})  # ST01 of an acknowledgment
GUIDE_VERSION = "005010X220A1"
TRANSACTION_SET_ID = "834"
# ISA05/ISA07 interchange ID qualifiers (X12 I05).
ID_QUALIFIERS = frozenset(
    {
        "01",
        "02",
        "03",
        "04",
        "07",
        "08",
        "09",
        "10",
        "11",
        "12",
        "13",
        "14",
        "15",
        "16",
        "17",
        "18",
        "19",
        "20",
        "24",
        "27",
        "28",
        "29",
        "30",
        "33",
        "34",
        "NR",
        "SN",
        "ZZ",
    }
)
_DIGITS = re.compile(r"\d+")


def ascii_digits(value: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '²' or '٣', which int() refuses or reads."""
    return value.isascii() and value.isdigit()


MAX_COUNT_DIGITS = 18


def declared_count(value: str) -> int | None:
    """A count the sender declared (IEA01, GE01, SE01), or None when it is not one: not ASCII
    digits, or longer than any count could be (int() of thousands of digits raises)."""
    digits = value.lstrip("0") or "0"
    if not ascii_digits(value) or len(digits) > MAX_COUNT_DIGITS:
        return None
    return int(digits)


def shown(value: str, limit: int = 20) -> str:
    """A sender's value quoted in a message, cut so a hostile one cannot flood it."""
    return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} characters)"


def _ta1(code: InterchangeNoteCode, detail: str = "", segment_id: str = "ISA") -> Issue:
    text = meaning("TA105", code.value)
    return Issue(
        level=Level.INTERCHANGE,
        code=code.value,
        message=f"{text} {detail}".strip(),
        segment_id=segment_id,
    )


def _valid_date(yymmdd: str) -> bool:
    if len(yymmdd) != 6 or not ascii_digits(yymmdd):
        return False
    try:
        dt.date(2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:]))
    except ValueError:
        return False
    return True


def valid_ccyymmdd(value: str) -> bool:
    if len(value) != 8 or not ascii_digits(value):
        return False
    try:
        dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return False
    return True


def valid_hhmm(value: str) -> bool:
    if len(value) < 4 or not ascii_digits(value[:4]):
        return False
    return int(value[:2]) < 24 and int(value[2:4]) < 60


def check_isa(
    isa: Segment,
    delimiters: Delimiters,
    *,
    fixed_width: bool,
    leading_bytes: int = 0,
    expected_sender: tuple[str, str] | None = None,
    expected_receiver: tuple[str, str] | None = None,
) -> list[Issue]:
    """TA105 findings for one ISA. `expected_*` are (qualifier, id) pairs, ids unpadded."""
    issues: list[Issue] = []
    e = isa.element
    if leading_bytes:
        issues.append(
            _ta1(
                InterchangeNoteCode.INVALID_CONTROL_STRUCTURE,
                f"{leading_bytes} bytes precede the ISA.",
            )
        )
    # Delimiters: X12.5 — distinct, not letters or digits.
    if not is_delimiter_char(delimiters.element):
        issues.append(_ta1(InterchangeNoteCode.INVALID_ELEMENT_SEPARATOR))
    if not is_delimiter_char(delimiters.component) or delimiters.component == delimiters.element:
        issues.append(_ta1(InterchangeNoteCode.INVALID_COMPONENT_SEPARATOR))
    term = delimiters.segment
    if (
        len(term) != 1
        or term.isalnum()
        or term == " "
        or term in (delimiters.element, delimiters.component, delimiters.repetition)
    ):
        issues.append(_ta1(InterchangeNoteCode.INVALID_SEGMENT_TERMINATOR))
    rep = e(11)
    if (
        len(rep) != 1
        or not is_delimiter_char(rep)
        or rep
        in (
            delimiters.element,
            delimiters.component,
            term,
        )
    ):
        issues.append(_ta1(InterchangeNoteCode.INVALID_STANDARDS_IDENTIFIER))
    if len(isa.elements) != 16:
        issues.append(
            _ta1(InterchangeNoteCode.INVALID_CONTROL_STRUCTURE, "The ISA must have 16 elements.")
        )
        return issues
    widths_ok = [len(e(i + 1)) == w for i, w in enumerate(ISA_WIDTHS)]
    if e(1) not in ("00", "03"):
        issues.append(_ta1(InterchangeNoteCode.INVALID_AUTHORIZATION_QUALIFIER))
    if not widths_ok[1] or (e(1) == "00" and e(2).strip()):
        issues.append(_ta1(InterchangeNoteCode.INVALID_AUTHORIZATION_VALUE))
    if e(3) not in ("00", "01"):
        issues.append(_ta1(InterchangeNoteCode.INVALID_SECURITY_QUALIFIER))
    if not widths_ok[3] or (e(3) == "00" and e(4).strip()):
        issues.append(_ta1(InterchangeNoteCode.INVALID_SECURITY_VALUE))
    if e(5) not in ID_QUALIFIERS:
        issues.append(_ta1(InterchangeNoteCode.INVALID_SENDER_QUALIFIER))
    if not widths_ok[5] or not e(6).strip():
        issues.append(_ta1(InterchangeNoteCode.INVALID_SENDER_ID, "ISA06 must be 15 characters."))
    elif expected_sender is not None and (e(5), e(6).strip()) != expected_sender:
        issues.append(
            _ta1(
                InterchangeNoteCode.INVALID_SENDER_ID,
                "The sender in ISA05/ISA06 is not the trading partner that submitted the file.",
            )
        )
    if e(7) not in ID_QUALIFIERS:
        issues.append(_ta1(InterchangeNoteCode.INVALID_RECEIVER_QUALIFIER))
    if not widths_ok[7] or not e(8).strip():
        issues.append(_ta1(InterchangeNoteCode.INVALID_RECEIVER_ID, "ISA08 must be 15 characters."))
    elif expected_receiver is not None and (e(7), e(8).strip()) != expected_receiver:
        # Both elements, as received and as ours: a qualifier alone can be what differs.
        received, ours = f"{e(7)}:{e(8).strip()}", ":".join(expected_receiver)
        issues.append(
            _ta1(
                InterchangeNoteCode.UNKNOWN_RECEIVER_ID,
                f"ISA07/ISA08 is {received}; ours is {ours}.",
            )
        )
    if not _valid_date(e(9)):
        issues.append(_ta1(InterchangeNoteCode.INVALID_DATE))
    if len(e(10)) != 4 or not valid_hhmm(e(10)):
        issues.append(_ta1(InterchangeNoteCode.INVALID_TIME))
    if e(12) != SUPPORTED_ISA12:
        if len(e(12)) == 5 and ascii_digits(e(12)):
            issues.append(_ta1(InterchangeNoteCode.VERSION_NOT_SUPPORTED, f"ISA12 is {e(12)}."))
        else:
            issues.append(_ta1(InterchangeNoteCode.INVALID_VERSION_ID))
    if not (len(e(13)) == 9 and ascii_digits(e(13))):
        issues.append(_ta1(InterchangeNoteCode.INVALID_CONTROL_NUMBER))
    if e(14) not in ("0", "1"):
        issues.append(_ta1(InterchangeNoteCode.INVALID_ACK_REQUESTED))
    if e(15) not in ("P", "T"):
        issues.append(_ta1(InterchangeNoteCode.INVALID_TEST_INDICATOR))
    if not fixed_width and not any(not ok for ok in widths_ok):
        issues.append(
            _ta1(InterchangeNoteCode.INVALID_CONTROL_STRUCTURE, "The ISA is not 106 characters.")
        )
    return issues


def check_iea(isa: Segment, iea: Segment | None, group_count: int) -> list[Issue]:
    """TA105 001 / 021 / 023 for an interchange's trailer."""
    if iea is None:
        return [_ta1(InterchangeNoteCode.PREMATURE_END_OF_FILE)]
    issues: list[Issue] = extra_elements(iea, IEA_ELEMENTS)
    if iea.element(2) != isa.element(13):
        issues.append(_ta1(InterchangeNoteCode.CONTROL_NUMBER_MISMATCH))
    declared = iea.element(1)
    if declared_count(declared) != group_count:
        issues.append(
            _ta1(
                InterchangeNoteCode.INVALID_GROUP_COUNT,
                f"IEA01 says {shown(declared) or 'nothing'}; the interchange has {group_count}.",
            )
        )
    return issues


def _ak9(code: GroupErrorCode, detail: str = "") -> Issue:
    return Issue(
        level=Level.GROUP,
        code=code.value,
        message=f"{meaning('AK905', code.value)} {detail}".strip(),
        segment_id="GS",
    )


def check_gs(gs: Segment, *, seen_gs06: set[str]) -> list[Issue]:
    """AK905 findings for a GS (1, 2, 6, 19). `seen_gs06` holds the interchange's earlier GS06s."""
    issues: list[Issue] = []
    if gs.element(1) != FUNCTIONAL_ID:
        issues.append(_ak9(GroupErrorCode.NOT_SUPPORTED, f"GS01 is {gs.element(1) or 'empty'}."))
    if gs.element(8) != GUIDE_VERSION:
        issues.append(
            _ak9(GroupErrorCode.VERSION_NOT_SUPPORTED, f"GS08 is {gs.element(8) or 'empty'}.")
        )
    gs06 = gs.element(6)
    if not (1 <= len(gs06) <= 9 and ascii_digits(gs06)):
        issues.append(_ak9(GroupErrorCode.CONTROL_NUMBER_SYNTAX))
    elif gs06 in seen_gs06:
        issues.append(_ak9(GroupErrorCode.CONTROL_NUMBER_NOT_UNIQUE))
    return issues


def valid_tm(value: str) -> bool:
    """X12 TM 4/8: HHMM, HHMMSS, HHMMSSd or HHMMSSdd."""
    if len(value) not in (4, 6, 7, 8) or not ascii_digits(value) or not valid_hhmm(value):
        return False
    return len(value) == 4 or int(value[4:6]) < 60


GS_ELEMENTS = 8
GE_ELEMENTS = 2
IEA_ELEMENTS = 2


def printable(value: str) -> bool:
    """X12's basic and extended character sets: printable ASCII (no control character, no
    byte above 0x7E). Delimiters never reach an element's value."""
    return all(" " <= ch <= "~" for ch in value)


def extra_elements(segment: Segment, expected: int) -> list[Issue]:
    """TA1 024 for a GE or IEA with more elements than the standard gives it: the 999 has no
    place for the trailers' own elements."""
    if len(segment.elements) <= expected:
        return []
    return [
        _ta1(
            InterchangeNoteCode.INVALID_CONTENT,
            f"{segment.tag} has {len(segment.elements)} elements; it has {expected}.",
            segment.tag,
        )
    ]


def check_gs_content(gs: Segment, delimiters: Delimiters) -> list[Issue]:
    """TA1 024 (invalid interchange content) for a GS whose sender or receiver code, date,
    time, agency code or version is not one: the 999 has no place for the GS's own elements
    (AK905 codes are about the group's control), so the interchange answers for it, as
    translators do. A separator of the interchange's (ISA16, ISA11) is no character of a
    simple element's; an empty GS08 left the 999's AK103 (mandatory) empty."""
    separators = {delimiters.component, delimiters.repetition_separator} - {None}

    def usable(value: str, low: int, high: int) -> bool:
        return low <= len(value) <= high and printable(value) and separators.isdisjoint(value)

    problems = []
    if len(gs.elements) > GS_ELEMENTS:
        problems.append(f"GS has {len(gs.elements)} elements; it has {GS_ELEMENTS}.")
    for position, name in ((2, "application sender's code"), (3, "application receiver's code")):
        if not usable(gs.element(position), 2, 15):
            problems.append(
                f"GS{position:02d} ({name}) is not 2 to 15 characters of X12's character set "
                "without a separator."
            )
    if not valid_ccyymmdd(gs.element(4)):
        problems.append(f"GS04 {shown(gs.element(4)) or '(empty)'} is not a CCYYMMDD date.")
    if not valid_tm(gs.element(5)):
        problems.append(f"GS05 {shown(gs.element(5)) or '(empty)'} is not an HHMM[SS[dd]] time.")
    if gs.element(7) != RESPONSIBLE_AGENCY:
        problems.append(f"GS07 is {shown(gs.element(7)) or '(empty)'}; 005010X220A1 uses X.")
    if not usable(gs.element(8), 1, 12):
        problems.append(
            f"GS08 {shown(gs.element(8)) or '(empty)'} is not a version code: 1 to 12 "
            "characters of X12's character set without a separator (005010X220A1)."
        )
    return [_ta1(InterchangeNoteCode.INVALID_CONTENT, problem, "GS") for problem in problems]


def check_ge(gs: Segment, ge: Segment | None, set_count: int) -> list[Issue]:
    """AK905 3 / 4 / 5 for a group's trailer."""
    if ge is None:
        return [_ak9(GroupErrorCode.TRAILER_MISSING)]
    issues: list[Issue] = []
    if ge.element(2) != gs.element(6):
        issues.append(_ak9(GroupErrorCode.CONTROL_NUMBER_MISMATCH))
    declared = ge.element(1)
    if declared_count(declared) != set_count:
        issues.append(
            _ak9(
                GroupErrorCode.SET_COUNT_WRONG,
                f"GE01 says {shown(declared) or 'nothing'}; the group has {set_count}.",
            )
        )
    return issues


def _ik5(code: TransactionSetErrorCode, segment_id: str, detail: str = "") -> Issue:
    return Issue(
        level=Level.TRANSACTION,
        code=code.value,
        message=f"{meaning('IK502', code.value)} {detail}".strip(),
        segment_id=segment_id,
    )


def check_st(st: Segment, *, seen_st02: Container[str]) -> list[Issue]:
    """IK502 6 / 7 / 19 / 23 for an ST."""
    issues: list[Issue] = []
    if st.element(1) != TRANSACTION_SET_ID:
        issues.append(
            _ik5(
                TransactionSetErrorCode.INVALID_IDENTIFIER,
                "ST",
                f"ST01 is {st.element(1) or 'empty'}; a BE group carries 834s.",
            )
        )
    st02 = st.element(2)
    if not (4 <= len(st02) <= 9) or not st02.strip():
        issues.append(_ik5(TransactionSetErrorCode.INVALID_CONTROL_NUMBER, "ST"))
    elif st02 in seen_st02:
        issues.append(_ik5(TransactionSetErrorCode.CONTROL_NUMBER_NOT_UNIQUE, "ST"))
    if st.element(3) != GUIDE_VERSION:
        issues.append(
            _ik5(
                TransactionSetErrorCode.INVALID_CONVENTION_REFERENCE,
                "ST",
                f"ST03 is {st.element(3) or 'empty'}.",
            )
        )
    return issues


def check_se(st: Segment, se: Segment | None, segment_count: int) -> list[Issue]:
    """IK502 2 / 3 / 4 for a set's trailer. `segment_count` counts ST through SE."""
    if se is None:
        return [_ik5(TransactionSetErrorCode.TRAILER_MISSING, "SE")]
    issues: list[Issue] = []
    if se.element(2) != st.element(2):
        issues.append(_ik5(TransactionSetErrorCode.CONTROL_NUMBER_MISMATCH, "SE"))
    declared = se.element(1)
    if declared_count(declared) != segment_count:
        issues.append(
            _ik5(
                TransactionSetErrorCode.SEGMENT_COUNT_WRONG,
                "SE",
                f"SE01 says {shown(declared) or 'nothing'}; the set has {segment_count} segments.",
            )
        )
    return issues
