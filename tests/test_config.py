"""Config errors fail fast through the real launcher: one paragraph naming the bad value and the valid
ones, exit code 2, no traceback, nothing run."""

import subprocess
import sys
from pathlib import Path

import pytest

from agentgen.cluster.plan import make_plan
from agentgen.config import ConfigError, validate
from agentgen.preflight import compose_job

ROOT = Path(__file__).resolve().parent.parent


def launch(*args, tmp_path):
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args, f"hydra.run.dir={tmp_path}/run"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize("override,needles", [
    ("env=minecraft", ["env=minecraft", "sokoban", "alfworld", "sciworld", "webshop"]),
    ("think=maybe", ["think", "maybe", "true, false"]),
    ("trainer.steps=-3", ["trainer.steps=-3", ">= 0"]),
    ("algo=ppo2", ["algo=ppo2", "grpo"]),
    ("eval.envs=[sokoban,chess]", ["chess", "webshop"]),
    ("eval.before_training_envs=ood", ["eval.before_training_envs='ood'", "all", "train"]),
    ("algo.step_weight=trajectory", ["algo.step_weight='trajectory'", "step, episode"]),
    ("+model.env_params.chess.depth=3", ["model.env_params", "'chess'", "sokoban"]),
])
def test_bad_values_fail_fast(override, needles, tmp_path):
    r = launch(override, tmp_path=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    msg = r.stderr.strip()
    assert msg.startswith("agentgen: error:") and len(msg.splitlines()) == 1, msg
    for n in needles:
        assert n in msg, (n, msg)
    assert not (tmp_path / "run").exists()  # nothing ran


def test_bad_value_in_one_sweep_job_stops_all(tmp_path):
    r = launch("-m", "trainer.steps=2,-1", tmp_path=tmp_path)
    assert r.returncode == 2 and "trainer.steps=-1" in r.stderr
    assert not (tmp_path / "multirun").exists()


def test_sweep_expansion_and_defaults():
    plan = make_plan(["env=sokoban,sciworld", "think=true,false"], validate=validate)
    assert len(plan.jobs) == 4 and not plan.errors
    cfg = compose_job([])
    validate(cfg)
    assert cfg.model.name == "tiny" and list(cfg.env) == ["sokoban"] and cfg.think is True
    assert cfg.algo.name == "grpo" and cfg.algo.group_size == 8 and cfg.algo.kl_coef == 0.01
    assert cfg.eval.temperature == 0.4 and cfg.rollout.temperature == 1.0


def test_study_defaults_on_cluster_presets():
    cfg = compose_job(["model=llama3_1_8b_instruct"])
    t = cfg.trainer
    assert (t.steps, t.prompts_per_step, t.mini_batch_states, t.save_every, t.lr) == (150, 16, 256, 15, 1e-6)
    assert cfg.sft.lr == 5e-6 and cfg.sft.steps == 100 and cfg.sft.batch_size == 32
    assert cfg.env.sokoban.max_steps == 15 and cfg.env.sokoban.reward.invalid == -0.1


def test_resources_checked_against_cluster():
    cfg = compose_job(["model=llama3_1_8b_instruct"])
    cfg.cluster = {"name": "slurm_tiny", "gpus_per_node": 1, "nodes": 1}
    with pytest.raises(ConfigError, match="needs 8 GPU"):
        validate(cfg)


def test_model_caps_every_envs_answer_budget():
    from agentgen.config import env_config

    cfg = compose_job([])  # model=tiny: 128 tokens on top of the envs' 512 / 1024
    assert cfg.model.max_response_tokens == 128
    assert {env_config(cfg, e).max_response_tokens for e in ("sokoban", "alfworld", "sciworld", "webshop")} == {128}
    big = compose_job(["model.max_response_tokens=null"])
    assert env_config(big, "sciworld").max_response_tokens == 1024


def test_model_env_params_reach_the_env_where_it_is_used():
    from agentgen.config import env_config
    from agentgen.envs import make

    cfg = compose_job([])  # model=tiny: the stepwise expert's thought in Sokoban
    assert env_config(cfg, "sokoban").params.thought == "steps"
    assert "thought" not in env_config(cfg, "alfworld").params  # only the env it names
    assert make("sokoban", "test", **env_config(cfg, "sokoban").params).thought_style == "steps"
    plan = compose_job(["model.env_params.sokoban.thought=plan"])
    assert env_config(plan, "sokoban").params.thought == "plan"


def test_a_models_scale_sets_the_agents_history_and_the_command_line_wins():
    # conf/agent/ composes before conf/scale/<model>.yaml: the tiny model's scale (history_k 0) is what its runs use
    assert compose_job([]).agent.history_k == 0
    assert compose_job(["model=smollm2_135m"]).agent.history_k == 2  # the study's default
    assert compose_job(["agent.history_k=1"]).agent.history_k == 1
    assert compose_job(["model=tiny", "scale=study"]).agent.history_k == 2


def test_the_scale_follows_the_model_and_presets_hold_only_model_keys():
    from agentgen.config import CONF_DIR

    tiny, cluster = compose_job([]), compose_job(["model=qwen2_5_7b_instruct"])
    assert (tiny.trainer.steps, tiny.sft.steps, tiny.trainer.prompts_per_step) == (30, 3000, 4)
    assert (cluster.trainer.steps, cluster.sft.steps, cluster.trainer.prompts_per_step) == (150, 100, 16)
    assert compose_job(["model=smollm2_135m"]).trainer.steps == 4
    assert compose_job(["model=tiny", "scale=study"]).trainer.steps == 150
    assert compose_job(["model=qwen2_5_7b_instruct", "scale=tiny"]).trainer.steps == 30
    assert compose_job(["model=tiny", "debug=smoke"]).trainer.steps == 2  # debug composes after the scale
    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        assert path.read_text().startswith("# @package model\n"), path
