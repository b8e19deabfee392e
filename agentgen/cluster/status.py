"""The state of a sweep's jobs, from any shell, while they run or long after:

    python -m agentgen.cluster.status multirun/gen_tax            # table + counts
    python -m agentgen.cluster.status multirun/gen_tax --json     # one JSON object per job

Jobs log to wandb offline unless a login is configured (compute nodes rarely reach the internet); the
status ends with the one ``wandb sync`` command that uploads the whole sweep from a machine that does:
every job's offline folders (a requeued job has one per start, synced in order into its one run) and
the report's run (``python -m agentgen.report <sweep> --wandb``). Folders already synced are skipped.

Sources, most authoritative first: each job's ``summary.json`` (written by the job: completed / failed),
``squeue`` (pending / running / requeued), ``sacct`` (how a job that left the queue ended: TIMEOUT,
CANCELLED, OUT_OF_MEMORY, ...; absent without Slurm accounting), the job's latest checkpoint (its RL
step). Jobs are the sweep's manifest of Slurm submissions (``agentgen_jobs.jsonl``, written by
agentgen's launcher) plus any job dir with a ``.hydra`` folder (local sweeps, plain submitit launchers).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from agentgen import attempts
from agentgen.cluster import manifest, slurm
from agentgen.cluster.sweep import checkpoint_step, format_job, summary_status


@dataclass
class JobState:
    num: int | None
    overrides: list[str]
    output_dir: str
    state: str  # completed | failed | pending | running | requeued | timeout | cancelled | interrupted | ...
    slurm_job_id: str | None = None
    slurm_state: str | None = None  # squeue or sacct state
    summary: str | None = None  # summary.json status
    step: int | None = None  # RL step of the latest checkpoint
    log: str | None = None  # the job's stderr log (submitit), when there is one
    failures: int = 0  # runs of the job that crashed or failed (agentgen.attempts), each resumed from a checkpoint
    preemptions: int = 0  # runs that stopped for a requeue (time limit, preemption): nothing lost
    requeues: int = 0  # runs the preemption watchdog requeued mid-step: resumed from a checkpoint, not failures


def _job_dirs(sweep_dir: Path) -> dict[str, tuple[int | None, list[str]]]:
    """Job dirs found on disk (those Hydra created: they hold .hydra/overrides.yaml)."""
    from omegaconf import OmegaConf

    found = {}
    for hydra_dir in sorted(sweep_dir.glob("*/.hydra")):
        job_dir = hydra_dir.parent
        overrides: list[str] = []
        num = None
        try:
            overrides = list(OmegaConf.load(hydra_dir / "overrides.yaml"))
            num = int(OmegaConf.load(hydra_dir / "hydra.yaml").hydra.job.num)
        except Exception:  # noqa: BLE001 - a job that died while Hydra wrote these files: shown without them
            overrides, num = [], None
        found[str(job_dir.absolute())] = (num, overrides)
    return found


def _state(summary: str | None, queue: str | None, acct: str | None, submitted: bool) -> str:
    if summary == "completed":
        return "completed"
    if queue:
        return queue.lower()
    if summary in ("failed", "diverged"):
        return summary
    if acct and acct != "COMPLETED":
        return acct.lower()
    if summary in ("running", "interrupted"):
        return "interrupted"  # stopped (or died) before completing, no longer queued: re-run the sweep to resume it
    if submitted:
        return "ended without summary" if acct == "COMPLETED" else "unknown"
    return "not started"


def _recovery(out: str) -> dict[str, int]:
    """Failures, preemptions and requeues of a job's runs so far, from its attempts ledger."""

    c = attempts.counts(attempts.read(out)) if Path(out).is_dir() else {}
    return {"failures": c.get("failures", 0), "preemptions": c.get("preemptions", 0), "requeues": c.get("requeues", 0)}


def sweep_status(sweep_dir: str | Path) -> list[JobState]:
    sweep_dir = Path(sweep_dir).absolute()
    if not sweep_dir.is_dir():
        raise FileNotFoundError(
            f"{sweep_dir} is not a sweep dir (it does not exist); give the hydra.sweep.dir of "
            f"a sweep, e.g. multirun/gen_tax"
        )
    records = manifest.load(sweep_dir)
    on_disk = _job_dirs(sweep_dir)
    ids = [r.slurm_job_id for r in records.values()]
    queue = slurm.queue_states(ids) if ids else {}
    acct = slurm.accounting_states([i for i in ids if i not in queue])
    jobs = []
    for out in sorted(set(records) | set(on_disk)):
        rec = records.get(out)
        num, overrides = on_disk.get(out, (None, []))
        if rec is not None:
            num, overrides = rec.num, rec.overrides
        jid = rec.slurm_job_id if rec else None
        summary = summary_status(out) if Path(out).is_dir() else None
        q, a = (queue.get(jid), acct.get(jid)) if jid else (None, None)
        log = sweep_dir / ".submitit" / str(jid) / f"{jid}_0_log.err" if jid else None
        jobs.append(
            JobState(
                num=num,
                overrides=overrides,
                output_dir=out,
                slurm_job_id=jid,
                slurm_state=q or a,
                summary=summary,
                step=checkpoint_step(out),
                state=_state(summary, q, a, rec is not None),
                log=str(log) if log is not None and log.exists() else None,
                **_recovery(out),
            )
        )
    jobs.sort(key=lambda j: (j.num is None, j.num if j.num is not None else 0, j.output_dir))
    return jobs


