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


# --- inside gateway/: the stages a file goes through, the faces, the floor ------------------

GATEWAY = ROOT / "gateway"
ENTRY_POINTS = {"gateway.cli", "gateway.serve", "gateway.offline"}
FACES = ("gateway.api", "gateway.dashboard")
PROCESSES = ("gateway.worker",)
STAGES = (
    "gateway.intake",
    "gateway.gate",
    "gateway.enrollment",
    "gateway.outbound",
    "gateway.parallel",
    "gateway.watch",
)
FLOOR = (
    "gateway.settings",
    "gateway.logging",
    "gateway.errors",
    "gateway.faults",
    "gateway.metrics",
    "gateway.db",
    "gateway.storage",
    "gateway.context",
    "gateway.csvfile",
)
# What each layer may not import (prefixes). Entry points may import anything.
MAY_NOT = {
    "floor": FACES + PROCESSES + ("gateway.intake", "gateway.enrollment", "gateway.cli"),
    "stage": FACES + PROCESSES + ("gateway.cli", "gateway.serve"),
    "process": (*FACES, "gateway.cli", "gateway.serve"),
    "face": (*PROCESSES, "gateway.cli", "gateway.serve"),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    def under(prefixes: tuple[str, ...]) -> bool:
        return any(module == p or module.startswith(p + ".") for p in prefixes)

    if module in ENTRY_POINTS:
        return "entry"
    if under(FACES):
        return "face"
    if under(PROCESSES):
        return "process"
    if under(STAGES):
        return "stage"
    if under(FLOOR):
        return "floor"
    return "shared"  # partners, operators, services: used by faces and the CLI


def gateway_imports(path: Path, modules: set[str]) -> set[str]:
    """The gateway modules `path` imports (anywhere in it, function bodies included), each
    resolved to a module when the name is one (`from gateway.db import models` -> models)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [n if n in modules else node.module for n in names]
        found.update(n for n in names if n.split(".")[0] == "gateway")
    return found


def gateway_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in GATEWAY.rglob("*.py") if "migrations" not in p.parts}
    modules = set(paths)
    return {name: gateway_imports(path, modules) & modules for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = iter(range(1_000_000))

    def visit(v: str) -> None:
        index[v] = low[v] = next(counter)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward_arrows(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, imported in sorted(graph.items()):
        forbidden = MAY_NOT.get(layer_of(module), ())
        if layer_of(module) == "stage" and module.startswith("gateway.gate"):
            forbidden = (*forbidden, "gateway.")  # the gate is pure: it imports no gateway code
        for target in sorted(imported):
            if target != module and any(
                target == p or target.startswith(p) for p in forbidden if p
            ):
                bad.append(f"{module} -> {target}")
    return bad


def test_gateway_has_no_import_cycles() -> None:
    assert cycles(gateway_graph()) == []


def test_gateway_stages_import_only_downward() -> None:
    assert upward_arrows(gateway_graph()) == []


def test_only_entry_points_import_the_faces() -> None:
    graph = gateway_graph()
    for module, imported in graph.items():
        if layer_of(module) in ("entry", "face"):
            continue
        assert not {t for t in imported if t.startswith(FACES)}, module


class TestTheCheckersCatchViolations:
    def test_a_cycle(self) -> None:
        graph = {"gateway.a": {"gateway.b"}, "gateway.b": {"gateway.c"}, "gateway.c": {"gateway.a"}}
        assert cycles(graph) == [["gateway.a", "gateway.b", "gateway.c"]]
        assert cycles({"gateway.a": {"gateway.b"}, "gateway.b": set()}) == []

    def test_an_arrow_up(self) -> None:
        graph = gateway_graph()
        graph["gateway.enrollment.apply"] = graph["gateway.enrollment.apply"] | {
            "gateway.worker.pipeline"
        }
        graph["gateway.db.models"] = graph["gateway.db.models"] | {"gateway.api.app"}
        graph["gateway.gate"] = graph["gateway.gate"] | {"gateway.db.models"}
        already = set(upward_arrows(gateway_graph()))
        assert [a for a in upward_arrows(graph) if a not in already] == [
            "gateway.db.models -> gateway.api.app",
            "gateway.enrollment.apply -> gateway.worker.pipeline",
            "gateway.gate -> gateway.db.models",
        ]

    def test_a_real_file_that_reaches_up(self, tmp_path: Path) -> None:
        bad = tmp_path / "x.py"
        bad.write_text(
            "from gateway.worker.pipeline import Job\n"
            "def f():\n    from gateway.dashboard import app\n"
        )
        found = gateway_imports(bad, {"gateway.worker.pipeline", "gateway.dashboard.app"})
        assert found == {"gateway.worker.pipeline", "gateway.dashboard.app"}
