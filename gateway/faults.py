"""Named crash points for the crash-consistency tests. `EDI834_CRASHPOINTS=a,b` makes the process
kill itself with SIGKILL when it reaches one of them — the real thing, not an exception, so the
tests see exactly what a power cut or OOM kill at that instant leaves behind. Unset in production:
a crashpoint is then one set lookup."""

from __future__ import annotations

import os
import signal

_ARMED = frozenset(p for p in os.environ.get("EDI834_CRASHPOINTS", "").split(",") if p)


def crashpoint(name: str) -> None:
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
