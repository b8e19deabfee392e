"""The test Slurm cluster (scripts/slurm/: nodes n1 and n2) and agentgen's Slurm launcher, for real: jobs are
submitted with sbatch, run by slurmd, and read back. A tiny Hydra app (written per test) stands in for
launch.py so that each job takes seconds; it composes agentgen's own cluster presets and launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from slurm_cluster import NODES, REPO, START, free_ports, run_dir
from slurm_cluster import agentgen_plugins_path as _agentgen_plugins_path  # noqa: F401  (fixture)
from slurm_cluster import slurm_cluster as _slurm_cluster  # noqa: F401  (fixture)

from agentgen.cluster import manifest
from agentgen.cluster.status import sweep_status

pytestmark = pytest.mark.slurm

APP = """
import os
import time

import hydra
from hydra.core.hydra_config import HydraConfig

from agentgen import summary


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    time.sleep(cfg.sleep)
    out = HydraConfig.get().runtime.output_dir
    counter = os.path.join(out, "attempts")
    attempt = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
    open(counter, "w").write(str(attempt))
    if cfg.x == cfg.fail_first_attempt_of and attempt == 1:
        summary.write(out, {"status": "failed", "error": "RuntimeError: first attempt fails"})
        raise RuntimeError("first attempt fails")
    result = {"status": "completed", "x": cfg.x, "array_task": os.environ.get("SLURM_ARRAY_TASK_ID"),
              "cluster": cfg.cluster.name, "gpus_per_node": cfg.cluster.gpus_per_node, "attempt": attempt}
    summary.write(out, result)
    return result


if __name__ == "__main__":
    main()
"""


@pytest.fixture
def tiny_app(tmp_path: Path, agentgen_plugins_path: Path, slurm_cluster):
    """Run the tiny app like launch.py: ``run(*overrides)`` -> CompletedProcess; its sweep dir."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "conf" / "config.yaml").write_text(
        textwrap.dedent(f"""\
        defaults:
          - cluster: local
          - _self_
        x: 0
        sleep: 0
        fail_first_attempt_of: null
        resume: skip_completed
        model: {{name: stand_in, resources: {{gpus: 0}}}}
        hydra:
          searchpath: [file://{REPO / "conf"}]
          sweep: {{dir: {tmp_path / "sweep"}, subdir: '${{hydra:job.override_dirname}}'}}
          job: {{config: {{override_dirname: {{exclude_keys: [cluster, cluster.wait, sleep, fail_first_attempt_of]}}}}}}
        """)
    )
    env = {**slurm_cluster.env, "PYTHONPATH": os.pathsep.join([str(agentgen_plugins_path), str(REPO)])}

    def run(*overrides: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(tmp_path / "app.py"), "-m", *overrides],
            cwd=tmp_path,
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    run.sweep_dir = tmp_path / "sweep"
    return run


def test_cluster_starts_fast_and_start_is_idempotent(slurm_cluster):
    if slurm_cluster.started_here:
        assert slurm_cluster.start_seconds < 30, f"start.sh took {slurm_cluster.start_seconds:.1f} s"
    info = slurm_cluster.run("sinfo", "-h", "-N", "-o", "%N %T %c")
    nodes = {name: (state, int(cpus)) for name, state, cpus in (line.split() for line in info.stdout.splitlines())}
    assert all(state in ("idle", "mixed", "allocated") for state, _ in nodes.values()), info.stdout
    assert all(cpus >= 1 for _, cpus in nodes.values()), info.stdout
    if slurm_cluster.dir is not None:
        assert sorted(nodes) == list(NODES), info.stdout  # start.sh's two node daemons on this host
    if slurm_cluster.dir is None:
        return  # an external cluster: not ours to restart
    t0 = time.monotonic()
    again = subprocess.run(
        ["bash", str(START), str(slurm_cluster.dir)], check=False, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - t0 < 10
    assert f"export SLURM_CONF={slurm_cluster.conf}" in again.stdout


def _square(x: int) -> tuple[int, str, str]:
    return x * x, os.environ["SLURM_ARRAY_TASK_ID"], os.environ["SLURM_ARRAY_JOB_ID"]


def test_submitit_job_array_runs_and_returns_results(slurm_cluster, tmp_path):
    import cloudpickle
    import submitit

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the node cannot import this test module
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(timeout_min=5, cpus_per_task=1, slurm_array_parallelism=2)
    jobs = executor.map_array(_square, [3, 4])
    results = [slurm_cluster.result(job) for job in jobs]
    assert [r[0] for r in results] == [9, 16]
    assert sorted(r[1] for r in results) == ["0", "1"]
    assert len({r[2] for r in results}) == 1  # one array
    assert all(str(job.job_id).startswith(results[0][2] + "_") for job in jobs)


def test_launcher_runs_sweep_as_array_then_skips_completed_jobs(tiny_app):
    proc = tiny_app("x=1,2", "cluster=slurm")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sweep = tiny_app.sweep_dir
    outs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.startswith("x="))
    assert [p.name for p in outs] == ["x=1", "x=2"]
    results = [json.loads((p / "summary.json").read_text()) for p in outs]
    assert [r["x"] for r in results] == [1, 2]
    assert sorted(r["array_task"] for r in results) == ["0", "1"]
    assert all(r["cluster"] == "slurm" and r["gpus_per_node"] == 0 for r in results)  # no GRES on this node
    records = manifest.load(sweep)
    assert sorted(Path(o).name for o in records) == ["x=1", "x=2"]
    assert len({r.slurm_job_id.split("_")[0] for r in records.values()}) == 1
    states = sweep_status(sweep)
    assert [(s.num, s.state) for s in states] == [(0, "completed"), (1, "completed")]

    lines_before = (sweep / manifest.FILENAME).read_text()
    again = tiny_app("x=1,2", "cluster=slurm")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (again.stdout + again.stderr).count("already completed, skipped") == 2
    assert (sweep / manifest.FILENAME).read_text() == lines_before  # nothing resubmitted


