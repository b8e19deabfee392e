"""Writes a Report to disk: one self-contained HTML file (figures inlined as base64 PNG), the same
tables as Markdown (report.md, figures beside it as PNG files) and one CSV per table."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

from agentgen.report.document import Report
from agentgen.report.plots import Figure
from agentgen.report.table_format import Table, to_csv, to_html, to_markdown

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;
padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
nav a{margin-right:1em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
thead th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.id{font-weight:bold;background:#fff4d6}
td.ood{color:#234}
td.pos{color:#0a7d2c}td.neg{color:#b3261e}
figure{margin:1em 0}figcaption{font-weight:600;margin-bottom:.3em}
p.note{color:#555;font-size:.85em;margin:.2em 0}
img{max-width:100%;border:1px solid #eee}
.warn{background:#fff0f0;border-left:4px solid #b3261e;padding:.5em 1em}
dl.overview{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dl.overview dt{font-weight:600}
"""


def figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    caption = f'<p class="note">{html.escape(fig.caption)}</p>' if fig.caption else ""
    return (f'<figure class="plot" id="fig-{html.escape(fig.key)}"><figcaption>{html.escape(fig.title)}</figcaption>'
            f'<img alt="{html.escape(fig.title)}" src="data:image/png;base64,{data}">{caption}</figure>')


def render_html(report: Report) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(report.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
        f'<p class="note">Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by agentgen.report</p>',
        "<nav>" + "".join(f'<a href="#sec-{s.key}">{html.escape(s.title)}</a>' for s in report.sections) + "</nav>",
        '<dl class="overview">' + "".join(
            f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in report.overview) + "</dl>",
    ]
    if report.warnings:
        parts.append('<div class="warn"><strong>Warnings</strong><ul>' + "".join(
            f"<li>{html.escape(w)}</li>" for w in report.warnings) + "</ul></div>")
    for section in report.sections:
        parts.append(f'<section id="sec-{section.key}"><h2>{html.escape(section.title)}</h2>')
        if section.intro:
            parts.append(f"<p>{html.escape(section.intro)}</p>")
        for item in section.items:
            parts.append(to_html(item) if isinstance(item, Table) else figure_html(item))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(report: Report, figure_dir: str = "figures") -> str:
    lines = [f"# {report.title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in report.overview]
    lines.append("")
    if report.warnings:
        lines += ["**Warnings**", ""] + [f"- {w}" for w in report.warnings] + [""]
    for section in report.sections:
        lines += [f"## {section.title}", ""]
        if section.intro:
            lines += [section.intro, ""]
        for item in section.items:
            if isinstance(item, Table):
                lines.append(to_markdown(item))
            else:
                lines += [f"![{item.title}]({figure_dir}/{item.key}.png)", ""]
                if item.caption:
                    lines += [f"*{item.caption}*", ""]
    return "\n".join(lines)


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write report.html, report.md, tables/<key>.csv and figures/<key>.png under ``out_dir``."""
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "markdown": out / "report.md"}
    paths["html"].write_text(render_html(report), encoding="utf-8")
    paths["markdown"].write_text(render_markdown(report), encoding="utf-8")
    seen: set[str] = set()
    for table in report.tables:
        key = _unique(table.key, seen)
        (out / "tables" / f"{key}.csv").write_text(to_csv(table), encoding="utf-8")
    for fig in report.figures:
        (out / "figures" / f"{fig.key}.png").write_bytes(fig.png)
    return paths


def _unique(key: str, seen: set[str]) -> str:
    candidate, i = key, 2
    while candidate in seen:
        candidate, i = f"{key}_{i}", i + 1
    seen.add(candidate)
    return candidate
