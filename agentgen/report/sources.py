"""Where job summaries come from: a sweep directory (summary.json / profile.json files found
recursively), wandb runs written offline (read back with ``wandb leet inspect --json``, no server),
or a wandb group through wandb's public API when online.

wandb runs are converted to the summary.json schema. A run whose files include ``summary.json``
(``log_summary_to_wandb`` saves it there) is read verbatim; otherwise the summary is rebuilt from the
run's config (``train_env``, ``train_envs``, ``variant`` or the variant keys at top level), its
history (``eval/<env>/<metric>`` keys against ``trainer/global_step``) and its final state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentgen.report.schema import (
    ProfileEntry,
    RunSummary,
    SummaryError,
    load_profile,
    load_summary,
)
from agentgen.summary import VARIANT_KEYS

SUMMARY_FILE, PROFILE_FILE = "summary.json", "profile.json"
STEP_KEY = "trainer/global_step"
EVAL_PREFIX = "eval/"
WANDB_SOURCE_PREFIX = "wandb:"


@dataclass
class Loaded:
    """What a source yielded: parsed runs and profiles, and the files it had to leave out (and why)."""

    runs: list[RunSummary] = field(default_factory=list)
    profiles: list[ProfileEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- sweep directories
def load_directory(root: str | Path, wandb_group: str | None = None) -> Loaded:
    """Every summary.json and profile.json under ``root``. If there is no summary.json at all, the
    offline wandb runs under ``root`` are read instead (optionally only those of ``wandb_group``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep directory {str(root)!r} does not exist or is not a directory")
    out = Loaded()
    for path in sorted(root.rglob(SUMMARY_FILE)):
        if _inside_wandb_run(path):
            continue  # a copy saved into a wandb run's files/; the job's own summary.json is read
        try:
            out.runs.append(load_summary(path))
        except (SummaryError, OSError) as err:
            out.problems.append(f"left out: {err}")
    for path in sorted(root.rglob(PROFILE_FILE)):
        try:
            out.profiles += load_profile(path)
        except (SummaryError, OSError) as err:
            out.problems.append(f"left out: {err}")
    if not out.runs:
        run_dirs = find_offline_runs(root)
        for run_dir in run_dirs:
            try:
                record = read_offline_run(run_dir)
                if record.job_type == "report":
                    continue  # a report's own run (python -m agentgen.report --wandb), not a job
                if wandb_group is None or record.group == wandb_group:
                    out.runs.append(summary_from_wandb(record))
            except (SummaryError, RuntimeError, OSError) as err:
                out.problems.append(f"left out wandb run {run_dir}: {err}")
    return out


def _inside_wandb_run(path: Path) -> bool:
    return any(p.name.startswith(("offline-run-", "run-")) and p.parent.name == "wandb" for p in path.parents)


def find_offline_runs(root: str | Path) -> list[Path]:
    """Run folders (``wandb/offline-run-*`` or ``wandb/run-*``) holding a ``run-<id>.wandb`` log."""
    found = {p.parent for p in Path(root).rglob("run-*.wandb")}
    return sorted(found)


# --------------------------------------------------------------------------- wandb, common form
@dataclass
class WandbRunRecord:
    """A wandb run reduced to what the report needs, from either the offline log or the public API."""

    run_id: str
    source: str
    config: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    state: str  # "finished", "failed", "crashed", "running", ...
    group: str | None = None
    summary_file: dict[str, Any] | None = None  # the trainer's summary.json, if saved into the run
    name: str | None = None  # the run's display name
    job_type: str | None = None
    tags: list[str] = field(default_factory=list)


def summary_from_wandb(record: WandbRunRecord) -> RunSummary:
    if record.summary_file is not None:
        return RunSummary.from_dict(record.summary_file, record.source)
    cfg = _unwrap_config(record.config)
    train_env = cfg.get("train_env")
    if not train_env and cfg.get("train_envs"):
        train_env = "+".join(cfg["train_envs"])
    if not train_env:
        raise SummaryError(
            f"{record.source}: the wandb run has neither a saved summary.json nor 'train_env' in its config; "
            "log runs with agentgen.report.log_summary_to_wandb or put train_env in the wandb config")
    variant = cfg.get("variant")
    if not isinstance(variant, Mapping):
        variant = {k: _scalar(cfg[k]) for k in VARIANT_KEYS if k in cfg}
    history = []
    for row in record.history:
        ev = _eval_from_flat(row)
        if ev:
            step = row.get(STEP_KEY, row.get("_step", 0))
            history.append({"step": int(step), "eval": ev})
    final = _eval_from_flat(record.summary) or (history[-1]["eval"] if history else {})
    completed = record.state == "finished"
    data = {
        "status": "completed" if completed else "failed",
        "error": None if completed else f"wandb run state is {record.state!r}",
        "train_env": train_env,
        "train_envs": cfg.get("train_envs") or None,
        "variant": dict(variant),
        "config": cfg,
        "eval": final,
        "eval_history": history,
        "train": {"steps": record.summary.get(STEP_KEY)},
        "wall_seconds": record.summary.get("_runtime"),
    }
    return RunSummary.from_dict(data, record.source)


def _unwrap_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Public-API configs may come as {key: {"value": v, "desc": ...}}; drop wandb's own keys."""
    out = {}
    for k, v in config.items():
        if k.startswith("_wandb"):
            continue
        if isinstance(v, Mapping) and set(v) <= {"value", "desc"} and "value" in v:
            v = v["value"]
        out[k] = v
    return out


def _scalar(value: Any) -> Any:
    if isinstance(value, Mapping):  # a config group such as model: {name: tiny, ...}
        return value.get("name", json.dumps(value, sort_keys=True))
    return value


def _eval_from_flat(row: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """{"eval/sokoban/success_rate": 0.4, ...} -> {"sokoban": {"success_rate": 0.4}}."""
    out: dict[str, dict[str, float]] = {}
    for key, value in row.items():
        if not key.startswith(EVAL_PREFIX) or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        parts = key[len(EVAL_PREFIX):].split("/")
        if len(parts) == 2:
            out.setdefault(parts[0], {})[parts[1]] = float(value)
    return out


# --------------------------------------------------------------------------- wandb offline runs
def read_offline_run(run_dir: str | Path, timeout: float = 120.0) -> WandbRunRecord:
    """Read a run written with WANDB_MODE=offline back from its ``.wandb`` log, with no server:
    ``wandb leet inspect --json`` prints the log's records (config, history, summary, exit)."""
    run_dir = Path(run_dir)
    cmd = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)]
    env = {**os.environ, "WANDB_SILENT": "true"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"'wandb leet inspect' did not finish within {timeout:.0f} s on {run_dir}") from err
    if proc.returncode != 0:
        raise RuntimeError(f"'wandb leet inspect --json {run_dir}' failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[:500]}")
    return record_from_log_lines(proc.stdout.splitlines(), run_dir)


