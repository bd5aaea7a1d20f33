"""The strategy API: one module to import, and a context with nothing of the engine."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import strategies
import strategies.api
from helpers import single_user_context
from sim.context import TurnContext
from strategies.batched_dedup_budget import BatchedDedupBudget
from strategies.lazy_retrieval import LazyRetrieval

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "strategies"
PLUGIN = ROOT / "examples" / "keyword_memory" / "keyword_memory.py"

API_MODULES = {"api", "base", "history", "jobs", "registry", "__init__"}
"""The modules the API is made of: they may import the parts of ``sim`` it exposes."""
FAMILIES = {
    "lazy_retrieval": {"strategies.batched_dedup_budget"},
    "external_langmem": {"strategies.external"},
}
"""A strategy module may import its own family: the module of the strategy it extends."""
PROJECT = ("sim", "strategies", "reports", "memsim", "scenarios", "simpy")
ENGINE = ("sim.engine", "sim.runner", "sim.shards", "sim.executors", "simpy", "reports", "memsim")
PER_TURN = {
    "user",
    "user_id",
    "now",
    "session",
    "llm",
    "embedder",
    "store",
    "tokens",
    "degraded",
    "defer",
    "new_memory",
}
"""TurnContext's public surface, as ``strategies.api`` documents it."""


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (in functions, under TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            found.add(node.module or "")
    return found


def project_imports(path: Path) -> set[str]:
    return {m for m in imported_modules(path) if m.split(".")[0] in PROJECT}


def strategy_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.glob("*.py") if p.stem not in API_MODULES)


@pytest.mark.parametrize("path", [*strategy_modules(), PLUGIN], ids=lambda p: p.stem)
def test_strategies_import_only_the_api_and_their_family(path):
    allowed = {"strategies.api", *FAMILIES.get(path.stem, ())}
    assert project_imports(path) <= allowed


def test_every_builtin_strategy_module_is_checked():
    defined = {cls.__module__ for cls in [*strategies.builtins().values()]}
    defined |= {cls.__module__ for cls in strategies.external_strategies().values()}
    assert defined == {f"strategies.{p.stem}" for p in strategy_modules()}


@pytest.mark.parametrize("name", sorted(API_MODULES), ids=str)
def test_the_api_reaches_nothing_of_the_engine(name):
    for module in project_imports(PACKAGE / f"{name}.py"):
        assert not module.startswith(ENGINE), f"strategies/{name}.py imports {module}"


def test_importing_the_api_loads_no_engine_and_no_server():
    code = (
        "import sys, strategies.api\n"
        f"print(sorted(m for m in sys.modules if m.startswith({(*ENGINE, 'sim.serve')!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_api_exports_what_it_lists():
    names = strategies.api.__all__
    assert len(set(names)) == len(names)
    assert all(hasattr(strategies.api, name) for name in names)
    for name in ("Strategy", "TurnContext", "Message", "Memory", "Factoid", "CallFailed"):
        assert name in names
    for name in ("fill_budget", "memory_room", "query_vector", "SessionHistories", "register"):
        assert name in names
    for name in ("Span", "Services", "Engine", "take_spans", "replay_pending_writes"):
        assert name not in names


def test_core_types_live_in_sim_types_and_old_imports_still_work():
    import sim.llm
    import sim.types
    import sim.workload

    assert strategies.api.Message is sim.types.Message is sim.workload.Message
    assert sim.workload.Fact is sim.types.Fact and sim.llm.Message is sim.types.Message
    assert sim.workload.SECONDS_PER_DAY == strategies.api.SECONDS_PER_DAY == 86_400.0
    assert project_imports(ROOT / "sim" / "types.py") == set()


def _only_for_type_checking(path: Path, module: str) -> bool:
    """Whether every import of ``module`` in ``path`` sits under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    guarded = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    imports = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == module
    ]
    return all(id(node) in guarded for node in imports)


def test_the_mock_llm_imports_the_workload_only_to_type_its_catalog():
    assert _only_for_type_checking(ROOT / "sim" / "llm.py", "sim.workload")


def test_turn_context_shows_only_the_per_turn_set():
    ctx, *_ = single_user_context()
    public = {name for name in dir(ctx) if not name.startswith("_")}
    assert public == PER_TURN
    assert {s for s in TurnContext.__slots__ if not s.startswith("_")} <= PER_TURN
    assert not hasattr(ctx, "__dict__")  # nothing public can be added by accident


def test_batched_dedup_budget_is_extended_through_its_public_hook():
    """lazy-retrieval overrides ``select`` (public, documented) and nothing private."""
    overridden = {
        name
        for name, value in vars(LazyRetrieval).items()
        if inspect.isfunction(value) and hasattr(BatchedDedupBudget, name)
    }
    assert overridden == {"__init__", "select"}
    assert BatchedDedupBudget.select.__doc__ and BatchedDedupBudget.retrieve.__doc__


def test_external_adapter_writes_the_store_only_through_ctx_store():
    """The adapter never reaches the run's services: its store writes go through ``ctx.store``."""
    source = (PACKAGE / "external.py").read_text()
    assert "services" not in {
        node.attr for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Attribute)
    }
    assert "ctx.store.mirror_add(" in source and "ctx.store.mirror_delete(" in source


def test_mirror_writes_change_the_store_without_a_span():
    from sim.context import take_spans
    from strategies.api import Factoid

    ctx, _, store, _ = single_user_context()
    memory = ctx.new_memory(Factoid("I live in Lisbon", 5, "personal"))
    ctx.store.mirror_add([memory], [memory.text])
    assert store.count(0) == 1 and take_spans(ctx) == []
    ctx.store.mirror_delete([memory.id])
    assert store.count(0) == 0 and take_spans(ctx) == []
