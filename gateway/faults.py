"""Named fault points for the crash-consistency and PHI tests, unset (one set lookup each) in
production.

`EDI834_CRASHPOINTS=a,b` makes the process kill itself with SIGKILL when it reaches one of them —
the real thing, not an exception, so the tests see exactly what a power cut or OOM kill at that
instant leaves behind. `EDI834_RAISEPOINTS=a,b` raises `InjectedFault` there instead, its message
quoting the data in hand, as a careless `raise ValueError(segment)` would: the stand-in for a bug
whose exception text carries member data."""

from __future__ import annotations

import os
import signal

_ARMED = frozenset(p for p in os.environ.get("EDI834_CRASHPOINTS", "").split(",") if p)
_RAISING = frozenset(p for p in os.environ.get("EDI834_RAISEPOINTS", "").split(",") if p)
RAISE_DETAIL_BYTES = 4096


class InjectedFault(RuntimeError):
    """Raised at an armed raise point."""


def crashpoint(name: str) -> None:
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)


def raisepoint(name: str, detail: bytes = b"") -> None:
    """Raise `InjectedFault` when armed; the message carries the start of `detail`, decoded
    only then (the unarmed path costs nothing)."""
    if name in _RAISING:
        text = detail[:RAISE_DETAIL_BYTES].decode("utf-8", "replace")
        raise InjectedFault(f"injected fault at {name}: {text}")
