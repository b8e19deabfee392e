"""Every start and end of a job in its output dir (``attempts.jsonl``), so a job can tell how its earlier
runs ended even when one was killed without a chance to say so (SIGKILL, the OOM killer, a node failure).

A start with no end after it is a crash; an end "interrupted" is a stop for a requeue (Slurm's time limit or
preemption warning, honoured at a step boundary); an end "failed" is an error; a "requeue" row is written
when the preemption watchdog requeued the job mid-step (no step boundary in time; ``scontrol requeue`` then
kills the run, so it records no end). Failures, preemptions and requeues are counted apart: a preempted job
lost nothing, a requeued or failed one lost up to ``trainer.save_every`` steps, and only a failed one went
wrong. summary.json's ``recovery`` and ``python -m agentgen.cluster.status`` show the counts.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

FILENAME = "attempts.jsonl"


def _append(out_dir: Path, row: dict[str, Any]) -> None:
    path = Path(out_dir) / FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read(out_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / FILENAME
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line cut short by a crash while it was written
            continue
    return rows


def counts(rows: list[dict[str, Any]], over: bool = False) -> dict[str, int]:
    """{attempts, failures, preemptions, requeues} over the recorded runs; each run counts once, by how it
    ended: its end row, else its requeue row, else (no record of its end) a failure. The last run, if it
    recorded neither, is still going unless ``over`` (a new run starts: that one was killed)."""
    attempts = failures = preemptions = requeues = 0
    outcome: str | None = None  # of the current run: None (no start yet), "open", "requeued", or its end

    def close() -> None:
        nonlocal failures, preemptions, requeues
        failures += outcome in ("open", "failed")
        preemptions += outcome == "interrupted"
        requeues += outcome == "requeued"

    for row in rows:
        if row.get("event") == "start":
            close()
            attempts += 1
            outcome = "open"
        elif row.get("event") == "requeue" and outcome == "open":
            outcome = "requeued"
        elif row.get("event") == "end" and outcome is not None:
            outcome = row.get("status")
    if over or outcome != "open":
        close()
    return {"attempts": attempts, "failures": failures, "preemptions": preemptions, "requeues": requeues}


def start(out_dir: str | Path, resumed_from: str | None, step: int | None) -> dict[str, int]:
    """Record this run's start; returns the counts of the runs before it."""
    before = counts(read(out_dir), over=True)
    row = {"event": "start", "time": time.time(), "pid": os.getpid(), "host": socket.gethostname(),
           "resumed_from": resumed_from, "step": step}
    if os.environ.get("SLURM_JOB_ID"):
        row["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
        row["slurm_restart_count"] = int(os.environ.get("SLURM_RESTART_COUNT", 0) or 0)
    _append(Path(out_dir), row)
    return before


def end(out_dir: str | Path, status: str) -> None:
    _append(Path(out_dir), {"event": "end", "time": time.time(), "status": status, "pid": os.getpid()})


def requeued(out_dir: str | Path, by: str) -> None:
    """Record that this run was requeued mid-step (``by``: who asked, e.g. "watchdog"): not a failure."""
    _append(Path(out_dir), {"event": "requeue", "time": time.time(), "by": by, "pid": os.getpid()})
