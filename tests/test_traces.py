"""Replaying real conversations: LoCoMo and JSONL chat logs, the heuristic, bad traces.

The LoCoMo file (CC BY-NC 4.0) is never copied into the repository: the tests read
it beside the repository, at ``../shared/data/locomo/locomo10.json``, and skip
when it is absent. The JSONL fixture (``tests/data/chat_log.jsonl``) is made-up text.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import scenarios
from reports.check import compare, parse_tolerances
from reports.output import summarize
from sim.config import Scenario, TraceConfig
from sim.heuristic import MAX_WORDS, HeuristicFact, heuristic_facts
from sim.runner import run_scenario
from sim.tokens import TokenCounter
from sim.traces import read_trace, trace_workload

REPO = Path(__file__).resolve().parents[1]
LOCOMO = REPO.parent / "shared" / "data" / "locomo" / "locomo10.json"
CHAT_LOG = REPO / "tests" / "data" / "chat_log.jsonl"
MEMSIM = [sys.executable, "-m", "memsim"]
needs_locomo = pytest.mark.skipif(
    not LOCOMO.is_file(), reason=f"LoCoMo not found at {LOCOMO} (CC BY-NC 4.0, not shipped)"
)


@pytest.fixture
def one_torch_thread():
    """MiniLM encodes one short text at a time: on a shared 2-core machine two torch
    threads make that some 30× slower than one (the vectors are the same)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _memsim(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MEMSIM, *args], capture_output=True, text=True, timeout=300, cwd=cwd, check=False
    )


# -- the heuristic ----------------------------------------------------------------
def test_heuristic_keeps_first_person_statements_only():
    text = (
        "Hi there! I moved to Lyon last spring with my wife.\n"
        "What do you think about it? I see. The weather is nice. "
        "Thanks, I really love the food here!  We   adopted a cat in June."
    )
    assert heuristic_facts(text) == [
        HeuristicFact("I moved to Lyon last spring with my wife.", 4),  # durable: moved, wife
        HeuristicFact("We adopted a cat in June.", 4),  # whitespace collapsed
    ]
    # Questions, short sentences, small talk and third-person text yield nothing.
    assert heuristic_facts("Do I need a visa? I agree. Thanks, I will. She lives in Rome.") == []


def test_heuristic_cuts_long_sentences_and_drops_repeats():
    long = "I " + " ".join(["really"] * 60) + " enjoy painting."
    (fact,) = heuristic_facts(long + " " + long)
    assert len(fact.content.split()) == MAX_WORDS and fact.importance == 3
    assert heuristic_facts("My plan is simple.") == [HeuristicFact("My plan is simple.", 3)]


# -- JSONL ------------------------------------------------------------------------
def test_jsonl_loads_users_sessions_turns_and_replies():
    trace = read_trace(TraceConfig(format="jsonl", path=str(CHAT_LOG)))
    info = trace.info
    assert (info.users, info.sessions, info.turns, info.probes, info.days) == (2, 4, 7, 0, 3)
    assert info.ignored == {"system line": 1, "assistant line before any user line": 1}
    workload = trace_workload(trace, TokenCounter())
    ana, ben = workload.users
    assert (ana.user_id, ben.user_id) == ("u-ana", "u-ben")  # order of first appearance
    first = ana.sessions[0]
    assert first.start_s == 9 * 3600 + 5  # midnight UTC of the earliest line's day
    assert [m.gap_s for m in first.messages] == [0.0, 55.0]
    # Two assistant lines in a row are one reply; a user line with none gets a generated one.
    assert first.replies[1].text.count("\n") == 1
    assert ana.sessions[1].replies[1] is None
    assert ana.sessions[1].start_s == 2 * 86_400 + 17.5 * 3600  # 18:30+01:00 on day 3
    assert ben.sessions[1].start_s == 2 * 86_400 + 11 * 3600 + 0.5  # epoch seconds
    assert all(m.kind == "trace" and not m.facts for m in workload.users[0].sessions[0].messages)


