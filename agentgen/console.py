"""What a person at the terminal sees of a job: one progress bar per phase while it runs (``sft``,
``rl <env>``, ``eval <env> @ step N``) and, when it ends, a short block saying how it went and where
everything it wrote is (``end_block``).

Bars are drawn on stderr, by rank 0 only, and only when stderr is a terminal. Elsewhere (Slurm logs, CI,
pipes, the other ranks) nothing is drawn and the phases' one-line log records (logger
``agentgen.progress``: every RL step, every evaluation, SFT every tenth of its steps) say the same. While
bars are drawn (``bars_and_logs``) other log records print above them instead of through them, and the
progress records, which the bars already show, go to the job's log file only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from agentgen import dist
from agentgen.cluster.status import offline_runs, sync_command

PROGRESS_LOGGER = "agentgen.progress"
progress_log = logging.getLogger(PROGRESS_LOGGER)


def bars_shown() -> bool:
    """Bars are for a person watching: rank 0, stderr a terminal."""
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        tty = False
    return tty and dist.is_rank0()


def progress(total: int, desc: str, unit: str = "it", leave: bool = True, show: bool | None = None,
             **kwargs: Any) -> tqdm:
    """A phase's bar on stderr (``show=None``: when ``bars_shown``); a disabled bar otherwise, whose
    ``update`` and ``set_postfix`` do nothing."""
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=not (bars_shown() if show is None else show),
                dynamic_ncols=True, file=sys.stderr, **kwargs)


@contextlib.contextmanager
def episode_bar(desc: str | None, total: int) -> Iterator[Callable | None]:
    """A bar over ``total`` episodes with the success rate so far in its postfix; yields the runner's
    ``on_episode`` callback (None when ``desc`` is None: no bar)."""
    if desc is None:
        yield None
        return
    done = [0, 0]  # episodes, successes

    with progress(total, desc, unit="episode") as bar:
        def on_episode(ep) -> None:
            done[0] += 1
            done[1] += bool(ep.success)
            bar.set_postfix(success=f"{done[1] / done[0]:.2f}", refresh=False)
            bar.update(1)

        yield on_episode
    # a finished bar under an open one (an evaluation during RL) is printed where the open one was: draw
    # that one again at once, on its new line, rather than at its next step
    for other in list(getattr(tqdm, "_instances", [])):
        if not other.disable:
            other.refresh()


class _AboveBars(logging.Handler):
    """Stands in for a console handler while bars are drawn: writes through ``tqdm.write`` (above the
    bars) and leaves out the progress records the bars show."""

    def __init__(self, original: logging.StreamHandler):
        super().__init__(original.level)
        self.original = original
        self.setFormatter(original.formatter)
        for f in original.filters:
            self.addFilter(f)

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(PROGRESS_LOGGER) and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.original.stream)
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler) and \
        getattr(handler, "stream", None) in (sys.stdout, sys.stderr)


@contextlib.contextmanager
def bars_and_logs() -> Iterator[None]:
    """Around a job: when bars are shown, the root logger's console handlers print above the bars and
    drop the progress records (the log file keeps them); libraries' own per-file bars (weights loading
    and saving) stay off either way."""
    quiet_libraries()
    if not bars_shown():
        yield
        return
    root = logging.getLogger()
    saved = list(root.handlers)
    root.handlers = [_AboveBars(h) if _is_console(h) else h for h in saved]
    try:
        yield
    finally:
        root.handlers = saved


def quiet_libraries() -> None:
    """transformers' and huggingface_hub's bars per weights file (``Loading weights``, ``Writing model
    shards``): noise next to the phases' bars, and carriage returns in log files. And DeepSpeed's warning
    that it falls back to the CPU, which transformers triggers when it saves a checkpoint on a machine
    without a GPU: the CPU is chosen up front there, as agentgen's DeepSpeed engine does."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    with contextlib.suppress(ImportError):
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