def offline_runs(job_dir: str | Path) -> list[Path]:
    """A job's offline wandb folders, oldest first: ``wandb/offline-run-<YYYYMMDD_HHMMSS>-<id>`` holding a
    ``run-<id>.wandb`` log (a requeued job resumes its run into a new folder)."""
    found = [d for d in Path(job_dir).glob("wandb/offline-run-*") if any(d.glob("run-*.wandb"))]
    return sorted(found, key=lambda d: d.name)


def sync_folders(sweep_dir: str | Path, jobs: list[JobState]) -> list[Path]:
    """The sweep's offline wandb folders: jobs in sweep order, each job's oldest first, then the report's."""
    folders = [d for j in jobs for d in offline_runs(j.output_dir)]
    return folders + offline_runs(Path(sweep_dir).absolute() / "report")


def sync_command(folders: list[Path]) -> str:
    """One ``wandb sync`` for all ``folders``: wandb syncs the folders of one run in order of start time."""
    return "wandb sync " + " ".join(shlex.quote(str(d)) for d in folders)


def format_status(sweep_dir: str | Path, jobs: list[JobState]) -> str:
    counts = Counter(j.state for j in jobs)
    head = f"Sweep {Path(sweep_dir).absolute()}: {len(jobs)} job(s)"
    if jobs:
        head += ": " + ", ".join(f"{n} {s}" for s, n in counts.most_common())
    lines = [head]
    if not jobs:
        lines.append("  no jobs found (no agentgen_jobs.jsonl and no job dirs with a .hydra folder)")
        return "\n".join(lines)
    rows = [("#", "state", "slurm id", "step", "fail/preempt/requeue", "job")]
    for j in jobs:
        rows.append(
            (
                str(j.num if j.num is not None else "-"),
                j.state,
                j.slurm_job_id or "-",
                str(j.step) if j.step is not None else "-",
                f"{j.failures}/{j.preemptions}/{j.requeues}",
                format_job(j.overrides) if j.overrides else Path(j.output_dir).name,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        lines.append("  " + "  ".join(f"{c:<{w}}" for c, w in zip(r[:5], widths)) + "  " + r[5])
    bad = [
        j
        for j in jobs
        if j.state
        in ("failed", "diverged", "timeout", "cancelled", "out_of_memory", "node_fail", "ended without summary")
    ]
    for j in bad:
        lines.append(f"  #{j.num}: {j.state}; output {j.output_dir}" + (f"; log {j.log}" if j.log else ""))
    if any(j.state in ("interrupted", "unknown", "not started", "timeout", "cancelled") for j in jobs):
        lines.append("Re-run the sweep's command to resume unfinished jobs (completed ones are skipped).")
    folders = sync_folders(sweep_dir, jobs)
    if folders:
        lines.append(f"Upload the sweep's {len(folders)} offline wandb folder(s) (already synced ones are skipped):")
        lines.append(f"  {sync_command(folders)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agentgen.cluster.status",
        description="State of a sweep's jobs (summaries, squeue, sacct, checkpoints).",
    )
    parser.add_argument("sweep_dir", help="the sweep's hydra.sweep.dir, e.g. multirun/gen_tax")
    parser.add_argument("--json", action="store_true", help="one JSON object per job instead of a table")
    parser.add_argument("--sync-command", action="store_true",
                        help="print only the `wandb sync` command that uploads the sweep's offline runs")
    args = parser.parse_args(argv)
    try:
        jobs = sweep_status(args.sweep_dir)
    except FileNotFoundError as err:
        print(f"agentgen status: error: {err}", file=sys.stderr)
        return 2
    if args.sync_command:
        folders = sync_folders(args.sweep_dir, jobs)
        if not folders:
            print(f"agentgen status: error: the sweep {args.sweep_dir} has no offline wandb runs (its jobs ran "
                  "with logger=none or online, or none has started yet)", file=sys.stderr)
            return 1
        print(sync_command(folders))
    elif args.json:
        for j in jobs:
            print(json.dumps(asdict(j)))
    else:
        print(format_status(args.sweep_dir, jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
