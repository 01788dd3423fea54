"""README.md stays true about what a new user looks up first: every setting is in its settings
table, and every subcommand of the partner, operator, ledger and db commands is named."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from gateway.cli import SETTING_FLAGS, build_parser
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    out: dict[str, list[str]] = {}
    for name, sub in commands.choices.items():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        out[name] = list(nested[0].choices) if nested else []
    return out


def test_every_setting_is_in_the_settings_table() -> None:
    table = README[README.index("| variable | default |") : README.index("SQLite runs in WAL")]
    missing = [
        f"EDI834_{n.upper()}" for n in Settings.model_fields if f"EDI834_{n.upper()}" not in table
    ]
    assert missing == [], f"add to README's settings table: {missing}"


def test_every_subcommand_is_named() -> None:
    commands = _subcommands(build_parser())
    for command in ("partner", "operator", "ledger", "db"):
        named = re.search(rf"`edi834 {command}\s+([a-z|-]+)`", README)
        assert named is not None, command
        assert set(named.group(1).split("|")) == set(commands[command]), command


def test_the_setting_flags_named_are_the_ones_serve_takes() -> None:
    """The README once said every setting was also a flag of `serve` ("the same name as a flag
    of `serve`"): 13 of them are; `serve --sftp-resume-hours 1` was an error."""
    said = README[README.index("Settings are environment") : README.index("| variable | default |")]
    named = set(re.findall(r"`(--[a-z-]+)`", said))
    flags = {flag for flag, _, _ in SETTING_FLAGS}
    assert named - {"--sftp-resume-hours"} == flags
    serve = build_parser().parse_args(["serve", *(f"{f}=1" for f in sorted(flags))])
    assert all(getattr(serve, f"setting_{dest}") is not None for _, dest, _ in SETTING_FLAGS)


def test_validate_offline_checks_no_identity_unless_told(tmp_path: Path) -> None:
    """The README's `--receiver ZZ:OURID (... anything else gets TA1 009)` left out that without
    it nothing is checked: a new user's `edi834 validate` of the misaddressed sample said
    `accepted` where its .ta1 beside it (and the gateway) reject it. The README now says so."""
    import datetime as dt

    from gateway.offline import ControlNumbers, validate_file
    from validators.interchange import ValidationOptions

    sample = ROOT / "samples" / "bad_ta1_009_receiver_not_ours.834"
    verdicts = []
    for receiver in (None, ("ZZ", "EDI834GATEWAY")):
        with sample.open("rb") as stream:
            report = validate_file(
                stream,
                sample.name,
                tmp_path,
                options=ValidationOptions(expected_receiver=receiver),
                numbers=ControlNumbers(1),
                now=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
            )
        verdicts.append(report.verdict)
    assert verdicts == ["accepted", "rejected"]
    said = " ".join(README[README.index("Options: `--receiver") :].split()[:80])
    assert "without them ISA07/ISA08 and ISA05/ISA06 are not checked" in said
    assert "`samples/bad_ta1_009_receiver_not_ours.834` is `accepted` alone" in said


def test_the_packages_make_test_installs_are_named() -> None:
    """`make test`'s comment named chromium and postgresql; `system-deps` also installs
    openssh-client and nginx-light (found reading the Makefile on a new-user run)."""
    makefile = (ROOT / "Makefile").read_text()
    installed = set(re.findall(r'missing="\$\$missing ([a-z-]+)"', makefile))
    comment = README[README.index("make test   #") : README.index("make run    #")]
    assert installed and {p for p in installed if p not in comment} == set()


def test_the_validate_examples_out_folder_is_ignored() -> None:
    """The README's "Validate files offline" writes acks, which quote member data (IK404,
    CTX), to `--out acks/` in the clone: a new-user run left them untracked, one `git add .`
    from a commit. Every `--out` folder the README's examples name is in .gitignore."""
    ignored = (ROOT / ".gitignore").read_text().split()
    outs = set(re.findall(r"--out ([\w.-]+/)", README))
    assert outs and outs <= set(ignored)
