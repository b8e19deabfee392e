"""The report's figures (success heatmap, Delta-OOD bars, learning curves), drawn with matplotlib
into PNG bytes so the HTML can embed them and stay a single self-contained file.

Figures are built with ``matplotlib.figure.Figure`` directly, not pyplot: no GUI backend, no global
figure registry, nothing changed for a notebook that imports the report."""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from agentgen.report.aggregate import SweepAggregate
from agentgen.report.schema import Choice, env_title, train_label_title
from agentgen.report.table_format import slug

DPI = 110


@dataclass
class Figure:
    key: str  # file stem of the PNG
    title: str
    png: bytes
    caption: str = ""


def _png(fig: MplFigure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _subplots(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, **kw):
    fig = MplFigure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def success_heatmap(agg: SweepAggregate, choice: Choice) -> Figure | None:
    cells = agg.cells_of(choice)
    envs = agg.eval_envs
    if not cells or not envs:
        return None
    unit = agg.settings.unit
    data = [[(c.final[e].mean if e in c.final else float("nan")) for e in envs] for c in cells]
    fig, ax = _subplots((1.5 + 1.3 * len(envs), 0.9 + 0.55 * len(cells)))
    vmax = 100.0 if unit == "%" else None
    im = ax.imshow(data, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    for i, cell in enumerate(cells):
        for j, env in enumerate(envs):
            stat = cell.final.get(env)
            if stat is None:
                ax.text(j, i, "-", ha="center", va="center", color="grey")
                continue
            text = f"{stat.mean:.1f}" + (f"\n±{stat.std:.1f}" if stat.std is not None else "")
            bright = vmax is not None and stat.mean > 0.6 * vmax
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black" if bright else "white")
            if cell.is_id(env):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xticks(range(len(envs)), [env_title(e) for e in envs])
    ax.set_yticks(range(len(cells)), [train_label_title(c.train_label) for c in cells])
    ax.set_xlabel("evaluation env")
    ax.set_ylabel("training env")
    fig.colorbar(im, ax=ax, label=f"{agg.settings.metric} {unit}".strip())
    label = agg.choice_label(choice)
    ax.set_title(label, fontsize=9)
    return Figure(key=f"heatmap_{slug(label)}", title=f"Success heatmap ({label})", png=_png(fig),
                  caption="Red boxes: in-domain cells. Numbers: mean ± std over seeds of the last-K mean.")


def delta_bars(agg: SweepAggregate) -> Figure | None:
    rows = [r for r in agg.delta_rows() if r.delta is not None]
    if not rows:
        return None
    labels = [f"{train_label_title(r.train_label)}: {agg.choice_label(r.choice)}" for r in rows]
    values = [r.delta for r in rows]
    errs = [r.delta_per_seed.std if r.delta_per_seed and r.delta_per_seed.std is not None else 0.0 for r in rows]
    fig, ax = _subplots((7.5, 0.8 + 0.42 * len(rows)))
    colors = ["tab:green" if v >= 0 else "tab:red" for v in values]
    ypos = range(len(rows))
    ax.barh(ypos, values, xerr=errs, color=colors, alpha=0.85, capsize=3)
    ax.set_yticks(list(ypos), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    for y, v, e in zip(ypos, values, errs):
        x = v + e if v >= 0 else v - e  # past the whisker
        ax.text(x, y, f" {v:+.1f}% ", va="center", ha="left" if v >= 0 else "right", fontsize=8)
    lo, hi = ax.get_xlim()
    ax.set_xlim(lo - 0.12 * (hi - lo), hi + 0.12 * (hi - lo))
    ax.set_xlabel("ΔOOD % against the baseline row")
    return Figure(key="delta_ood", title="Delta-OOD per variant", png=_png(fig),
                  caption="Bars: the study's formula on seed means; whiskers: std of the per-seed ΔOOD.")


def learning_curves(agg: SweepAggregate, choice: Choice) -> Figure | None:
    cells = [c for c in agg.cells_of(choice) if any(len(v) > 1 for v in c.curves.values())]
    envs = [e for e in agg.eval_envs if any(e in c.curves for c in cells)]
    if not cells or not envs:
        return None
    ncols = min(len(envs), 4)
    nrows = (len(envs) + ncols - 1) // ncols
    fig = MplFigure(figsize=(3.3 * ncols + 1.8, 2.7 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for idx, env in enumerate(envs):
        ax = axes[idx // ncols][idx % ncols]
        for ci, cell in enumerate(cells):
            pts = cell.curves.get(env)
            if not pts:
                continue
            steps = [s for s, _ in pts]
            means = [st.mean for _, st in pts]
            lo = [st.mean - (st.std or 0.0) for _, st in pts]
            hi = [st.mean + (st.std or 0.0) for _, st in pts]
            color = colors[ci % len(colors)]
            in_domain = cell.is_id(env)
            ax.plot(steps, means, color=color, linewidth=2.2 if in_domain else 1.2,
                    linestyle="-" if in_domain else "--", marker="o", markersize=3)
            ax.fill_between(steps, lo, hi, color=color, alpha=0.15)
        ax.set_title(f"eval on {env_title(env)}", fontsize=9)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        if idx % ncols == 0:
            ax.set_ylabel(f"{agg.settings.metric} {agg.settings.unit}".strip())
    for idx in range(len(envs), nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)
    fig.legend([Line2D([], [], color=colors[ci % len(colors)], linewidth=2) for ci in range(len(cells))],
               [train_label_title(c.train_label) for c in cells],
               loc="outside right upper", fontsize=7, title="trained on", title_fontsize=7)
    label = agg.choice_label(choice)
    fig.suptitle(label, fontsize=10)
    return Figure(key=f"curves_{slug(label)}", title=f"Learning curves ({label})", png=_png(fig),
                  caption="Mean over seeds at each checkpoint, band ± std; thick solid lines: in-domain "
                          "(the panel's env was trained on), dashed: out-of-domain.")

