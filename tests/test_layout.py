"""The package's layers import only downward, as each package's docstring declares.

Every ``nas_cntk`` package (and top-level module but the CLI and the package root) says in its
docstring which other parts it may import ("May import: ...", or "May import: nothing."); this reads
every import statement in the tree, module level and inside functions, and checks it against that
list. It also keeps the top level small, every exception type in ``nas_cntk.errors``, and every
name a package's face lists (``__all__``, imported on first use) defined where it points.
"""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import nas_cntk

ROOT = Path(nas_cntk.__file__).parent
UNLAYERED = {"cli", "__init__"}  # the top: they may import any layer


def part(module: str) -> str:
    """The layer a dotted module name belongs to: ``nas_cntk.kernels.fused.cpu`` -> ``kernels``."""
    return module.split(".")[1] if module.count(".") else "__init__"


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT.parent).with_suffix("")
    return ".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)


def imported(path: Path) -> set[str]:
    """The nas_cntk modules a file imports (``from nas_cntk import x`` counts as ``nas_cntk.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("nas_cntk")}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import (the tree imports absolutely, so this check sees all)"
            if node.module == "nas_cntk":
                found |= {f"nas_cntk.{alias.name}" for alias in node.names}
            elif node.module.startswith("nas_cntk."):
                found.add(node.module)
    return found


def declared(part_name: str) -> set[str] | None:
    """The parts a package or top-level module says it may import (None: it does not say)."""
    path = ROOT / part_name / "__init__.py" if (ROOT / part_name).is_dir() else ROOT / f"{part_name}.py"
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    match = re.search(r"May import:(.*?)(?:\n\n|$)", docstring, re.S)
    if match is None:
        return None
    return {part(name) for name in re.findall(r":mod:`(nas_cntk[\w.]*)`", match[1])}


PARTS = sorted({part(module_name(p)) for p in ROOT.rglob("*.py")} - UNLAYERED)


@pytest.mark.parametrize("part_name", PARTS)
def test_each_part_imports_only_what_its_docstring_declares(part_name: str) -> None:
    assert declared(part_name) is not None, f"{part_name}: no 'May import:' line in its docstring"
    allowed = declared(part_name) | {part_name}
    module = ROOT / f"{part_name}.py"
    for path in [module] if module.exists() else sorted((ROOT / part_name).rglob("*.py")):
        for name in imported(path):
            assert part(name) in allowed, f"{path.relative_to(ROOT)} imports {name}, outside {sorted(allowed)}"


def test_declared_imports_point_downward() -> None:
    """No two parts may import each other, directly or through others: the declared graph has no cycle."""
    graph = {name: declared(name) - {name} for name in PARTS}
    order: list[str] = []
    while graph:
        leaves = [name for name, needs in graph.items() if needs <= set(order)]
        assert leaves, f"a cycle among {sorted(graph)}"
        order += sorted(leaves)
        for name in leaves:
            del graph[name]


def test_the_top_level_is_small_and_the_errors_live_in_one_module() -> None:
    top = sorted(p.stem for p in ROOT.glob("*.py"))
    assert len(top) <= 8, top
    for path in ROOT.rglob("*.py"):
        if path.name != "errors.py":
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                    assert not bases & {"Exception", "NasCntkError", "ArchitectureError", "DataError", "KernelError"}, \
                        f"{path.relative_to(ROOT)}: exception {node.name} outside nas_cntk/errors.py"


@pytest.mark.parametrize("package", sorted(module_name(p) for p in ROOT.rglob("__init__.py")))
def test_every_public_name_of_a_package_resolves(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
