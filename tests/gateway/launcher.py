"""Start `edi834 serve` without loading it again each time: one launcher process per pytest
worker loads the modules `serve` loads (as `edi834` does, `gateway.cli._preload`), then forks a
child for each gateway the harness starts. The child takes the environment, argv and log file
the harness gives it and runs `gateway.cli.main`, which the `edi834` console script runs, and
exits as that script does (`sys.exit(main())`: the interpreter's own shutdown, atexit included).

Why: a `serve` spent ~1.6 s of CPU loading its modules before it answered anything, and the
suite starts ~170 of them on a 2-core machine whose CPU the suite keeps busy; forked, a start
costs a few ms. What a test sees is the same process: its own pid, signals, exit status (-9
when killed), log, ports, settings from the environment. What it does not exercise is the
console script's loading of the modules, which every `edi834` command the tests run through
`subprocess` (the CLI, `serve --tls-cert`, test_scale_out's roles) still does.

Module state read from the environment at import: only `gateway.faults` (the crash and raise
points), reloaded in the child once its environment is set. Nothing else reads EDI834_* before
`Settings` is built (tests/gateway/test_launcher.py holds that).

The protocol, one JSON object a line over the launcher's stdin and stdout:
`{"spawn": [argv...], "env": {...}, "log": path}` -> `{"pid": n}`;
`{"poll": pid}` -> `{"rc": int | null}` (the exit status as `subprocess.Popen.returncode` says
it, -N for signal N; a child is reaped once, by the poll that finds it gone).
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import subprocess
import sys
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

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDI834_")}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.gateway.launcher"],
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

    def spawn(self, argv: list[str], env: dict[str, str], log: Path) -> ForkedProcess:
        pid = self._ask({"spawn": argv, "env": env, "log": str(log)})["pid"]
        return ForkedProcess(self, int(pid))

    def poll(self, pid: int) -> int | None:
        rc = self._ask({"poll": pid})["rc"]
        return None if rc is None else int(rc)


_launcher: Launcher | None = None
_launcher_lock = threading.Lock()


def launcher() -> Launcher:
    """This process's launcher (one per pytest worker), started again if it died."""
    global _launcher
    with _launcher_lock:
        if _launcher is None or not _launcher.alive():
            _launcher = Launcher()
            atexit.register(_launcher.close)
        return _launcher


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
                return _become_child(request["spawn"], request["env"], request["log"])
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


def _become_child(argv: list[str], env: dict[str, str], log: str) -> list[str]:
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    os.environ.clear()
    os.environ.update(env)
    for name in ENV_AT_IMPORT:
        if name in sys.modules:
            importlib.reload(sys.modules[name])
    sys.argv = list(argv)
    return sys.argv


def main() -> None:
    from gateway import cli

    # The protocol moves off fds 0 and 1, so that no child inherits it as its stdin or stdout.
    requests = os.fdopen(os.dup(0), "rb")
    answers = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    cli._preload("serve")  # what `edi834 serve` loads first, the same way
    argv = _serve_requests(requests, answers)
    if argv is None:
        return
    sys.exit(cli.main(argv[1:]))  # as the console script: the interpreter's shutdown follows


if __name__ == "__main__":
    main()
