"""Start `edi834` commands without loading their modules again each time: a launcher process per
pytest worker and command kind loads the modules the command loads first (`gateway.cli._preload`:
`serve`'s, `validate`'s, or the database's for the others), then forks a child for each command
the harness runs. The child takes the environment, argv, stdin and output files it is given and
runs `gateway.cli.main`, which the `edi834` console script runs, and exits as that script does
(`sys.exit(main())`: the interpreter's own shutdown, atexit included).

Why: a `serve` spent ~1.6 s of CPU loading its modules before it answered anything, a `partner
list` ~0.5 s, and the suite runs ~170 of each on a 2-core machine whose CPU its workers keep
busy; forked, a start costs a few ms. What a test sees is the same process: its own pid,
signals, exit status (-9 when killed), output, ports, settings from the environment, and the
modules loaded before the command starts are the ones the command itself preloads (a command
relying on a module it does not import fails here as it would). What it does not exercise is
the console script's loading of those modules: every `edi834` a test starts with `subprocess`
(test_ops' closed pipe, `ledger check` in test_ledger_check, test_scale_out's roles) and the
benchmarks (`forked=False`) still do.

Module state read from the environment at import: only `gateway.faults` (the crash and raise
points), loaded again in the child once its environment is set; tests/gateway/test_launcher.py
holds that no other module reads EDI834_* as it loads.

The protocol, one JSON object a line over the launcher's stdin and stdout:
`{"spawn": [argv...], "env": {...}, "stdin": path | null, "stdout": path, "stderr": path}` ->
`{"pid": n}`; `{"poll": pid}` -> `{"rc": int | null}` (the exit status as
`subprocess.Popen.returncode` says it, -N for signal N; a child is reaped once, by the poll that
finds it gone).
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

# Modules that read the environment as they load: loaded again in each child.
ENV_AT_IMPORT = ("gateway.faults",)


class ForkedProcess:
    """A launched child, with the parts of `subprocess.Popen` the harness uses."""

    def __init__(self, launcher: Launcher, pid: int) -> None:
        self._launcher = launcher
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._launcher.poll(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.002
        while (rc := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        return rc

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # an exited child is a zombie until polled: never reused
            os.kill(self.pid, sig)

    def kill(self) -> None:
        import signal

        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        import signal

        self.send_signal(signal.SIGTERM)


class Launcher:
    """The client side: one launcher process, started on first use."""

    def __init__(self, command: str) -> None:
        from tests.gateway.harness import EDI834

        env = {k: v for k, v in os.environ.items() if not k.startswith("EDI834_")}
        # Run as a script, not with -m: the launcher finds `gateway` where the console script
        # does (PYTHONPATH, the venv), not in the current directory.
        self._proc = subprocess.Popen(
            [sys.executable, __file__, command, str(EDI834)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._lock = threading.Lock()

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        with self._lock:
            self._proc.stdin.write(json.dumps(request).encode() + b"\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the launcher exited ({self._proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        """End the launcher (its stdin closed: it returns) and reap it."""
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def spawn(
        self,
        argv: list[str],
        env: dict[str, str],
        stdout: Path,
        stderr: Path | None = None,
        stdin: Path | None = None,
    ) -> ForkedProcess:
        """`argv[1:]` run as `edi834` runs them; output appended to `stdout` (and `stderr`, the
        same file when None); stdin from `stdin`, else /dev/null."""
        request = {
            "spawn": argv,
            "env": env,
            "stdin": str(stdin) if stdin else None,
            "stdout": str(stdout),
            "stderr": str(stderr or stdout),
        }
        return ForkedProcess(self, int(self._ask(request)["pid"]))

    def poll(self, pid: int) -> int | None:
        rc = self._ask({"poll": pid})["rc"]
        return None if rc is None else int(rc)


_launchers: dict[tuple[str, ...], Launcher] = {}
_launchers_lock = threading.Lock()


def launcher(command: str = "serve") -> Launcher:
    """This process's launcher for `command` (one per set of modules preloaded), started on
    first use and again if it died."""
    from gateway import cli

    key = cli._COMMAND_MODULES.get(command, cli._DATABASE_MODULES)
    with _launchers_lock:
        found = _launchers.get(key)
        if found is None or not found.alive():
            found = _launchers[key] = Launcher(command)
            atexit.register(found.close)
        return found


def run(
    argv: list[str],
    env: dict[str, str],
    *,
    input: str | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(argv, env=env, input=input, capture_output=True, text=True, ...)` for an
    `edi834` command, forked from the launcher for its kind. Its output goes through files
    (not pipes): the command sees a stdout that is no terminal, as with `capture_output`."""
    with tempfile.TemporaryDirectory(prefix="edi834-run-") as tmp:
        out, err, given = Path(tmp, "stdout"), Path(tmp, "stderr"), Path(tmp, "stdin")
        given.write_text(input or "")
        child = launcher(argv[1]).spawn(argv, env, out, err, given)
        try:
            rc = child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise subprocess.TimeoutExpired(
                argv, timeout, out.read_text(), err.read_text()
            ) from None
        done = subprocess.CompletedProcess(argv, rc, out.read_text(), err.read_text())
    if check:
        done.check_returncode()
    return done


# -- the launcher process ----------------------------------------------------------------------


def _serve_requests(requests: IO[bytes], answers: IO[bytes]) -> list[str] | None:
    """Answer requests until stdin closes (None); in a forked child, return its argv."""
    for line in requests:
        request = json.loads(line)
        if "poll" in request:
            answer: dict[str, Any] = {"rc": _reap(int(request["poll"]))}
        else:
            pid = os.fork()
            if pid == 0:
                requests.close()
                answers.close()
                return _become_child(request)
            answer = {"pid": pid}
        answers.write(json.dumps(answer).encode() + b"\n")
        answers.flush()
    return None


def _reap(pid: int) -> int | None:
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None  # not ours (never launched here): the caller's bug, shown as running
    return os.waitstatus_to_exitcode(status) if done else None


def _become_child(request: dict[str, Any]) -> list[str]:
    stdin = os.open(request["stdin"] or os.devnull, os.O_RDONLY)
    stdout = os.open(request["stdout"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    stderr = os.open(request["stderr"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
    for fd in {stdin, stdout, stderr}:
        os.close(fd)
    argv: list[str] = request["spawn"]
    os.environ.clear()
    os.environ.update(request["env"])
    for name in ENV_AT_IMPORT:
        if name in sys.modules:
            importlib.reload(sys.modules[name])
    sys.argv = list(argv)
    return sys.argv


def main(command: str, script: str) -> None:
    # The console script's sys.path: its own folder first (Python resolves its symlinks), not
    # this file's.
    sys.path[0] = os.path.dirname(os.path.realpath(script))
    from gateway import cli

    # The protocol moves off fds 0 and 1, so that no child inherits it as its stdin or stdout.
    requests = os.fdopen(os.dup(0), "rb")
    answers = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    cli._preload(command)  # what `edi834 COMMAND` loads first, the same way
    argv = _serve_requests(requests, answers)
    if argv is None:
        return
    sys.exit(cli.main(argv[1:]))  # as the console script: the interpreter's shutdown follows


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
