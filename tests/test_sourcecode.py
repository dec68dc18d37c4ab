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
