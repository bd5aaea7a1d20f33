"""Extraction prompt templates: what each costs on a fixed conversation, and their wiring."""

from __future__ import annotations

import json

import pytest

from helpers import make_scenario
from reports.output import summarize
from sim.config import ConfigError, LLMConfig
from sim.extraction_prompts import SHIPPED, extraction_prompt
from sim.llm import MockLLM
from sim.runner import build_strategies, run_scenario
from sim.tokens import TokenCounter
from sim.workload import Message, TextCatalog

CONVERSATION = [
    ("user", "Hi, I'm Dana Whitfield and I run a bakery in Lisbon."),
    ("assistant", "Welcome, Dana! How can I help you today?"),
    ("user", "I'm on the Pro plan and I'd like to export my invoices as CSV."),
    ("assistant", "You can export invoices from Billing, then Export, then CSV."),
]
PINNED = {"compact": 209, "practitioner": 318, "mem0-classic": 955, "mem0-additive": 7_799}
"""Input tokens of one extraction call of CONVERSATION (cl100k, chat overhead included)."""


def _call(prompt=None) -> int:
    tokens = TokenCounter()
    llm = MockLLM(LLMConfig(), tokens, TextCatalog(), 1)
    messages = [Message(role, text, tokens.count(text)) for role, text in CONVERSATION]
    return llm.extract(0, messages, prompt).tokens_in


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_template_costs_what_it_sends(name):
    assert _call(extraction_prompt(name)) == PINNED[name]


def test_the_practitioner_template_is_counted_exactly():
    """Its bill is the rendered request, counted whole: system, preamble, indented JSON."""
    template = extraction_prompt("practitioner")
    counter = TokenCounter()
    user = template.preamble + json.dumps(
        [{"role": r, "content": t} for r, t in CONVERSATION], indent=2
    )
    expected = counter.chat([("system", template.system), ("user", user)])
    assert _call(template) == expected
    assert 200 <= expected <= 500  # the published range for a few messages


def test_compact_is_the_default_bill():
    assert _call() == _call(extraction_prompt("compact"))
    rendered = "".join(f"{'User' if r == 'user' else 'Assistant'}: {t}\n" for r, t in CONVERSATION)
    counter = TokenCounter()
    template = extraction_prompt("compact")
    assert _call() == counter.chat([("system", template.system), ("user", rendered)])


def test_a_file_is_a_system_prompt(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("Extract the user's facts as JSON.")
    template = extraction_prompt(str(path))
    assert template.system == "Extract the user's facts as JSON." and template.transcript == "lines"


def test_a_bad_template_is_one_line_naming_the_setting():
    with pytest.raises(ConfigError, match="not a shipped template"):
        extraction_prompt("no-such-prompt")
    scenario = make_scenario(
        strategies=["batched-dedup-budget"],
        strategy={"batched-dedup-budget": {"extraction_prompt": "no-such-prompt"}},
    )
    with pytest.raises(ConfigError, match=r"strategy\.batched-dedup-budget\.extraction_prompt"):
        build_strategies(scenario, "test.toml")


def test_a_bigger_template_costs_more_and_finds_the_same():
    def run(prompt: str) -> dict:
        scenario = make_scenario(
            users=4,
            days=3,
            strategies=["batched-dedup-budget"],
            strategy={"batched-dedup-budget": {"extraction_prompt": prompt}},
        )
        return summarize(run_scenario(scenario))["strategies"]["batched-dedup-budget"]

    compact, practitioner = run("compact"), run("practitioner")
    assert practitioner["tokens_by_purpose"]["extract"] > compact["tokens_by_purpose"]["extract"]
    for key in ("factoids_extracted", "memories_written", "recall", "llm_calls_by_purpose"):
        assert practitioner[key] == compact[key], key
