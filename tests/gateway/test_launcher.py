"""The launcher the harness forks gateways from (tests/gateway/launcher.py) starts the same
`serve` a new process would: what a module reads from the environment as it loads is read
again in each child, and a child's status is a process's."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT
from tests.gateway.harness import EDI834, GatewayProcess
from tests.gateway.launcher import ENV_AT_IMPORT, launcher


class TestLauncher:
    def test_only_the_reloaded_modules_read_edi834_settings_as_they_load(self) -> None:
        """Every EDI834_* variable read while `serve`'s modules load is read by a module the
        child loads again; any other would keep the launcher's value in every child."""
        probe = textwrap.dedent(
            """
            import json, os, sys, traceback

            class Recording(dict):
                def __getitem__(self, key):
                    self.note(key)
                    return super().__getitem__(key)
                def get(self, key, default=None):
                    self.note(key)
                    return super().get(key, default)
                def __contains__(self, key):
                    self.note(key)
                    return super().__contains__(key)
                def note(self, key):
                    if str(key).startswith("EDI834_"):
                        where = {f.filename for f in traceback.extract_stack()}
                        reads.append([key, sorted(where)])

            reads = []
            os.environ = Recording(os.environ)
            from gateway import cli
            cli._preload("serve")
            print(json.dumps(reads))
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            timeout=60,
        )
        reads = json.loads(done.stdout)
        reloaded = {str(ROOT / (name.replace(".", "/") + ".py")) for name in ENV_AT_IMPORT}
        assert reads, "the probe saw no read: gateway.faults reads its points as it loads"
        for key, stack in reads:
            assert reloaded & set(stack), f"{key} read as a module loads, outside {ENV_AT_IMPORT}"

    def test_a_child_answers_stops_on_sigterm_and_a_kill_is_minus_nine(
        self, tmp_path: Path
    ) -> None:
        script = tmp_path / "edi834"  # argv[0] only: the child runs gateway.cli.main
        gw = GatewayProcess(data_dir=tmp_path / "var")
        env = gw.env()
        # The launcher runs gateway.cli.main(argv[1:]): `--help` exits 0 after printing.
        child = launcher().spawn([str(script), "--help"], env, gw.log_path)
        assert child.wait(30) == 0
        assert "usage:" in gw.logs()
        child = launcher().spawn([str(script), "serve"], env, gw.log_path)
        try:
            gw.proc = child
            gw.wait_ready()
            assert child.poll() is None
            child.send_signal(signal.SIGTERM)
            assert child.wait(30) == 0
        finally:
            child.kill()
        crashing = launcher().spawn([str(script), "serve"], env, gw.log_path)
        crashing.kill()
        assert crashing.wait(30) == -signal.SIGKILL
        assert crashing.poll() == -signal.SIGKILL  # reaped once, remembered

    def test_a_command_answers_as_the_console_script_does(self, tmp_path: Path) -> None:
        gw = GatewayProcess(data_dir=tmp_path / "var")
        gw.cli("db", "upgrade")
        for args, given in (
            (["partner", "list"], None),
            (["partner", "list", "--json"], None),
            (["ledger", "history", "--partner", "va", "NOSUCH"], None),  # exits 1, says why
            (["operator", "add", "olga", "--role", "nosuch"], "a password\n"),  # argparse: 2
            (["partner", "rules", "nosuch", "--json"], None),
        ):
            forked = gw._run(args, input=given, check=False)
            real = subprocess.run(
                [str(EDI834), *args],
                env=gw.env(),
                input=given,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert (forked.returncode, forked.stdout, forked.stderr) == (
                real.returncode,
                real.stdout,
                real.stderr,
            ), args
