"""The docs keep up with the code: docs/strategies.md documents every strategy and
setting, every TOML block of README.md and docs/*.md is a valid scenario, fragment or
sweep, and every file the docs' commands read exists."""

import re
import shlex
import tomllib
from pathlib import Path

import pytest

import scenarios
import strategies
from sim.config import ConfigError, parse_scenario, read_toml
from sim.runner import build_strategies, rates_for
from sim.sweep import load_sweep
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


# -- TOML blocks of README.md and docs/*.md ----------------------------------------
#
# Convention: every ```toml block of README.md and docs/*.md must parse, and is
# then checked by what it is, told from its top-level keys:
#
# * a *sweep* has a top-level `scenario` key: it is written to a file and loaded as
#   `memsim sweep` loads one (fields, paths, every grid point validated);
# * a *whole scenario* has a top-level `name` key: it is written to a file and
#   loaded as `memsim validate` loads one;
# * anything else is a *scenario fragment* (`[llm.cache]`, `[faults]`, `[trace]`,
#   ...): it is merged, table by table, onto scenarios/tiny.toml and the result
#   validated as a scenario.
#
# Scenarios and fragments then build their strategies and prices as a run would,
# and every `[strategy.<name>]` table is validated against that strategy's
# settings. A `[trace]` block names the reader's own file, so the trace itself is
# not read. A block that is none of these (say, a pyproject.toml excerpt) would
# need a kind of its own here.

ROOT = Path(__file__).parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def _blocks(language: str) -> list[tuple[str, str]]:
    """``(file:line, text)`` of every fenced block in ``language`` of the docs."""
    found = []
    for path in DOC_FILES:
        text = path.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{path.relative_to(ROOT)}:{line}", match.group(2)))
    return found


TOML_BLOCKS = _blocks("toml")


def _merged(base: dict, fragment: dict) -> dict:
    """``base`` with ``fragment`` laid over it, nested tables merged key by key."""
    out = dict(base)
    for key, value in fragment.items():
        both_tables = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both_tables else value
    return out


def block_kind(data: dict) -> str:
    """``sweep``, ``scenario`` or ``fragment``, by the convention above."""
    if "scenario" in data:
        return "sweep"
    return "scenario" if "name" in data else "fragment"


def check_block(text: str, folder: Path) -> str:
    """Validate one TOML block by its kind; return the kind. Raises ConfigError."""
    data = tomllib.loads(text)
    kind = block_kind(data)
    path = folder / "block.toml"
    path.write_text(text)
    if kind == "sweep":
        load_sweep(path)
        return kind
    if kind == "scenario":
        scenario, _ = scenarios.load(str(path))
    else:
        tiny = read_toml(scenarios.shipped()["tiny"])
        scenario = parse_scenario(_merged(tiny, data), f"{path} (on tiny.toml)")
    build_strategies(scenario, str(path))
    rates_for(scenario, str(path))
    for name, settings in scenario.strategy.items():
        strategies.resolve(name).Config.model_validate(settings)
    return kind


@pytest.mark.parametrize(("where", "text"), TOML_BLOCKS, ids=[w for w, _ in TOML_BLOCKS])
def test_every_toml_block_of_the_docs_is_valid(where, text, tmp_path):
    check_block(text, tmp_path)


def test_the_docs_have_toml_blocks_of_every_kind():
    """Guards the block finder and the convention: all three kinds are really checked."""
    kinds = [block_kind(tomllib.loads(text)) for _, text in TOML_BLOCKS]
    assert {"sweep", "scenario", "fragment"} <= set(kinds)
    assert len(TOML_BLOCKS) >= 7


def test_a_top_level_key_written_after_a_table_is_caught(tmp_path):
    """The README's scenario once set `embedder` after `[embedding]`: inside that table."""
    misplaced = (
        'name = "my-bot"\n\n[embedding]\nusd_per_million_tokens = 0.02\n\nembedder = "latent"\n'
    )
    with pytest.raises(ConfigError, match=r"unknown field 'embedding\.embedder'"):
        check_block(misplaced, tmp_path)
    fixed = 'name = "my-bot"\nembedder = "latent"\n\n[embedding]\nusd_per_million_tokens = 0.02\n'
    assert check_block(fixed, tmp_path) == "scenario"


def test_a_bad_fragment_or_sweep_is_caught(tmp_path):
    with pytest.raises(ConfigError, match=r"llm\.cache\.mode"):
        check_block('[llm.cache]\nmode = "sometimes"\n', tmp_path)
    with pytest.raises(ConfigError, match="no_such_setting"):
        check_block(
            'scenario = "tiny"\n[grid]\n"strategy.batched-dedup-budget.no_such_setting" = [1]\n',
            tmp_path,
        )


# -- files named in the commands of README.md and docs/*.md ------------------------
#
# In every ```sh block, each `.venv/bin/memsim` or `.venv/bin/python` command's
# arguments that name a file (a `/` in them, or a file suffix) must exist in the
# repository, unless the command writes it (the value of --out, -o, --output, --otel,
# --record) or an earlier command of the block wrote it, or it is the reader's own
# data: a `--trace` or `--locomo` file (LoCoMo is licensed and not shipped; logs are
# yours), a `/path/to/…` placeholder, or a bare name starting with `my-` (your own
# sweep, profile or log). The tour's scenario is shipped: examples/my-scenario.toml.

WRITES = {"--out", "-o", "--output", "--record", "--otel"}
READERS_OWN = {"--trace", "--locomo"}
FILE_LIKE = re.compile(r"/|\.(toml|json|jsonl|py|yml|yaml|parquet|csv)$")


def _commands(text: str) -> list[list[str]]:
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] in (".venv/bin/memsim", ".venv/bin/python"):
            commands.append(words)
    return commands


def _reads(word: str) -> bool:
    """Whether an argument names a file in the repository (not an option, not yours)."""
    return bool(FILE_LIKE.search(word)) and not word.startswith(("-", "/path/to/", "my-"))


def _under(word: str, written: set[str]) -> bool:
    """Whether ``word`` is a written file or lies in a written folder."""
    return any(word == w or word.startswith(w.rstrip("/") + "/") for w in written)


def missing_files(text: str) -> list[str]:
    """Files the commands of one sh block read that the repository does not have."""
    written, missing = set(), []
    for words in _commands(text):
        args = iter(words[1:])
        for word in args:
            if word in WRITES:
                written.add(next(args, ""))
            elif word in READERS_OWN or word == "-c":  # -c: Python code, not a file
                next(args, None)
            elif _reads(word) and not _under(word, written) and not (ROOT / word).exists():
                missing.append(word)
    return missing


SH_BLOCKS = _blocks("sh")


@pytest.mark.parametrize(("where", "text"), SH_BLOCKS, ids=[w for w, _ in SH_BLOCKS])
def test_files_named_in_commands_exist(where, text):
    assert missing_files(text) == []


def test_the_tour_runs_the_shipped_example_scenario():
    readme = (ROOT / "README.md").read_text()
    tour = readme.split("## A five-minute tour", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    runs = [words for words in _commands(tour) if words[1:2] == ["run"]]
    assert ["examples/my-scenario.toml"] in [words[2:3] for words in runs]
    assert missing_files(tour) == []
    # the finder does flag what is missing:
    assert missing_files(".venv/bin/memsim run no-such-scenario.toml -q") == [
        "no-such-scenario.toml"
    ]
