"""The process tree under /proc, for benchmarks that measure a server and what it started."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def children() -> dict[int, list[int]]:
    """parent pid -> its living children's pids."""
    out: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out.setdefault(ppid, []).append(int(d.name))
    return out


def descendants(pid: int) -> list[int]:
    """Every living process below `pid`."""
    kids = children()
    out, todo = [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU of a living process (with `reaped`, also of the children it has
    waited for: a postmaster's exited backends); 0.0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # after the command: state ppid … utime(12) stime(13) cutime(14) cstime(15), 1-based from state
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def tree_cpu_seconds(pid: int) -> float:
    """CPU of `pid` (with its reaped children) and of every living process below it."""
    return cpu_seconds(pid, reaped=True) + sum(cpu_seconds(p) for p in descendants(pid))
