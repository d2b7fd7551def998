"""The layering holds: the domain imports neither the Slack glue nor a storage implementation;
storage and handlers do not import each other; one composition root wires them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSITION_ROOT = "bot/runtime.py"


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("bot", {"handlers", "storage"}), ("storage", {"handlers"}), ("handlers", {"storage"})],
)
def test_packages_import_only_downwards(package: str, forbidden: set[str]) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & forbidden)
        for path in modules(package)
        if str(path.relative_to(ROOT)) != COMPOSITION_ROOT
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_one_composition_root_imports_all_three_layers() -> None:
    everywhere = [
        str(path.relative_to(ROOT))
        for package in ("bot", "handlers", "storage")
        for path in modules(package)
        if {"bot", "handlers", "storage"} <= imported_packages(path)
    ]
    assert everywhere == [COMPOSITION_ROOT]