def _chat_log_scenario(tmp_path: Path) -> Path:
    """A scenario reading a copy of the fixture by a path relative to its own folder."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "chat.jsonl").write_bytes(CHAT_LOG.read_bytes())
    scenario = tmp_path / "chat-log.toml"
    scenario.write_text(
        'name = "chat-log"\n'
        'strategies = ["naive-append", "per-turn-extract", "batched-dedup-budget"]\n'
        'embedder = "latent"\n'
        "[llm]\nextract_hallucination_rate = 0.0\n"
        '[trace]\nformat = "jsonl"\npath = "logs/chat.jsonl"\n'
    )
    return scenario


def test_jsonl_run_reports_recall_unavailable_and_extracts_with_the_heuristic(tmp_path):
    out = tmp_path / "out"
    done = _memsim("run", str(_chat_log_scenario(tmp_path)), "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["users"], summary["days"]) == (2, 3)
    trace = read_trace(TraceConfig(format="jsonl", path=str(CHAT_LOG)))
    user_texts = [m.text for m in _messages(trace)]
    expected = sum(len(heuristic_facts(text)) for text in user_texts)
    for name, block in summary["strategies"].items():
        assert (block["turns"], block["probes"], block["recall"]) == (7, 0, 0.0), name
    per_turn = summary["strategies"]["per-turn-extract"]
    assert per_turn["llm_calls_by_purpose"]["extract"] == 7
    assert per_turn["factoids_extracted"] == expected == 6  # the heuristic, nothing else
    batched = summary["strategies"]["batched-dedup-budget"]
    assert batched["llm_calls_by_purpose"]["extract"] == 0  # 4 and 3 messages: no batch of 5
    report = (out / "report.md").read_text()
    assert "recall unavailable: the trace has no ground truth" in report.lower()
    assert "unavailable (no probes)" in report and "Best recall" not in report
    assert "recall unavailable: the trace has no ground truth" in (
        (out / "report.html").read_text().lower()
    )
    assert "\nrecall{" not in (out / "metrics.prom").read_text()
    config = json.loads((out / "config.json").read_text())
    assert config["trace"]["path"] == str((tmp_path / "logs" / "chat.jsonl").resolve())
    assert config["resolved"]["trace"]["turns"] == 7


def _messages(trace):
    for script in trace_workload(trace, TokenCounter()).users:
        for session in script.sessions:
            yield from session.messages


def test_trace_on_the_command_line_is_read_from_the_current_folder(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    args = ["tiny", "--trace", "tests/data/chat_log.jsonl", "--embedder", "latent", "-q"]
    args += ["-s", "per-turn-extract"]
    assert _memsim("run", *args, "--out", str(first)).returncode == 0
    assert _memsim("run", *args, "--out", str(second)).returncode == 0
    # Same trace, scenario and seed: the same summary, to the byte.
    assert (first / "summary.json").read_bytes() == (second / "summary.json").read_bytes()
    summary = json.loads((first / "summary.json").read_text())
    assert summary["users"] == 2 and summary["strategies"]["per-turn-extract"]["turns"] == 7
    two = _memsim("run", *args, "--out", str(tmp_path / "c"), "--users", "1")
    assert two.returncode == 0, two.stderr
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["users"] == 1


def test_trace_defaults_to_the_real_embedder():
    trace = {"format": "jsonl", "path": str(CHAT_LOG)}
    assert Scenario.model_validate({"name": "t", "trace": trace}).embedder == "minilm"
    chosen = Scenario.model_validate({"name": "t", "trace": trace, "embedder": "latent"})
    assert chosen.embedder == "latent"
    assert Scenario.model_validate({"name": "t"}).embedder == "latent"


def test_check_does_not_compare_recall_without_probes():
    block = {"tokens_total": 1, "recall": 0.0, "stale_share": 0.0, "probes": 0}
    metrics = {m: 1.0 for m in parse_tolerances([])} | block
    baseline = {"strategies": {"s": metrics}}
    now = {"strategies": {"s": dict(metrics)}}
    compared = {c.metric for c in compare(baseline, now, parse_tolerances([]), "b.json")}
    assert "recall" not in compared and "stale_share" not in compared and "usd_total" in compared
    now["strategies"]["s"]["probes"] = 3  # measured now: compared (and 0 → x is a change)
    compared = {c.metric for c in compare(baseline, now, parse_tolerances([]), "b.json")}
    assert "recall" in compared


# -- LoCoMo -----------------------------------------------------------------------
def _locomo(users: int, sessions: int, strategies: list[str], **changes) -> Scenario:
    scenario = scenarios.load("locomo")[0]
    trace = scenario.trace.model_copy(
        update={"path": str(LOCOMO), "max_users": users, "max_sessions": sessions}
    )
    return scenario.model_copy(update={"trace": trace, **changes}).with_overrides(
        strategies=strategies
    )


@needs_locomo
def test_locomo_maps_conversations_questions_and_skips():
    trace = read_trace(TraceConfig(format="locomo", path=str(LOCOMO)))
    info = trace.info
    assert (info.users, info.questions) == (10, 1986)
    assert info.skipped == {
        "category 5 not selected": 446,
        "evidence names no turn": 3,
        "malformed evidence": 2,
        "no evidence": 4,
    }
    assert info.probes == 1986 - sum(info.skipped.values())
    workload = trace_workload(trace, TokenCounter(), range(1))
    script = workload.users[0]
    first = script.sessions[0]
    asked = [s for s in script.sessions if not s.remember]  # one question a session
    talk = [s for s in script.sessions if s.remember]
    assert script.user_id == "conv-26" and first.start_s == 13 * 3600 + 56 * 60  # 1:56 pm
    assert first.replies[0] is not None and first.replies[0].tokens > 0  # the other's turn
    assert script.sessions == talk + asked and all(len(s.messages) == 1 for s in asked)
    questions = [s.messages[0] for s in asked]
    assert all(m.kind == "probe" for m in questions)
    assert asked[0].start_s == talk[-1].start_s + 86_400
    assert [s.start_s - asked[0].start_s for s in asked[:3]] == [0.0, 25.0, 50.0]
    several = [m.probe for m in questions if not isinstance(m.probe[0], str)]
    assert several and all(len(p) > 1 for p in several)  # all evidence turns are needed
    evidence = {f.slot for s in script.sessions for m in s.messages for f in m.facts}
    evidence |= {f.slot for s in script.sessions for r in s.replies if r for f in r.facts}
    needed = set()
    for m in questions:
        pairs = [m.probe] if isinstance(m.probe[0], str) else m.probe
        needed |= {slot for slot, _ in pairs}
    assert needed == evidence  # exactly the turns the questions cite carry ground truth


@needs_locomo
@pytest.mark.usefixtures("one_torch_thread")
def test_locomo_full_history_recalls_more_and_costs_more_than_batched():
    result = run_scenario(_locomo(2, 6, ["naive-append", "batched-dedup-budget"]))
    blocks = summarize(result)["strategies"]
    naive, batched = blocks["naive-append"], blocks["batched-dedup-budget"]
    assert naive["probes"] == batched["probes"] == 78
    # The whole conversation is in every prompt: every evidence turn is there.
    assert naive["recall"] == 1.0
    # Batched extraction misses some (10% miss rate, 1,500-token budget), recalls most.
    assert 0.7 < batched["recall"] < 0.98
    assert naive["tokens_total"] > 1.5 * batched["tokens_total"]
    assert batched["memories_per_user_mean"] > 20 and batched["factoids_extracted"] > 100


@needs_locomo
def test_fresh_questions_see_the_conversation_not_each_other():
    """Published protocol: each question alone with the memory; ``session`` piles them up."""

    def question_turns(context: str):
        scenario = _locomo(1, 3, ["naive-append", "per-turn-extract"], embedder="latent")
        trace = scenario.trace.model_copy(update={"question_context": context})
        result = run_scenario(scenario.model_copy(update={"trace": trace}))
        return {
            run.strategy: run.turns[run.turns["recall"] >= 0].reset_index(drop=True)
            for run in result.runs
        }

    fresh, piled = question_turns("fresh"), question_turns("session")
    naive = fresh["naive-append"]
    assert len(naive) > 3 and naive["session"].is_unique
    # Full history: the conversation, the same for every question, then the question.
    assert naive["history_tokens"].nunique() == 1
    assert (piled["naive-append"]["history_tokens"].diff().iloc[1:] > 0).all()
    # A session-scoped strategy: no history at all, only its memories.
    extract = fresh["per-turn-extract"]
    assert (extract["history_tokens"] == 0).all() and (extract["memory_tokens"] > 0).all()
    assert extract["memory_tokens"].nunique() == 1  # questions are not remembered
    assert (piled["per-turn-extract"]["history_tokens"].iloc[1:] > 0).all()


@needs_locomo
def test_locomo_replay_is_deterministic():
    scenario = _locomo(1, 3, ["naive-append", "batched-dedup-budget"], embedder="latent")
    first, second = summarize(run_scenario(scenario)), summarize(run_scenario(scenario))
    assert json.dumps(first) == json.dumps(second)
    assert first["strategies"]["batched-dedup-budget"]["probes"] > 0


# -- bad traces -------------------------------------------------------------------
GOOD = {
    "user_id": "u1",
    "session_id": "s1",
    "timestamp": "2024-01-01T10:00:00",
    "role": "user",
    "content": "I like tea.",
}
BAD_LINES = {
    "not json": ("{not json", [":2:", "not a JSON object"]),
    "missing field": (
        json.dumps({k: v for k, v in GOOD.items() if k != "content"}),
        [":2:", "'content'"],
    ),
    "wrong type": (json.dumps(GOOD | {"content": 42}), [":2:", "'content'", "42"]),
    "unknown role": (json.dumps(GOOD | {"role": "bot"}), [":2:", "'role'", '"bot"']),
    "bad timestamp": (
        json.dumps(GOOD | {"timestamp": "yesterday"}),
        [":2:", "'timestamp'", '"yesterday"'],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_jsonl_line_is_one_line_naming_file_line_field_value(tmp_path, case):
    line, words = BAD_LINES[case]
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps(GOOD) + "\n" + line + "\n")
    done = _memsim("run", "tiny", "--trace", str(log), "--out", str(tmp_path / "out"), "-q")
    assert done.returncode == 2
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("memsim: error: "), done.stderr
    for word in [str(log), *words]:
        assert word in lines[0]
    assert not (tmp_path / "out" / "summary.json").exists()


BAD_LOCOMO = {
    "not a list": ({"conversation": {}}, ["expected a list of LoCoMo conversations"]),
    "no qa": (
        [
            {
                "sample_id": "c1",
                "conversation": {
                    "speaker_a": "A",
                    "speaker_b": "B",
                    "session_1": [],
                    "session_1_date_time": "1:56 pm on 8 May, 2023",
                },
            }
        ],
        ["field '[0].qa' is missing"],
    ),
    "bad date": (
        [
            {
                "sample_id": "c1",
                "qa": [],
                "conversation": {
                    "speaker_a": "A",
                    "speaker_b": "B",
                    "session_1": [],
                    "session_1_date_time": "last Tuesday",
                },
            }
        ],
        ["'[0].conversation.session_1_date_time'", '"last Tuesday"'],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_LOCOMO))
def test_bad_locomo_file_is_one_line_naming_file_field_value(tmp_path, case):
    data, words = BAD_LOCOMO[case]
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(data))
    done = _memsim("validate", "locomo", "--trace", str(path))
    assert done.returncode == 2
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, done.stderr
    for word in [str(path), *words]:
        assert word in lines[0]


def test_missing_trace_file_and_days_with_a_trace(tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    done = _memsim("run", "tiny", "--trace", str(missing), "-q", "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and f"{missing}: no such trace file" in done.stderr
    done = _memsim("run", "tiny", "--trace", str(CHAT_LOG), "--days", "3", "-q")
    assert done.returncode == 2 and "--days" in done.stderr
    done = _memsim("run", "tiny", "--trace", str(tmp_path / "log.txt"), "-q")
    assert done.returncode == 2 and "cannot tell the format" in done.stderr