def record_from_log_lines(lines: Iterable[str], run_dir: Path) -> WandbRunRecord:
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    run_id, group, exit_code = run_dir.name.rsplit("-", 1)[-1], None, None
    name, job_type, tags = None, None, []
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        kind = rec.get("type")
        if kind == "run":
            run = rec["run"]
            run_id = run.get("run_id", run_id)
            group = run.get("run_group") or group
            name, job_type = run.get("display_name") or name, run.get("job_type") or job_type
            tags = list(run.get("tags") or tags)
            config.update((run.get("config") or {}).get("update") or {})
        elif kind == "config":
            config.update((rec["config"].get("update")) or {})
            for key in rec["config"].get("remove") or []:
                config.pop(key, None)
        elif kind == "history":
            history.append(dict(rec["history"].get("item") or {}))
        elif kind == "summary":
            summary.update(rec["summary"].get("update") or {})
        elif kind == "exit":
            exit_code = rec["exit"].get("exit_code", 0)
    state = "running" if exit_code is None else "finished" if exit_code == 0 else "failed"
    summary_file = None
    saved = run_dir / "files" / SUMMARY_FILE
    if saved.is_file():
        summary_file = json.loads(saved.read_text())
    return WandbRunRecord(run_id=run_id, source=str(run_dir), config=config, summary=summary, history=history,
                          state=state, group=group, summary_file=summary_file, name=name, job_type=job_type,
                          tags=tags)


# --------------------------------------------------------------------------- wandb online group
def parse_wandb_source(text: str) -> tuple[str | None, str, str]:
    """'wandb:entity/project/group' or 'wandb:project/group' -> (entity or None, project, group)."""
    body = text.removeprefix(WANDB_SOURCE_PREFIX)
    parts = [p for p in body.split("/") if p]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return None, parts[0], parts[1]
    raise ValueError(f"wandb source {text!r} must look like 'wandb:<entity>/<project>/<group>' "
                     "or 'wandb:<project>/<group>'")


def load_wandb_group(entity: str | None, project: str, group: str, api: Any = None) -> Loaded:
    """All runs of a wandb group through the public API (needs network access and a login)."""
    import wandb

    api = api or wandb.Api()
    path = f"{entity}/{project}" if entity else project
    out = Loaded()
    for run in api.runs(path, filters={"group": group}):
        source = f"wandb:{path}/{run.id}"
        try:
            out.runs.append(summary_from_wandb(_record_from_api_run(run, source)))
        except (SummaryError, OSError, ValueError) as err:
            out.problems.append(f"left out wandb run {source}: {err}")
    if not out.runs and not out.problems:
        out.problems.append(f"wandb group {group!r} in {path} has no runs")
    return out


def _record_from_api_run(run: Any, source: str) -> WandbRunRecord:
    summary_file = None
    for f in run.files(names=[SUMMARY_FILE]):
        if f.name == SUMMARY_FILE and getattr(f, "size", 1):
            with tempfile.TemporaryDirectory() as tmp:
                f.download(root=tmp, replace=True)
                summary_file = json.loads((Path(tmp) / SUMMARY_FILE).read_text())
            break
    summary = getattr(run.summary, "_json_dict", None) or dict(run.summary)
    history = [] if summary_file is not None else list(run.scan_history())
    return WandbRunRecord(run_id=run.id, source=source, config=dict(run.config), summary=dict(summary),
                          history=history, state=run.state, group=getattr(run, "group", None),
                          summary_file=summary_file, name=getattr(run, "name", None),
                          job_type=getattr(run, "job_type", None), tags=list(getattr(run, "tags", None) or []))


def load_source(source: str, wandb_group: str | None = None) -> Loaded:
    """A sweep directory, or 'wandb:<entity>/<project>/<group>' for a wandb group (online)."""
    if source.startswith(WANDB_SOURCE_PREFIX):
        return load_wandb_group(*parse_wandb_source(source))
    if Path(source).is_dir():
        return load_directory(source, wandb_group)
    raise FileNotFoundError(
        f"report source {source!r} is neither a directory nor a wandb group; give a sweep directory "
        "(holding summary.json files, e.g. multirun/2026-01-01/12-00-00) or 'wandb:<entity>/<project>/<group>'")
