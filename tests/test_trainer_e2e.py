"""Every RL algorithm end to end through the real launcher on Sokoban with the tiny model
(``python launch.py algo=<name> debug=smoke eval.envs=[sokoban]``): the job completes, trains with the
algorithm's own machinery (critic, KL in the reward, trees) and writes its checkpoints; PPO's critic is
checkpointed with the policy and restored when the job resumes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Algorithm -> (extra overrides, metrics its training step must report)
CASES = {
    "grpo": ([], {"train/kl", "train/pg_loss"}),
    "rloo": ([], {"train/kl", "train/pg_loss"}),
    "ppo": ([], {"critic/vf_loss", "critic/grad_norm", "critic/returns_mean", "train/pg_loss"}),
    "reinforce_pp": ([], {"rollout/kl_in_reward", "train/pg_loss"}),
    "gigpo": ([], {"gigpo/shared_step_frac", "gigpo/step_groups", "train/kl", "train/pg_loss"}),
    "gspo": (["trainer.mini_batch_states=8"], {"train/ratio_mean", "train/clipfrac", "train/pg_loss"}),
    # a small forest keeps the run short: 2 trees, 1 round of 1 expansion -> 4 leaves per prompt
    "tree_grpo": (["algo.M=2", "algo.N=1", "algo.L=1"], {"tree/leaves_per_prompt", "tree/replayed_env_steps"}),
}


def launch(out: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # a tiny model only loses time to thread contention
    r = subprocess.run([sys.executable, str(ROOT / "launch.py"), "debug=smoke", "eval.envs=[sokoban]", "logger=none",
                        *overrides, f"hydra.run.dir={out}"], capture_output=True, text=True, timeout=900,
                       cwd=out.parent, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


@pytest.mark.slow
@pytest.mark.parametrize("algo", list(CASES))
def test_algorithm_runs_end_to_end(algo, tmp_path):
    extra, expected_metrics = CASES[algo]
    out = tmp_path / "run"
    launch(out, f"algo={algo}", *extra)
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["variant"]["algo"] == algo
    final = s["train"]["final"]
    assert expected_metrics <= set(final), sorted(final)
    assert final["rollout/generated_tokens_per_sample"] > 0 and final["rollout/env_steps_per_sample"] >= 1.0
    if algo == "gigpo":  # every group's first steps act in the same room: some steps share an anchor state
        assert final["gigpo/shared_step_frac"] > 0
    if algo == "tree_grpo":
        assert final["tree/leaves_per_prompt"] == 2 * (1 * 1 + 1)
        assert final["tree/replay_mismatches"] == 0
    assert (out / "checkpoints" / "latest").read_text() == "step_2"
    if algo == "ppo":  # the critic is saved next to the policy and restored when the job resumes
        critic = out / "checkpoints" / "step_2" / "critic"
        assert {p.name for p in critic.iterdir()} == {"model.safetensors", "optimizer.pt", "state.json"}
        assert json.loads((critic / "state.json").read_text())["step"] == 2
        r = launch(out, "algo=ppo", "trainer.steps=3", "eval.every=0", "resume=always")
        logs = r.stderr + (out / "launch.log").read_text()  # the job's log file (Hydra's) holds the INFO lines
        assert "resuming from" in logs and "critic restored from" in logs and "holds no critic" not in logs
        assert json.loads((out / "checkpoints" / "step_3" / "critic" / "state.json").read_text())["step"] == 3

