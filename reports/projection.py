"""Render a cost projection: ``projection.json``, ``.md``, ``.png``/``.svg`` and the terminal.

:mod:`memsim.studies.projection` simulates and returns the projection document
(plain data, the content of ``projection.json``); this module only renders that
document and writes the files. It is long because it holds all four
renderings of one document (JSON, Markdown, a terminal table that splits on a
narrow terminal, a log-log chart with its legend key), which share the cell
formatters and the "where the limits bite" notes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from reports.numbers import dumps, md_table
from reports.output import atomic_write, prepare_out_dir
from reports.terminal import Column, Line, fitted_tables
from sim.sizes import size_label

FILES = ("projection.json", "projection.md", "projection.png", "projection.svg")
TIMEOUT_NOTICE = 0.01  # a row where this share of turns or calls timed out is flagged

METHOD = (
    "For each number of users N, n = min(N, sim users) users of the scenario are simulated "
    "(same seed) for the scenario's days, with the chat and embedding rate limits (rpm, tpm, "
    "concurrency) multiplied by n / N: the simulated users get their pro-rata share of the "
    "account, so queueing, timeouts and failed turns appear as they would among N users "
    "(concurrency is rounded to whole connections, at least one, so for shares below one "
    "connection it binds less than it would). "
    "Their cost and tokens per user per month (total / days × 30 / n) are multiplied by N. "
    "When n = N the scenario runs unscaled.",
    "Failed turns (errors, among them timeouts) are not billed, so once the limits bite, "
    "cost grows slower than users while latency and failures grow: read the two together.",
    "Prices: genai-prices at the scenario's price date for each model (a scenario's "
    "per-million override applies to its own model only); embeddings at the scenario's price.",
    "Every model gets the scenario's context window and limits and its own latency profile "
    "(docs/latency.md); nothing in the simulation depends on the price, so each size is "
    "simulated once per latency profile and priced per model.",
    "n users are burstier relative to their share than N users would be, so near the limits "
    "the projection errs towards more queueing; a larger --sim-users narrows that.",
    "The n users hold their share of the chat and embedding limits, of the vector store's "
    "concurrency and of the background workers (the rule sharded runs use); the modelled "
    "store latency is taken at N users. A month is 30 days at the mean daily rate of the "
    "simulated days.",
)


# -- JSON -------------------------------------------------------------------------
# -- presentation -----------------------------------------------------------------
def _usd(x: float) -> str:
    if x >= 100:
        return f"${x:,.0f}"
    return f"${x:.2f}" if x >= 1 else f"${x:.3g}"


def _count(x: float) -> str:
    for unit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= unit:
            return f"{x / unit:.3g}{suffix}"
    return f"{x:.3g}"


def _pct(x: float) -> str:
    return f"{x:.1%}" if x else "0"


def _seconds(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


HEADER = (
    "strategy",
    "model",
    "users",
    "simulated",
    "USD / month",
    "USD / user / month",
    "tokens / month",
    "failed turns",
    "timed-out turns",
    "timed-out calls",
    "latency p99 (s)",
    "queueing mean (s)",
)


def _cells(row: dict[str, Any]) -> list[str]:
    return [
        row["strategy"],
        row["model"],
        size_label(row["users"]),
        f"{row['simulated_users']:,}",
        _usd(row["usd_per_month"]),
        _usd(row["usd_per_user_per_month"]),
        _count(row["tokens_per_month"]),
        _pct(row["error_share"]),
        _pct(row["timeout_share"]),
        _pct(row["call_timeout_share"]),
        _seconds(row["latency_p99_s"]),
        _seconds(row["queue_mean_s"]),
    ]


def _bites(row: dict[str, Any]) -> bool:
    return max(row["timeout_share"], row["call_timeout_share"]) >= TIMEOUT_NOTICE


def _bite_note(rows: list[dict[str, Any]]) -> str:
    """One strategy's sentence from its rows (one model, by size)."""
    first, last = rows[0], rows[-1]
    p99 = f"p99 latency {_seconds(first['latency_p99_s'])} s at {size_label(first['users'])}"
    if len(rows) > 1:
        p99 += f", {_seconds(last['latency_p99_s'])} s at {size_label(last['users'])}"
    hit = next((r for r in rows if _bites(r)), None)
    if hit is None:
        return (
            f"under {TIMEOUT_NOTICE:.0%} of turns and calls time out up to "
            f"{size_label(last['users'])} users; {p99}."
        )
    note = (
        f"from {size_label(hit['users'])} users {_pct(hit['timeout_share'])} of turns and "
        f"{_pct(hit['call_timeout_share'])} of calls time out"
    )
    if hit is not last:
        note += (
            f" ({_pct(last['timeout_share'])} and {_pct(last['call_timeout_share'])} at "
            f"{size_label(last['users'])})"
        )
    note += f"; {p99}"
    base = first["usd_per_user_per_month"]
    if base and last["usd_per_user_per_month"] < 0.99 * base:
        drop = 1 - last["usd_per_user_per_month"] / base
        note += (
            f"; unbilled timeouts put the cost per user {drop:.0%} below a linear "
            f"extrapolation from {size_label(first['users'])}"
        )
    return note + "."


