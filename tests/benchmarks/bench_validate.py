"""Times validators on generated 834 files and prints a markdown table, side by side.

Each engine runs as its own child process on the same cached file in the same run, spawned by a
minimal launcher that times it from spawn to reap and reads that child's own ru_maxrss from
os.wait4 (never the cumulative RUSAGE_CHILDREN). Engines write their outputs into a throw-away
directory; generated files are cached by (members, seed, sets, generator version).

Usage: python tests/benchmarks/bench_validate.py [--members 10000 100000]
                  [--engines edi834 edi834-pyx12 x12valid] [--cpus 0|0,1|-] [--seed S]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from generate_834 import write_834  # noqa: E402 - the generator lives beside this script

MB = 1_000_000


@dataclass(frozen=True, slots=True)
class BenchFile:
    path: Path
    members: int
    segments: int
    size: int  # bytes


@dataclass(frozen=True, slots=True)
class RunResult:
    seconds: float
    peak_rss: int  # bytes
    exit_code: int
    verdict: str


@dataclass(frozen=True, slots=True)
class Engine:
    name: str
    executable: Path
    argv: Callable[[Path, Path, Path], list[str]]  # (executable, input file, work dir)
    verdict: Callable[[Path, str, str], str]  # (work dir, stdout, stderr)
    note: str = ""


def _last_line(text: str, limit: int = 80) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:limit].replace("|", "/") if lines else ""


def _edi834_verdict(_workdir: Path, stdout: str, stderr: str) -> str:
    try:
        summary = json.loads(stdout)
    except ValueError:
        return f"no JSON on stdout; stderr: {_last_line(stderr) or '-'}"
    if isinstance(summary, dict):
        for key in ("verdict", "status", "result", "ak901", "accepted"):
            if key in summary:
                return f"{key}={summary[key]}"
        return "JSON: " + ",".join(sorted(summary)[:4])
    return "JSON"


def _x12valid_verdict(workdir: Path, _stdout: str, stderr: str) -> str:
    lines = stderr.strip().splitlines()
    status = lines[-1].rsplit(": ", 1)[-1] if lines else "no output"
    errors = sum(1 for line in lines if " ERROR " in line)
    acks = list(workdir.glob("*.997"))
    ak9 = re.search(r"AK9\*([AEPRMWX])", acks[0].read_text("ascii")) if acks else None
    return f"{status}, {errors} errors, AK9 {ak9.group(1) if ak9 else '-'}"


def _edi834_argv(*extra: str) -> Callable[[Path, Path, Path], list[str]]:
    def argv(exe: Path, src: Path, work: Path) -> list[str]:
        return [str(exe), "validate", str(src), "--out", str(work / "out"), "--json", *extra]

    return argv


def build_engines(bin_dir: Path) -> dict[str, Engine]:
    return {
        "edi834": Engine(
            name="edi834",
            executable=bin_dir / "edi834",
            argv=_edi834_argv(),
            verdict=_edi834_verdict,
            note="edi834 = `edi834 validate` with its default engine, fast (the compiled map).",
        ),
        "edi834-pyx12": Engine(
            name="edi834-pyx12",
            executable=bin_dir / "edi834",
            argv=_edi834_argv("--engine", "pyx12"),
            verdict=_edi834_verdict,
            note="edi834-pyx12 = `edi834 validate --engine pyx12` (pyx12's walker inside ours).",
        ),
        "x12valid": Engine(
            name="x12valid",
            executable=bin_dir / "x12valid",
            # x12valid writes FILE.997 beside its input: give it a link inside the work dir.
            argv=lambda exe, src, work: [str(exe), str(_link_into(src, work))],
            verdict=_x12valid_verdict,
            note=(
                "x12valid (pyx12 4.0.0) exits 1 whether or not the file is valid: its console "
                "script calls sys.exit(main()) and main() returns True. Its verdict comes from "
                "its stderr (`FILE: OK` / `FILE: Failure`, ERROR lines) and the AK9 of the 999 "
                "it writes."
            ),
        ),
    }


def _link_into(src: Path, workdir: Path) -> Path:
    link = workdir / src.name
    link.symlink_to(src)
    return link


def _generator_digest() -> str:
    return hashlib.sha256((HERE / "generate_834.py").read_bytes()).hexdigest()[:10]


def ensure_file(cache_dir: Path, members: int, *, seed: int, sets: int) -> BenchFile:
    """Returns the cached file for (members, seed, sets, generator version), making it once."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{members}m-seed{seed}-sets{sets}-{_generator_digest()}"
    path = cache_dir / f"{stem}.834"
    meta_path = cache_dir / f"{stem}.json"
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text("utf-8"))
        if meta.get("size") == path.stat().st_size:
            return BenchFile(path, meta["members"], meta["segments"], meta["size"])
    partial = path.with_suffix(".part")
    sys.stderr.write(f"generating {members} members -> {path}\n")
    with partial.open("wb", buffering=1 << 20) as fp:
        written, segments = write_834(fp, members, seed=seed, sets=sets)
    partial.replace(path)
    size = path.stat().st_size
    meta_path.write_text(
        json.dumps({"members": written, "segments": segments, "size": size}), "utf-8"
    )
    return BenchFile(path, written, segments, size)


