"""The process tree under /proc, for benchmarks that measure a server and what it started."""

from __future__ import annotations

from pathlib import Path


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
