"""memsim sweep: grid expansion, validation, run keys, the cache, statistics, executors."""

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memsim.cli import app
from memsim.studies.sweep import RunCache, run_sweep
from reports import sweep as report
from sim.config import ConfigError
from sim.sweep import load_sweep

runner = CliRunner()

BDB = "strategy.batched-dedup-budget"
SMALL = f"""
scenario = "tiny"
strategies = ["batched-dedup-budget", "naive-append"]
seeds = [1, 2]
[overrides]
users = 3
days = 2
[grid]
"{BDB}.budget_tokens" = [60, 200]
"{BDB}.dedup_threshold" = [0.8, 0.9]
"""


def write(folder: Path, text: str, name: str = "sweep.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def run(path: Path, out: Path, **options):
    plan = load_sweep(path)
    outcome = run_sweep(plan, out, **options)
    report.write_sweep(plan, outcome.summaries, out)
    return plan, outcome


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The small sweep run once inline (local, one worker): (sweep file, output folder)."""
    folder = tmp_path_factory.mktemp("sweep")
    path = write(folder, SMALL)
    run(path, folder / "out")
    return path, folder / "out"


# -- the plan ---------------------------------------------------------------------
def test_grid_expands_to_every_combination_first_key_slowest(tmp_path):
    plan = load_sweep(write(tmp_path, SMALL))
    assert [p.params for p in plan.points] == [
        {f"{BDB}.budget_tokens": b, f"{BDB}.dedup_threshold": d}
        for b in (60, 200)
        for d in (0.8, 0.9)
    ]
    assert [p.coords for p in plan.points] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    config = plan.points[3].scenario.strategy["batched-dedup-budget"]
    assert (config["budget_tokens"], config["dedup_threshold"]) == (200, 0.9)
    assert config["max_memories_per_user"] == 6  # tiny.toml's own setting is kept
    assert plan.points[0].scenario.users == 3
    assert len(plan.runs) == 4 * 2 * 2
    assert [(r.point, r.seed, r.strategy) for r in plan.runs[:4]] == [
        (0, 1, "batched-dedup-budget"),
        (0, 1, "naive-append"),
        (0, 2, "batched-dedup-budget"),
        (0, 2, "naive-append"),
    ]
    assert plan.axes == (f"{BDB}.budget_tokens", f"{BDB}.dedup_threshold")


def test_nested_tables_mean_the_same_as_dotted_keys(tmp_path):
    nested = SMALL.split("[grid]")[0] + (
        "[grid.strategy.batched-dedup-budget]\nbudget_tokens = [60, 200]\n"
        "dedup_threshold = [0.8, 0.9]\n"
    )
    assert load_sweep(write(tmp_path, nested, "a.toml")).runs == (
        load_sweep(write(tmp_path, SMALL, "b.toml")).runs
    )


def test_runs_that_the_grid_does_not_change_share_one_key(tmp_path):
    plan = load_sweep(write(tmp_path, SMALL))
    naive = {r.key for r in plan.runs if r.strategy == "naive-append"}
    batched = {r.key for r in plan.runs if r.strategy == "batched-dedup-budget"}
    assert len(naive) == 2  # one per seed, whatever the point
    assert len(batched) == 4 * 2
    assert len(plan.distinct_runs()) == 10
    seeds_of = {r.key: r.seed for r in plan.runs if r.strategy == "naive-append"}
    assert sorted(seeds_of.values()) == [1, 2]


def test_a_version_change_changes_every_key(tmp_path, monkeypatch):
    import sim.sweep

    before = {r.key for r in load_sweep(write(tmp_path, SMALL)).runs}
    monkeypatch.setattr(sim.sweep, "__version__", "9.9.9")
    after = {r.key for r in load_sweep(write(tmp_path, SMALL)).runs}
    assert before.isdisjoint(after)


def test_a_source_change_changes_every_key(tmp_path, monkeypatch):
    import sim.sweep

    before = {r.key for r in load_sweep(write(tmp_path, SMALL)).runs}
    monkeypatch.setattr(sim.sweep, "source_fingerprint", lambda: "0" * 64)
    after = {r.key for r in load_sweep(write(tmp_path, SMALL)).runs}
    assert before.isdisjoint(after)


def test_the_source_fingerprint_reads_the_strategies(tmp_path, monkeypatch):
    import sim.sweep
    import strategies

    sim.sweep.source_fingerprint.cache_clear()
    real = sim.sweep.source_fingerprint()
    copy = tmp_path / "strategies"
    copy.mkdir()
    for path in Path(strategies.__file__).parent.glob("*.py"):
        (copy / path.name).write_bytes(path.read_bytes())
    (copy / "naive_append.py").write_text("# changed\n", encoding="utf-8")
    monkeypatch.setattr(strategies, "__file__", str(copy / "__init__.py"))
    sim.sweep.source_fingerprint.cache_clear()
    try:
        assert sim.sweep.source_fingerprint() != real
    finally:
        monkeypatch.undo()
        sim.sweep.source_fingerprint.cache_clear()


def test_zero_and_one_grid_parameters(tmp_path):
    none = load_sweep(write(tmp_path, SMALL.split("[grid]")[0], "none.toml"))
    assert [p.params for p in none.points] == [{}]
    assert none.axes == (None, None)
    assert len(none.runs) == 4
    text = SMALL.split("[grid]")[0] + '[grid]\n"workload.facts_per_user" = [4, 6]\n'
    one = load_sweep(write(tmp_path, text, "1.toml"))
    assert [p.scenario.workload.facts_per_user for p in one.points] == [4, 6]
    assert one.axes == ("workload.facts_per_user", None)
    assert len({r.key for r in one.runs}) == 2 * 2 * 2  # every strategy sees the workload


def test_defaults_come_from_the_scenario(tmp_path):
    plan = load_sweep(write(tmp_path, 'scenario = "tiny"\n'))
    assert plan.seeds == [7]  # tiny.toml's seed
    assert plan.strategies == ["naive-append", "per-turn-extract", "batched-dedup-budget"]


def test_a_scenario_path_is_relative_to_the_sweep_file(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", 'name = "mine"\nusers = 2\ndays = 1\n', "mine.toml")
    plan = load_sweep(write(tmp_path / "sub", 'scenario = "mine.toml"\n'))
    assert plan.scenario_name == "mine"


# -- validation: one line, exit 2, before any simulation ---------------------------
BAD = [
    # (replace in SMALL, by, words the error line must hold)
    ('dedup_threshold" = [0.8, 0.9]', 'dedup_treshold" = [0.8, 0.9]', ["dedup_treshold", "0.8"]),
    ("[60, 200]", '[60, "big"]', [f"{BDB}.budget_tokens", '"big"', "integer"]),
    ("[0.8, 0.9]", "[0.8, 1.5]", [f"{BDB}.dedup_threshold", "1.5"]),
    ("[grid]", '[grid]\n"workload.facts_per_usr" = [4]', ["workload.facts_per_usr", "4"]),
    ("[grid]", '[grid]\n"background_workers.n" = [4]', ["background_workers.n", "(8)", "section"]),
    ("[grid]", '[grid]\n"strategy.mem0-like.top_k" = [4]', ["strategy.mem0-like.top_k", "not run"]),
    ("[grid]", "[grid]\nseed = [4, 5]", ["seed", "seeds"]),
    ("[grid]", '[grid]\n"workload.facts_per_user" = [4, 4]', ["facts_per_user", "4", "twice"]),
    ("[grid]", "[grid]\nname = 5", ["grid.name", "5", "list"]),
    ("[grid]", "[grid]\ndays = [1, 2]", ["overrides 'days'", "grid 'days'"]),
    ("users = 3", "users = -3", ["overrides 'users'", "-3"]),
    ("seeds = [1, 2]", 'seeds = [1, "x"]', ["seeds.1", '"x"']),
    ("seeds = [1, 2]", "seeds = [1, 2]\nsed = 3", ["sed"]),
    ('"naive-append"]', '"naive-apend"]', ["strategies", "naive-apend", "naive-append"]),
    ('scenario = "tiny"', 'scenario = "no-such"', ["scenario", "no-such"]),
    ("[grid]", '[report]\nx = "days"\n[grid]', ["report.x", "days"]),
]


@pytest.mark.parametrize(("old", "new", "words"), BAD, ids=[b[1][:30] for b in BAD])
def test_a_bad_sweep_file_exits_2_with_one_line(tmp_path, old, new, words):
    assert old in SMALL
    path = write(tmp_path, SMALL.replace(old, new, 1))
    result = runner.invoke(app, ["sweep", str(path), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"memsim: error: {path}: ")
    for word in words:
        assert word in result.stderr
    assert not (tmp_path / "out" / "runs").exists()  # nothing was simulated


def test_a_grid_point_that_fails_only_as_a_whole_is_named(tmp_path):
    text = SMALL.split("[grid]")[0] + "[overrides.workload.mix]\nrestate = 0\nupdate = 0\n"
    text += '"probe" = 0\n[grid]\n"workload.mix.state" = [0.8, 0.0]\n'
    text += '"workload.mix.filler" = [0.3, 0.0]\n'  # each 0 alone is fine; both are not
    with pytest.raises(ConfigError) as err:
        load_sweep(write(tmp_path, text))
    assert "grid point workload.mix.state = 0.0, workload.mix.filler = 0.0: " in str(err.value)
    assert "at least one message kind" in str(err.value)


# -- running, the cache, the executors ---------------------------------------------
def test_the_cli_writes_every_file(reference, tmp_path):
    path, _ = reference
    out = tmp_path / "cli"
    result = runner.invoke(
        app, ["sweep", str(path), "--out", str(out), "--workers", "1"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "10 distinct: 0 saved" in result.stderr
    assert "naive-append" in result.stdout and "± " in result.stdout
    names = {p.name for p in out.iterdir()}
    assert {"sweep.json", "sweep.csv", "sweep.md", "runs"} <= names
    for strategy in ("batched-dedup-budget", "naive-append"):
        for metric in ("cost", "recall"):
            for suffix in ("png", "svg"):
                assert f"heatmap-{metric}-{strategy}.{suffix}" in names
    assert len(list((out / "runs").glob("*.json"))) == 10
    assert (out / "sweep.json").read_bytes() == (reference[1] / "sweep.json").read_bytes()


def test_resume_runs_only_what_is_missing(reference, tmp_path):
    path, done = reference
    out = tmp_path / "out"
    out.mkdir()
    runs = out / "runs"
    runs.mkdir()
    saved = sorted((done / "runs").glob("*.json"))
    for file in saved:
        (runs / file.name).write_bytes(file.read_bytes())
    missing = saved[3]
    (runs / missing.name).unlink()
    counts = []
    _, outcome = run(path, out, on_start=lambda cached, todo: counts.append((cached, todo)))
    assert counts == [(9, 1)]
    assert outcome.ran == [missing.stem]
    assert (runs / missing.name).read_bytes() == missing.read_bytes()
    for name in ("sweep.json", "sweep.csv", "sweep.md"):
        assert (out / name).read_bytes() == (done / name).read_bytes()


def test_an_interrupted_sweep_resumes_where_it_stopped(reference, tmp_path):
    path, done = reference
    finished = []

    def interrupt_after_three() -> None:
        finished.append(1)
        if len(finished) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(load_sweep(path), tmp_path, on_run=interrupt_after_three)
    assert len(list((tmp_path / "runs").glob("*.json"))) == 3
    _, outcome = run(path, tmp_path)
    assert (len(outcome.cached), len(outcome.ran)) == (3, 7)
    assert (tmp_path / "sweep.json").read_bytes() == (done / "sweep.json").read_bytes()


def test_a_damaged_cache_file_is_run_again(reference, tmp_path):
    path, done = reference
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    saved = sorted((done / "runs").glob("*.json"))
    for file in saved:
        (out / "runs" / file.name).write_bytes(file.read_bytes())
    broken, other = saved[0].name, saved[1].name
    (out / "runs" / broken).write_text('{"key": "trunc')
    record = json.loads(saved[2].read_text())
    (out / "runs" / other).write_text(json.dumps(record))  # another run's result
    warnings = []
    _, outcome = run(path, out, warn=warnings.append)
    assert sorted(outcome.ran) == sorted([Path(broken).stem, Path(other).stem])
    assert len(warnings) == 2 and all("running it again" in w for w in warnings)
    assert any(broken in w for w in warnings) and any(other in w for w in warnings)
    assert (out / "sweep.json").read_bytes() == (done / "sweep.json").read_bytes()


def test_the_cache_keeps_what_it_stores(tmp_path):
    plan = load_sweep(write(tmp_path, SMALL))
    cache = RunCache(tmp_path)
    cache.store(plan.runs[0], {"recall": 0.5})
    assert cache.load(plan.runs[0].key) == {"recall": 0.5}
    assert cache.load(plan.runs[1].key) is None


def test_local_with_two_workers_equals_one(reference, tmp_path):
    path, done = reference
    run(path, tmp_path, executor="local", workers=2)
    for name in ("sweep.json", "sweep.csv", "sweep.md", "heatmap-cost-naive-append.svg"):
        assert (tmp_path / name).read_bytes() == (done / name).read_bytes()


def test_ray_gives_the_same_files_as_local(reference, tmp_path):
    path, done = reference
    _, outcome = run(path, tmp_path, executor="ray", workers=2)
    assert len(outcome.ran) == 10
    for name in ("sweep.json", "sweep.csv", "sweep.md", "heatmap-recall-batched-dedup-budget.svg"):
        assert (tmp_path / name).read_bytes() == (done / name).read_bytes()


# -- what sweep.json says ---------------------------------------------------------
def test_sweep_json_cells_are_the_runs_they_name(reference):
    _, done = reference
    document = json.loads((done / "sweep.json").read_text())
    assert document["runs"] == {"total": 16, "distinct": 10}
    point = document["points"][1]
    assert point["params"] == {f"{BDB}.budget_tokens": 60, f"{BDB}.dedup_threshold": 0.9}
    cell = point["strategies"]["batched-dedup-budget"]
    assert cell["n"] == 2 and cell["seeds"] == [1, 2]
    runs = [json.loads((done / "runs" / f"{k}.json").read_text()) for k in cell["run_keys"]]
    recalls = [r["summary"]["recall"] for r in runs]
    assert cell["metrics"]["recall"]["mean"] == pytest.approx(sum(recalls) / 2, abs=1e-6)
    costs = [r["summary"]["usd_total"] / 3 * 30 / 2 for r in runs]
    cost = cell["metrics"]["usd_per_user_per_month"]
    assert cost["mean"] == pytest.approx(sum(costs) / 2, rel=1e-5)
    half = 12.706205 * abs(costs[0] - costs[1]) / math.sqrt(2) / math.sqrt(2)  # t(1) · sd / √2
    assert cost["ci95_half_width"] == pytest.approx(half, rel=1e-5)
    naive = [p["strategies"]["naive-append"]["run_keys"] for p in document["points"]]
    assert all(keys == naive[0] for keys in naive)
    assert len(set(naive[0])) == 2


def test_sweep_csv_has_one_row_per_point_strategy_and_seed(reference):
    _, done = reference
    lines = (done / "sweep.csv").read_text().splitlines()
    assert lines[0].split(",")[:6] == [
        "point",
        f"{BDB}.budget_tokens",
        f"{BDB}.dedup_threshold",
        "strategy",
        "seed",
        "run_key",
    ]
    assert lines[0].split(",")[6:] == list(report.CSV_METRICS)
    assert len(lines) == 1 + 16
    assert lines[1].split(",")[:5] == ["0", "60", "0.8", "batched-dedup-budget", "1"]


# -- statistics -------------------------------------------------------------------
def test_mean_and_confidence_interval_by_hand():
    ci = report.interval([1.0, 2.0, 3.0, 4.0])
    sd = math.sqrt((1.5**2 + 0.5**2 + 0.5**2 + 1.5**2) / 3)
    assert ci.mean == 2.5 and ci.n == 4
    assert ci.sd == pytest.approx(sd)
    assert ci.half_width == pytest.approx(3.182446 * sd / 2)  # t(0.975, 3) from a t table
    one = report.interval([0.7])
    assert (one.mean, one.half_width, one.sd) == (0.7, 0.0, 0.0)
    same = report.interval([0.1, 0.1, 0.1])
    assert (same.mean, same.half_width) == (0.1, 0.0)


def test_t_critical_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in range(1, 300):
        assert report.t_critical(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-6)


def test_one_seed_says_its_interval_is_zero_wide(tmp_path):
    text = SMALL.replace("seeds = [1, 2]", "seeds = [3]").split("[grid]")[0]
    text += f'[grid]\n"{BDB}.budget_tokens" = [60, 200]\n'
    plan, _ = run(write(tmp_path, text), tmp_path / "out")
    document = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert "One seed" in document["confidence"]["note"]
    cell = document["points"][0]["strategies"]["naive-append"]["metrics"]["recall"]
    assert cell["ci95_half_width"] == 0 and cell["n"] == 1
    assert "One seed" in (tmp_path / "out" / "sweep.md").read_text()
    assert plan.axes == (f"{BDB}.budget_tokens", None)
    assert (tmp_path / "out" / "heatmap-cost-naive-append.png").stat().st_size > 1000


# -- heatmaps ---------------------------------------------------------------------
def test_heatmaps_are_deterministic_and_cover_every_layout(reference):
    _, done = reference
    document = json.loads((done / "sweep.json").read_text())
    first, again = report.heatmaps(document), report.heatmaps(document)
    assert [h.name for h in first] == report.heatmap_names(document)
    assert [h.svg for h in first] == [h.svg for h in again]
    assert b"<dc:date>" not in first[0].svg
    assert first[0].svg == (done / f"{first[0].name}.svg").read_bytes()
    empty = document | {"grid": {}, "report": {"x": None, "y": None}}
    assert report.heatmaps(empty) == [] and report.heatmap_names(empty) == []


def test_more_than_two_parameters_get_one_panel_per_combination(tmp_path):
    text = SMALL.replace('"naive-append"', "").replace("seeds = [1, 2]", "seeds = [1]")
    text += '"workload.facts_per_user" = [4, 6]\n'
    _, _ = run(write(tmp_path, text), tmp_path)
    document = json.loads((tmp_path / "sweep.json").read_text())
    panels = report._panels(document, "batched-dedup-budget", "recall")
    assert [p.title for p in panels] == ["facts_per_user = 4", "facts_per_user = 6"]
    assert all(len(p.means) == 2 and len(p.means[0]) == 2 for p in panels)
    by_params = {json.dumps(p["params"]): p for p in document["points"]}
    at = {f"{BDB}.budget_tokens": 200, f"{BDB}.dedup_threshold": 0.8, "workload.facts_per_user": 6}
    recall = by_params[json.dumps(at)]["strategies"]["batched-dedup-budget"]["metrics"]["recall"]
    assert panels[1].means[0][1] == recall["mean"]  # row: threshold 0.8, column: budget 200
    assert (tmp_path / "heatmap-recall-batched-dedup-budget.svg").exists()


def test_the_shipped_example_validates():
    path = Path(__file__).parents[1] / "examples" / "sweeps" / "dedup-budget.toml"
    plan = load_sweep(path)
    assert (len(plan.points), len(plan.runs), len(plan.distinct_runs())) == (9, 54, 30)
    assert plan.points[0].scenario.users == 200
    assert plan.axes == (f"{BDB}.budget_tokens", f"{BDB}.dedup_threshold")


def test_the_cache_layout_example_sets_every_strategys_setting():
    path = Path(__file__).parents[1] / "examples" / "sweeps" / "cache-layout.toml"
    plan = load_sweep(path)
    assert (len(plan.points), len(plan.runs)) == (4, 24)
    last = plan.points[-1].scenario.strategy
    for name in ("batched-dedup-budget", "mem0-like", "per-turn-extract"):
        assert last[name]["memory_position"] == "after-history"
        assert last[name]["stable_memory_order"] is True


def test_every_strategy_wildcard_skips_strategies_without_the_setting(tmp_path):
    text = SMALL.replace(
        f'"{BDB}.dedup_threshold" = [0.8, 0.9]',
        '"strategy.*.memory_position" = ["before-history", "after-history"]',
    )
    plan = load_sweep(write(tmp_path, text))
    scenario = plan.points[-1].scenario
    assert scenario.strategy["batched-dedup-budget"]["memory_position"] == "after-history"
    assert "naive-append" not in scenario.strategy  # it has no memory block
    # naive-append's runs depend on no grid key: one per seed, shared by every point.
    naive = {r.key for r in plan.runs if r.strategy == "naive-append"}
    assert len(naive) == 2