def bite_notes(document: dict[str, Any], bold: bool = False) -> list[str]:
    """Where the rate limits bite, one sentence per strategy.

    Failures and latency do not depend on the model's price; they can depend on its
    latency profile, so the notes speak of the first model's rows.
    """
    first_model = next(iter(document["prices"]))
    notes = []
    for strategy in dict.fromkeys(r["strategy"] for r in document["rows"]):
        rows = [
            r for r in document["rows"] if (r["strategy"], r["model"]) == (strategy, first_model)
        ]
        name = f"**{strategy}**" if bold else strategy
        notes.append(f"{name}: {_bite_note(rows)}")
    return notes


def render_markdown(document: dict[str, Any]) -> str:
    """``projection.md``: the table, the prices and their date, the limits and the method."""
    d = document
    lines = [
        f"# Monthly cost projection: {d['scenario']}",
        "",
        f"Scaled simulation: up to {d['sim_users']:,} simulated users per size, seed "
        f"{d['seed']}, {d['days_simulated']} simulated days scaled to a "
        f"{d['days_per_month']}-day month. Prices from genai-prices at **{d['price_date']}**.",
        "",
        "## Prices (USD per 1M tokens)",
        "",
        *md_table(
            ("model", "input", "output", "source"),
            (
                (
                    m,
                    f"{p['input_usd_per_million_tokens']:g}",
                    f"{p['output_usd_per_million_tokens']:g}",
                    p["source"],
                )
                for m, p in d["prices"].items()
            ),
        ),
        "",
        f"Embeddings: ${d['embedding_usd_per_million_tokens']:g} per 1M tokens "
        "(the scenario's `embedding.usd_per_million_tokens`).",
        "",
        "## Where the rate limits bite",
        "",
        *(f"- {note}" for note in bite_notes(d, bold=True)),
        "",
        "## Projection",
        "",
        *md_table(HEADER, (_cells(r) for r in d["rows"])),
        "",
        "*Failed turns* got no reply (a timeout, a context overflow); *timed-out turns* are those "
        "whose calls waited or ran past the client timeout, the mark of a saturated rate "
        "limit; *timed-out calls* count every chat and embedding call, extraction and "
        "background work included. Latency is over turns that got a reply.",
        "",
        "## Rate limits of each simulated sample",
        "",
        *md_table(
            ("users", "simulated", "share", "chat rpm / tpm / concurrency", "embedding"),
            (
                (
                    size_label(s["users"]),
                    f"{s['simulated_users']:,}",
                    f"{s['share']:.3g}",
                    _limits_cell(s["chat_limits"]),
                    _limits_cell(s["embedding_limits"]),
                )
                for s in d["sizes"]
            ),
        ),
        "",
        "## Method",
        "",
        *(f"- {line}" for line in METHOD),
        "",
    ]
    return "\n".join(lines)


def _limits_cell(limits: dict[str, Any]) -> str:
    return f"{_count(limits['rpm'])} / {_count(limits['tpm'])} / {limits['concurrency']}"


def print_projection(console: Console, document: dict[str, Any]) -> None:
    """The projection on the terminal, then where the limits bite.

    One row per strategy and size, one USD column per model; failures, latency and
    queueing are the first model's (they follow its latency profile, not its price).
    ``projection.md`` has every figure per model. On a narrow terminal the columns
    after the USD ones move to a second table that repeats strategy and users
    (:func:`reports.terminal.fitted_tables`): every name and figure stays whole.
    """
    d = document
    models = list(d["prices"])
    # Cost first, then the simulated sample (n) with what the limits did to it: at 80
    # columns the two halves make two tables that each fit.
    columns = [
        Column("strategy", "left"),
        Column("users"),
        Column("tokens\n/ month"),
        *(Column(f"{m}\nUSD / month") for m in models),
        *(
            Column(name)
            for name in ("n", "turns\nfailed", "turns\ntimed out", "calls\ntimed out", "p99\n(s)")
        ),
        Column("queue\n(s)"),
    ]
    by_key = {(r["strategy"], r["users"], r["model"]): r for r in d["rows"]}
    lines = []
    for strategy in dict.fromkeys(r["strategy"] for r in d["rows"]):
        for i, size in enumerate(d["sizes"]):
            rows = [by_key[strategy, size["users"], m] for m in models]
            cells = _cells(rows[0])
            lines.append(
                Line(
                    [
                        strategy if i == 0 else "",
                        cells[2],
                        cells[6],
                        *(_usd(r["usd_per_month"]) for r in rows),
                        cells[3],
                        *cells[7:],
                    ],
                    style="red" if _bites(rows[0]) else None,
                    end_section=i == len(d["sizes"]) - 1,
                )
            )
    title = (
        f"{d['scenario']}: monthly cost projection (genai-prices at {d['price_date']}; "
        f"≤{d['sim_users']:,} simulated users per size)"
    )
    for table in fitted_tables(columns, lines, console.width, 2, title):
        console.print(table)
    console.print(
        " · ".join(
            f"{m}: ${p['input_usd_per_million_tokens']:g} in, "
            f"${p['output_usd_per_million_tokens']:g} out per 1M tokens"
            for m, p in d["prices"].items()
        ),
        highlight=False,
    )
    if len(models) > 1:
        console.print(
            f"failures, p99 and queue: {models[0]}; projection.md has them per model",
            highlight=False,
        )
    for note in bite_notes(d):
        console.print(f"rate limits: {note}", highlight=False)


