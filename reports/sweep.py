"""A sweep's results: mean and 95% confidence interval across seeds, as files and a table.

It is long because one sweep document becomes statistics (t intervals), CSV,
Markdown, a terminal table and heatmaps.

For every point of the grid and every strategy, each metric of the summary block
(every scalar figure of ``summary.json``'s strategy block) and the monthly cost per
user (``usd_total / users × 30 / days``) is summed up over the seeds: its mean, the
sample standard deviation and the 95% confidence interval of the mean,
``mean ± t(0.975, n − 1) · sd / √n`` (Student t). With one seed there is no spread
to estimate: the interval is 0 wide, and the files say so.

Files (each written atomically): ``sweep.json`` (the grid and the intervals),
``sweep.csv`` (one row per point × strategy × seed), ``sweep.md`` (the table) and,
when the grid has a parameter, ``heatmap-{cost,recall}-<strategy>.{png,svg}`` over
the report axes, each cell annotated with mean ± half-width. With one grid
parameter a heatmap is a single row; with more than two, a figure holds one panel
per combination of the other parameters (on one color scale), so no point is
averaged away. Everything is built from results in task order, so the files are
byte-identical whatever the executor and the number of workers.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

from rich.console import Console
from rich.table import Table

from reports.numbers import DAYS_PER_MONTH, dumps, figure_bytes, md_table, rounded_significant
from reports.output import atomic_write, prepare_out_dir
from sim import __version__
from sim.config import ConfigError
from sim.records import SweepPlan

CONFIDENCE = 0.95
COST = "usd_per_user_per_month"
CSV_METRICS = (
    COST,
    "tokens_total",
    "recall",
    "latency_p99_s",
    "memories_per_user_mean",
    "injected_tokens_mean",
    "duplicate_ratio",
    "cache_hit_share",
)
FILES = ("sweep.json", "sweep.csv", "sweep.md")
# t(0.975, df) for df = 1..30 (scipy.stats.t.ppf, 6 decimals); larger df use an expansion.
T_975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
    2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905,
    2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
    2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)  # fmt: skip


# -- statistics -------------------------------------------------------------------
def t_critical(df: int) -> float:
    """The two-sided 95% critical value of Student's t with ``df`` degrees of freedom.

    A table up to 30; beyond, the Cornish-Fisher expansion around the normal
    quantile (off by less than 1e-7 there), so no statistics library is needed.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if df <= len(T_975):
        return T_975[df - 1]
    z, v = NormalDist().inv_cdf(0.975), float(df)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4)
    )


@dataclass(frozen=True, slots=True)
class Interval:
    """The mean of ``n`` values, their sample standard deviation and the CI half-width."""

    mean: float
    half_width: float
    sd: float
    n: int


def interval(values: Sequence[float]) -> Interval:
    """Mean and 95% confidence interval (Student t) of at least one value.

    One value, or identical values, give a 0-wide interval.
    """
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    if min(values) == max(values):  # exactly, without float noise from the sums
        return Interval(float(values[0]), 0.0, 0.0, n)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return Interval(mean, t_critical(n - 1) * sd / math.sqrt(n), sd, n)


# -- per run ----------------------------------------------------------------------
def usd_per_user_per_month(summary: dict[str, Any], users: int, days: int) -> float:
    """``usd_total / users × 30 / days``."""
    return summary["usd_total"] / users * DAYS_PER_MONTH / days


def run_metrics(summary: dict[str, Any], users: int, days: int) -> dict[str, float]:
    """The monthly cost per user, then every scalar figure of the summary block."""
    metrics = {COST: rounded_significant(usd_per_user_per_month(summary, users, days))}
    for name, value in summary.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics[name] = value
    return metrics


@dataclass(frozen=True, slots=True)
class RunRow:
    """One (point, seed, strategy) of the sweep with its metrics."""

    point: int
    seed: int
    strategy: str
    key: str
    metrics: dict[str, float]


def run_rows(plan: SweepPlan, summaries: dict[str, dict[str, Any]]) -> list[RunRow]:
    """Every run of the plan, in task order, with the metrics of its (possibly shared) result."""
    rows = []
    for run in plan.runs:
        scenario = plan.points[run.point].scenario
        metrics = run_metrics(summaries[run.key], scenario.users, scenario.days)
        rows.append(RunRow(run.point, run.seed, run.strategy, run.key, metrics))
    return rows


# -- sweep.json -------------------------------------------------------------------
def _metric_block(values: Sequence[float]) -> dict[str, Any]:
    ci = interval(values)
    return {
        "mean": rounded_significant(ci.mean),
        "ci95_low": rounded_significant(ci.mean - ci.half_width),
        "ci95_high": rounded_significant(ci.mean + ci.half_width),
        "ci95_half_width": rounded_significant(ci.half_width),
        "sd": rounded_significant(ci.sd),
        "n": ci.n,
    }


