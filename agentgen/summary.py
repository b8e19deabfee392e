"""The machine-readable result of a job: ``summary.json`` in its output dir (written atomically).

Keys: status ("completed" | "failed" | "interrupted" | "diverged"), error, train_env, train_envs, variant,
config (resolved, credentials masked: agentgen.secrets), eval (final evaluation: env -> success_rate 0..1,
episodes, avg_steps, avg_return, valid_action_ratio),
eval_history (list of {step, eval}), stages (sequential runs), train (steps, final metrics), profile,
wall_seconds, recovery (failures and preemptions of the job's earlier runs, the checkpoint it resumed from and
those it passed over as incomplete), diverged (reason, step, healthy_checkpoint: trainer.health stopped it).
agentgen.report aggregates these.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agentgen.secrets import redact

FILENAME = "summary.json"
# The study's factors, once: what a job's ``variant`` records (agentgen.workspace.variant) and the report groups
# and compares by (agentgen.report), with the train env they apply to (the runs table's columns, tracking).
VARIANT_KEYS = ("augment", "sft", "think", "algo", "model", "start", "seed")
FACTORS = ("env", *VARIANT_KEYS)


def write(out_dir: str | Path, summary: dict[str, Any]) -> Path:
    path = Path(out_dir) / FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(redact(summary), indent=2, default=_default))  # no credentials (agentgen.secrets)
    os.replace(tmp, path)
    return path


def read(out_dir: str | Path) -> dict[str, Any] | None:
    path = Path(out_dir) / FILENAME
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    return str(o)
