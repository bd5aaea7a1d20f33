"""The example strategy runs under memsim, found by path and by entry point."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import strategies
from memsim.cli import app

runner = CliRunner()


@pytest.mark.parametrize("spec", ["keyword_memory:KeywordMemory", "keyword-memory"])
def test_loads_by_path_and_by_entry_point(spec):
    cls = strategies.resolve(spec)
    assert cls.name == "keyword-memory" and cls.__module__ == "keyword_memory"


def test_runs_and_remembers_without_llm_calls(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "run",
            "tiny",
            "--strategy",
            "keyword-memory",
            "--strategy",
            "naive-append",
            "--out",
            str(out),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.stderr
    block = json.loads((out / "summary.json").read_text())["strategies"]["keyword-memory"]
    assert block["llm_calls_by_purpose"]["extract"] == 0
    assert block["memories_per_user_mean"] > 0 and block["duplicate_ratio"] < 1
    assert block["injected_tokens_max"] <= 400
    assert 0 < block["recall"] <= 1


def test_listed_among_the_strategies():
    assert "keyword-memory" in strategies.available()


def test_imports_nothing_of_memsim_but_the_strategy_api():
    source = Path(__file__).parent.parent / "keyword_memory.py"
    tree = ast.parse(source.read_text())
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules |= {
        a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
    }
    assert {m for m in modules if m.split(".")[0] in ("sim", "strategies")} == {"strategies.api"}
