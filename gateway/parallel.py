"""Both cores on one large file: the 834 sets `validators.parallel.plan_sets` splits into blocks
of members are checked by a pool of processes that read their block straight from the file,
while this process reads the envelope and merges the findings in order.

Memory stays flat: the plan reads the file once in 8 MB chunks and holds offsets, a block is
at most a few MB in one process at a time, and only findings come back — from at most a few
blocks ahead of the envelope reader, and at most a set's cap of them kept. The pool is made once
per process and kept (its processes compile the 834 map once each); it uses forkserver, so a
gateway process with threads is never forked."""

from __future__ import annotations

import atexit
import math
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from gateway.enrollment.extract import PartMembers, extract_part
from parsers.delimiters import Delimiters
from validators.parallel import (
    MEMBERS_PER_PART,
    Part,
    PartResult,
    PlannedSet,
    check_part,
    plan_sets,
)

# A set is split into blocks of 2,000 members (about 1 MB): below this a file is not worth the
# processes.
SPLIT_FROM_BYTES = 4 * 1024 * 1024

_PLAN_CHUNK = 8 * 1024 * 1024  # the plan reads the file once, this much at a time

_pools: dict[int, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def processes_for(setting: int) -> int:
    """The processes a setting of 0 (one per CPU) or N means; 1 turns splitting off. The CPUs
    are those this process may run on, and no more than its cgroup's CPU quota allows: in a
    container limited to 1 CPU on a 64-CPU node, one process, not 64 (each 30-60 MB — the
    pod's memory limit would kill it, and each kill counts against the file)."""
    if setting > 0:
        return setting
    try:
        cpus = max(len(os.sched_getaffinity(0)), 1)  # the CPUs this process may run on
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = max(os.cpu_count() or 1, 1)
    quota = cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota))) if quota is not None else cpus


def cgroup_cpu_quota(path: Path | None = None) -> float | None:
    """CPUs the cgroup (v2) may use, from `cpu.max` ("QUOTA PERIOD", or "max PERIOD": none);
    None when there is no such file or no quota."""
    try:
        quota, period = (path or CGROUP_CPU_MAX).read_text().split()[:2]
        if quota == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def pool(processes: int) -> ProcessPoolExecutor:
    """The process's pool of `processes` processes, made once — and again if one of its
    processes died (killed, out of memory): a broken pool refuses all work, and the file that
    met it is retried (its attempt fails, its lease is released) on a new one."""
    with _pools_lock:
        found = _pools.get(processes)
        if found is not None and getattr(found, "_broken", False):
            found.shutdown(wait=False, cancel_futures=True)
            found = None
        if found is None:
            context = multiprocessing.get_context("forkserver")
            found = ProcessPoolExecutor(
                max_workers=processes,
                mp_context=context,
                initializer=_follow,
                initargs=(os.getpid(),),
            )
            _pools[processes] = found
        return found


@atexit.register
def _shutdown() -> None:
    with _pools_lock:
        for executor in _pools.values():
            # The blocks in hand finish (a second or so); the queued ones are dropped.
            executor.shutdown(wait=True, cancel_futures=True)
        _pools.clear()


def _gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # pragma: no cover - alive, owned by someone else
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
    except OSError:  # pragma: no cover - no /proc: trust kill()
        return False


