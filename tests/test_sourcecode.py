"""The dependency direction is law: protocol ← store ← server (and nothing imports bench or tests)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"protocol", "store", "server", "bench", "tests", "droptv_live_client"}
ALLOWED = {
    "protocol": {"protocol"},
    "store": {"protocol", "store"},
    "server": {"protocol", "store", "server"},
    "droptv_live_client": {"droptv_live_client"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_dependency_direction(package: str) -> None:
    files = sources(package)
    assert files, f"no sources found for {package}"
    bad = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) - ALLOWED[package])
        for path in files
        if imported_packages(path) - ALLOWED[package]
    }
    assert not bad, f"{package} imports what it must not: {bad}"


def test_protocol_reads_no_clock_and_does_no_io() -> None:
    forbidden = ("datetime.now(", "time.time(", "time.monotonic(", "open(", "asyncio.", "socket.")
    offenders = [
        f"{path.relative_to(ROOT)}: {needle}"
        for path in sources("protocol")
        for needle in forbidden
        if needle in path.read_text(encoding="utf-8")
    ]
    assert not offenders, offenders


LAYERS = ("protocol", "store", "server")
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(path: Path, known: set[str]) -> set[str]:
    """Our modules a file imports when it is imported (TYPE_CHECKING blocks excluded)."""
    found: set[str] = set()
    pending: list[ast.stmt] = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and not _is_type_checking(node):
            pending.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend(node.body + node.orelse + node.finalbody)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module in known:
                found.add(node.module)
            found.update(
                f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known
            )
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for layer in LAYERS for p in sources(layer)}
    known = set(files)
    return {name: _module_level_imports(path, known) - {name} for name, path in files.items()}


def test_no_import_cycles() -> None:
    """Every module of protocol/, store/ and server/ can be imported first: no cycle at all."""
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_imports_of_our_code_inside_functions() -> None:
    """Deferred imports are how cycles hide: our modules are imported at module level only."""
    offenders = []
    for layer in LAYERS:
        for path in sources(layer):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import | ast.ImportFrom) and (
                        imported := (
                            {a.name.split(".")[0] for a in inner.names}
                            if isinstance(inner, ast.Import)
                            else {(inner.module or "").split(".")[0]}
                        )
                    ) & set(LAYERS):
                        offenders.append(f"{path.relative_to(ROOT)}:{inner.lineno} {imported}")
    assert not offenders, offenders


def test_no_module_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for layer in LAYERS
        for path in sources(layer)
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
