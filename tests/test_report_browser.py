"""report.html in a real browser (headless Chromium): the table and every chart render,
and nothing is fetched. Skips when Chromium is not installed."""

import json
import re
import subprocess
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from reports import charts
from reports.compare import comparison_rows
from reports.output import write_outputs, write_reports
from reports.results import load_results

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Chromium not found at /usr/bin/chromium (apt-get install chromium)",
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
