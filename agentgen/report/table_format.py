"""The table type of the report and its three renderings: CSV (numbers, for further analysis), Markdown and HTML
(mean ± spread with ID/OOD marks, for reading)."""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field
from typing import Any

from agentgen.report.metrics import Stat

MISSING = "-"


@dataclass(frozen=True)
class Cell:
    """A value with an optional tag shown before it ("ID") and a number format ("{:+.1f}%")."""

    value: Any
    tag: str | None = None
    fmt: str | None = None
    css: str | None = None


@dataclass
class Table:
    key: str  # file stem of the CSV, and the wandb table name
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""
    digits: int = 1
    meta: dict[str, Any] = field(default_factory=dict)

    def text_rows(self) -> list[list[str]]:
        return [[format_cell(c, self.digits) for c in row] for row in self.rows]

    def number_rows(self) -> list[list[Any]]:
        """Rows with a Stat reduced to its mean and tags dropped: what the CSV and wandb hold."""
        return [[plain_value(c) for c in row] for row in self.rows]


def plain_value(cell: Any) -> Any:
    value = cell.value if isinstance(cell, Cell) else cell
    if isinstance(value, Stat):
        return round(value.mean, 6)
    if isinstance(value, float):
        return round(value, 6)
    return value


def format_cell(cell: Any, digits: int = 1) -> str:
    tag, fmt = None, None
    if isinstance(cell, Cell):
        tag, fmt, cell = cell.tag, cell.fmt, cell.value
    text = _format_value(cell, digits, fmt)
    return f"{tag} {text}" if tag and text != MISSING else text


def _format_value(value: Any, digits: int, fmt: str | None) -> str:
    if value is None:
        return MISSING
    if isinstance(value, Stat):
        mean = fmt.format(value.mean) if fmt else f"{value.mean:.{digits}f}"
        return mean if value.std is None else f"{mean} ± {value.std:.{digits}f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return fmt.format(value) if fmt else f"{value:.{digits}f}"
    if fmt and isinstance(value, int):
        return fmt.format(value)
    return str(value)


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(["" if v is None else v for v in row] for row in table.number_rows())
    return buf.getvalue()


def to_markdown(table: Table) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"### {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    lines.append("| " + " | ".join(esc(c) for c in table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    for row in table.rows:
        cells = []
        for cell in row:
            text = esc(format_cell(cell, table.digits))
            if isinstance(cell, Cell) and cell.tag == "ID":
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        tds = []
        for i, cell in enumerate(row):
            classes = []
            if isinstance(cell, Cell):
                if cell.tag:
                    classes.append(cell.tag.lower())
                if cell.css:
                    classes.append(cell.css)
            value = cell.value if isinstance(cell, Cell) else cell
            if isinstance(value, (int, float, Stat)) and not isinstance(value, bool):
                classes.append("num")
            attr = f' class="{" ".join(classes)}"' if classes else ""
            title = ""
            if isinstance(value, Stat) and value.n:
                title = f' title="n={value.n}: ' + ", ".join(f"{v:.1f}" for v in value.values) + '"'
            tag = "th" if i == 0 else "td"
            tds.append(f"<{tag}{attr}{title}>{html.escape(format_cell(cell, table.digits))}</{tag}>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return (
        f'<figure class="table" id="tbl-{html.escape(table.key)}"><figcaption>{html.escape(table.title)}</figcaption>'
        f"{note}<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></figure>"
    )


def slug(text: str) -> str:
    """A file-name-safe stem for tables and figures: 'start=v2, think=false' -> 'start_v2_think_false'."""
    out = "".join(ch if ch.isalnum() else "_" for ch in text.lower())
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_") or "table"
