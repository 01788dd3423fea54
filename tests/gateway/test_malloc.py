"""A gateway process keeps `ARENAS` malloc arenas (gateway/malloc.py), counted by glibc itself.

Each case runs in a fresh interpreter: eight threads allocate at once (objects above
pymalloc's 512 bytes come from malloc), then `malloc_info` lists the process's arenas
(`<heap nr=…>`). Without the limit glibc gives each of those threads an arena of its own.
"""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.malloc import ARENAS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None,
    reason="malloc arenas are glibc's (Linux)",
)

_COUNT_ARENAS = textwrap.dedent(
    """
    import ctypes, ctypes.util, sys, tempfile, threading
    {setup}
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    start = threading.Barrier(8)
    kept = []

    def allocate():
        start.wait()
        kept.append([bytes(2000) for _ in range(200)])

    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        fp = libc.fopen(f.name.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        print(open(f.name).read().count("<heap nr="))
    """
)


def _arenas(setup: str, **env: str) -> int:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run(
        [sys.executable, "-c", _COUNT_ARENAS.format(setup=setup)],
        cwd=ROOT,
        env={**environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(out.stdout.split()[-1])


def test_without_the_limit_each_allocating_thread_gets_an_arena() -> None:
    # The baseline that shows the count below is the limit's doing.
    assert _arenas("") > ARENAS


def test_the_limit_keeps_arenas_to_its_number() -> None:
    setup = "from gateway.malloc import limit_arenas\nassert limit_arenas()"
    assert _arenas(setup) == ARENAS


def test_every_edi834_command_sets_it_first() -> None:
    # `edi834 db upgrade` on a new SQLite database: main() runs, then the threads allocate.
    setup = textwrap.dedent(
        """
        import os, tempfile
        from gateway.cli import main
        os.environ["EDI834_DATA_DIR"] = tempfile.mkdtemp()
        main(["db", "upgrade"])
        """
    )
    assert _arenas(setup) == ARENAS


def test_an_operators_malloc_arena_max_wins() -> None:
    setup = "from gateway.malloc import limit_arenas\nassert not limit_arenas()"
    assert _arenas(setup, MALLOC_ARENA_MAX="3") == 3 != ARENAS