def test_rerunning_a_sweep_resubmits_only_its_unfinished_jobs(tiny_app):
    first = tiny_app("x=1,2", "fail_first_attempt_of=2", "cluster=slurm")
    assert first.returncode != 0 and "first attempt fails" in first.stdout + first.stderr
    sweep = tiny_app.sweep_dir
    assert [(s.num, s.state) for s in sweep_status(sweep)] == [(0, "completed"), (1, "failed")]
    before = manifest.load(sweep)

    again = tiny_app("x=1,2", "fail_first_attempt_of=2", "cluster=slurm")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (again.stdout + again.stderr).count("already completed, skipped") == 1
    after = manifest.load(sweep)
    x1, x2 = str(sweep / "x=1"), str(sweep / "x=2")
    assert after[x1] == before[x1] and after[x2].slurm_job_id != before[x2].slurm_job_id  # only x=2 resubmitted
    result = json.loads((sweep / "x=2" / "summary.json").read_text())
    assert result["status"] == "completed" and result["attempt"] == 2  # same output dir, second attempt
    assert [(s.num, s.state) for s in sweep_status(sweep)] == [(0, "completed"), (1, "completed")]


def test_launcher_fails_a_job_that_ended_without_a_result_instead_of_waiting_forever(tiny_app, slurm_cluster):
    """Without Slurm accounting submitit cannot tell that a job ended without a result (cancelled, killed
    at its time limit, out of memory): agentgen's launcher watches the queue and fails it with its state."""
    import threading

    def cancel_when_running() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            records = manifest.load(tiny_app.sweep_dir) if tiny_app.sweep_dir.exists() else {}
            ids = [r.slurm_job_id for r in records.values()]
            if ids and slurm_cluster.run("squeue", "-h", "-r", "-j", ids[0], "-o", "%T").stdout.strip() == "RUNNING":
                slurm_cluster.run("scancel", ids[0])
                return
            time.sleep(0.5)

    canceller = threading.Thread(target=cancel_when_running, daemon=True)
    canceller.start()
    t0 = time.monotonic()
    proc = tiny_app("x=3", "sleep=300", "cluster=slurm", timeout=150)
    canceller.join(timeout=5)
    assert proc.returncode != 0
    assert "ended (CANCELLED) without a result" in proc.stderr, proc.stderr[-3000:]
    assert "Re-running the sweep resumes it" in proc.stderr
    assert time.monotonic() - t0 < 120  # reported, not waited on for the job's 300 s (or forever)


def test_launcher_without_wait_returns_at_submission(tiny_app):
    t0 = time.monotonic()
    proc = tiny_app("x=7", "sleep=12", "cluster=slurm", "cluster.wait=false")
    returned_after = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cluster.wait=false: not waiting" in proc.stdout
    out = tiny_app.sweep_dir / "x=7"
    assert not (out / "summary.json").exists(), f"the launcher waited for the job ({returned_after:.0f} s)"
    assert sweep_status(tiny_app.sweep_dir)[0].state in ("pending", "configuring", "running")

    again = tiny_app("x=7", "sleep=12", "cluster=slurm", "cluster.wait=false")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "not resubmitted" in again.stdout + again.stderr
    assert len((tiny_app.sweep_dir / manifest.FILENAME).read_text().splitlines()) == 1

    status = subprocess.run(
        [sys.executable, "-m", "agentgen.cluster.status", str(tiny_app.sweep_dir)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0 and "x=7" in status.stdout
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sweep_status(tiny_app.sweep_dir)[0].state != "completed":
        time.sleep(2)
    assert sweep_status(tiny_app.sweep_dir)[0].state == "completed"
    assert json.loads((out / "summary.json").read_text())["x"] == 7


def test_launcher_refuses_a_model_needing_more_gpus_than_the_preset(tiny_app):
    proc = tiny_app("x=1,2", "model.resources.gpus=8", "cluster=slurm_1gpu")
    assert proc.returncode != 0
    assert "2 job(s) need more GPUs" in proc.stderr and "model=stand_in needs 8 GPU(s)" in proc.stderr
    assert not (tiny_app.sweep_dir / manifest.FILENAME).exists()  # nothing was submitted


def test_default_state_dir_and_ports_are_per_checkout_and_per_run():
    """No cluster needed: two checkouts, or two runs of one checkout, get different state dirs; the port
    search starts apart for them and skips ports in use."""
    import socket

    here = run_dir()
    assert here == run_dir(REPO, os.getpid()) and str(os.getpid()) in here.name
    assert run_dir(REPO, 1) != run_dir(REPO, 2) and run_dir(Path("/a/checkout"), 1) != run_dir(REPO, 1)
    first = free_ports("checkout-a:1")
    assert first % 3 == 2 and 20000 <= first < 40000  # slurmctld, n1's and n2's slurmd: 3 ports from 20000 on
    assert free_ports("checkout-a:1") == first and free_ports("checkout-b:1") != first
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("", first + 2))  # n2's slurmd port taken: the three are skipped
        assert free_ports("checkout-a:1") == first + 3
