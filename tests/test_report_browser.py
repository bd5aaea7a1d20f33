"""report.html in a real browser (headless Chromium): the table and every chart render,
nothing is fetched, and at 700 px a wide table scrolls in its box, not the page.
Skips when Chromium is not installed (``MEMSIM_CHROMIUM`` names another binary)."""

import json
import os
import re
import subprocess
from dataclasses import replace
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from reports import charts, html
from reports.compare import comparison_rows
from reports.markdown import findings
from reports.output import write_outputs, write_reports
from reports.results import load_results

CHROMIUM = Path(os.environ.get("MEMSIM_CHROMIUM", "/usr/bin/chromium"))
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set MEMSIM_CHROMIUM)",
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
# Injected into a copy of the page: once everything has loaded, write what the
# browser made of the charts and the table into the DOM, where --dump-dom shows it.
PROBE = """<pre id="probe"></pre><script>
window.addEventListener("load", () => {
  const charts = [...document.querySelectorAll("figure.chart")].map(f => {
    const img = f.querySelector("img");
    return {id: f.id, complete: img.complete, width: img.naturalWidth,
            height: img.naturalHeight, shown: img.getBoundingClientRect().width};
  });
  const table = document.getElementById("comparison-table");
  document.getElementById("probe").textContent = JSON.stringify({
    charts,
    header: [...table.querySelectorAll("thead th")].map(th => th.textContent),
    rows: [...table.querySelectorAll("tbody tr")].map(tr => tr.cells.length),
    tableWidth: table.getBoundingClientRect().width,
    fetched: performance.getEntriesByType("resource").map(e => e.name),
  });
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> str:
    done = subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    return done.stdout


@pytest.fixture(scope="module")
def report(tiny_run, tiny_summary, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser")
    write_outputs(tiny_run, out, tiny_summary)
    write_reports(load_results(out))
    return out


def test_table_and_every_chart_render(report, tmp_path):
    page = (report / "report.html").read_text()
    # The probe is an inline script: allow that (and only that) in the copy's policy.
    probe_page = page.replace(
        "default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';"
    )
    probe_page = probe_page.replace("</body>", PROBE + "\n</body>")
    assert probe_page.count("script-src") == 1 and PROBE in probe_page
    (tmp_path / "probe.html").write_text(probe_page)
    dom = chromium(
        tmp_path, "--window-size=1280,2000", "--dump-dom", (tmp_path / "probe.html").as_uri()
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found and found.group(1), "the probe script did not run"
    probe = json.loads(unescape(found.group(1)))

    assert [c["id"] for c in probe["charts"]] == [f"chart-{s.name}" for s in charts.SPECS]
    for chart in probe["charts"]:
        assert chart["complete"] and chart["width"] > 300 and chart["height"] > 150, chart
        assert chart["shown"] > 300, chart
    results = load_results(report)
    rows = comparison_rows(results.summary, results.runs())
    assert probe["header"] == ["measurement", *results.strategies]
    assert probe["rows"] == [1 + len(results.strategies)] * len(rows)
    assert probe["tableWidth"] > 600
    assert probe["fetched"] == []


def test_screenshot_shows_the_charts(report, tmp_path):
    shot = tmp_path / "shot.png"
    chromium(
        tmp_path,
        "--window-size=1280,2400",
        f"--screenshot={shot}",
        (report / "report.html").as_uri(),
    )
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    assert (pixels.min(axis=2) < 0.9).mean() > 0.03  # not a blank page
    # The first strategy's color (the charts' blue, #0072B2) below the table: charts drew.
    blue = np.array([0x00, 0x72, 0xB2]) / 255
    lower = pixels[1200:]
    assert (np.abs(lower - blue).max(axis=2) < 0.08).sum() > 500


# At a narrow width: how wide the page is, and how wide each table's box and table are.
NARROW_PROBE = """<pre id="probe"></pre><script>
window.addEventListener("load", () => {
  const boxes = [...document.querySelectorAll(".table-scroll")].map(box => ({
    table: box.querySelector("table").id, overflowX: getComputedStyle(box).overflowX,
    box: box.clientWidth, content: box.scrollWidth}));
  document.getElementById("probe").textContent = JSON.stringify({
    viewport: window.innerWidth, page: document.documentElement.scrollWidth, boxes});
});
</script>"""


def test_a_wide_table_scrolls_in_its_box_at_700_px(report, tmp_path):
    """Six strategies at 700 px: the comparison table is wider than the window, and its
    box scrolls sideways while the page keeps the window's width."""
    results = load_results(report)
    names = [f"{n}-{copy}" for copy in ("a", "b") for n in results.strategies]
    blocks = list(results.summary["strategies"].values()) * 2
    summary = {**results.summary, "strategies": dict(zip(names, blocks, strict=True))}
    runs = [replace(r, strategy=n) for r, n in zip(results.runs() * 2, names, strict=True)]
    page = html.render(
        summary,
        results.config,
        comparison_rows(summary, runs),
        findings(summary, names, results.config),
        [],
    )
    page = page.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
    (tmp_path / "narrow.html").write_text(page.replace("</body>", NARROW_PROBE + "\n</body>"))
    dom = chromium(
        tmp_path, "--window-size=700,1400", "--dump-dom", (tmp_path / "narrow.html").as_uri()
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found and found.group(1), "the probe script did not run"
    probe = json.loads(unescape(found.group(1)))
    assert probe["viewport"] == 700
    assert probe["page"] <= probe["viewport"]  # nothing pushes the page sideways
    boxes = {b["table"]: b for b in probe["boxes"]}
    comparison = boxes["comparison-table"]
    assert comparison["overflowX"] == "auto"
    assert comparison["content"] > comparison["box"]  # the table is wider: its box scrolls
