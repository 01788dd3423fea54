"""How many malloc arenas a gateway process may keep (glibc), set once as it starts.

glibc gives each thread that allocates while another holds an arena a new one, up to eight per
core, and an arena keeps what was freed in it for its own thread's next allocation. `serve`
runs a dozen threads (the event loop, the API's threadpool, SFTP, the worker's loops, the
ledger stage); a file of 220,000 one-member sets left it at a peak of 258.8 MB, against 226.7
MB with two arenas, at the same speed (applied in 330.9 and 322.8 s; `bench_memory.py --only
many-sets --mb 200`). The GIL lets one thread run Python at a time, so more arenas buy little.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

ARENAS = 2
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
