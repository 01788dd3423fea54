"""Pure. What our acknowledgements copy from a received envelope: a value is echoed only when it
is valid for its element and free of the delimiters we write with; otherwise a neutral value
stands in (the TA105 / AK905 / IK5 code already says what was wrong). An ack must parse back into
exactly the segments we meant: an ISA13 of `1~TA1*X*Y` must never become a second TA1."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from parsers.delimiters import Delimiters, is_delimiter_char
from validators.control import printable

_DIGITS = re.compile(r"[0-9]+")
_ID = re.compile(r"[0-9A-Z]+")
# Separators an ack may use instead of the sender's, in order of preference.
_SPARE_SEPARATORS = ":^>|\\!{}~*#@`&+;<=?[]_%$"


def clean(value: str, d: Delimiters) -> bool:
    """Printable ASCII (X12's basic and extended character sets) and none of our delimiters."""
    unsafe = {d.element, d.component, d.segment, d.repetition}
    return printable(value) and unsafe.isdisjoint(value)


def an(value: str, d: Delimiters, *, max_len: int, neutral: str, min_len: int = 1) -> str:
    """An AN (string) element: as received when clean and min_len..max_len long, without
    trailing spaces (X12.6 suppresses them; leading ones are part of the value: an ST02 of
    ` 0001` is answered as ` 0001`, which the sender's translator matches)."""
    kept = value.rstrip(" ")
    if clean(value, d) and kept.strip() and min_len <= len(kept) <= max_len:
        return kept
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


def reply_delimiters(d: Delimiters, copied: Iterable[str]) -> Delimiters:
    """The delimiters to answer in: `d` (the sender's, when usable), except that a separator
    occurring in a value the ack copies as sent (an IK404 bad value, a CTX subscriber number)
    is swapped for a spare one, so the copy keeps it (X231A1 IK404: a copy of the bad data
    element) and still cannot split or forge anything. Deterministic: the same findings give
    the same delimiters."""
    used = set("".join(copied))
    chosen: dict[str, str] = {}
    for name in ("element", "segment", "component", "repetition"):
        current: str = getattr(d, name)
        others = {getattr(d, n) for n in ("element", "segment", "component", "repetition")}
        others.discard(current)
        others.update(chosen.values())
        if current in used or current in chosen.values():
            spare = next(
                (
                    ch
                    for ch in _SPARE_SEPARATORS
                    if ch not in used and ch not in others and is_delimiter_char(ch)
                ),
                None,
            )
            # Every spare occurs in the values: keep ours; the builder blanks them in copies.
            current = spare if spare is not None else current
        chosen[name] = current
    return dataclasses.replace(d, **chosen)
