"""docs/strategies.md keeps up with the registry: every strategy, every setting."""

from pathlib import Path

import pytest

import strategies

DOC = (Path(__file__).parents[1] / "docs" / "strategies.md").read_text()


@pytest.mark.parametrize("name", list(strategies.builtins()))
def test_every_builtin_strategy_and_setting_is_documented(name):
    assert f"## `{name}`" in DOC
    section = DOC.split(f"## `{name}`", 1)[1].split("\n## ", 1)[0]
    own = set(strategies.resolve(name).Config.model_fields) - {"tick_period_s"}
    inherited = {"lazy-retrieval": "batched-dedup-budget", "mem0-like-add-only": "mem0-like"}
    if name in inherited:
        parent = strategies.resolve(inherited[name]).Config.model_fields
        own -= set(parent)
        assert f"`{inherited[name]}`" in section
    missing = [field for field in own if f"`{field}`" not in section]
    assert missing == []
