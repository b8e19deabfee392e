"""A sweep's record of its Slurm submissions: ``<sweep dir>/agentgen_jobs.jsonl``, one line per submitted
job (appended, never rewritten), so ``agentgen.cluster.status`` can name each job's Slurm id and a
re-run of the sweep can tell which jobs are still queued. The latest line for an output dir wins."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

FILENAME = "agentgen_jobs.jsonl"


@dataclass
class JobRecord:
    num: int  # hydra.job.num
    overrides: list[str]  # the job's sweep overrides
    output_dir: str  # absolute
    slurm_job_id: str  # "<array id>_<task>" as submitit names it
    submitted: float  # unix time


def append(sweep_dir: str | Path, records: list[JobRecord]) -> Path:
    path = Path(sweep_dir) / FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write("".join(json.dumps(asdict(r)) + "\n" for r in records))
    return path


def load(sweep_dir: str | Path) -> dict[str, JobRecord]:
    """Output dir -> its latest submission record (empty when the sweep was never submitted to Slurm)."""
    path = Path(sweep_dir) / FILENAME
    latest: dict[str, JobRecord] = {}
    if not path.exists():
        return latest
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rec = JobRecord(**json.loads(line))
        except (ValueError, TypeError):  # a line cut by a crash mid-write
            continue
        latest[rec.output_dir] = rec
    return latest


def now() -> float:
    return time.time()
