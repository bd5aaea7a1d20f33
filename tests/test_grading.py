"""Grading a prompt against ground truth: probe outcome, foreign items, planted instructions."""

from __future__ import annotations

from types import SimpleNamespace

from sim.grading import (
    NOT_A_PROBE,
    foreign_items,
    foreign_memories,
    planted_instructions,
    probe_outcome,
)
from sim.textbank import INSTRUCTION_SLOT


def _prompt(facts=(), memories=(), history=()):
    present = set(facts)
    return SimpleNamespace(facts=lambda: present, memories=list(memories), history=list(history))


def test_a_message_that_is_no_probe_is_graded_neither_way():
    assert probe_outcome(_prompt({("city", 2)}), None) == (NOT_A_PROBE, NOT_A_PROBE)


def test_a_probe_is_recalled_with_the_latest_version_and_stale_with_an_older_one():
    assert probe_outcome(_prompt({("city", 2)}), ("city", 2)) == (1, 0)
    assert probe_outcome(_prompt({("city", 1)}), ("city", 2)) == (0, 1)
    assert probe_outcome(_prompt({("city", 1), ("city", 2)}), ("city", 2)) == (1, 1)
    assert probe_outcome(_prompt({("job", 1)}), ("city", 2)) == (0, 0)


def test_a_probe_of_several_facts_needs_them_all():
    probe = (("city", 2), ("job", 1))
    assert probe_outcome(_prompt({("city", 2), ("job", 1)}), probe) == (1, 0)
    assert probe_outcome(_prompt({("city", 2)}), probe) == (0, 0)
    assert probe_outcome(_prompt({("city", 1), ("job", 1)}), probe) == (0, 1)


def test_foreign_items_count_other_users_history_and_known_owners():
    history = [SimpleNamespace(user=u) for u in (0, 1, 0, 2)]
    memories = [SimpleNamespace(owner=o) for o in (0, 3, -1)]  # -1: owner unknown
    assert foreign_items(_prompt(memories=memories, history=history), user=0) == 3


def test_memories_without_an_owner_are_not_counted():
    items = [SimpleNamespace(owner=1), SimpleNamespace(text="a summary")]
    assert foreign_memories(items, user=0) == 1


def test_planted_instructions_are_items_holding_an_instruction_fact():
    items = [
        SimpleNamespace(facts=((INSTRUCTION_SLOT + "x", 1),)),
        SimpleNamespace(facts=(("city", 1), (INSTRUCTION_SLOT + "y", 1))),
        SimpleNamespace(facts=(("city", 1),)),
        SimpleNamespace(text="no facts at all"),
    ]
    assert planted_instructions(items) == 2
