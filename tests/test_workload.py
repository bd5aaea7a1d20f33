"""The synthetic workload: per-user determinism, ground truth, timing, message mix."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.config import Scenario
from sim.textbank import FILLERS, QUESTIONS, SLOT_BY_KEY, SLOTS
from sim.tokens import TokenCounter, encoding
from sim.workload import (
    SECONDS_PER_DAY,
    Fact,
    TextCatalog,
    Workload,
    generate_user,
    generate_workload,
    iter_messages,
)

KINDS = ("state", "restate", "update", "probe", "filler")


def scenario(**fields: Any) -> Scenario:
    """A small scenario; ``workload`` (and its ``mix``) merge into the defaults."""
    data: dict[str, Any] = {"name": "test", "users": 3, "days": 2, **fields}
    return Scenario.model_validate(data)


def script_view(script) -> list[tuple]:
    """Everything observable about one user's script, as plain tuples."""
    return [
        (s.start_s, m.text, m.tokens, m.kind, m.facts, m.probe, m.session, m.turn, m.gap_s)
        for s in script.sessions
        for m in s.messages
    ]


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


@pytest.fixture(scope="module")
def big(counter: TokenCounter) -> Workload:
    """Default workload config, many users: for invariants and statistics."""
    return generate_workload(scenario(users=300, days=30, seed=5), counter)


# -- determinism -----------------------------------------------------------------------


def test_user_script_depends_only_on_seed_and_index(counter):
    small = scenario(users=10, days=14, seed=42)
    large = scenario(users=100, days=14, seed=42)
    a = generate_user(small, 5, counter, TextCatalog())
    b = generate_user(large, 5, counter, TextCatalog())
    assert a.user == b.user == 5
    assert a.user_id == "u0000005"
    assert a.turns > 10
    assert script_view(a) == script_view(b)

    other_seed = generate_user(scenario(users=10, days=14, seed=43), 5, counter, TextCatalog())
    assert script_view(other_seed) != script_view(a)
    other_user = generate_user(small, 6, counter, TextCatalog())
    assert script_view(other_user) != script_view(a)


def test_workload_user_matches_standalone_generation(counter):
    sc = scenario(users=12, days=7, seed=3)
    whole = generate_workload(sc, counter)
    part = generate_workload(sc, counter, users=range(7, 9))
    assert [u.user for u in whole.users] == list(range(12))
    assert [u.user for u in part.users] == [7, 8]
    assert script_view(part.users[0]) == script_view(whole.users[7])
    assert script_view(part.users[1]) == script_view(whole.users[8])
    assert whole.turns == sum(u.turns for u in whole.users) == len(list(iter_messages(whole)))


# -- ground truth ------------------------------------------------------------------------


def check_ground_truth(workload: Workload, facts_per_user: int) -> Counter:
    """Replay each user's messages and check every annotation against the profile so far."""
    kinds: Counter[str] = Counter()
    for script in workload.users:
        latest: dict[str, Fact] = {}
        for msg in (m for s in script.sessions for m in s.messages):
            kinds[msg.kind] += 1
            assert msg.role == "user"
            assert msg.user == script.user
            if msg.kind == "probe":
                assert msg.facts == ()
                slot, version = msg.probe
                assert slot in latest, f"probe about unstated {slot}"
                assert version == latest[slot].version, "probe must ask for the latest version"
                continue
            assert msg.probe is None
            if msg.kind == "filler":
                assert msg.facts == ()
                continue
            assert msg.facts, msg
            assert len({f.slot for f in msg.facts}) == len(msg.facts)
            for fact in msg.facts:
                slot = SLOT_BY_KEY[fact.slot]
                assert fact.value in slot.values
                if msg.kind == "state":
                    assert fact.slot not in latest
                    assert fact.version == 0
                elif msg.kind == "restate":
                    assert latest[fact.slot] == fact
                else:
                    assert msg.kind == "update"
                    previous = latest[fact.slot]
                    assert slot.mutable
                    assert fact.version == previous.version + 1
                    assert fact.value != previous.value
                latest[fact.slot] = fact
        assert len(latest) <= facts_per_user
    return kinds


