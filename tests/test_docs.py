"""docs/strategies.md keeps up with the registry: every strategy, every setting."""

from pathlib import Path

import pytest

import strategies
from strategies.base import ExtractionConfig, MemoryLayoutConfig, StrategyConfig

DOC = (Path(__file__).parents[1] / "docs" / "strategies.md").read_text()


@pytest.mark.parametrize("name", list(strategies.builtins()))
def test_every_builtin_strategy_and_setting_is_documented(name):
    assert f"## `{name}`" in DOC
    section = DOC.split(f"## `{name}`", 1)[1].split("\n## ", 1)[0]
    own = set(strategies.resolve(name).Config.model_fields) - set(ExtractionConfig.model_fields)
    inherited = {"lazy-retrieval": "batched-dedup-budget", "mem0-like-add-only": "mem0-like"}
    if name in inherited:
        parent = strategies.resolve(inherited[name]).Config.model_fields
        own -= set(parent)
        assert f"`{inherited[name]}`" in section
    missing = [field for field in own if f"`{field}`" not in section]
    assert missing == []


@pytest.mark.parametrize(
    ("title", "config", "parent"),
    [
        ("Settings every strategy that injects memories has", MemoryLayoutConfig, StrategyConfig),
        (
            "Settings every strategy that extracts with a prompt has",
            ExtractionConfig,
            MemoryLayoutConfig,
        ),
    ],
)
def test_shared_settings_are_documented_once_for_all(title, config, parent):
    """A section per shared settings class: its own settings, and every strategy that has them."""
    section = DOC.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    own = set(config.model_fields) - set(parent.model_fields)
    assert own and [f for f in own if f"`{f}`" not in section] == []
    having = [n for n in strategies.available() if issubclass(strategies.resolve(n).Config, config)]
    assert having and [name for name in having if f"`{name}`" not in section] == []


def test_settings_every_strategy_has_are_documented():
    section = DOC.split("## Settings every strategy has", 1)[1].split("\n## ", 1)[0]
    missing = [field for field in StrategyConfig.model_fields if f"`{field}`" not in section]
    assert missing == []
