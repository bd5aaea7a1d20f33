"""``report.html``: one self-contained page with the tables, the findings and every chart.

Nothing is fetched: the style sheet is inline, the charts are SVG data URIs, and a
Content-Security-Policy forbids any other source, so the page reads the same
offline, attached to an e-mail or in a CI artifact. Every inserted text is
escaped. The findings and the notes come from :mod:`reports.markdown` (one
source of wording); their inline Markdown (``**bold**``, ``*em*``, ```code```)
becomes HTML here.
"""

from __future__ import annotations

import base64
import json
import re
from html import escape
from typing import Any

from reports.alerts import fired_rows
from reports.charts import Chart
from reports.compare import MEMORY_WORK_TITLE, Row, memory_work_lead, prompt_cache_text
from reports.markdown import ALERTS_LEAD, NOTES, run_size

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
:root { color-scheme: light; --ink: #1d2329; --muted: #5b6570; --rule: #d9dee3;
        --band: #f4f6f8; --accent: #0072b2; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px;
     border-bottom: 1px solid var(--rule); }
.lede { font-size: 16px; color: var(--muted); margin: 0 0 16px; }
code { font: 13px ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
       background: var(--band); padding: 1px 4px; border-radius: 3px; }
.top { display: grid; grid-template-columns: minmax(0, 5fr) minmax(0, 4fr); gap: 0 32px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; }
ul.findings { padding-left: 20px; margin: 0; }
ul.findings li { margin-bottom: 6px; }
.table-scroll { overflow-x: auto; }  /* a wide table scrolls inside, the page does not */
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--rule); }
thead th { text-align: right; background: var(--band); border-bottom: 2px solid var(--rule); }
thead th:first-child, tbody th { text-align: left; font-weight: 600; }
td { text-align: right; white-space: nowrap; }
tbody tr:hover { background: #fafbfc; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr));
          gap: 20px; }