# Linux starts a child's ru_maxrss at the high-water RSS of the process that spawned it (exec
# keeps the larger of the old and new image), so spawning engines from this process would floor
# every figure at this process's own peak. A minimal interpreter (-I -S, only os and time)
# spawns each engine instead and reports the engine's wait4 figures through a pipe.
LAUNCHER = """
import os, sys, time
fd = int(sys.argv[1])
os.set_inheritable(fd, False)
if sys.argv[2] != "-":
    os.sched_setaffinity(0, {int(c) for c in sys.argv[2].split(",")})
started = time.perf_counter()
pid = os.posix_spawn(sys.argv[3], sys.argv[3:], os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
os.write(fd, f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss} {seconds!r}".encode())
"""


def spawn_measured(
    argv: Sequence[str], *, cwd: Path, stdout: Path, stderr: Path, cpus: str = "-"
) -> RunResult:
    """Runs argv through the launcher (pinned to `cpus`, e.g. "0", unless "-"); returns its
    wall time, own peak RSS and exit code."""
    read_end, write_end = os.pipe()
    try:
        with stdout.open("wb") as out, stderr.open("wb") as err:
            launcher = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", LAUNCHER, str(write_end), cpus, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=cwd,
                pass_fds=(write_end,),
            )
            os.close(write_end)
            write_end = -1
            launcher.wait()
        with os.fdopen(read_end, "rb") as pipe:
            read_end = -1
            report = pipe.read().decode("ascii").split()
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
    if len(report) != 3:
        raise RuntimeError(f"launcher failed (exit {launcher.returncode}) for {argv[0]}")
    exit_code, max_rss, seconds = int(report[0]), int(report[1]), float(report[2])
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak_rss = max_rss if sys.platform == "darwin" else max_rss * 1024
    return RunResult(seconds, peak_rss, exit_code, verdict="")


def run_engine(engine: Engine, bench_file: Path, cpus: str = "-") -> RunResult:
    """Runs one engine on one file in a throw-away work dir and reads its verdict."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{engine.name}-") as tmp:
        workdir = Path(tmp)
        stdout, stderr = workdir / "stdout.txt", workdir / "stderr.txt"
        argv = engine.argv(engine.executable, bench_file, workdir)
        result = spawn_measured(argv, cwd=workdir, stdout=stdout, stderr=stderr, cpus=cpus)
        verdict = engine.verdict(
            workdir,
            stdout.read_text("utf-8", errors="replace"),
            stderr.read_text("utf-8", errors="replace"),
        )
    return RunResult(result.seconds, result.peak_rss, result.exit_code, verdict)


def measure_floor() -> int:
    """Peak RSS reported for /bin/true: the least any engine can show, in bytes."""
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        workdir = Path(tmp)
        return spawn_measured(
            ["/bin/true"], cwd=workdir, stdout=workdir / "out", stderr=workdir / "err"
        ).peak_rss


def format_table(rows: Sequence[tuple[BenchFile, str, RunResult]]) -> str:
    header = (
        "| file | members | segments | MB | engine | seconds | members/s | segments/s | MB/s "
        "| vs x12valid | peak RSS MB | exit code | verdict |"
    )
    lines = [header, "|" + "---|" * 13]
    baseline = {f.path: r.seconds for f, name, r in rows if name == "x12valid"}
    for bench_file, engine, result in rows:
        seconds = max(result.seconds, 1e-9)
        mb = bench_file.size / MB
        base = baseline.get(bench_file.path)
        ratio = f"{base / seconds:.1f}" if base else "-"
        lines.append(
            f"| {bench_file.path.name} | {bench_file.members:,} | {bench_file.segments:,} "
            f"| {mb:.1f} | {engine} | {result.seconds:.2f} "
            f"| {bench_file.members / seconds:,.0f} | {bench_file.segments / seconds:,.0f} "
            f"| {mb / seconds:.2f} | {ratio} | {result.peak_rss / MB:.1f} | {result.exit_code} "
            f"| {result.verdict} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--engines",
        nargs="+",
        choices=["edi834", "edi834-pyx12", "x12valid"],
        default=["edi834", "edi834-pyx12", "x12valid"],
    )
    parser.add_argument(
        "--cpus",
        default="0",
        help='CPUs each engine is pinned to ("0": one core; "0,1": two; "-": not pinned)',
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sets", type=int, default=1, help="ST/SE transaction sets per file")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "edi834-bench-cache",
        help="where generated files are kept between runs",
    )
    parser.add_argument(
        "--bin-dir", type=Path, default=ROOT / ".venv" / "bin", help="holds edi834 and x12valid"
    )
    args = parser.parse_args(argv)

    engines = build_engines(args.bin_dir)
    notes: list[str] = []
    selected: list[Engine] = []
    for name in args.engines:
        engine = engines[name]
        if engine.executable.exists():
            selected.append(engine)
            if engine.note:
                notes.append(engine.note)
        else:
            notes.append(f"{name} skipped: {engine.executable} does not exist (yet).")
    rows: list[tuple[BenchFile, str, RunResult]] = []
    for members in args.members:
        bench_file = ensure_file(args.cache_dir, members, seed=args.seed, sets=args.sets)
        for engine in selected:
            sys.stderr.write(f"running {engine.name} on {bench_file.path.name}\n")
            rows.append((bench_file, engine.name, run_engine(engine, bench_file.path, args.cpus)))

    out = [
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"seed {args.seed}, {args.sets} transaction set(s) per file; CPUs {args.cpus}; "
        "MB = 10^6 bytes; "
        f"peak RSS floor (/bin/true via the launcher) {measure_floor() / MB:.1f} MB.",
        "",
    ]
    if rows:
        out.append(format_table(rows))
    out.extend(f"\n- {note}" for note in notes)
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