def _cell(rows: list[RunRow], metrics: list[str]) -> dict[str, Any]:
    return {
        "n": len(rows),
        "seeds": [r.seed for r in rows],
        "run_keys": [r.key for r in rows],
        "metrics": {m: _metric_block([r.metrics[m] for r in rows]) for m in metrics},
    }


def confidence_note(seeds: int) -> str:
    """How the intervals were computed, in one sentence."""
    if seeds == 1:
        return "One seed: there is no spread to estimate, every interval is 0 wide."
    return (
        f"95% confidence interval of the mean across {seeds} seeds: "
        f"mean ± t(0.975, {seeds - 1}) · sd / √{seeds} (Student t)."
    )


def build_document(plan: SweepPlan, rows: list[RunRow]) -> dict[str, Any]:
    """The ``sweep.json`` document."""
    metrics = list(rows[0].metrics)
    cells: dict[tuple[int, str], list[RunRow]] = {}
    for row in rows:
        cells.setdefault((row.point, row.strategy), []).append(row)
    points = [
        {
            "index": p.index,
            "coords": list(p.coords),
            "params": p.params,
            "users": p.scenario.users,
            "days": p.scenario.days,
            "strategies": {s: _cell(cells[p.index, s], metrics) for s in plan.strategies},
        }
        for p in plan.points
    ]
    return {
        "memsim_version": __version__,
        "sweep": plan.name,
        "scenario": plan.scenario_spec,
        "scenario_name": plan.scenario_name,
        "strategies": plan.strategies,
        "seeds": plan.seeds,
        "overrides": plan.overrides,
        "grid": plan.grid,
        "report": {"x": plan.axes[0], "y": plan.axes[1]},
        "runs": {"total": len(plan.runs), "distinct": len(plan.distinct_runs())},
        "confidence": {"level": CONFIDENCE, "note": confidence_note(len(plan.seeds))},
        "cost": f"{COST} = usd_total / users × {DAYS_PER_MONTH} / days",
        "metrics": metrics,
        "points": points,
    }


# -- sweep.csv --------------------------------------------------------------------
def _value(value: Any) -> str:
    """A grid value or a figure as a CSV or table cell (JSON, strings bare)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def csv_text(plan: SweepPlan, rows: list[RunRow]) -> str:
    """``sweep.csv``: one row per point × strategy × seed, in task order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["point", *plan.grid, "strategy", "seed", "run_key", *CSV_METRICS])
    for row in rows:
        params = plan.points[row.point].params.values()
        writer.writerow(
            [
                row.point,
                *(_value(v) for v in params),
                row.strategy,
                row.seed,
                row.key,
                *(_value(row.metrics[m]) for m in CSV_METRICS),
            ]
        )
    return buffer.getvalue()


# -- the table (sweep.md and the terminal) ----------------------------------------
def short_labels(keys: list[str]) -> dict[str, str]:
    """Each grid key's last segment, or the whole key where that is ambiguous."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last, strict=True)}


def _decimals(x: float, significant: int = 3) -> int:
    return 2 if x == 0 else max(0, significant - 1 - math.floor(math.log10(abs(x))))


def format_usd(block: dict[str, Any]) -> str:
    """``$0.0536 ± 0.0012``: three significant digits of the mean."""
    d = _decimals(block["mean"])
    return f"${block['mean']:.{d}f} ± {block['ci95_half_width']:.{d}f}"


def format_share(block: dict[str, Any]) -> str:
    """``82.1% ± 1.3``: a share as a percentage, the half-width in points."""
    return f"{block['mean']:.1%} ± {block['ci95_half_width'] * 100:.1f}"


TABLE_HEADER = (
    "strategy",
    "USD / user / month",
    "recall",
    "p99 latency (s)",
    "memories / user",
    "prompt cache hit",
)


def table(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The header and rows shared by ``sweep.md`` and the terminal: point × strategy."""
    labels = short_labels(list(document["grid"]))
    rows = []
    for point in document["points"]:
        params = [_value(v) for v in point["params"].values()]
        for name, cell in point["strategies"].items():
            m = cell["metrics"]
            rows.append(
                [
                    *params,
                    name,
                    format_usd(m[COST]),
                    format_share(m["recall"]),
                    f"{m['latency_p99_s']['mean']:.2f}",
                    f"{m['memories_per_user_mean']['mean']:.1f}",
                    f"{m['cache_hit_share']['mean']:.1%}",
                ]
            )
    return [*labels.values(), *TABLE_HEADER], rows


def _setting(key: str, value: Any) -> str:
    return f"`{key}` = {_value(value)}"


