"""What Slurm says about jobs: ``squeue`` for jobs still in the queue, ``sacct`` for finished ones.

Both degrade to "no information" instead of failing: ``sacct`` needs accounting storage (the test
cluster has none), and a machine without Slurm has neither command.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
from collections.abc import Iterable

# squeue states in which a job will still run or is running: re-submitting it would duplicate it.
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SUSPENDED",
        "STAGE_OUT",
        "SIGNALING",
    }
)


def _run(cmd: list[str], timeout: float = 30.0) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def queue_states(job_ids: Iterable[str] | None = None) -> dict[str, str]:
    """Job id ("123" or array task "123_4") -> squeue state, for this user's jobs in the queue.
    Array tasks are listed one per line (``-r``), so every id is a single task."""
    return queue_snapshot(job_ids) or {}


def queue_snapshot(job_ids: Iterable[str] | None = None, all_states: bool = False) -> dict[str, str] | None:
    """Like ``queue_states``, but None when squeue could not be asked (so "not in the queue" is never
    mistaken for "squeue failed"). ``all_states``: also jobs that ended in the last MinJobAge seconds
    (COMPLETED, FAILED, TIMEOUT, CANCELLED, ...)."""
    cmd = ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"] + (["-t", "all"] if all_states else [])
    out = _run(cmd)
    if out is None:
        return None
    states = {}
    for line in out.splitlines():
        if "|" in line:
            jid, state = line.strip().split("|", 1)
            states[jid] = state
    if job_ids is not None:
        wanted = set(job_ids)
        states = {j: s for j, s in states.items() if j in wanted}
    return states


def accounting_states(job_ids: Iterable[str]) -> dict[str, str]:
    """Job id -> final state from ``sacct`` (e.g. COMPLETED, TIMEOUT, FAILED, CANCELLED); {} without accounting."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    out = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(ids)])
    if out is None:
        return {}
    states = {}
    for line in out.splitlines():
        if "|" in line:
            jid, state = line.strip().split("|", 1)
            states[jid] = state.split()[0] if state else state  # "CANCELLED by 0" -> "CANCELLED"
    return states


def available() -> bool:
    """Whether this machine can talk to a Slurm controller."""
    return _run(["squeue", "-h", "-o", "%i"], timeout=10.0) is not None
