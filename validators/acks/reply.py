"""Pure. The ISA/IEA (and GS/GE) we wrap our acknowledgements in, addressed back to the sender."""

from __future__ import annotations

import datetime as dt

from parsers.delimiters import DEFAULT_DELIMITERS, Delimiters
from parsers.events import Segment
from parsers.writer import segment
from validators.acks import echo

UNKNOWN_PARTY = "UNKNOWN"  # stands in for a received ISA06/ISA08 we cannot echo


def reply_isa(
    received_isa: Segment,
    *,
    control_number: int,
    now: dt.datetime,
    repetition: str,
    sender: tuple[str, str] | None = None,
    receiver: tuple[str, str] | None = None,
    delimiters: Delimiters = DEFAULT_DELIMITERS,
) -> Segment:
    """Our ISA: sender and receiver swapped from the received ISA; ISA14 = 0 (we ask for no TA1
    back); ISA15 mirrors the received test/production indicator. `sender` (qualifier, id) is our
    registered identity when known; otherwise we answer as the received ISA07/ISA08.
    `receiver` is the authenticated partner's registered ISA05/ISA06 when known: the ack is
    addressed to whoever sent the file — also when its ISA06 is another's (TA1 006) or cannot
    be echoed (a control character) — else to the received ISA05/ISA06. What we echo is
    checked against its element and our `delimiters` (see `echo`)."""
    e = received_isa.element
    d = delimiters
    our_qualifier, our_id = sender if sender is not None else (e(7), e(8))
    their_qualifier, their_id = receiver if receiver is not None else (e(5), e(6))
    usage = e(15) if e(15) in ("P", "T") else "P"
    return segment(
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        echo.code(our_qualifier, min_len=2, max_len=2, neutral="ZZ"),
        echo.fixed(our_id, d, width=15, neutral=UNKNOWN_PARTY),
        echo.code(their_qualifier, min_len=2, max_len=2, neutral="ZZ"),
        echo.fixed(their_id, d, width=15, neutral=UNKNOWN_PARTY),
        now.strftime("%y%m%d"),
        now.strftime("%H%M"),
        repetition,
        "00501",
        f"{control_number:09d}",
        "0",
        usage,
        "",  # ISA16 is filled by the caller with the component separator
    )


def with_component(isa: Segment, component: str) -> Segment:
    return Segment(tag="ISA", elements=(*isa.elements[:15], component))


def iea(group_count: int, control_number: int) -> Segment:
    return segment("IEA", str(group_count), f"{control_number:09d}")
