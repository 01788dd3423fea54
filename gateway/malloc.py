"""How many malloc arenas a gateway process may keep (glibc), set once as it starts.

glibc gives each new thread that allocates an arena of its own, up to eight per core, and an
arena keeps what was freed in it for its own threads' next allocations. `serve`
runs a dozen threads (the event loop, the API's threadpool, SFTP, the worker's loops, the
ledger stage). Measured on this 2-core machine (`bench_memory.py --only many-sets --mb 200`:
220,000 one-member sets; `bench_ledger.py --members --e2e-members 100000`: one file end to
end), by `MALLOC_ARENA_MAX`:

- glibc's default (16 here): peak 258.8 MB; 100,000 members exported at 55.5-60.3 s, 217 MB;
- 4: peak 230.3 MB; 56.5 / 60.6 s, 188-189 MB;
- 2: peak 233.4 MB; 63.5-65.3 s in four runs, 184-185 MB — threads that allocate without
  the GIL (psycopg's I/O) wait for each other's arena.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

ARENAS = 4
"""Arenas a gateway process keeps, unless `MALLOC_ARENA_MAX` says otherwise."""

_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_arenas(arenas: int = ARENAS) -> bool:
    """`mallopt(M_ARENA_MAX, arenas)`, before the process starts its threads; True when set.
    Left alone (False) where `MALLOC_ARENA_MAX` is in the environment (glibc read it at start:
    the operator's choice) or the C library is not glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
