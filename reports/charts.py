"""Charts of a run, drawn with matplotlib from :mod:`reports.chartdata` frames.

Figures are built with the object API on the Agg canvas (no pyplot, no display,
no global backend switch) and saved as PNG and SVG bytes. The SVG is
deterministic: a fixed ``svg.hashsalt`` for element ids and no date in its
metadata, so the same run draws the same file. Each strategy keeps one color in
every chart (the Okabe-Ito palette, readable with color-vision deficiencies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import matplotlib as mpl
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from reports.chartdata import PROMPT_PARTS
from reports.numbers import figure_bytes
from reports.summary import TOKEN_PURPOSES

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
PURPOSE_COLORS = dict(
    zip(TOKEN_PURPOSES, ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00"), strict=True)
)
PART_COLORS = dict(zip(PROMPT_PARTS, ("#BBBBBB", "#E69F00", "#56B4E9", "#332288"), strict=True))
STYLE = {
    "svg.hashsalt": "memsim",
    "svg.fonttype": "path",  # glyphs as paths: the SVG needs no font on the reader's side
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "figure.dpi": 100,
}
FIGSIZE = (6.0, 3.7)
PNG_DPI = 150
SVG_METADATA = {"Date": None, "Creator": "memsim"}


@dataclass(frozen=True, slots=True)
class Chart:
    """One rendered chart: a file stem, a title, a caption (also the alt text), the bytes."""

    name: str
    title: str
    caption: str
    png: bytes
    svg: bytes


def colors(names: list[str]) -> dict[str, str]:
    """One color per strategy, in the run's order (cycling past the palette)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _compact(value: float, _pos: object = None) -> str:
    """Tick labels like 250k, 1.5M."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _usd(value: float, _pos: object = None) -> str:
    return f"${value:,.2f}" if abs(value) < 100 else f"${value:,.0f}"


def _days_axis(ax: Axes, label: str = "simulated day") -> None:
    ax.set_xlabel(label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend_below(fig: Figure, handles: list, labels: list[str]) -> None:
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3))


def _strategy_handles(palette: dict[str, str], **line: object) -> list[Line2D]:
    return [Line2D([], [], color=c, **line) for c in palette.values()]


def cost_per_day(frame: pd.DataFrame, palette: dict[str, str]) -> Figure:
    """Two panels: billed tokens per day and USD per day, one line per strategy."""
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    tokens_ax, usd_ax = fig.subplots(1, 2)
    for name, color in palette.items():
        own = frame[frame["strategy"] == name]
        tokens_ax.plot(own["day"], own["tokens"], color=color, marker=".", lw=1.6)
        usd_ax.plot(own["day"], own["usd"], color=color, marker=".", lw=1.6)
    tokens_ax.set(title="Tokens per day", ylabel="tokens (input + output)")
    usd_ax.set(title="Cost per day", ylabel="USD")
    tokens_ax.yaxis.set_major_formatter(FuncFormatter(_compact))
    usd_ax.yaxis.set_major_formatter(FuncFormatter(_usd))
    for ax in (tokens_ax, usd_ax):
        _days_axis(ax)
        ax.set_ylim(bottom=0)
    _legend_below(fig, _strategy_handles(palette, lw=1.6), list(palette))
    return fig


def _solid_and_dashed(
    frame: pd.DataFrame,
    palette: dict[str, str],
    columns: tuple[str, str],
    labels: tuple[str, str],
    title: str,
    ylabel: str,
    xlabel: str = "simulated day",
) -> tuple[Figure, Axes]:
    """One chart, two lines per strategy: ``columns[0]`` solid, ``columns[1]`` dashed."""
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.subplots()
    for name, color in palette.items():
        own = frame[frame["strategy"] == name]
        ax.plot(own["day"], own[columns[0]], color=color, lw=1.8)
        ax.plot(own["day"], own[columns[1]], color=color, lw=1.2, ls="--")
    ax.set(title=title, ylabel=ylabel)
    _days_axis(ax, xlabel)
    ax.set_ylim(bottom=0)
    key = [
        Line2D([], [], color="#444444", lw=1.8),
        Line2D([], [], color="#444444", lw=1.2, ls="--"),
    ]
    ax.legend(key, list(labels), loc="upper left")
    _legend_below(fig, _strategy_handles(palette, lw=1.8), list(palette))
    return fig, ax


def prompt_cache_per_day(frame: pd.DataFrame, palette: dict[str, str]) -> Figure:
    """LLM input tokens per day: uncached (solid) and served from the cache (dashed)."""
    fig, ax = _solid_and_dashed(
        frame,
        palette,
        ("uncached", "cached"),
        ("billed at the input price", "read from the prompt cache"),
        "Input tokens per day, cached and not",
        "LLM input tokens",
    )
    ax.yaxis.set_major_formatter(FuncFormatter(_compact))
    return fig


def memories_over_time(frame: pd.DataFrame, palette: dict[str, str]) -> Figure:
    """Memories per user at the end of each day: mean (solid) and p99 (dashed)."""
    fig, _ = _solid_and_dashed(
        frame,
        palette,
        ("mean", "p99"),
        ("mean", "p99"),
        "Memories per user over time",
        "memories per user",
        "simulated day (store at its end)",
    )
    return fig


PERCENTILE_STYLES = {"p50": "-", "p95": "--", "p99": ":"}
"""The line style of each latency percentile: one strategy's three lines told apart."""


