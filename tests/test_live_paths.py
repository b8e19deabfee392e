"""Paths the production runner takes, checked through the composed config the runner sees (agentgen.run's own
helpers): the ScalingInter turn limit that caps training episodes, and env.<name>.instances=<file>:<level>."""

from __future__ import annotations

import json

import pytest

from agentgen.config import env_config, instance_subset
from agentgen.phases.rl_phase import step_turn_limit as _turn_limit
from agentgen.preflight import compose_job


@pytest.mark.parametrize("rounds,limits", [
    ("[10,20,30]", [10, 10, 20, 20, 30, 30]),
    ("[10]", [10] * 6),
    ("[30]", [30] * 6),
])
def test_scaling_inter_sweep_caps_training_episodes_by_stage(rounds, limits):
    """+sweeps=scaling_inter as one job of its grid: run._turn_limit (what the runner passes to the env
    runners each step) follows the schedule, stage = step // phase (100), capped by the env's max_steps."""
    cfg = compose_job(["+sweeps=scaling_inter", "env=sciworld", "env.sciworld.max_steps=30",
                       f"trainer.max_turns_schedule.rounds={rounds}"])
    ec = env_config(cfg, "sciworld")
    assert [_turn_limit(cfg, step, ec) for step in (0, 99, 100, 199, 200, 299)] == limits
    short = env_config(compose_job(["+sweeps=scaling_inter", "env=sciworld", "env.sciworld.max_steps=15",
                                    f"trainer.max_turns_schedule.rounds={rounds}"]), "sciworld")
    assert _turn_limit(cfg, 299, short) == min(15, limits[-1])
    plain = compose_job(["env=sciworld"])  # no schedule: the env's own limit
    assert _turn_limit(plain, 299, env_config(plain, "sciworld")) == env_config(plain, "sciworld").max_steps


def test_instances_file_level_selects_that_levels_seeds_per_split(tmp_path):
    """env.<name>.instances=<file>:easy trains on the easy seeds and evaluates on the easy test seeds; :hard
    on the hard ones (distinct seeds, so a swapped or ignored level fails here)."""
    levels = tmp_path / "difficulty.json"
    levels.write_text(json.dumps({"train": {"easy": [1, 2, 3], "hard": [70, 80]},
                                  "test": {"easy": [5], "hard": [90, 91]}}))
    for level, train, test in (("easy", [1, 2, 3], [5]), ("hard", [70, 80], [90, 91])):
        cfg = compose_job(["env=sokoban", f"env.sokoban.instances={levels}:{level}"])
        ec = env_config(cfg, "sokoban")
        assert instance_subset(ec, "train") == train
        assert instance_subset(env_config(cfg, "sokoban", for_eval=True), "test") == test
    assert instance_subset(env_config(compose_job(["env=sokoban"]), "sokoban"), "train") is None
    with pytest.raises(ValueError, match="no 'train' instances at level 'medium'; levels there: easy, hard"):
        instance_subset(env_config(compose_job(["env=sokoban", f"env.sokoban.instances={levels}:medium"]),
                                   "sokoban"), "train")


def test_documented_sft_sources_override_composes():
    """The documented `sft.sources.<env>=<checkpoint>` (README, conf/sft/midtrain.yaml, conf/experiment/ckpt_v2.yaml,
    sweeps/starts.yaml) composes: sft=midtrain lists the study's envs, each from its expert by default."""
    cfg = compose_job(["+experiment=ckpt_v2", "sft.sources.alfworld=/a/job"])
    assert cfg.sft.sources.alfworld == "/a/job" and cfg.sft.sources.webshop == "expert"
