"""Pure. A functional group's transaction-set results, in order, in bounded memory.

Exchanges send one 834 transaction set per family as readily as one per file: a monthly file
can hold a million sets. Their results are what the 999 (one AK2/IK5 each), the database (one
row each) and the gate (one decision each) are made from, so they are kept — but only the last
`keep` in memory. Older ones are handed, in order, to a spill that the caller provides (the
gateway writes them to a temporary file); without a spill every result stays in memory, as a
short file needs. The totals the acknowledgements need (sets accepted, the IK5 codes seen,
members) are kept as the results go, so reading them never reads the spill back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from validators.interchange import AckCode, TransactionSetResult

KEEP = 1_000  # results kept in memory per group before older ones spill
# A summary (the status API, the dashboard, `edi834 validate --json`) lists a group's first
# SETS_LISTED sets and counts the rest; the 999 answers every one.
SETS_LISTED = 1_000


class Spill(Protocol):
    """Where a long group's older set results go: appended in order, read back in order, as
    often as asked, until closed."""

    def write(self, items: list[TransactionSetResult]) -> None: ...

    def read(self) -> Iterator[TransactionSetResult]: ...

    def close(self) -> None: ...


SpillFactory = Callable[[], Spill]


class Totals:
    """Running sums over set results; merged from the spilled part and the kept part."""

    __slots__ = ("accepted", "codes", "members", "members_accepted", "sets")

    def __init__(self) -> None:
        self.sets = 0
        self.accepted = 0
        self.members = 0
        self.members_accepted = 0
        self.codes: set[AckCode] = set()

    def add(self, result: TransactionSetResult) -> None:
        code = result.ack_code
        self.sets += 1
        self.members += result.member_count
        self.codes.add(code)
        if result.accepted:
            self.accepted += 1
            self.members_accepted += result.member_count

    def merged(self, other: Totals) -> Totals:
        out = Totals()
        out.sets = self.sets + other.sets
        out.accepted = self.accepted + other.accepted
        out.members = self.members + other.members
        out.members_accepted = self.members_accepted + other.members_accepted
        out.codes = self.codes | other.codes
        return out


class SetList:
    """A group's set results in file order. The last one may still be growing (its SE not yet
    read), so it is never spilled; a spilled result is never changed again."""

    __slots__ = ("_keep", "_kept", "_spill", "_spill_factory", "_spilled")

    def __init__(self, spill: SpillFactory | None = None, keep: int | None = None) -> None:
        keep = KEEP if keep is None else keep
        if keep < 2:
            raise ValueError("keep at least 2 results")
        self._spill_factory = spill
        self._spill: Spill | None = None
        self._keep = keep
        self._kept: list[TransactionSetResult] = []
        self._spilled = Totals()

    def append(self, result: TransactionSetResult) -> None:
        kept = self._kept
        kept.append(result)
        if self._spill_factory is not None and len(kept) > self._keep:
            done = kept[:-1]
            if self._spill is None:
                self._spill = self._spill_factory()
            self._spill.write(done)
            for r in done:
                self._spilled.add(r)
            del kept[:-1]

    def __len__(self) -> int:
        return self._spilled.sets + len(self._kept)

    def __iter__(self) -> Iterator[TransactionSetResult]:
        if self._spill is not None:
            yield from self._spill.read()
        yield from self._kept

    def __getitem__(self, index: int) -> TransactionSetResult:
        """By position (negative from the end); a spilled one is read back, in order."""
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("set index out of range")
        spilled = self._spilled.sets
        if index >= spilled:
            return self._kept[index - spilled]
        for i, result in enumerate(self):
            if i == index:
                return result
        raise IndexError("set index out of range")  # pragma: no cover - counted above

    @property
    def spilled(self) -> int:
        """How many results are out of memory."""
        return self._spilled.sets

    def totals(self) -> Totals:
        kept = Totals()
        for r in self._kept:
            kept.add(r)
        return self._spilled.merged(kept)

    def close(self) -> None:
        """Let the spill go (its file is removed); the list is empty afterwards."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        self._kept = []
        self._spilled = Totals()
