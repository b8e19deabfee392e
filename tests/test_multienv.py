"""Multi-environment training on the tiny model (debug=smoke): sequential stages with per-stage
evaluation of every env, a mixture run with per-env rollout metrics, and the difficulty split."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVAL_ENVS = "eval.envs=[sokoban,webshop]"


def launch(*args: str, cwd: Path) -> None:
    r = subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], capture_output=True, text=True,
                       timeout=900, cwd=cwd)
    assert r.returncode == 0, r.stderr[-4000:]


@pytest.mark.slow
def test_two_stage_sequential_run(tmp_path):
    out = tmp_path / "seq"
    launch("debug=smoke", "sft=none", "stages=[{env:sokoban,steps:1},{env:webshop,steps:1}]", EVAL_ENVS,
           f"hydra.run.dir={out}", cwd=tmp_path)
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["train_env"] == "sokoban>webshop"
    assert [st["env"] for st in s["stages"]] == ["sokoban", "webshop"]
    assert [st["end_step"] for st in s["stages"]] == [1, 2]
    for st in s["stages"]:
        assert set(st["eval"]) == {"sokoban", "webshop"}
    assert s["train"]["steps"] == 2 and [h["step"] for h in s["eval_history"]] == [1, 2]


@pytest.mark.slow
def test_mixture_run_logs_per_env_metrics(tmp_path):
    out = tmp_path / "mix"
    launch("debug=smoke", "sft=none", "env=[sokoban,webshop]", "trainer.steps=1", EVAL_ENVS,
           f"hydra.run.dir={out}", cwd=tmp_path)
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["train_env"] == "sokoban+webshop"
    final = s["train"]["final"]
    assert "rollout/sokoban/success_rate" in final and "rollout/webshop/success_rate" in final
    assert final["rollout/sokoban/episodes"] == final["rollout/webshop/episodes"] == 2  # one group each


def test_mixture_shares_set_through_env_share_split_the_groups(tmp_path):
    """env.sokoban.share=3 with webshop at 1: of 4 groups a step, 3 are Sokoban's and 1 WebShop's (the
    1:1 default would split them 2:2)."""
    out = tmp_path / "mix31"
    launch("debug=smoke", "sft=none", "env=[sokoban,webshop]", "env.sokoban.share=3", "trainer.steps=1",
           "trainer.prompts_per_step=4", "eval.envs=[sokoban]", "eval.episodes_per_env={sokoban: 1}", "logger=none",
           f"hydra.run.dir={out}", cwd=tmp_path)
    final = json.loads((out / "summary.json").read_text())["train"]["final"]
    assert (final["rollout/sokoban/episodes"], final["rollout/webshop/episodes"]) == (3 * 2, 1 * 2)  # group of 2


@pytest.mark.slow
def test_difficulty_split_then_train_on_easy(tmp_path):
    out = tmp_path / "split"
    launch("task=split", "debug=smoke", "split.instances=3", "split.attempts=2", "logger=none",
           f"hydra.run.dir={out}", cwd=tmp_path)
    d = json.loads((out / "difficulty.json").read_text())
    for split in ("train", "test"):
        assert sorted(d[split]["easy"] + d[split]["hard"]) == [0, 1, 2]
        assert set(d[split]["rates"]) == {"0", "1", "2"}


def test_group_assignment_follows_shares():
    from agentgen.phases.rl_phase import assign_groups as _assign_groups
    from agentgen.phases.sft_phase import mix_by_state_action_pairs as _mix_by_state_action_pairs

    owner = _assign_groups(list(range(8)), ["a", "b"], [3.0, 1.0])
    assert sum(v == "a" for v in owner.values()) == 6 and sum(v == "b" for v in owner.values()) == 2
    import random

    recs = [("sciworld", 19.0, [{"env": "sciworld"}] * 190), ("alfworld", 3.0, [{"env": "alfworld"}] * 100),
            ("webshop", 1.0, [{"env": "webshop"}] * 50)]
    mixed = _mix_by_state_action_pairs(recs, random.Random(0))
    counts = {e: sum(r["env"] == e for r in mixed) for e in ("sciworld", "alfworld", "webshop")}
    assert counts == {"sciworld": 190, "alfworld": 30, "webshop": 10}  # 19 : 3 : 1 in state-action pairs
