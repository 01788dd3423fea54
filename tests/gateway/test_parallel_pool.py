"""A large set checked by a real process pool (gateway.parallel, forkserver) gives what checking
it in one go gives: through FileSetChecks directly, and through `edi834 validate --jobs 2`; and
a pool never outlives the process that made it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.parallel import SPLIT_FROM_BYTES, FileSetChecks, pool
from tests.benchmarks.generate_834 import write_834
from tests.conftest import ROOT
from tests.validators.test_parallel import plant, summary
from validators.interchange import ValidationOptions

NOW = ["--now", "2026-01-02T03:04:00+00:00", "--receiver", "ZZ:EDI834GATEWAY"]


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 4.5 MB, 8,500 members, with findings planted on both sides of block boundaries."""
    path = tmp_path_factory.mktemp("large") / "large.834"
    with path.open("wb") as f:
        write_834(f, 8_500, seed=11)
    data = path.read_bytes()
    for find, replace, nth in (
        (b"~NM1*IL*", b"~NM1*XX*", 2_000),  # the last member of the first block
        (b"~HD*", b"~HDX*", 4_000),  # required HD missing: reported at the next INS
        (b"~DMG*D8*", b"~DMG*D8*2027", 4_001),  # a bad date in the first member of a block
    ):
        data = plant(data, find, replace, nth)
    path.write_bytes(data)
    assert path.stat().st_size >= SPLIT_FROM_BYTES
    return path


def test_pool_equals_one_go(large: Path) -> None:
    data = large.read_bytes()
    checks = FileSetChecks(large, pool(2), max_segment_bytes=65_536, max_issues=10_000)
    assert checks.split
    split = summary(data, ValidationOptions(set_checks=checks))
    whole = summary(data, ValidationOptions())
    assert split == whole
    issues = whole[0][4]  # type: ignore[index]
    assert len(issues) >= 3  # the planted findings are there to be compared


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_few_blocks_ahead_and_findings_cut_at_the_cap_as_they_come(large: Path, cap: int) -> None:
    """What waits for the envelope reader is bounded: `ahead` blocks in flight, and a set's
    findings cut at its cap as the blocks come back — the same findings and counts as one go."""
    data = large.read_bytes()
    checks = FileSetChecks(large, pool(2), max_segment_bytes=65_536, max_issues=cap, ahead=2)
    assert len(checks._futures) == 2 and len(checks._queue) == 3  # 5 blocks of 2,000 members
    split = summary(data, ValidationOptions(set_checks=checks, max_issues_per_set=cap))
    whole = summary(data, ValidationOptions(max_issues_per_set=cap))
    assert split == whole
    assert whole[0][3] > 0  # findings were cut (and counted)
    assert not checks._futures and not checks._queue


def test_cli_jobs(large: Path, edi834: Path, tmp_path: Path) -> None:
    outs = {}
    for jobs in ("1", "2"):
        out = tmp_path / jobs
        proc = subprocess.run(
            [
                str(edi834),
                "validate",
                str(large),
                "--out",
                str(out),
                "--json",
                "--jobs",
                jobs,
                *NOW,
            ],
            capture_output=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr  # the planted findings reject the set
        summary_json = json.loads(proc.stdout)
        summary_json.pop("written")
        outs[jobs] = (summary_json, (out / "large.999").read_bytes())
    assert outs["1"] == outs["2"]


class Stop(Exception):
    pass


def test_waiting_renews_and_can_abandon(large: Path) -> None:
    """While this process waits for blocks it calls on_wait (the gateway worker renews its
    lease there, and raises to abandon the file on shutdown)."""
    calls = []

    def on_wait() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    checks = FileSetChecks(
        large,
        pool(1),
        max_segment_bytes=65_536,
        max_issues=10_000,
        on_wait=on_wait,
        wait_seconds=0.01,
    )
    with pytest.raises(Stop):
        summary(large.read_bytes(), ValidationOptions(set_checks=checks))
    checks.close()
    assert len(calls) == 3


ORPHAN = """
import os, signal, sys
from gateway.parallel import pool
def main():
    ex = pool(2)
    ex.submit(os.getpid).result()
    sys.stdout.write(" ".join(str(p) for p in ex._processes) + "\\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
if __name__ == "__main__":
    main()
"""


def test_pool_processes_do_not_outlive_their_owner(tmp_path: Path) -> None:
    """A gateway process SIGKILLed (no atexit) leaves no pool processes behind."""
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN)
    out = tmp_path / "pids"
    with out.open("wb") as f:
        # Not reaped until we wait: the pool must see a zombie owner as gone, too.
        owner = subprocess.Popen([sys.executable, str(script)], stdout=f, cwd=ROOT)
        deadline = time.monotonic() + 60
        while owner.poll() is None and not _zombie(owner.pid):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    pids = [int(p) for p in out.read_text().split()]
    assert pids  # (processes start as work comes: one or two)
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, "pool processes outlived their owner"
        time.sleep(0.2)
    assert owner.wait(5) == -9


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[-1].split()[0] == "Z"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _zombie(pid)  # a zombie is gone, just not yet reaped


def _pid(_: int) -> int:
    return os.getpid()


def _use_until_it_fails(executor: Any) -> None:
    for _ in range(50):  # until the pool notices the death
        executor.submit(_pid, 0).result(timeout=10)
        time.sleep(0.05)


def test_a_pool_whose_process_died_is_made_again() -> None:
    """A pool process killed (out of memory, by hand) breaks the pool for good; the next file
    gets a new one instead of a BrokenProcessPool for every file until a restart."""
    from concurrent.futures.process import BrokenProcessPool

    first = pool(3)  # its own size: no other test's pool is touched
    victim = first.submit(_pid, 0).result()
    os.kill(victim, 9)
    with pytest.raises(BrokenProcessPool):
        _use_until_it_fails(first)
    second = pool(3)
    assert second is not first
    assert second.submit(_pid, 0).result(timeout=30) != victim
    assert pool(3) is second  # kept while it works


def test_one_process_per_cpu_within_the_containers_quota(tmp_path, monkeypatch) -> None:
    """EDI834_VALIDATION_PROCESSES=0: one per CPU the process may use — capped by the cgroup's
    CPU quota (a pod limited to 1.5 CPUs on a 64-CPU node starts 2, not 64)."""
    from gateway import parallel

    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(parallel, "CGROUP_CPU_MAX", cpu_max)
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda _pid: set(range(64)))
    assert parallel.processes_for(0) == 64  # no cgroup file
    for text, expected in (("max 100000", 64), ("150000 100000", 2), ("50000 100000", 1)):
        cpu_max.write_text(text + "\n")
        assert parallel.processes_for(0) == expected, text
    cpu_max.write_text("garbage")
    assert parallel.processes_for(0) == 64
    assert parallel.processes_for(3) == 3  # a number given is a number kept