figure { margin: 0; padding: 12px; border: 1px solid var(--rule); border-radius: 6px; }
figure img { display: block; width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
figcaption a { color: var(--accent); }
details { border: 1px solid var(--rule); border-radius: 6px; padding: 8px 12px; }
summary { cursor: pointer; font-weight: 600; }
pre { font: 12px/1.45 ui-monospace, Menlo, Consolas, monospace; overflow-x: auto;
      max-height: 600px; background: var(--band); padding: 12px; }
ul.notes { color: var(--muted); font-size: 14px; padding-left: 20px; }
footer { color: var(--muted); font-size: 13px; margin-top: 32px; }
@media (max-width: 900px) { .top { grid-template-columns: 1fr; } }
"""


def inline_markdown(text: str) -> str:
    """Escape ``text``, then turn its ``**bold**``, ``*em*`` and ```code``` into HTML."""
    html = escape(text)
    html = re.sub(r"`([^`]+)`", r"<code>\1</code>", html)
    html = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", html)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", html)


def _bullets(lines: list[str] | tuple[str, ...], css: str) -> str:
    items = "".join(f"<li>{inline_markdown(line.removeprefix('- '))}</li>\n" for line in lines)
    return f'<ul class="{css}">\n{items}</ul>'


def _price(usd: float) -> str:
    """$0.60, $0.02, $0.0025: cents always shown, more digits only when they matter."""
    return f"${usd:,.2f}" if round(usd, 2) == usd else f"${usd:,.6g}"


def _scenario(summary: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs describing the scenario, in display order."""
    resolved = config["resolved"]
    chat = resolved["chat_usd_per_million_tokens"]
    llm, embedding = config["llm"], config["embedding"]
    return [
        ("scenario", summary["scenario"]),
        ("scenario description", config.get("description") or "–"),
        ("users", f"{summary['users']:,}"),
        ("simulated days", f"{summary['days']}"),
        ("seed", f"{summary['seed']}"),
        ("strategies", ", ".join(summary["strategies"])),
        ("chat model", f"{llm.get('provider', '')}/{llm['model']}".lstrip("/")),
        (
            "chat prices",
            f"{_price(chat['input'])} input / {_price(chat['output'])} output per 1M tokens",
        ),
        ("price source", f"{chat['source']} (price date {config['pricing']['price_date']})"),
        (
            "embeddings",
            f"{embedding['model']} at {_price(resolved['embedding_usd_per_million_tokens'])} "
            "per 1M tokens",
        ),
        ("prompt cache", prompt_cache_text(resolved)),
        ("components", f"embedder {config.get('embedder', '?')}, store {config.get('store', '?')}"),
        ("token counting", resolved.get("token_encoding", "?")),
        ("memsim", f"{summary.get('memsim_version', '?')}, config sha256 "),
    ]


def _definition_list(summary: dict[str, Any], config: dict[str, Any]) -> str:
    rows = []
    for label, text in _scenario(summary, config):
        value = escape(text)
        if label == "memsim":  # the hash in a code span, shortened with its full value on hover
            digest = escape(summary["config_sha256"])
            value += f'<code title="{digest}">{digest[:12]}…</code>'
        rows.append(f"<dt>{escape(label)}</dt><dd>{value}</dd>")
    return "<dl>\n" + "\n".join(rows) + "\n</dl>"


def _scrolling(table: str) -> str:
    """``table`` in a box that scrolls sideways when the table is wider than the page.

    Cells do not wrap (figures stay on one line), so a table of many strategies is
    wider than a narrow window; it scrolls in its box instead of pushing the page
    wider than the screen.
    """
    return f'<div class="table-scroll">\n{table}\n</div>'


def _table(names: list[str], rows: list[Row], table_id: str = "comparison-table") -> str:
    head = "".join(f"<th scope=col>{escape(n)}</th>" for n in names)
    body = "\n".join(
        f"<tr><th scope=row>{escape(r.label)}</th>"
        + "".join(f"<td>{escape(c)}</td>" for c in r.cells)
        + "</tr>"
        for r in rows
    )
    return _scrolling(
        f'<table id="{table_id}">\n<thead><tr><th scope=col>measurement</th>{head}</tr>'
        f"</thead>\n<tbody>\n{body}\n</tbody>\n</table>"
    )


def _alerts_table(rows: list[tuple[str, str, str, str]]) -> str:
    head = "".join(
        f"<th scope=col>{h}</th>"
        for h in ("strategy", "rule", "first fired (simulated)", "spent by then")
    )
    body = "\n".join(
        f"<tr><th scope=row>{escape(name)}</th><td>{escape(rule)}</td>"
        f"<td>{escape(at)}</td><td>{escape(usd)}</td></tr>"
        for name, rule, at, usd in rows
    )
    return _scrolling(
        f'<table id="alerts-table">\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table>"
    )


def _figure(chart: Chart) -> str:
    data = base64.b64encode(chart.svg).decode("ascii")
    name = escape(chart.name)
    return (
        f'<figure id="chart-{name}" class="chart">\n'
        f'<img src="data:image/svg+xml;base64,{data}" alt="{escape(chart.caption)}">\n'
        f"<figcaption><strong>{escape(chart.title)}.</strong> {escape(chart.caption)} "
        f'(<a href="charts/{name}.png">PNG</a>, <a href="charts/{name}.svg">SVG</a>)'
        "</figcaption>\n</figure>"
    )


def _memory_work(names: list[str], memory_work: tuple[list[str], list[Row]] | None) -> str:
    """The section on real libraries' memory work, or ``""`` when none ran."""
    if memory_work is None:
        return ""
    real, rows = memory_work
    return (
        f'<section id="memory-work">\n<h2>{escape(MEMORY_WORK_TITLE)}</h2>\n'
        f"<p>{inline_markdown(memory_work_lead(real))}</p>\n"
        f"{_table(names, rows, 'memory-work-table')}\n</section>"
    )


def render(
    summary: dict[str, Any],
    config: dict[str, Any],
    rows: list[Row],
    findings: list[str],
    charts: list[Chart],
    memory_work: tuple[list[str], list[Row]] | None = None,
) -> str:
    """The whole page: scenario and findings, the comparison table, charts, config.

    ``memory_work``: the real libraries that ran and the rows of their memory-work
    table (:func:`~reports.compare.memory_work_rows`), or ``None`` for no such section.
    """
    names = list(summary["strategies"])
    title = f"memsim report: {summary['scenario']}"
    lede = run_size(summary, config.get("description") or "")
    config_json = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False)
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="lede">{inline_markdown(lede)}</p>',
        '<div class="top">',
        f'<section id="findings">\n<h2>Findings</h2>\n{_bullets(findings, "findings")}\n</section>',
        f'<section id="scenario">\n<h2>Scenario</h2>\n{_definition_list(summary, config)}\n'
        "</section>",
        "</div>",
        '<section id="comparison">',
        "<h2>Comparison</h2>",
        _table(names, rows),
        "</section>",
        _memory_work(names, memory_work),
        '<section id="charts">',
        "<h2>Charts</h2>",
        '<div class="charts">',
        *(_figure(c) for c in charts),
        "</div>",
        "</section>",
        '<section id="alerts">',
        "<h2>Alerts</h2>",
        f"<p>{escape(ALERTS_LEAD)}</p>",
        _alerts_table(fired_rows(summary, names)),
        "</section>",
        '<section id="notes">',
        "<h2>How to read this</h2>",
        _bullets(NOTES, "notes"),
        "</section>",
        '<section id="config">',
        "<h2>Resolved configuration</h2>",
        "<details>",
        f"<summary>config.json: every setting of this run, defaults spelled out "
        f"(sha256 {escape(summary['config_sha256'][:12])}…)</summary>",
        f"<pre>{escape(config_json)}</pre>",
        "</details>",
        "</section>",
        "<footer>Written by memsim from the run's saved files; "
        "<code>memsim report OUTDIR</code> draws it again.</footer>",
        "</main>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(line for line in lines if line != "") + "\n"
