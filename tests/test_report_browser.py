"""The HTML report opened in a real headless browser (Debian's chromium): its tables lay out and its
embedded PNG figures decode. Skips locally without chromium; fails under CI=true."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import require

from agentgen.report import build_report, load_directory, write_report

pytestmark = pytest.mark.browser
DATA = Path(__file__).parent / "data" / "report"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Appended to a copy of the report: measures what the browser actually rendered, once it has loaded.
CHECKER = """
<pre id="render-check"></pre>
<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const tables = [...document.querySelectorAll('table')];
  const out = {
    tables: tables.length,
    table_rows: tables.map(t => t.tBodies[0].rows.length),
    tables_laid_out: tables.filter(t => t.getBoundingClientRect().width > 100).length,
    id_cells: document.querySelectorAll('td.id').length,
    images: imgs.length,
    images_decoded: imgs.filter(i => i.complete && i.naturalWidth > 100 && i.naturalHeight > 100).length,
    images_laid_out: imgs.filter(i => i.getBoundingClientRect().height > 50).length,
    title: document.title,
  };
  document.getElementById('render-check').textContent = JSON.stringify(out);
});
</script>
"""


def chromium() -> str:
    require("chromium")
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_chromium(args: list[str]) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("report_html")
    loaded = load_directory(DATA / "sweep")
    report = build_report(loaded.runs, "demo sweep", profiles=loaded.profiles, problems=loaded.problems)
    paths = write_report(report, out)
    return report, paths["html"]


def test_tables_and_figures_render_in_chromium(rendered, tmp_path):
    report, html_path = rendered
    probe = tmp_path / "probe.html"
    probe.write_text(html_path.read_text().replace("</body>", CHECKER + "</body>"))
    proc = run_chromium(["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()])
    assert proc.returncode == 0, proc.stderr[-2000:]
    match = re.search(r'<pre id="render-check">(.*?)</pre>', proc.stdout, re.DOTALL)
    assert match and match.group(1), "the page's load handler did not run"
    got = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))

    shown = [t for s in report.sections for t in s.items if hasattr(t, "columns")]
    assert got["title"] == report.title
    assert got["tables"] == len(shown) and got["tables_laid_out"] == len(shown)
    assert got["table_rows"] == [len(t.rows) for t in shown]
    assert got["id_cells"] > 0
    assert got["images"] == len(report.figures) >= 7
    assert got["images_decoded"] == got["images"] and got["images_laid_out"] == got["images"]


def test_screenshot_is_not_blank(rendered, tmp_path):
    from PIL import Image

    _, html_path = rendered
    shot = tmp_path / "shot.png"
    proc = run_chromium(["--window-size=1280,2400", f"--screenshot={shot}", html_path.as_uri()])
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2400)
    colors = img.resize((320, 600)).getcolors(maxcolors=1 << 16)
    assert colors is None or len(colors) > 50  # text, tables and a viridis heatmap, not an empty page
