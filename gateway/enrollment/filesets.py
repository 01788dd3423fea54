"""Every 834 set of a file as the ledger stage needs it: the gate's decision and the
(subscribers, dependents) validation counted, by the set's (interchange, group, set) ordinals.

Exchanges send one set per family as readily as one per file, so a file can hold a million
sets. Kept as arrays per functional group — one byte for the decision (the few distinct
decisions are interned) and two counts a set — a million sets cost about 9 MB, where a dict of
tuple keys to objects costs hundreds."""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Protocol

from gateway.enrollment.extract import SetKey
from gateway.gate import Decision

_ABSENT = -1


class SetCounts(Protocol):
    """(subscribers, dependents) per set key: FileSets.counts, or a dict when counted anew."""

    def get(self, key: SetKey, default: tuple[int, int], /) -> tuple[int, int]: ...

    def __len__(self) -> int: ...


class _Group:
    __slots__ = ("decision", "dependents", "subscribers")

    def __init__(self) -> None:
        self.decision = array("b")
        self.subscribers = array("i")
        self.dependents = array("i")

    def grow(self, size: int) -> None:
        missing = size - len(self.decision)
        if missing > 0:
            self.decision.extend([_ABSENT] * missing)
            self.subscribers.extend([0] * missing)
            self.dependents.extend([0] * missing)


class FileSets:
    """A file's 834 sets: `key in sets`, `sets[key]` / `sets.get(key, default)` for the
    decision, `sets.counts.get(key, (0, 0))` for what validation counted."""

    __slots__ = ("_decisions", "_groups", "_index", "_len", "counted")

    def __init__(self) -> None:
        self._groups: dict[tuple[int, int], _Group] = {}
        self._decisions: list[Decision] = []
        self._index: dict[Decision, int] = {}
        self._len = 0
        # False once a set comes without counts (validated before sets kept them).
        self.counted = True

    def add(self, key: SetKey, decision: Decision, counts: tuple[int, int] | None) -> None:
        envelope, group, tset = key
        g = self._groups.get((envelope, group))
        if g is None:
            g = self._groups[(envelope, group)] = _Group()
        g.grow(tset + 1)
        code = self._index.get(decision)
        if code is None:
            if len(self._decisions) >= 127:  # pragma: no cover - a handful of reasons exist
                raise ValueError("too many distinct gate decisions in one file")
            code = self._index[decision] = len(self._decisions)
            self._decisions.append(decision)
        if g.decision[tset] == _ABSENT:
            self._len += 1
        g.decision[tset] = code
        if counts is None:
            self.counted = False
        else:
            g.subscribers[tset], g.dependents[tset] = counts

    def _slot(self, key: SetKey) -> tuple[_Group, int] | None:
        envelope, group, tset = key
        g = self._groups.get((envelope, group))
        if g is None or not 0 <= tset < len(g.decision) or g.decision[tset] == _ABSENT:
            return None
        return g, tset

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 3 and self._slot(key) is not None

    def get(self, key: SetKey, default: Decision) -> Decision:
        slot = self._slot(key)
        return default if slot is None else self._decisions[slot[0].decision[slot[1]]]

    def __getitem__(self, key: SetKey) -> Decision:
        slot = self._slot(key)
        if slot is None:
            raise KeyError(key)
        return self._decisions[slot[0].decision[slot[1]]]

    def __len__(self) -> int:
        return self._len

    def values(self) -> Iterator[Decision]:
        """Each set's decision (the same object for sets decided alike)."""
        for g in self._groups.values():
            for code in g.decision:
                if code != _ABSENT:
                    yield self._decisions[code]

    @property
    def counts(self) -> _Counts:
        return _Counts(self)


class _Counts:
    """(subscribers, dependents) per set, as validation counted them; empty when uncounted."""

    __slots__ = ("_sets",)

    def __init__(self, sets: FileSets) -> None:
        self._sets = sets

    def __len__(self) -> int:
        return len(self._sets) if self._sets.counted else 0

    def get(self, key: SetKey, default: tuple[int, int]) -> tuple[int, int]:
        slot = self._sets._slot(key) if self._sets.counted else None
        if slot is None:
            return default
        g, tset = slot
        return g.subscribers[tset], g.dependents[tset]
