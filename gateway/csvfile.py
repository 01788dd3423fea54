"""Pure. The one CSV writer of every export (the rejects list, a reconciliation report): rows
become text a page at a time, and no cell from sender data can start a spreadsheet formula
(CSV injection: a leading =, +, -, @, tab or carriage return is quoted away with a ')."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """A text cell that a spreadsheet shows as text; numbers and the rest unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


class CsvLines:
    """Rows in, CSV text out: `add` rows, then `take` what they make (and forget it)."""

    def __init__(self, header: Iterable[str]) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer)
        self._writer.writerow(list(header))

    def add(self, row: Iterable[object]) -> None:
        self._writer.writerow([csv_safe(v) for v in row])

    def take(self) -> str:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text