def test_ground_truth_default_mix(big):
    kinds = check_ground_truth(big, facts_per_user=10)
    # Every kind occurs, so the checks above were exercised.
    assert all(kinds[k] > 100 for k in KINDS), kinds


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    facts=st.integers(1, 14),
    per_statement=st.integers(1, 5),
    weights=st.tuples(*[st.sampled_from([0.0, 0.05, 0.5, 2.0])] * 5),
)
def test_ground_truth_any_config(seed, facts, per_statement, weights):
    mix = dict(zip(KINDS, weights, strict=True))
    if not any(weights):
        mix["filler"] = 1.0
    sc = scenario(
        users=4,
        days=10,
        seed=seed,
        workload={
            "facts_per_user": facts,
            "facts_per_statement_max": per_statement,
            "sessions_per_user_per_day": 1.0,
            "mix": mix,
        },
    )
    workload = generate_workload(sc, TokenCounter())
    check_ground_truth(workload, facts)
    for msg in iter_messages(workload):
        assert len(msg.facts) <= per_statement


def test_every_slot_has_the_templates_the_generator_needs():
    assert len({s.key for s in SLOTS}) == len(SLOTS)
    assert {s.key: s for s in SLOTS} == SLOT_BY_KEY
    for slot in SLOTS:
        assert slot.category in {"preference", "background", "goal", "other"}
        assert 1 <= slot.importance <= 10
        assert len(slot.memories) >= 2, slot.key
        assert len(slot.probes) >= 1, slot.key
        assert len(slot.statements) >= 1, slot.key
        assert len(set(slot.values)) == len(slot.values)
        if slot.mutable:
            assert len(slot.updates) >= 1, slot.key
            assert len(slot.values) >= 2, slot.key  # an update needs a different value
        for template in slot.statements + slot.updates + slot.memories:
            assert "{v}" in template, template
        for probe in slot.probes:
            assert "{" not in probe


# -- timing and token counts ---------------------------------------------------------------


def test_sessions_and_gaps(big):
    horizon = big.days * SECONDS_PER_DAY
    enc = encoding()
    for script in big.users:
        starts = [s.start_s for s in script.sessions]
        assert starts == sorted(starts)
        assert all(b - a >= 7200 for a, b in itertools.pairwise(starts))
        assert all(0 <= t < horizon for t in starts)
        for index, session in enumerate(script.sessions):
            assert session.messages
            for turn, msg in enumerate(session.messages):
                assert (msg.session, msg.turn) == (index, turn)
                if turn == 0:
                    assert msg.gap_s == 0.0
                else:
                    assert msg.gap_s > 0.0
    for msg in iter_messages(big):
        assert msg.tokens == len(enc.encode_ordinary(msg.text)) > 0


def test_timing_follows_config(big):
    cfg = Scenario.model_validate({"name": "x"}).workload
    sessions = [len(u.sessions) for u in big.users]
    # Stationary renewal process: expected sessions = rate × days (±6 %).
    assert np.mean(sessions) == pytest.approx(cfg.sessions_per_user_per_day * big.days, rel=0.06)
    turns = [len(s.messages) for u in big.users for s in u.sessions]
    assert np.mean(turns) == pytest.approx(cfg.turns_per_session_mean, abs=0.2)
    gaps = [m.gap_s for m in iter_messages(big) if m.turn]
    assert np.mean(gaps) == pytest.approx(cfg.think_time_s_mean, rel=0.06)
    # Diurnal pattern: share of starts within ±6 h of the peak hour is
    # (12 + amplitude·24/π) / 24 for the density 1 + a·cos(2π(h - peak)/24).
    hours = np.array([(s.start_s % SECONDS_PER_DAY) / 3600 for u in big.users for s in u.sessions])
    distance = np.abs((hours - cfg.peak_hour + 12) % 24 - 12)
    expected = (12 + cfg.diurnal_amplitude * 24 / math.pi) / 24
    assert np.mean(distance < 6) == pytest.approx(expected, abs=0.03)


# -- message mix -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mix",
    [
        {},  # defaults
        {"state": 0.3, "restate": 0.4, "update": 0.5, "probe": 0.2, "filler": 0.1},
    ],
)
def test_kind_shares_follow_the_mix(counter, mix):
    """Without intros every kind comes from the weighted draw; replaying each user's
    state gives each message's exact kind probabilities, whose sums the counts must match."""
    sc = scenario(users=250, days=20, seed=11, workload={"intro_probability": 0.0, "mix": mix})
    weights = sc.workload.mix
    n_facts = sc.workload.facts_per_user
    expected = dict.fromkeys(KINDS, 0.0)
    variance = dict.fromkeys(KINDS, 0.0)
    observed: Counter[str] = Counter()
    workload = generate_workload(sc, counter)
    for script in workload.users:
        stated: set[str] = set()
        for msg in (m for s in script.sessions for m in s.messages):
            unstated = n_facts - len(stated)
            w = {
                "state": weights.state * unstated / n_facts,
                "restate": weights.restate if stated else 0.0,
                "update": weights.update if any(SLOT_BY_KEY[k].mutable for k in stated) else 0.0,
                "probe": weights.probe if stated else 0.0,
                "filler": weights.filler,
            }
            total = sum(w.values())
            for kind in KINDS:
                p = w[kind] / total
                expected[kind] += p
                variance[kind] += p * (1 - p)
            observed[msg.kind] += 1
            stated.update(f.slot for f in msg.facts)
    assert sum(observed.values()) > 10_000
    for kind in KINDS:
        bound = 4 * math.sqrt(variance[kind]) + 1
        assert abs(observed[kind] - expected[kind]) <= bound, (kind, observed, expected)


