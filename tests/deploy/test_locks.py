"""The two lock files: a production venv takes requirements.lock (the runtime alone), the
dev venv requirements-test.lock (the same pins plus the test tools); neither names a package
index of the machine that compiled it."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", re.MULTILINE)


def pins(name: str) -> dict[str, str]:
    return dict(PIN.findall((ROOT / name).read_text()))


def test_the_runtime_lock_is_the_test_locks_pins_without_the_test_tools() -> None:
    runtime, test = pins("requirements.lock"), pins("requirements-test.lock")
    assert runtime, "no pins read from requirements.lock"
    assert {n: test.get(n) for n in runtime} == runtime, "the two locks pin different versions"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["test"]
    tools = {re.split(r"[<>=\[ ;]", e, maxsplit=1)[0].lower() for e in extras}
    assert tools <= set(test), f"not in requirements-test.lock: {tools - set(test)}"
    assert not tools & set(runtime), f"test tools in the production lock: {tools & set(runtime)}"


def test_no_lock_names_a_package_index_or_a_local_path() -> None:
    for name in ("requirements.lock", "requirements-test.lock"):
        text = (ROOT / name).read_text()
        for option in ("--index-url", "--extra-index-url", "--find-links", "file://"):
            assert option not in text, f"{name} carries {option}"
        assert all("--hash=sha256:" in block for block in re.split(r"\n(?=[a-z])", text)[1:])
