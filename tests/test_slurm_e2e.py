"""agentgen on the real Slurm test cluster, end to end through ``launch.py``: a 4-job array of smoke
runs (SFT + GRPO + evaluation on every env of ``eval.envs``), a re-run that skips them all, the sweep
status CLI, and a job killed by its time limit that is requeued and resumes from its checkpoint with no
lost (or repeated) step, in its summary, its eval history and its wandb run.

Slurm holds a requeued job for ~120 s before it may start again; the tests release it at once
(``releasing_requeued_jobs``) to stay within CI's time budget. Figures (wall times, requeues) are
printed; run with ``-s`` to see them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import REPO
from slurm_cluster import slurm_cluster as _slurm_cluster  # noqa: F401  (fixture)

from agentgen.cluster import manifest
from agentgen.cluster.status import sweep_status, sync_command, sync_folders

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ALL_EVAL_ENVS = ["sokoban", "alfworld", "sciworld", "webshop"]  # conf/eval/default.yaml


def launch(cluster, cwd: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    env = {**cluster.env, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "launch.py"), "-m", *args],
        cwd=cwd,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def status_cli(sweep: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "agentgen.cluster.status", str(sweep)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def job_logs(sweep: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((sweep / ".submitit").rglob("*_log.*")))


def test_four_job_array_completes_then_rerun_skips_it(slurm_cluster, tmp_path):
    from omegaconf import OmegaConf

    eval_envs = list(OmegaConf.load(REPO / "conf" / "eval" / "default.yaml").envs)
    assert eval_envs == ALL_EVAL_ENVS
    sweep = tmp_path / "sweep"
    # debug=smoke, evaluated once (at the end) on every env of eval.envs, 2 episodes each: CI's time budget.
    args = (
        "env=sokoban,sciworld",
        "think=true,false",
        "debug=smoke",
        "eval.every=0",
        "cluster=slurm",
        f"hydra.sweep.dir={sweep}",
    )
    t0 = time.monotonic()
    proc = launch(slurm_cluster, tmp_path, *args)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-6000:] + job_logs(sweep)[-6000:]

    summaries = sorted(sweep.glob("*/summary.json"))
    assert len(summaries) == 4, [str(p) for p in summaries]
    runs = [json.loads(p.read_text()) for p in summaries]
    assert all(r["status"] == "completed" and r["error"] is None for r in runs)
    assert sorted((r["train_env"], r["variant"]["think"]) for r in runs) == [
        ("sciworld", False),
        ("sciworld", True),
        ("sokoban", False),
        ("sokoban", True),
    ]
    for r in runs:
        assert sorted(r["eval"]) == sorted(eval_envs)  # evaluated on every env of eval.envs
        assert all(m["episodes"] == 2 for m in r["eval"].values())
        assert r["train"]["steps"] == 2 and [h["step"] for h in r["eval_history"]] == [2]
        assert r["config"]["cluster"]["name"] == "slurm"
    records = manifest.load(sweep)
    assert len(records) == 4 and len({r.slurm_job_id.split("_")[0] for r in records.values()}) == 1  # one array

    table = status_cli(sweep)
    assert "4 job(s): 4 completed" in table, table
    print(f"\n4-job array: {wall:.0f} s wall\n{table}")

    lines = (sweep / manifest.FILENAME).read_text()
    again = launch(slurm_cluster, tmp_path, *args, timeout=300)
    assert again.returncode == 0, again.stderr[-4000:]
    assert (again.stdout + again.stderr).count("already completed, skipped") == 4
    assert (sweep / manifest.FILENAME).read_text() == lines  # nothing resubmitted


def _offline_runs(out: Path):
    from agentgen.report.sources import find_offline_runs, read_offline_run

    return [read_offline_run(p) for p in find_offline_runs(out)]


def _time_limited_job(cluster, tmp_path: Path, steps: int) -> tuple[Path, subprocess.CompletedProcess, list, float]:
    sweep = tmp_path / f"sweep-{steps}"
    args = (
        "env=sokoban",
        "debug=smoke",
        f"trainer.steps={steps}",
        "trainer.save_every=1000",  # only the preemption checkpoint (and the final one) is written
        "eval.envs=[sokoban]",
        "eval.every=5",
        "cluster=slurm",
        "cluster.timeout_min=1",  # Slurm's minimum
        "cluster.signal_delay_s=10",
        "cluster.max_requeues=40",
        "trainer.health.enabled=false",  # a 2-SFT-step smoke model over 30-90 steps is no health case
        f"hydra.sweep.dir={sweep}",
    )
    t0 = time.monotonic()
    with cluster.releasing_requeued_jobs() as released:
        proc = launch(cluster, tmp_path, *args)
    return sweep, proc, released, time.monotonic() - t0


def test_job_killed_by_its_time_limit_is_requeued_and_resumes_without_lost_steps(slurm_cluster, tmp_path):
    # Slurm checks time limits periodically and sends USR2 up to 30 s early: 20-50 s into a 1-minute job
    # with signal_delay_s=10. Enough steps that the first run cannot finish by then (on a machine so fast
    # that it did, the job runs again with 3x the steps); each run adds the steps it has time for (fewer
    # on a loaded machine: more requeues).
    steps = int(os.environ.get("AGENTGEN_TEST_REQUEUE_STEPS", "30"))
    sweep, proc, released, wall = _time_limited_job(slurm_cluster, tmp_path, steps)
    if proc.returncode == 0 and not released:
        print(f"\n{steps} steps finished within the first minute ({wall:.0f} s): again with {3 * steps}")
        steps *= 3
        sweep, proc, released, wall = _time_limited_job(slurm_cluster, tmp_path, steps)
    logs = job_logs(sweep)
    assert proc.returncode == 0, proc.stderr[-6000:] + logs[-6000:]
    (out,) = [p.parent for p in sweep.glob("*/summary.json")]
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed", s.get("error")

    # Killed by its time limit at least once, requeued by Slurm each time, resumed from its checkpoint.
    requeues = len(released)
    resumes = [int(m) for m in re.findall(r"resuming from \S+ \(step (\d+)\)", logs)]
    # once per segment: the stop's log line and the end-of-run block (agentgen.console) both name it
    stops = list(dict.fromkeys(int(m) for m in re.findall(r"stopped on SIGUSR2 at RL step (\d+)", logs)))
    assert requeues >= 1, (
        f"the job finished all {steps} steps before Slurm's warning: on a machine this fast, raise "
        f"AGENTGEN_TEST_REQUEUE_STEPS\n{logs[-3000:]}"
    )
    assert len(resumes) == requeues and resumes == stops, (resumes, stops, released)
    assert "Requeued job" in logs  # submitit's scontrol requeue, from agentgen's step boundary
    assert "requeueing it now" not in logs  # every requeue came from a step boundary, none from the watchdog

    # No lost steps: the step counter continued from each checkpoint to the configured total.
    assert s["train"]["steps"] == steps
    assert [h["step"] for h in s["eval_history"]] == sorted({*range(5, steps + 1, 5), steps})  # each once
    assert (out / "checkpoints" / "latest").read_text() == f"step_{steps}"

    # One wandb run (same id in every segment) whose trainer/global_step runs 1..steps, each step once.
    runs = _offline_runs(out)
    assert len(runs) == requeues + 1 and len({r.run_id for r in runs}) == 1
    logged = sorted(int(row["trainer/global_step"]) for r in runs for row in r.history if "rollout/success_rate" in row)
    assert logged == list(range(1, steps + 1)), logged
    # Logged from inside the submitit job into the sweep's group, under one name in every segment; the
    # status's one `wandb sync` command lists the segments' folders oldest first (their steps in order).
    names = [(r.group, r.name) for r in runs]
    assert {r.group for r in runs} == {sweep.name} and len({r.name for r in runs}) == 1, names
    (job,) = sweep_status(sweep)
    assert job.state == "completed" and job.step == steps and job.slurm_job_id == released[0]
    folders = sync_folders(sweep, [job])
    assert folders == [Path(r.source) for r in runs]
    segment_steps = [[int(row["trainer/global_step"]) for row in r.history if "rollout/success_rate" in row]
                     for r in runs]
    assert all(max(a) < min(b) for a, b in zip(segment_steps, segment_steps[1:]) if a and b), segment_steps
    table = status_cli(sweep)
    assert "1 job(s): 1 completed" in table, table
    assert sync_command(folders) in table, table
    print(
        f"\ntime-limit job ({steps} RL steps, timeout_min=1): {wall:.0f} s wall, {requeues} requeue(s), "
        f"stopped at steps {stops}, resumed at {resumes}\n{table}"
    )
