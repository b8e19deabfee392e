"""Runs that survive (issue 19), end to end through the real launcher (``python launch.py ... debug=smoke``):
a job SIGKILLed in the middle of an RL step resumes from its last complete checkpoint when the same command
runs again, losing at most ``save_every`` steps; no credential from the environment ends up in any file of
the output dir; a learning rate that breaks the tiny model stops the job as diverged with its last healthy
checkpoint kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import slurm_cluster as _slurm_cluster  # noqa: F401  (fixture)

ROOT = REPO = Path(__file__).resolve().parent.parent
BASE = ["debug=smoke", "eval.envs=[sokoban]", "logger=none"]


def command(out: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(ROOT / "launch.py"), *BASE, *overrides, f"hydra.run.dir={out}"]


def job_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def wait_for(predicate, proc: subprocess.Popen, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the job ended (rc {proc.returncode}) before {what}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def metric_steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_sigkill_mid_rl_step_resumes_from_the_last_complete_checkpoint(tmp_path):
    out = tmp_path / "run"
    # 64 episodes a step, so that a step lasts seconds (a smoke step of 4 can end in under one)
    cmd = command(out, "trainer.steps=4", "trainer.save_every=1", "eval.every=0", "trainer.prompts_per_step=8",
                  "algo.group_size=8")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=job_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    latest = out / "checkpoints" / "latest"
    # step_2 is complete (manifest, latest): the job is now inside RL step 3 (its rollouts or update)
    wait_for(lambda: latest.exists() and latest.read_text() == "step_2", proc, 900, "checkpoint step_2")
    time.sleep(0.5)
    assert proc.poll() is None and 3 not in metric_steps(out)
    os.kill(proc.pid, signal.SIGKILL)  # no signal handler runs: the OOM killer's way
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (out / "summary.json").exists()

    t0 = time.monotonic()
    again = subprocess.Popen(cmd, cwd=tmp_path, env=job_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    # recovery: back past the step the kill interrupted
    wait_for(lambda: 3 in metric_steps(out), again, 900, "RL step 3 after the restart")
    recovered_s = time.monotonic() - t0
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["train"]["steps"] == 4
    rec = s["recovery"]
    assert rec["resumed_from"] == "step_2" and rec["failures"] == 1 and rec["preemptions"] == 0
    assert rec["attempts"] == 1  # runs before this one
    assert "resuming from" in (out / "launch.log").read_text()
    steps = metric_steps(out)
    assert steps == [1, 2, 3, 4]  # step 3 was lost whole (no partial row) and redone: at most save_every
    print(f"recovery: RL step 3 reached {recovered_s:.1f} s after the restart")


SECRETS = {
    "WANDB_API_KEY": "fakewandbkey0123456789abcdef0123456789abcd",
    "MY_SERVICE_TOKEN": "tok-2c1f9e-not-a-real-token",
    "DB_PASSWORD": "hunter2-but-longer",
    "CLOUD_SECRET": "s3cr3t-cloud-value-xyz",
}


@pytest.mark.slow
def test_no_credential_reaches_any_file_of_the_output_dir(tmp_path):
    out = tmp_path / "run"
    # the config interpolates one (wandb group), the command line carries another literally (a wandb tag)
    cmd = [sys.executable, str(ROOT / "launch.py"), "debug=smoke", "eval.envs=[sokoban]", "logger=wandb",
           "logger.group=${oc.env:MY_SERVICE_TOKEN}", f"logger.tags=[{SECRETS['CLOUD_SECRET']}]",
           "trainer.steps=1", f"hydra.run.dir={out}"]
    r = subprocess.run(cmd, cwd=tmp_path, env=job_env(WANDB_MODE="offline", **SECRETS), capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["config"]["logger"]["group"] == "***"
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and any(".hydra" in p.parts for p in files)
    assert any("checkpoints" in p.parts for p in files) and (out / "launch.log").exists()
    leaks = [(p.relative_to(out), name) for p in files for name, value in SECRETS.items()
             if value.encode() in p.read_bytes()]
    assert not leaks, leaks


@pytest.mark.slow
def test_a_learning_rate_that_breaks_the_model_stops_the_job_as_diverged(tmp_path):
    """The tiny model after a short SFT answers in format; RL at lr 1e-2 (conf/model/tiny.yaml: 1e-3 already
    broke it within a few steps) makes it stop closing its tags, so its answers run to the token cap."""
    out = tmp_path / "run"
    cmd = command(out, "trainer.steps=8", "trainer.save_every=1", "eval.every=0", "model.lr.rl=1e-2",
                  "debug.max_response_tokens=64", "sft.steps=40", "sft.episodes_per_env=64", "sft.batch_size=16",
                  "sft.micro_batch_size=16", "trainer.health.patience=2", "trainer.keep_checkpoints=1")
    r = subprocess.run(cmd, cwd=tmp_path, env=job_env(), capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    shown = [{k: round(v, 3) for k, v in row.items() if k in ("step", "rollout/format_ratio", "rollout/capped_ratio",
                                                                 "rollout/invalid_ratio", "train/kl")} for row in rows]
    assert s["status"] == "diverged", shown
    d = s["diverged"]
    assert d["step"] < 8 and "consecutive RL steps" in d["reason"] and s["error"].startswith("diverged at RL step")
    healthy = d["healthy_checkpoint"]
    assert healthy is not None and (out / "checkpoints" / healthy / "manifest.json").exists()
    assert (out / "checkpoints" / "latest").read_text() == healthy  # a re-run resumes from the healthy policy
    print("diverged:", d, shown)


@pytest.mark.slurm
@pytest.mark.slow
def test_a_slurm_job_killed_mid_rl_step_is_resubmitted_and_resumes(slurm_cluster, tmp_path):
    """SIGKILL (no USR2: the OOM killer, a node failure) of the job process on the node, found through the
    output dir's lock: the waiting launcher resubmits it (cluster.max_failures) and it resumes."""
    sweep = tmp_path / "sweep"
    args = ["-m", "cluster=slurm", "cluster.timeout_min=30", "cluster.max_failures=1", *BASE, "trainer.steps=4",
            "trainer.save_every=1", "eval.every=0", f"hydra.sweep.dir={sweep}"]
    env = {**slurm_cluster.env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("SLURM_JOB_ID", None)
    launcher = subprocess.Popen([sys.executable, str(REPO / "launch.py"), *args], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def latest_is_step_2() -> bool:
        found = list(sweep.glob("0_*/checkpoints/latest"))
        return bool(found) and found[0].read_text() == "step_2"

    wait_for(latest_is_step_2, launcher, 1200, "the Slurm job's checkpoint step_2")
    out = next(sweep.glob("0_*"))
    holder = json.loads((out / ".agentgen.lock").read_text())
    assert holder["slurm_job_id"]
    os.kill(int(holder["pid"]), signal.SIGKILL)
    t0 = time.monotonic()
    log, _ = launcher.communicate(timeout=1500)
    assert launcher.returncode == 0, log[-5000:]
    assert f"Slurm job {holder['slurm_job_id']} (#0) ended without a result; resubmitted" in log, log[-5000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["train"]["steps"] == 4
    assert s["recovery"]["failures"] == 1 and s["recovery"]["preemptions"] == 0
    assert s["recovery"]["resumed_from"] == "step_2"
    records = [json.loads(x) for x in (sweep / "agentgen_jobs.jsonl").read_text().splitlines()]
    assert len(records) == 2 and records[0]["slurm_job_id"] != records[1]["slurm_job_id"]
    status = subprocess.run([sys.executable, "-m", "agentgen.cluster.status", str(sweep)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert "1/0" in status.stdout, status.stdout
    print(f"resubmitted and completed {time.monotonic() - t0:.1f} s after the kill")


@pytest.mark.slurm
@pytest.mark.slow
def test_no_credential_reaches_any_file_or_name_of_a_slurm_sweep_dir(slurm_cluster, tmp_path):
    """Issue 32: as the local test above, through the local Slurm cluster: nothing under the sweep dir, the
    submitit folder (its pickles, logs, sbatch script) included, holds a fake key, in its bytes or its name.
    Before, the literal tag reached multirun.yaml, the jobs manifest, the submitted pickle, the job dir's name
    (``hydra.job.override_dirname``) and with it every path the logs print."""
    sweep = tmp_path / "sweep"
    args = ["-m", "cluster=slurm", "cluster.timeout_min=30", "debug=smoke", "eval.envs=[sokoban]", "logger=wandb",
            "logger.group=${oc.env:MY_SERVICE_TOKEN}", f"logger.tags=[{SECRETS['CLOUD_SECRET']}]", "trainer.steps=1",
            f"hydra.sweep.dir={sweep}"]
    env = {**slurm_cluster.env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", **SECRETS}
    env.pop("SLURM_JOB_ID", None)
    r = subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=1500)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    out = next(p for p in sweep.iterdir() if p.name.startswith("0_"))
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["config"]["logger"]["tags"] == ["***"]
    files = [p for p in sweep.rglob("*") if p.is_file()]
    submitit = [p for p in files if ".submitit" in p.parts]
    assert any(p.name.endswith("_submitted.pkl") for p in submitit) and any(p.suffix == ".out" for p in submitit)
    assert any(p.name.endswith("_result.pkl") for p in submitit) and (sweep / "multirun.yaml").exists()
    assert any(p.suffix == ".wandb" for p in files)
    leaks = [(str(p.relative_to(sweep)), name) for p in files for name, value in SECRETS.items()
             if value.encode() in p.read_bytes() or value in str(p)]
    assert not leaks, leaks
    assert not any(v in r.stdout + r.stderr for v in SECRETS.values())  # the launcher's own output too
