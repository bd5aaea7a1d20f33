"""Bad input gets one clear line naming the file, the field and the value."""

from pathlib import Path

import pytest

import scenarios
from sim.config import ConfigError, load_scenario_file
from sim.runner import build_strategies, rates_for


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scn.toml"
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        scn = load_scenario_file(path)
        build_strategies(scn, str(path))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_shipped_scenarios_validate():
    for name, path in scenarios.shipped().items():
        scn = load_scenario_file(path)
        assert scn.name == name
        assert build_strategies(scn, str(path))


def test_unknown_field_is_named(tmp_path):
    msg = error_of(write(tmp_path, 'name = "x"\n[workload]\nturns_per_sesion_mean = 3\n'))
    assert "unknown field 'workload.turns_per_sesion_mean'" in msg


def test_wrong_type_names_field_and_value(tmp_path):
    msg = error_of(write(tmp_path, 'name = "x"\nusers = "many"\n'))
    assert "field 'users'" in msg and '"many"' in msg


def test_negative_rate_names_field_and_value(tmp_path):
    msg = error_of(write(tmp_path, 'name = "x"\n[llm]\nextract_miss_rate = -0.5\n'))
    assert "field 'llm.extract_miss_rate' = -0.5" in msg


def test_nested_strategy_override_is_validated(tmp_path):
    msg = error_of(
        write(tmp_path, 'name = "x"\n[strategy.batched-dedup-budget]\nbudget_tokens = -1\n')
    )
    assert "field 'strategy.batched-dedup-budget.budget_tokens' = -1" in msg


def test_unknown_override_key_in_strategy(tmp_path):
    msg = error_of(write(tmp_path, 'name = "x"\n[strategy.batched-dedup-budget]\nbudget = 9\n'))
    assert "strategy.batched-dedup-budget.budget" in msg


def test_unknown_strategy_suggests_the_closest(tmp_path):
    msg = error_of(write(tmp_path, 'name = "x"\nstrategies = ["batched-dedup-budgit"]\n'))
    assert "unknown strategy 'batched-dedup-budgit'" in msg
    assert "did you mean 'batched-dedup-budget'" in msg


def test_invalid_toml(tmp_path):
    msg = error_of(write(tmp_path, 'name = "x\n'))
    assert "invalid TOML" in msg


def test_missing_file(tmp_path):
    msg = error_of(tmp_path / "nope.toml")
    assert "no such file" in msg


def test_jitter_band_must_contain_one(tmp_path):
    msg = error_of(write(tmp_path, 'name = "x"\n[llm]\njitter_min = 1.5\n'))
    assert "llm" in msg and "jitter" in msg


def test_unknown_model_has_no_price(tmp_path):
    path = write(tmp_path, 'name = "x"\n[llm]\nmodel = "gpt-9-ultra"\n')
    with pytest.raises(ConfigError) as info:
        rates_for(load_scenario_file(path), str(path))
    assert str(path) in str(info.value) and "'gpt-9-ultra'" in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_price_date(tmp_path):
    path = write(tmp_path, 'name = "x"\n[pricing]\nprice_date = "yesterday"\n')
    with pytest.raises(ConfigError) as info:
        rates_for(load_scenario_file(path), str(path))
    assert "pricing.price_date" in str(info.value) and "yesterday" in str(info.value)