# --------------------------------------------------------------------------- the end of a job
def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (what a person types), else absolute."""
    path = Path(path).absolute()
    with contextlib.suppress(ValueError):
        rel = path.relative_to(Path.cwd())
        return str(rel) if str(rel) != "." else "."
    return str(path)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _success_lines(summary: Mapping[str, Any]) -> list[str]:
    """Per evaluated env: its first and last success rate, with their steps (one figure when it was
    evaluated once)."""
    history = [h for h in summary.get("eval_history") or [] if h.get("eval")]
    if not history:
        return []
    envs = list(dict.fromkeys(name for h in history for name in h["eval"]))
    width = max(len(e) for e in envs)
    lines = ["  success      (test split)"]
    for name in envs:
        evals = [(h["step"], h["eval"][name]) for h in history if name in h["eval"]]
        (s0, first), (s1, last) = evals[0], evals[-1]
        n = int(last.get("episodes", 0))
        if len(evals) > 1:
            lines.append(f"    {name:<{width}}  {first['success_rate']:.2f} -> {last['success_rate']:.2f}"
                         f"   (step {s0} -> {s1}, {n} episodes)")
        else:
            lines.append(f"    {name:<{width}}  {last['success_rate']:.2f}   (step {s1}, {n} episodes)")
    return lines


def end_block(out_dir: str | Path, summary: Mapping[str, Any] | None, logger: str = "none",
              skipped: bool = False) -> str:
    """The lines printed when a job ends (completed, failed, interrupted or skipped): its status and
    success rates, then the paths the job actually wrote (summary.json, metrics.jsonl, checkpoints, the
    job's log, the wandb run with its ``wandb sync`` command when it is an offline run of ``logger=wandb``)
    and the report command for its output dir."""

    out = Path(out_dir)
    summary = summary or {}
    status = summary.get("status", "unknown")
    head = f"agentgen: job {status}"
    if skipped:
        head = f"agentgen: job already {status}, skipped (resume=skip_completed; resume=always runs it again)"
    elif summary.get("wall_seconds") is not None:
        head += f" in {_duration(float(summary['wall_seconds']))}"
    steps = (summary.get("train") or {}).get("steps")
    what = ", ".join(str(x) for x in (summary.get("train_env"), (summary.get("variant") or {}).get("algo"),
                                      f"{steps} RL steps" if steps else None) if x)
    lines = [f"{head}" + (f" ({what})" if what and not skipped else "")]
    if summary.get("error"):
        lines.append(f"  error        {summary['error']}")
    lines += _success_lines(summary)

    def row(label: str, path: Path, note: str = "") -> None:
        if path.exists():
            lines.append(f"  {label:<12} {_shown(path)}{note}")

    row("summary", out / "summary.json")
    row("metrics", out / "metrics.jsonl")
    ckpts = out / "checkpoints"
    latest = ckpts / "latest"
    row("checkpoints", ckpts, f"  (latest: {latest.read_text().strip()})" if latest.is_file() else "")
    for log_file in sorted(out.glob("*.log")):  # Hydra's job log (<job name>.log)
        row("log", log_file)
    if logger == "wandb":
        folders = offline_runs(out)
        if folders:
            label = "wandb run" if len(folders) == 1 else "wandb runs"  # a resumed job: one folder per start
            lines.append(f"  {label:<12} {', '.join(_shown(d) for d in folders)}  (offline)")
            lines.append(f"  {'upload':<12} {sync_command([Path(_shown(d)) for d in folders])}")
    if (out / "summary.json").exists():
        lines.append(f"  report       python -m agentgen.report {shlex.quote(_shown(out))}")
    return "\n".join(lines)


def print_end(out_dir: str | Path, summary: Mapping[str, Any] | None, logger: str = "none",
              skipped: bool = False) -> None:
    """``end_block`` on stdout (rank 0), after any bars, as the last thing the job prints."""
    if not dist.is_rank0():
        return
    sys.stderr.flush()
    print("\n" + end_block(out_dir, summary, logger, skipped), flush=True)
