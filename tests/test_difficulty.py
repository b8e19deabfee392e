"""Difficulty levels from config (papers.md B: train on easy, evaluate on hard): each level's params
reach the env and the instances honour them; evaluation can use another level than training."""

from agentgen.augment import env_kwargs
from agentgen.config import env_config, validate
from agentgen.envs import make
from agentgen.envs.webshop.env import goal_requirements
from agentgen.preflight import compose_job


def built(overrides, name, for_eval=False, split="train"):
    cfg = compose_job(overrides)
    validate(cfg)
    return make(name, split=split, **env_kwargs(env_config(cfg, name, for_eval=for_eval)))


def test_sokoban_easy_train_hard_eval():
    over = ["env.sokoban.difficulty=easy", "+eval.env_overrides.sokoban.difficulty=hard"]
    easy = built(over, "sokoban")
    hard = built(over, "sokoban", for_eval=True, split="test")
    for seed in range(20):
        assert easy.reset(seed)[1]["optimal_len"] <= 6
        assert 7 <= hard.reset(seed)[1]["optimal_len"] <= 15


def test_webshop_levels_by_goal_requirements():
    easy = built(["env=webshop", "env.webshop.difficulty=easy"], "webshop")
    hard = built(["env=webshop", "env.webshop.difficulty=hard"], "webshop")
    assert easy.goals and hard.goals
    assert all(goal_requirements(g) <= 3 for g in easy.goals)
    assert all(goal_requirements(g) >= 4 for g in hard.goals)


def test_unknown_level_is_a_config_error():
    import pytest

    from agentgen.config import ConfigError

    with pytest.raises(ConfigError, match="difficulty='medium'.*easy, hard"):
        validate(compose_job(["env.sokoban.difficulty=medium"]))
