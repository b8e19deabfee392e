"""Gold-path replay through SciWorldEnv on all 30 tasks (variation 0), one JVM for all of them."""

from __future__ import annotations

import pytest
from conftest import require

from agentgen.envs.sciworld import SciWorldEnv
from agentgen.envs.sciworld.tasks import TASKS


def replay_expert(env: SciWorldEnv) -> tuple[int, dict, float]:
    total, info = 0.0, {}
    while not env.done:
        action = env.expert_action()
        assert action is not None, f"gold path ran out before the episode ended ({env.instance})"
        _, reward, _, info = env.step(action)
        total += reward
    return env.steps, info, total


@pytest.mark.slow
@pytest.mark.jvm
def test_gold_paths_that_fit_50_steps_solve_every_task():
    require("java")
    fitting, longer = [], []
    with SciWorldEnv("train", max_steps=50, tasks=None) as env:
        for task in TASKS:
            env.reset(env.seed_for_instance(task.name, 0))
            gold = env.gold_actions()
            assert gold, task.name
            steps, info, total = replay_expert(env)
            if len(gold) <= env.max_steps:
                fitting.append(task.name)
                assert info["success"] and info["score"] == 100, (task.name, steps, info["score"])
                assert total == pytest.approx(10.0), task.name  # no invalid gold action, one success bonus
            else:  # the gold agent often waits longer than needed: solved in time, or cut at our limit
                longer.append(task.name)
                assert info["success"] or (info["truncated"] and steps == 50), (task.name, steps, info)
        rss = env._engine.memory_rss()
    assert len(fitting) >= 23, (fitting, longer)
    assert rss < 1.2e9, f"JVM resident memory {rss / 1e6:.0f} MB with -Xmx768m"


@pytest.mark.slow
@pytest.mark.jvm
def test_episodes_may_run_past_the_packages_100_step_limit():
    """The package's wrapper stops games after 100 moves; ours governs alone (here 200)."""
    require("java")
    with SciWorldEnv("train", max_steps=200, tasks=["inclined-plane-friction-unnamed-surfaces"]) as env:
        env.reset(env.seed_for_instance("inclined-plane-friction-unnamed-surfaces", 0))
        steps, info, _ = replay_expert(env)
        assert info["success"] and steps > 100 and env.engine.num_moves() > 100