def markdown(document: dict[str, Any]) -> str:
    """``sweep.md``: what was swept, how to read it, the table, the files."""
    d = document
    labels = short_labels(list(d["grid"]))
    overrides = ", ".join(_setting(k, v) for k, v in d["overrides"].items()) or "none"
    grid = [f"- `{k}` ({labels[k]}): {', '.join(map(_value, v))}" for k, v in d["grid"].items()]
    lines = [
        f"# Sweep: {d['sweep']}",
        "",
        f"Scenario `{d['scenario']}`; overrides: {overrides}. Strategies: "
        f"{', '.join(d['strategies'])}; seeds: {', '.join(map(str, d['seeds']))}. "
        f"{len(d['points'])} point(s), {d['runs']['total']} runs, {d['runs']['distinct']} "
        "distinct (runs whose resolved configuration is the same were computed once).",
        "",
        "## Grid",
        "",
        *(grid or ["No swept parameters: one point."]),
        "",
        "## Results",
        "",
        f"Cells: mean ± half-width of the 95% confidence interval. {d['confidence']['note']} "
        f"USD / user / month = usd_total / users × {DAYS_PER_MONTH} / days; p99 latency and "
        "memories per user are means across seeds.",
        "",
        *md_table(*table(d)),
        "",
    ]
    names = heatmap_names(d)
    if names:
        files = ", ".join(f"`{n}.png`/`.svg`" for n in names)
        lines += ["## Heatmaps", "", f"{_heatmap_layout(d)} Files: {files}.", ""]
    return "\n".join(lines)


def print_table(console: Console, document: dict[str, Any]) -> None:
    """The sweep's table on the terminal."""
    d = document
    title = (
        f"sweep {d['sweep']}: {d['scenario']}, {len(d['points'])} point(s) × "
        f"{len(d['strategies'])} strategies × {len(d['seeds'])} seed(s) (mean ± 95% CI)"
    )
    header, rows = table(d)
    out = Table(
        title=title,
        title_justify="left",
        caption=d["confidence"]["note"],
        caption_justify="left",
    )
    for i, name in enumerate(header):
        figure = i > len(d["grid"])  # after the parameters and the strategy
        out.add_column(name, justify="right" if figure else "left", overflow="fold")
    for row in rows:
        out.add_row(*row)
    console.print(out)


# -- heatmaps ---------------------------------------------------------------------
HEATMAPS = (  # file stem part, metric, title, colormap (darker = more cost / more recall)
    ("cost", COST, "USD per user per month", "YlOrRd"),
    ("recall", "recall", "recall", "YlGn"),
)