def test_zero_filler_weight_means_no_filler(counter):
    sc = scenario(users=150, days=20, seed=2, workload={"mix": {"filler": 0.0}})
    kinds = Counter(m.kind for m in iter_messages(generate_workload(sc, counter)))
    assert kinds["filler"] == 0
    assert kinds["probe"] > 0 and kinds["restate"] > 0


def test_zero_probe_weight_means_no_probes(counter):
    sc = scenario(users=150, days=20, seed=2, workload={"mix": {"probe": 0.0}})
    kinds = Counter(m.kind for m in iter_messages(generate_workload(sc, counter)))
    assert kinds["probe"] == 0
    assert kinds["filler"] > 0


def test_filler_only_when_nothing_else_is_possible(counter):
    """Only ``state`` has weight: users state their whole profile, then can only fill."""
    mix = {"state": 1.0, "restate": 0.0, "update": 0.0, "probe": 0.0, "filler": 0.0}
    sc = scenario(users=40, days=10, seed=4, workload={"mix": mix, "intro_probability": 0.0})
    for script in generate_workload(sc, counter).users:
        kinds = [m.kind for s in script.sessions for m in s.messages]
        assert set(kinds) <= {"state", "filler"}
        stated = 0
        for msg in (m for s in script.sessions for m in s.messages):
            if msg.kind == "filler":
                assert stated == sc.workload.facts_per_user
            stated += len(msg.facts)


# -- text catalog ------------------------------------------------------------------------------


def test_every_message_text_is_in_the_catalog(big):
    topics = big.catalog.topics
    for msg in iter_messages(big):
        comps = topics.get(msg.text)
        assert comps, msg.text
        questions = [c for c in comps if c[0] in ("question", "ask")]
        for kind, *index in questions:  # a general question, or one on a slot's topic
            text = QUESTIONS[index[0]] if kind == "question" else None
            assert (text or SLOT_BY_KEY[index[0]].questions[index[1]]) in msg.text
        if msg.kind == "probe":
            ((kind, slot, i),) = comps
            assert kind == "probe"
            assert slot == msg.probe[0]
            assert msg.text == SLOT_BY_KEY[slot].probes[i]
        elif msg.kind == "filler":
            ((kind, *index),) = comps
            if kind == "ask":
                assert msg.text == SLOT_BY_KEY[index[0]].questions[index[1]]
            else:
                assert kind in ("question", "filler")
                assert msg.text == (QUESTIONS if kind == "question" else FILLERS)[index[0]]
        else:
            facts = [c for c in comps if c[0] == "fact"]
            assert len(facts) + len(questions) == len(comps)
            assert len(questions) <= 1
            assert {(c[1], c[2]) for c in facts} == {(f.slot, f.value) for f in msg.facts}
            for _, slot_key, value, style, i in facts:
                slot = SLOT_BY_KEY[slot_key]
                assert style == "statement"
                template = slot.updates[i - 100] if i >= 100 else slot.statements[i]
                assert template.format(v=value) in msg.text


def test_activity_sigma_spreads_visit_rates_and_keeps_their_mean(counter):
    def sessions(sigma: float) -> np.ndarray:
        wl = {"sessions_per_user_per_day": 0.3, "activity_sigma": sigma}
        w = generate_workload(scenario(users=400, days=30, seed=3, workload=wl), counter)
        return np.array([len(u.sessions) for u in w.users])

    even, spread = sessions(0.0), sessions(0.8)
    # The mean factor is 1: the same traffic in total (within sampling noise) ...
    assert spread.mean() == pytest.approx(even.mean(), rel=0.1)
    # ... but some users write far more often than others.
    assert spread.std() > 2 * even.std()
    assert spread.max() > 1.8 * even.max()
