"""The one direction of imports (DESIGN.md, "Layers"): walked with ``ast``, every import.

Arrows point down and never back: ``memsim`` (the CLI, the API, the studies) may
import anything; ``reports`` renders records and imports neither the engine, the
runner nor a study; ``sim`` never imports ``reports`` or ``memsim``; strategies
never import the engine, the runner or SimPy. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "reports": ("sim.engine", "sim.runner", "sim.sweep", "memsim"),
    "sim": ("reports", "memsim"),
    "strategies": ("sim.engine", "sim.runner", "simpy", "memsim", "reports"),
    "scenarios": ("sim.engine", "sim.runner", "reports", "memsim", "strategies"),
}
"""Per top-level package, the modules (and their submodules) it must not import.
``sim.sweep`` reads and plans sweeps by building scenarios with the runner, so a
report reads a sweep's plan from ``sim.records`` instead."""


def imports(path: Path, package: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in the file of ``package``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append((node.lineno, base))
            # ``from sim import runner`` imports sim.runner
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _against(module: str, banned: tuple[str, ...]) -> bool:
    return any(module == b or module.startswith(b + ".") for b in banned)


def file_violations(path: Path, package: str, name: str) -> list[str]:
    """The imports of one file of ``package`` (a dotted name) that run against the layers."""
    banned = FORBIDDEN.get(package.split(".")[0], ())
    if package.split(".")[0] != "memsim":
        banned = (*banned, "memsim.studies")  # only memsim imports a study
    return [
        f"{name}:{line} imports {module}"
        for line, module in imports(path, package)
        if _against(module, banned)
    ]


def violations() -> list[str]:
    found = []
    for top in (*FORBIDDEN, "memsim"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT)
            found += file_violations(path, ".".join(rel.parts[:-1]), str(rel))
    return sorted(set(found))


def test_no_import_runs_against_the_layers():
    assert violations() == []


@pytest.mark.parametrize(
    ("package", "source", "bad"),
    [
        ("reports", "from sim.engine import Engine\n", "sim.engine"),
        ("reports", "def f():\n    from sim import runner\n", "sim.runner"),
        ("sim", "import reports.summary\n", "reports.summary"),
        ("strategies", "import simpy\n", "simpy"),
        ("reports", "from memsim.studies import sweep\n", "memsim.studies"),
    ],
)
def test_the_walk_catches_each_kind_of_arrow(tmp_path, package, source, bad):
    module = tmp_path / "probe.py"
    module.write_text(source, encoding="utf-8")
    found = file_violations(module, package, "probe.py")
    assert found and any(line.endswith(f"imports {bad}") for line in found)
    module.write_text("import json\nfrom sim.records import RunResult\n", encoding="utf-8")
    assert file_violations(module, package, "probe.py") == []


def test_relative_imports_are_resolved(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("from ..engine import Engine\nfrom . import summary\n", encoding="utf-8")
    modules = [m for _, m in imports(module, "sim.sub")]
    assert "sim.engine" in modules and "sim.sub.summary" in modules


def test_a_module_over_400_lines_says_why_at_its_top():
    long = []
    for top in (*FORBIDDEN, "memsim"):
        for path in sorted((ROOT / top).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if text.count("\n") > 400:
                doc = ast.get_docstring(ast.parse(text)) or ""
                if "It is long because" not in doc:
                    long.append(str(path.relative_to(ROOT)))
    assert long == []
