"""Experiment tracking with wandb: offline files unless the user configured an API key or WANDB_MODE,
one run per job whose id is kept in the output dir (so a requeued job continues the same run), and
every metric plotted against ``trainer/global_step`` (a resumed offline run restarts wandb's own step).
Namespaces: ``sft/``, ``train/``, ``rollout/``, ``time/``, ``eval/<env>/``."""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
STEP_METRIC = "trainer/global_step"


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def resolve_mode(configured: str | None) -> str:
    if configured:
        return configured
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if _has_api_key() else "offline"


def run_id(out_dir: Path) -> str:
    """The job's wandb id, created once and kept in the output dir (ids may not contain :;,#?/')."""
    path = out_dir / "wandb_run_id.txt"
    if path.exists():
        return path.read_text().strip()
    rid = re.sub(r"[^A-Za-z0-9_-]", "-", f"{out_dir.name[-40:]}-{uuid.uuid4().hex[:8]}").strip("-")
    path.write_text(rid)
    return rid


class Tracker:
    """A thin wandb wrapper; ``logger=none`` gives a tracker that records nothing."""

    def __init__(self, logger_cfg, out_dir: Path, config: dict[str, Any], name: str, tags: list[str]):
        self.enabled = logger_cfg.name == "wandb"
        self.run = None
        self.cfg = logger_cfg
        if not self.enabled:
            return
        import wandb

        mode = resolve_mode(logger_cfg.get("mode"))
        self.run = wandb.init(
            project=logger_cfg.project, entity=logger_cfg.get("entity"), group=logger_cfg.get("group"),
            job_type=logger_cfg.get("job_type"), tags=list(logger_cfg.get("tags") or []) + tags, name=name,
            config=config, dir=str(out_dir), id=run_id(out_dir), resume="allow", mode=mode,
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )
        self.run.define_metric(STEP_METRIC)
        self.run.define_metric("*", step_metric=STEP_METRIC)
        self._tables: dict[str, Any] = {}

    @property
    def run_dir(self) -> str | None:
        return self.run.dir.rsplit("/files", 1)[0] if self.run else None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.run:
            self.run.log({**metrics, STEP_METRIC: step})

    def log_samples(self, key: str, rows: list[dict[str, Any]], step: int) -> None:
        """Trajectory samples as an incremental table (rows appended across evaluations)."""
        if not self.run or not rows:
            return
        from agentgen.report.wandb_tables import TrajectorySampleTable

        if key not in self._tables:
            self._tables[key] = TrajectorySampleTable(self.run, key=key)
        self._tables[key].log(step, rows)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run:
            for k, v in values.items():
                self.run.summary[k] = v

    def finish(self, failed: bool = False) -> None:
        if self.run:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None
