"""Dependencies point one way: parsers <- validators <- gateway."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "parsers": {
        "validators",
        "gateway",
        "pyx12",
        "sqlalchemy",
        "structlog",
        "fastapi",
        "os",
        "pathlib",
        "time",
        "datetime",
        "socket",
        "io",
    },
    "validators": {
        "gateway",
        "sqlalchemy",
        "structlog",
        "fastapi",
        "pydantic_settings",
        "os",
        "pathlib",
        "time",
        "socket",
        "random",
    },
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    for path in files:
        bad = imports_of(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from gateway.cli import main\nimport os\n")
    assert imports_of(bad) == {"gateway", "os"}
