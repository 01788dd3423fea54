"""API-key look-ups, remembered for a short, bounded time (issue 19): a partner's requests
authenticate without a database round trip or a threadpool trip, and a key that is rotated or
disabled (in any process: `edi834 partner rotate-key | disable`) stops working at most `ttl`
seconds later, since a remembered answer is never used after its time. Unknown keys are not
remembered (a new or re-enabled key works at once), and at most `max_entries` keys are, keyed by
the key's SHA-256, never the key itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """The partner an API key belongs to, as the routes need it (not an ORM row, so one value
    can be shared by every request and thread)."""

    id: int
    name: str


class ApiKeyCache:
    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, KeyOwner]] = {}  # key hash -> (expires, owner)
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> KeyOwner | None:
        """The owner remembered for this key, if it was looked up less than `ttl` ago."""
        found = self._entries.get(key_hash)
        if found is None:
            return None
        if self._clock() >= found[0]:
            with self._lock:
                if self._entries.get(key_hash) is found:
                    del self._entries[key_hash]
            return None
        return found[1]

    def put(self, key_hash: str, owner: KeyOwner, *, looked_up_at: float) -> None:
        """Remember `owner` until `ttl` after `looked_up_at` (the clock's reading taken before
        the database was asked, so the bound holds from the answer's own age)."""
        if self.ttl <= 0:
            return
        with self._lock:
            if key_hash not in self._entries and len(self._entries) >= self.max_entries:
                now = self._clock()
                for stale in [h for h, (exp, _) in self._entries.items() if exp <= now]:
                    del self._entries[stale]
                while len(self._entries) >= self.max_entries:  # the oldest remembered first
                    del self._entries[next(iter(self._entries))]
            self._entries[key_hash] = (looked_up_at + self.ttl, owner)

    def due(self, key_hash: str) -> bool:
        """True, once, when this key's answer expires within a fifth of `ttl` (at most 1 s) and
        no one is looking it up again: the caller does, ahead of time, and reports with
        `refreshed`. A key in steady use then never expires under its requests — which would
        all go to the database at once — and no answer is used after its time all the same."""
        found = self._entries.get(key_hash)
        if found is None or key_hash in self._refreshing:
            return False
        if found[0] - self._clock() > min(1.0, self.ttl / 5):
            return False
        with self._lock:
            if key_hash in self._refreshing:
                return False
            self._refreshing.add(key_hash)
        return True

    def refreshed(
        self, key_hash: str, owner: KeyOwner | None, *, looked_up_at: float | None
    ) -> None:
        """A look-up started by `due` answered: the key's partner (remembered from
        `looked_up_at` on), None (unknown or disabled now: forgotten at once), or it failed
        (`looked_up_at` None: the remembered answer stands until its time)."""
        with self._lock:
            self._refreshing.discard(key_hash)
            if looked_up_at is not None and owner is None:
                self._entries.pop(key_hash, None)
        if looked_up_at is not None and owner is not None:
            self.put(key_hash, owner, looked_up_at=looked_up_at)

    def now(self) -> float:
        return self._clock()
