"""Pure. The ST02 control numbers seen in a functional group, for IK502 23 (not unique).

A group can hold a million sets. Senders number them in runs — 0001, 0002, ... — so numbers of
one width are kept as ranges of consecutive values: a million sets numbered in order are one
range, not a million strings. Anything else (letters, spaces, numbers out of order beyond a
bound on the ranges) is kept as it came. Membership is exact: "0001" and "1" differ.
"""

from __future__ import annotations

import bisect

MAX_RANGES = 50_000  # per width; numbers past it are kept one by one


class _Ranges:
    """Disjoint, non-adjacent [start, end] ranges of ints, sorted."""

    __slots__ = ("ends", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def __contains__(self, n: int) -> bool:
        i = bisect.bisect_right(self.starts, n) - 1
        return i >= 0 and n <= self.ends[i]

    def add(self, n: int) -> bool:
        """Add n; False when it would need a new range past MAX_RANGES (nothing added)."""
        starts, ends = self.starts, self.ends
        if ends and n == ends[-1] + 1:  # the usual case: the next number in order
            ends[-1] = n
            return True
        i = bisect.bisect_right(starts, n) - 1
        if i >= 0 and n <= ends[i]:
            return True
        joins_left = i >= 0 and ends[i] == n - 1
        joins_right = i + 1 < len(starts) and starts[i + 1] == n + 1
        if joins_left and joins_right:
            ends[i] = ends[i + 1]
            del starts[i + 1], ends[i + 1]
        elif joins_left:
            ends[i] = n
        elif joins_right:
            starts[i + 1] = n
        elif len(starts) >= MAX_RANGES:
            return False
        else:
            starts.insert(i + 1, n)
            ends.insert(i + 1, n)
        return True


class ControlNumbers:
    """A set of strings, compact for runs of same-width decimal numbers."""

    __slots__ = ("_other", "_ranges")

    def __init__(self) -> None:
        self._ranges: dict[int, _Ranges] = {}
        self._other: set[str] = set()

    @staticmethod
    def _number(value: str) -> int | None:
        return int(value) if value.isascii() and value.isdigit() else None

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        n = self._number(value)
        if n is not None:
            ranges = self._ranges.get(len(value))
            if ranges is not None and n in ranges:
                return True
        return value in self._other

    def add(self, value: str) -> None:
        n = self._number(value)
        if n is not None and self._ranges.setdefault(len(value), _Ranges()).add(n):
            return
        self._other.add(value)