def _follow(owner: int) -> None:
    """In each pool process: exit when the process that made the pool is gone, however it
    went (SIGKILL runs no atexit), so a pool never outlives its gateway process."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if _gone(owner):
                os._exit(0)

    threading.Thread(target=watch, name="follow-owner", daemon=True).start()


def _read_part(path: str, part: Part) -> bytes:
    """The bytes of one block, read in the pool process."""
    with open(path, "rb") as f:
        f.seek(part.start)
        return f.read(part.end - part.start)


def _plan_file(path: Path, members_per_part: int, max_segment_bytes: int) -> dict[int, PlannedSet]:
    """The file's 834 sets worth splitting, by their ST's offset, in file order: one pass in
    8 MB chunks."""
    with open(path, "rb") as f:
        chunks = iter(lambda: f.read(_PLAN_CHUNK), b"")
        planned = plan_sets(
            chunks, members_per_part=members_per_part, max_segment_bytes=max_segment_bytes
        )
        return {p.st_offset: p for p in planned}


def _check_part_of_file(
    path: str, part: Part, planned: PlannedSet, max_segment_bytes: int, max_issues: int
) -> PartResult:
    return check_part(
        _read_part(path, part),
        part,
        planned.delimiters,
        max_segment_bytes=max_segment_bytes,
        max_issues=max_issues,
    )


class FileSetChecks:
    """`validators.parallel.SetChecks` for a file on disk. The pool works ahead of the envelope
    reader by at most `ahead` blocks (in file order), and a set keeps at most `max_issues` of its
    blocks' findings (the rest counted): what waits here does not grow with the file."""

    def __init__(
        self,
        path: Path,
        executor: ProcessPoolExecutor,
        *,
        max_segment_bytes: int,
        max_issues: int,
        members_per_part: int = MEMBERS_PER_PART,
        on_wait: Callable[[], None] | None = None,
        wait_seconds: float = 5.0,
        ahead: int = 4,
    ) -> None:
        self._path = str(path)
        # Called every `wait_seconds` while this process waits for a block: the gateway worker
        # renews its lease there (and may raise to abandon the file).
        self._on_wait = on_wait
        self._wait_seconds = wait_seconds
        self._executor = executor
        self._max_segment_bytes = max_segment_bytes
        self._max_issues = max_issues
        self._ahead = max(ahead, 1)
        self._plans = _plan_file(path, members_per_part, max_segment_bytes)
        # (st_offset, part): not yet submitted
        self._queue: deque[tuple[int, int]] = deque(
            (st, i) for st, planned in self._plans.items() for i in range(len(planned.parts))
        )
        self._futures: dict[tuple[int, int], Future[PartResult]] = {}  # submitted, not collected
        self._top_up()

    @property
    def split(self) -> bool:
        """Whether any set of the file was split."""
        return bool(self._plans)

    def _submit(self, planned: PlannedSet, part: Part) -> Future[PartResult]:
        return self._executor.submit(
            _check_part_of_file,
            self._path,
            part,
            planned,
            self._max_segment_bytes,
            self._max_issues,
        )

    def _top_up(self) -> None:
        while self._queue and len(self._futures) < self._ahead:
            key = self._queue.popleft()
            planned = self._plans[key[0]]
            self._futures[key] = self._submit(planned, planned.parts[key[1]])

    def _drop_before(self, st_offset: int) -> None:
        """Sets are read in file order: blocks of earlier sets will never be asked for."""
        while self._queue and self._queue[0][0] < st_offset:
            self._queue.popleft()
        for key in [k for k in self._futures if k[0] < st_offset]:
            self._futures.pop(key).cancel()

    def planned(self, st_offset: int) -> PlannedSet | None:
        return self._plans.get(st_offset)

    def run(self, planned: PlannedSet, parts: tuple[Part, ...]) -> list[PartResult]:
        st = planned.st_offset
        self._drop_before(st)
        if parts != planned.parts:  # the fallback: this set in one go
            self._drop_before(st + 1)
            futures = (self._submit(planned, part) for part in parts)
            return self._collect(self._wait(f) for f in futures)

        def in_order() -> Iterator[PartResult]:
            for i in range(len(parts)):
                key = (st, i)
                if key not in self._futures:  # not submitted yet: this one is next in line
                    if self._queue and self._queue[0] == key:
                        self._queue.popleft()
                    self._futures[key] = self._submit(planned, parts[i])
                future = self._futures[key]
                try:
                    yield self._wait(future)
                finally:
                    self._futures.pop(key, None)
                    self._top_up()

        return self._collect(in_order())

    def _collect(self, results: Iterable[PartResult]) -> list[PartResult]:
        """The blocks' results in order, the set's findings cut at `max_issues` as they come
        (the cut ones counted): the same findings the set keeps when checked in one go."""
        out: list[PartResult] = []
        kept = 0
        for result in results:
            room = max(self._max_issues - kept, 0)
            extra = len(result.issues) - room
            if extra > 0:
                # The lookahead findings are the part's last ones: cut first.
                result.lookahead_findings = max(result.lookahead_findings - extra, 0)
                del result.issues[room:]
                result.truncated += extra
            kept += len(result.issues)
            out.append(result)
        return out

    def _wait(self, future: Future[PartResult]) -> PartResult:
        while True:
            try:
                return future.result(timeout=self._wait_seconds)
            except FutureTimeout:
                if self._on_wait is not None:
                    self._on_wait()

    def close(self) -> None:
        """Drop what was not collected (a file abandoned half way)."""
        self._queue.clear()
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()


def _members_of_part(
    path: str, part: Part, delimiters: Delimiters, max_segment_bytes: int
) -> PartMembers:
    return extract_part(
        _read_part(path, part), part, delimiters, max_segment_bytes=max_segment_bytes
    )


class FileSetMembers:
    """`gateway.enrollment.extract.SetParts` for a file on disk: the ledger's member extraction
    on both cores. The large 834 sets are planned as the validator plans them; their blocks are
    read by the pool, at most `ahead` blocks ahead of the set being applied, so what waits here
    is a few blocks of members whatever the file's size."""

    def __init__(
        self,
        path: Path,
        executor: Executor,
        *,
        max_segment_bytes: int,
        members_per_part: int = MEMBERS_PER_PART,
        ahead: int = 2,
    ) -> None:
        self._path = str(path)
        self._executor = executor
        self._max_segment_bytes = max_segment_bytes
        self._ahead = max(ahead, 1)
        self._plans = _plan_file(path, members_per_part, max_segment_bytes)

    @property
    def split(self) -> bool:
        """Whether any set of the file was split."""
        return bool(self._plans)

    @property
    def sets(self) -> tuple[PlannedSet, ...]:
        """The sets planned, in file order."""
        return tuple(self._plans.values())

    def planned(self, st_offset: int) -> PlannedSet | None:
        return self._plans.get(st_offset)

    def members(self, planned: PlannedSet) -> Iterator[PartMembers]:
        pending: deque[Future[PartMembers]] = deque()
        parts = iter(planned.parts)
        try:
            while True:
                while len(pending) < self._ahead:
                    part = next(parts, None)
                    if part is None:
                        break
                    pending.append(
                        self._executor.submit(
                            _members_of_part,
                            self._path,
                            part,
                            planned.delimiters,
                            self._max_segment_bytes,
                        )
                    )
                if not pending:
                    return
                yield pending.popleft().result()
        finally:
            for future in pending:  # a file abandoned half way
                future.cancel()
