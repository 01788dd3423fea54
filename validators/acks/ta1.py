"""Pure, deterministic. TA1 interchange acknowledgment in its own ISA/IEA envelope."""

from __future__ import annotations

import datetime as dt

from parsers.writer import render_segments, segment
from validators.acks import echo
from validators.acks.reply import iea, reply_isa, with_component
from validators.interchange import InterchangeResult


def build_ta1(
    result: InterchangeResult,
    *,
    control_number: int,
    now: dt.datetime,
    sender: tuple[str, str] | None = None,
    receiver: tuple[str, str] | None = None,
) -> bytes:
    """ISA / TA1*ISA13*ISA09*ISA10*TA104*TA105 / IEA, in the sender's delimiters when usable."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    d = result.reply_delimiters
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
    e = result.isa.element
    # TA101-TA103 echo ISA13/ISA09/ISA10 only when they are what the ISA says they are.
    ta1 = segment(
        "TA1",
        echo.digits(e(13), min_len=9, max_len=9, neutral="000000000"),
        echo.digits(e(9), min_len=6, max_len=6, neutral=now.strftime("%y%m%d")),
        echo.digits(e(10), min_len=4, max_len=4, neutral=now.strftime("%H%M")),
        result.ta1_code.value,
        result.ta1_note,
    )
    return render_segments([isa, ta1, iea(0, control_number)], d)
