"""What a job leaves for benchmarks and notebooks besides summary.json: per-step metrics (metrics.jsonl),
per-episode evaluation records on the same held-out instances at every evaluation, wall time per phase, and
``trainer.time_budget_s`` ending RL early with a checkpoint and an evaluation at the step reached."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_records_timing_and_time_budget(tmp_path):
    out = tmp_path / "run"
    # a 1 ms budget ends RL after its first step of 5 (a smoke step may take under a second);
    # eval.before_training gives a step-0 evaluation
    r = subprocess.run([sys.executable, str(ROOT / "launch.py"), "debug=smoke", "eval.envs=[sokoban]", "logger=none",
                        "trainer.steps=5", "trainer.time_budget_s=0.001", "eval.before_training=true", "eval.every=0",
                        "eval.episodes_per_env.sokoban=3", f"hydra.run.dir={out}"], capture_output=True, text=True,
                       timeout=900, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-4000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["train"]["steps"] == 1
    assert [h["step"] for h in s["eval_history"]] == [0, 1]  # before RL, then at the step the budget ended
    assert (out / "checkpoints" / "latest").read_text() == "step_1"
    assert set(s["timing"]) == {"sft", "rl", "eval"} and all(v > 0 for v in s["timing"].values())
    assert s["timing"]["rl"] >= 0.001 and sum(s["timing"].values()) <= s["wall_seconds"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1] and "rollout/success_rate" in rows[0] and "time/update_s" in rows[0]
    # where the step's time went (bench/bench_rl_step.py's table): the engine, prompts and parsing, the env pool
    row = rows[0]
    assert row["time/generate_s"] > 0 and row["time/prompt_s"] >= 0 and row["time/env_s"] > 0
    assert row["time/generate_s"] + row["time/prompt_s"] + row["time/env_s"] <= row["time/rollout_s"]
    assert row["tokens/prompt"] > row["tokens/generated"] > 0 and row["tokens/trained"] > 0
    assert "rollout/logprob_gap_mean" in row and row["rollout/logprob_gap_max"] < 1e-3  # rollout=hf, fp32
    for step in (0, 1):  # the same held-out instances at every evaluation, one record per episode
        recs = [json.loads(line) for line in (out / "eval_episodes" / "sokoban" / f"step_{step}.jsonl").read_text()
                .splitlines()]
        assert [x["seed"] for x in recs] == [0, 1, 2]
        assert {"success", "return", "steps", "aborted"} <= set(recs[0])
        assert sum(x["success"] for x in recs) / 3 == pytest.approx(
            next(h for h in s["eval_history"] if h["step"] == step)["eval"]["sokoban"]["success_rate"])


def test_time_budget_must_be_positive(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "launch.py"), "trainer.time_budget_s=0", "logger=none",
                        f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 2 and "trainer.time_budget_s" in r.stderr + r.stdout and "Traceback" not in r.stderr