def latency_per_day(frame: pd.DataFrame, palette: dict[str, str]) -> Figure:
    """One panel per strategy, on one y axis: p50, p95 and p99 turn latency per day.

    Strategies often answer within a few percent of each other (the chat call
    dominates latency), so their lines on one panel would lie on top of each other;
    a panel each keeps them apart, and the shared axis keeps them comparable. In a
    panel the percentiles differ by line style (:data:`PERCENTILE_STYLES`).
    """
    columns = min(len(palette), 3) or 1
    rows = -(-len(palette) // columns) or 1
    fig = Figure(figsize=(FIGSIZE[0], 1.2 + 2.5 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, (name, color) in zip(axes, palette.items(), strict=False):
        own = frame[frame["strategy"] == name]
        dot = (
            "." if len(own) == 1 else None
        )  # one day has no line to draw; markers would hide dashes
        for column, style in PERCENTILE_STYLES.items():
            ax.plot(own["day"], own[column], color=color, ls=style, lw=1.4, marker=dot)
        ax.set_title(name, color=color, fontsize=9)
        _days_axis(ax)
    for ax in axes[len(palette) :]:
        ax.set_visible(False)
    for ax in axes[::columns]:
        ax.set_ylabel("turn latency (s)")
    axes[0].set_ylim(bottom=0)
    fig.suptitle("Turn latency per day (turns that got a reply)", fontweight="bold", fontsize=10)
    key = [Line2D([], [], color="#444444", lw=1.4, ls=s) for s in PERCENTILE_STYLES.values()]
    _legend_below(fig, key, list(PERCENTILE_STYLES))
    return fig


def injected_tokens_histogram(frame: pd.DataFrame, palette: dict[str, str]) -> Figure:
    """Grouped bars: the share of each strategy's prompts in each injected-token bin."""
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.subplots()
    bins = list(dict.fromkeys(frame["bin"]))
    width = 0.8 / max(len(palette), 1)
    for i, (name, color) in enumerate(palette.items()):
        own = frame[frame["strategy"] == name]
        x = [b + (i - (len(palette) - 1) / 2) * width for b in range(len(bins))]
        ax.bar(x, own["share"] * 100, width=width, color=color, label=name)
    ax.set_xticks(range(len(bins)), bins, rotation=25, ha="right", rotation_mode="anchor")
    ax.set(
        title="Memory tokens injected per prompt",
        xlabel="memory tokens in the prompt",
        ylabel="share of prompts",
    )
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.grid(axis="x", visible=False)
    _legend_below(fig, *ax.get_legend_handles_labels())
    return fig


RECALL_UNAVAILABLE = "recall unavailable: no probe questions\n(a trace without ground truth)"


def recall_vs_cost(frame: pd.DataFrame, palette: dict[str, str]) -> Figure:
    """One point per strategy; the Pareto front (nothing cheaper recalls more) joined."""
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.subplots()
    if frame.empty:
        ax.text(0.5, 0.5, RECALL_UNAVAILABLE, ha="center", va="center", transform=ax.transAxes)
        ax.set(title="Recall against monthly cost", xticks=[], yticks=[])
        return fig
    front = frame[frame["pareto"]].sort_values(["usd_per_month", "recall"])
    ax.plot(front["usd_per_month"], front["recall"] * 100, color="#888888", lw=1, ls=":", zorder=1)
    for row in frame.itertuples():
        color = palette[row.strategy]
        ax.scatter(
            row.usd_per_month,
            row.recall * 100,
            s=60,
            color=color if row.pareto else "white",
            edgecolors=color,
            linewidths=1.8,
            zorder=2,
        )
        ax.annotate(
            row.strategy,
            (row.usd_per_month, row.recall * 100),
            xytext=(6, 5),
            textcoords="offset points",
            fontsize=8,
            color=color,
        )
    ax.set(
        title="Recall against monthly cost",
        xlabel="USD per month (usd_total / days × 30)",
        ylabel="recall (share of probe questions)",
    )
    ax.xaxis.set_major_formatter(FuncFormatter(_usd))
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.margins(x=0.25, y=0.2)
    handles = [
        Line2D([], [], ls="", marker="o", color="#444444", ms=7),
        Line2D([], [], ls="", marker="o", mfc="white", mec="#444444", mew=1.8, ms=7),
        Line2D([], [], color="#888888", lw=1, ls=":"),
    ]
    _legend_below(fig, handles, ["on the Pareto front", "dominated", "Pareto front"])
    return fig


def tokens_breakdown(
    purposes: pd.DataFrame, parts: pd.DataFrame, palette: dict[str, str]
) -> Figure:
    """Two rows of stacked bars: total tokens by purpose, mean prompt tokens by part."""
    height = max(FIGSIZE[1], 1.6 + 0.5 * len(palette))
    fig = Figure(figsize=(FIGSIZE[0], height), layout="constrained")
    purpose_ax, part_ax = fig.subplots(2, 1)
    names = list(palette)[::-1]  # first strategy on top
    for ax, frame, key, palette_of in (
        (purpose_ax, purposes, "purpose", PURPOSE_COLORS),
        (part_ax, parts, "part", PART_COLORS),
    ):
        left = pd.Series(0.0, index=names)
        for kind, color in palette_of.items():
            values = frame[frame[key] == kind].set_index("strategy")["tokens"].reindex(names)
            ax.barh(names, values, left=left, color=color, label=kind, height=0.6)
            left += values.fillna(0.0)
        ax.xaxis.set_major_formatter(FuncFormatter(_compact))
        ax.grid(axis="y", visible=False)
        ax.tick_params(axis="y", length=0)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    purpose_ax.set(title="Tokens by call purpose", xlabel="tokens over the run (input + output)")
    part_ax.set(title="Chat prompt by part", xlabel="mean prompt tokens per turn")
    return fig


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    title: str
    caption: str
    draw: Callable[[dict[str, pd.DataFrame], dict[str, str]], Figure]


SPECS = (
    _Spec(
        "cost-per-day",
        "Tokens and dollars per simulated day",
        "Billed tokens (input + output, every call) and USD per simulated day, by strategy. "
        "A line that climbs is a strategy that leaks tokens.",
        lambda d, p: cost_per_day(d["cost_per_day"], p),
    ),
    _Spec(
        "prompt-cache",
        "Prompt cache: input tokens per day",
        "Input tokens of every LLM call per simulated day, by strategy: billed at the full "
        "input price (solid) and read from the provider's prompt cache at its discount "
        "(dashed). A strategy whose prompts keep a stable prefix reads most of its input.",
        lambda d, p: prompt_cache_per_day(d["prompt_cache_per_day"], p),
    ),
    _Spec(
        "recall-vs-cost",
        "Recall against monthly cost",
        "Each strategy's recall against its cost for 30 days. Filled points are on the "
        "Pareto front: no other strategy is as cheap and recalls as much.",
        lambda d, p: recall_vs_cost(d["recall_vs_cost"], p),
    ),
    _Spec(
        "memories-per-user",
        "Memories per user over time",
        "Memories each user holds at the end of every simulated day: the mean (solid) and "
        "the 99th percentile (dashed), by strategy.",
        lambda d, p: memories_over_time(d["memories_over_time"], p),
    ),
    _Spec(
        "latency-per-day",
        "Turn latency per day",
        "p50 (solid), p95 (dashed) and p99 (dotted) of the time from a user's message to "
        "the reply, queueing included, over turns that got a reply, per simulated day: one "
        "panel per strategy, on one scale.",
        lambda d, p: latency_per_day(d["latency_per_day"], p),
    ),
    _Spec(
        "injected-tokens",
        "Memory tokens injected per prompt",
        "The share of each strategy's prompts whose memory block held a given number of "
        "tokens (fixed bins; 0: no memories injected).",
        lambda d, p: injected_tokens_histogram(d["injected_tokens_histogram"], p),
    ),
    _Spec(
        "tokens-breakdown",
        "Where the tokens go",
        "Top: tokens over the whole run by call purpose. Bottom: the mean chat prompt per "
        "turn by part: system prompt, injected memories, history, the user's message.",
        lambda d, p: tokens_breakdown(d["tokens_by_purpose"], d["prompt_parts"], p),
    ),
)


def render(data: dict[str, pd.DataFrame], names: list[str]) -> list[Chart]:
    """Draw every chart from :func:`reports.chartdata.chart_data`'s frames."""
    palette = colors(names)
    charts = []
    with mpl.rc_context(STYLE):
        for spec in SPECS:
            fig = spec.draw(data, palette)
            charts.append(
                Chart(
                    spec.name,
                    spec.title,
                    spec.caption,
                    png=figure_bytes(fig, "png", dpi=PNG_DPI),
                    svg=figure_bytes(fig, "svg", metadata=SVG_METADATA),
                )
            )
    return charts
