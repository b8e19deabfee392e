"""A single job (no ``-m``) with a Slurm cluster preset is submitted to Slurm, not run on the machine it was
typed on (Hydra's launcher applies to multiruns only); ``cluster=local`` stays in-process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_cluster import REPO
from slurm_cluster import slurm_cluster as _slurm_cluster  # noqa: F401  (fixture)

from agentgen.preflight import preflight, submits_to_slurm


def test_which_single_runs_go_to_slurm(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert submits_to_slurm(preflight(["debug=smoke"])) is None  # cluster=local, the default
    assert submits_to_slurm(preflight(["cluster=slurm", "debug=smoke"])) == "slurm"
    preset = ["model=llama3_1_8b_instruct", "cluster=slurm_8gpu", "env=alfworld"]
    assert submits_to_slurm(preflight(preset)) == "slurm_8gpu"
    assert submits_to_slurm(preflight(["-m", *preset])) is None  # a sweep: Hydra's launcher submits it
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # inside an allocation the job runs where it is
    assert submits_to_slurm(preflight(preset)) is None


@pytest.mark.slurm
@pytest.mark.slow
def test_a_single_job_with_a_cluster_preset_is_submitted_and_says_where_it_went(slurm_cluster, tmp_path: Path):
    sweep = tmp_path / "sweep"
    args = [
        "cluster=slurm_8gpu",  # the study's preset, fitted to the 2-CPU test node without GPUs:
        "cluster.gpus_per_node=0",
        "cluster.cpus_per_task=1",
        "cluster.mem_gb=null",
        "cluster.sbatch={}",
        "cluster.timeout_min=30",
        "debug=smoke",
        "eval.envs=[sokoban]",
        "eval.every=0",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**slurm_cluster.env, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}
    env.pop("SLURM_JOB_ID", None)
    proc = subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1500, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "cluster=slurm_8gpu: submitting this job to Slurm" in proc.stdout
    submitted = re.search(r"Slurm job (\d+)(_0)? \(#0", proc.stdout)
    assert submitted, out[-6000:]
    job_id = submitted.group(1)
    out_dir = Path(re.search(r"output dir: (\S+)", proc.stdout).group(1))
    logs = re.findall(r"(?:logs:)?\s+(\S+_log\.(?:out|err))", proc.stdout)
    assert out_dir.parent == sweep and len(logs) == 2 and all(Path(p).exists() for p in logs), proc.stdout
    assert job_id in Path(logs[0]).name
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["config"]["cluster"]["name"] == "slurm_8gpu"
    assert not (tmp_path / "outputs").exists()  # it did not also run here
    print(f"\n{proc.stdout}")
