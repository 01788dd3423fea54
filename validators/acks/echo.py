"""Pure. What our acknowledgements copy from a received envelope: a value is echoed only when it
is valid for its element and free of the delimiters we write with; otherwise a neutral value
stands in (the TA105 / AK905 / IK5 code already says what was wrong). An ack must parse back into
exactly the segments we meant: an ISA13 of `1~TA1*X*Y` must never become a second TA1."""

from __future__ import annotations

import re

from parsers.delimiters import Delimiters

_DIGITS = re.compile(r"[0-9]+")
_ID = re.compile(r"[0-9A-Z]+")


def clean(value: str, d: Delimiters) -> bool:
    """Printable ASCII (X12's basic and extended character sets) and none of our delimiters."""
    unsafe = {d.element, d.component, d.segment, d.repetition}
    return all(" " <= ch <= "~" and ch not in unsafe for ch in value)


def an(value: str, d: Delimiters, *, max_len: int, neutral: str, min_len: int = 1) -> str:
    """An AN (string) element: as received when clean and min_len..max_len long."""
    stripped = value.strip()
    if clean(value, d) and min_len <= len(stripped) <= max_len:
        return stripped
    return neutral


def fixed(value: str, d: Delimiters, *, width: int, neutral: str) -> str:
    """A fixed-width AN element of the ISA (ISA06/ISA08): as received when clean, padded."""
    if clean(value, d) and value.strip():
        return value[:width].ljust(width)
    return neutral[:width].ljust(width)


def code(value: str, *, min_len: int, max_len: int, neutral: str) -> str:
    """An ID element (a code): upper-case letters and digits only."""
    if _ID.fullmatch(value) and min_len <= len(value) <= max_len:
        return value
    return neutral


def digits(value: str, *, min_len: int, max_len: int, neutral: str) -> str:
    """An N0 / DT / TM element: ASCII digits only, within its length."""
    if _DIGITS.fullmatch(value) and min_len <= len(value) <= max_len:
        return value
    return neutral