def _file_part(name: str) -> str:
    """A strategy name made safe for a file name (``pkg.mod:Class`` → ``pkg.mod_Class``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def heatmap_names(document: dict[str, Any]) -> list[str]:
    """The heatmap file stems; none without a grid parameter."""
    if document["report"]["x"] is None:
        return []
    return [
        f"heatmap-{part}-{_file_part(s)}" for s in document["strategies"] for part, *_ in HEATMAPS
    ]


def _heatmap_layout(document: dict[str, Any]) -> str:
    x, y = document["report"]["x"], document["report"]["y"]
    text = f"Across: `{x}`" + (f"; down: `{y}`." if y else " (one row).")
    if len(document["grid"]) > 2:
        text += " One panel per combination of the other grid parameters, on one color scale."
    return text


@dataclass(frozen=True, slots=True)
class Heatmap:
    """One rendered heatmap: the file stem and its bytes."""

    name: str
    png: bytes
    svg: bytes


@dataclass(frozen=True, slots=True)
class _Panel:
    title: str
    means: list[list[float]]  # [y][x]
    halves: list[list[float]]


def _panels(document: dict[str, Any], strategy: str, metric: str) -> list[_Panel]:
    """One panel per combination of the grid parameters that are not axes."""
    grid, (x, y) = document["grid"], (document["report"]["x"], document["report"]["y"])
    keys = list(grid)
    labels = short_labels(keys)
    others = [k for k in keys if k not in (x, y)]
    by_coords = {tuple(p["coords"]): p for p in document["points"]}
    panels = []
    for combo in itertools.product(*(range(len(grid[k])) for k in others)):
        fixed = dict(zip(others, combo, strict=True))
        means, halves = [], []
        for yi in range(len(grid[y]) if y else 1):
            at = fixed | {x: 0} | ({y: yi} if y else {})
            cells = []
            for xi in range(len(grid[x])):
                at[x] = xi
                point = by_coords[tuple(at[k] for k in keys)]
                cells.append(point["strategies"][strategy]["metrics"][metric])
            means.append([c["mean"] for c in cells])
            halves.append([c["ci95_half_width"] for c in cells])
        title = ", ".join(f"{labels[k]} = {_value(grid[k][i])}" for k, i in fixed.items())
        panels.append(_Panel(title, means, halves))
    return panels


def _annotation(metric: str, mean: float, half: float, decimals: int) -> str:
    if metric == "recall":
        return f"{mean:.1%}\n±{half * 100:.1f}"
    return f"${mean:.{decimals}f}\n±{half:.{decimals}f}"


def _draw(document: dict[str, Any], strategy: str, metric: str, title: str, cmap: str) -> Any:
    """One strategy's heatmap of ``metric``: a panel per combination of the other parameters."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    grid, (x, y) = document["grid"], (document["report"]["x"], document["report"]["y"])
    labels = short_labels(list(grid))
    panels = _panels(document, strategy, metric)
    values = [v for p in panels for row in p.means for v in row]
    norm = Normalize(min(values), max(values))
    decimals = _decimals(max(values, key=abs))
    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    width = max(3.4, 0.9 * len(grid[x]) + 1.8)
    height = max(2.0, 0.6 * (len(grid[y]) if y else 1) + 1.4)
    fig = Figure(figsize=(ncols * width + 1.0, nrows * height + 0.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    image = None
    for ax, panel in zip(axes, panels, strict=False):
        image = ax.imshow(panel.means, cmap=cmap, norm=norm, aspect="auto", origin="lower")
        for (yi, xi), mean in _cells(panel.means):
            shade = sum(image.cmap(norm(mean))[:3]) / 3  # light cells get dark text
            ax.text(
                xi,
                yi,
                _annotation(metric, mean, panel.halves[yi][xi], decimals),
                ha="center",
                va="center",
                fontsize=7.5,
                color="black" if shade > 0.55 else "white",
            )
        ax.set_xticks(range(len(grid[x])), [_value(v) for v in grid[x]])
        ax.set_xlabel(labels[x])
        if y:
            ax.set_yticks(range(len(grid[y])), [_value(v) for v in grid[y]])
            ax.set_ylabel(labels[y])
        else:
            ax.set_yticks([])
        ax.grid(False)
        if panel.title:
            ax.set_title(panel.title, fontsize=8, fontweight="normal")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    bar = fig.colorbar(image, ax=list(axes[: len(panels)]), shrink=0.9)
    bar.locator = MaxNLocator(nbins=5)
    bar.formatter = _tick_format(metric, decimals + 1)  # ticks are finer than the cells
    bar.update_ticks()
    seeds = len(document["seeds"])
    spread = "1 seed: no interval" if seeds == 1 else f"mean ± 95% CI over {seeds} seeds"
    fig.suptitle(f"{strategy}\n{title} ({spread})", fontsize=10, fontweight="bold")
    return fig


def _tick_format(metric: str, decimals: int) -> Any:
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    if metric == "recall":
        return PercentFormatter(xmax=1, decimals=1)
    return FuncFormatter(lambda value, _pos: f"${value:.{decimals}f}")


def _cells(matrix: list[list[float]]) -> list[tuple[tuple[int, int], float]]:
    return [((yi, xi), v) for yi, row in enumerate(matrix) for xi, v in enumerate(row)]


def heatmaps(document: dict[str, Any]) -> list[Heatmap]:
    """Cost and recall heatmaps of every strategy, as PNG and deterministic SVG bytes."""
    import matplotlib as mpl

    from reports.charts import PNG_DPI, STYLE, SVG_METADATA

    if document["report"]["x"] is None:
        return []
    drawn = []
    with mpl.rc_context(STYLE):  # a fixed svg.hashsalt and no date: the same sweep, same file
        for strategy in document["strategies"]:
            for part, metric, title, cmap in HEATMAPS:
                fig = _draw(document, strategy, metric, title, cmap)
                drawn.append(
                    Heatmap(
                        f"heatmap-{part}-{_file_part(strategy)}",
                        figure_bytes(fig, "png", dpi=PNG_DPI),
                        figure_bytes(fig, "svg", metadata=SVG_METADATA),
                    )
                )
    return drawn


# -- files ------------------------------------------------------------------------
def write_sweep(plan: SweepPlan, summaries: dict[str, dict[str, Any]], out: Path) -> dict:
    """Write sweep.json, sweep.csv, sweep.md and the heatmaps into ``out``; return the document.

    Raises:
        ConfigError: If ``out`` cannot be written.
    """
    prepare_out_dir(out)
    rows = run_rows(plan, summaries)
    document = build_document(plan, rows)
    files: dict[str, bytes] = {
        "sweep.json": dumps(document).encode(),
        "sweep.csv": csv_text(plan, rows).encode(),
        "sweep.md": markdown(document).encode(),
    }
    for chart in heatmaps(document):
        files[f"{chart.name}.png"] = chart.png
        files[f"{chart.name}.svg"] = chart.svg
    try:
        for name, data in files.items():
            atomic_write(out / name, lambda tmp, d=data: tmp.write_bytes(d))
    except OSError as err:
        raise ConfigError(f"{out}: cannot write the sweep's files: {err.strerror or err}") from None
    return document
