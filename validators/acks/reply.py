"""Pure. The ISA/IEA (and GS/GE) we wrap our acknowledgements in, addressed back to the sender."""

from __future__ import annotations

import datetime as dt

from parsers.events import Segment
from parsers.writer import segment


def reply_isa(
    received_isa: Segment,
    *,
    control_number: int,
    now: dt.datetime,
    repetition: str,
    sender: tuple[str, str] | None = None,
) -> Segment:
    """Our ISA: sender and receiver swapped from the received ISA; ISA14 = 0 (we ask for no TA1
    back); ISA15 mirrors the received test/production indicator. `sender` (qualifier, id) is our
    registered identity when known; otherwise we answer as the received ISA07/ISA08."""
    e = received_isa.element
    our_qualifier, our_id = sender if sender is not None else (e(7), e(8))
    usage = e(15) if e(15) in ("P", "T") else "P"
    return segment(
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        _fit(our_qualifier, 2) if our_qualifier.strip() else "ZZ",
        _fit(our_id, 15),
        _fit(e(5), 2) if e(5).strip() else "ZZ",
        _fit(e(6), 15),
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


def _fit(value: str, width: int) -> str:
    return value[:width].ljust(width)