# -- chart ------------------------------------------------------------------------
LINESTYLES = ("-", "--", ":", "-.")


def draw_chart(document: dict[str, Any]) -> Any:
    """Monthly USD against users, log-log, one line per strategy × model.

    Points where at least 1% of turns or calls timed out are ringed in red. Returns a
    matplotlib ``Figure`` (Agg canvas; pyplot's global state is not touched).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    strategies = list(dict.fromkeys(r["strategy"] for r in document["rows"]))
    models = list(document["prices"])
    flagged_x, flagged_y = [], []
    for si, strategy in enumerate(strategies):
        for mi, model in enumerate(models):
            rows = [r for r in document["rows"] if (r["strategy"], r["model"]) == (strategy, model)]
            rows = [r for r in rows if r["usd_per_month"] > 0]  # a log axis has no zero
            ax.plot(
                [r["users"] for r in rows],
                [r["usd_per_month"] for r in rows],
                color=f"C{si % 10}",
                linestyle=LINESTYLES[mi % len(LINESTYLES)],
                marker="o",
                markersize=4,
                label=f"{strategy} · {model}",
            )
            for r in rows:
                if _bites(r):
                    flagged_x.append(r["users"])
                    flagged_y.append(r["usd_per_month"])
    if flagged_x:
        ax.scatter(
            flagged_x,
            flagged_y,
            s=110,
            facecolors="none",
            edgecolors="red",
            linewidths=1.5,
            label=f"≥{TIMEOUT_NOTICE:.0%} of turns or calls timed out",
            zorder=3,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: size_label(round(x))))
    ax.set_xlabel("users")
    ax.set_ylabel("USD per month")
    ax.set_title(
        f"{document['scenario']}: monthly cost by users (genai-prices at {document['price_date']})",
        fontsize=10,
    )
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.15)
    ax.legend(
        *_legend_key(strategies, models, flagged=bool(flagged_x)),
        fontsize=7,
        loc="upper left",
        handlelength=LEGEND_HANDLE_LENGTH,
    )
    return fig


LEGEND_HANDLE_LENGTH = 5.0
"""Legend lines, in font sizes (5 × 7 pt = 35 pt): two periods of the longest dash pattern
drawn (``-.`` at matplotlib's default width, about 16 pt), so every style reads as itself."""


def _legend_key(strategies: list[str], models: list[str], flagged: bool) -> tuple[list, list]:
    """One entry per strategy (its color, solid) and per model (its line style, in grey).

    The chart draws strategy × model lines; keying color and style apart keeps the
    legend short. Model entries carry no marker, which would hide the dashes.
    """
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=f"C{si % 10}") for si in range(len(strategies))]
    labels = list(strategies)
    if len(models) > 1:
        handles += [
            Line2D([], [], color="#555555", linestyle=LINESTYLES[mi % len(LINESTYLES)])
            for mi in range(len(models))
        ]
        labels += models
    if flagged:
        handles.append(Line2D([], [], ls="", marker="o", ms=9, mfc="none", mec="red", mew=1.5))
        labels.append(f"≥{TIMEOUT_NOTICE:.0%} of turns or calls timed out")
    return handles, labels


def _save(fig: Any, fmt: str) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        import matplotlib

        # Fixed ids and no timestamps, so the same projection gives the same file.
        with matplotlib.rc_context({"svg.hashsalt": "memsim", "svg.fonttype": "path"}):
            metadata = {"Date": None} if fmt == "svg" else {"Software": None}
            fig.savefig(tmp, format=fmt, dpi=150, metadata=metadata)

    return write


# -- files ------------------------------------------------------------------------
def write_projection(document: dict[str, Any], out: Path) -> list[Path]:
    """Write projection.json, .md, .png and .svg into ``out``, each atomically."""
    prepare_out_dir(out)
    texts = {"projection.json": dumps(document), "projection.md": render_markdown(document)}
    for name, text in texts.items():
        atomic_write(out / name, lambda tmp, t=text: tmp.write_text(t, encoding="utf-8"))
    fig = draw_chart(document)
    for fmt in ("png", "svg"):
        atomic_write(out / f"projection.{fmt}", _save(fig, fmt))
    return [out / name for name in FILES]
