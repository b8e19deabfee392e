"""ALFWorld env: protocol (reset, invalid actions, rewards, truncation), the repaired handcoded expert,
the loader of json_2.1.1-style data folders, and the engine speed-ups leaving the game unchanged."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from agentgen.envs import make
from agentgen.envs.alfworld import AlfWorldEnv
from agentgen.envs.alfworld.generate import generate_dataset
from agentgen.envs.alfworld.problem import TASK_TYPES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REWARD = {"success": 10.0, "failure": 0.0, "invalid": -0.1}
TWO_TYPES = ["pick_two_obj_and_place", "pick_heat_then_place_in_recep"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("alfworld-cache"))


def _env(cache_dir, split="train", max_steps=50, task_types=TWO_TYPES, counts=None, **kw):
    return AlfWorldEnv(split=split, max_steps=max_steps, reward=REWARD, source="generated",
                       num_generated_games=counts or {"train": 2, "test": 1}, task_types=task_types,
                       cache_dir=cache_dir, progress=False, **kw)


@pytest.fixture(scope="module")
def env(cache_dir):
    env = _env(cache_dir)
    yield env
    env.close()


def _walkthrough(game_file):
    with open(game_file) as f:
        return json.load(f)["walkthrough"]


# ----------------------------------------------------------------------------- config and protocol
def test_config_file_builds_the_env_through_the_registry(cache_dir):
    cfg = OmegaConf.load(os.path.join(REPO, "conf", "env", "alfworld.yaml"))
    with open(os.path.join(REPO, "conf", "env", "alfworld.yaml")) as f:
        assert f.readline().strip() == "# @package env.alfworld"
    assert (cfg.max_steps, cfg.max_prompt_tokens, cfg.max_response_tokens) == (50, 2048, 512)  # papers.md A
    assert cfg.params.test_split == "valid_unseen" and list(cfg.params.task_types) == list(TASK_TYPES)
    params = OmegaConf.to_container(cfg.params)
    params.update(source="generated", cache_dir=cache_dir, task_types=TWO_TYPES,
                  num_generated_games={"train": 2, "test": 1}, progress=False)
    env = make("alfworld", "train", max_steps=cfg.max_steps, reward=OmegaConf.to_container(cfg.reward), **params)
    try:
        assert isinstance(env, AlfWorldEnv) and env.source == "generated" and len(env.game_files) == 2
    finally:
        env.close()


def test_reset_is_deterministic_and_shows_task_and_commands(env):
    obs, info = env.reset(0)
    again, info2 = env.reset(0)
    assert obs == again and info["game_file"] == info2["game_file"] == env.game_file(0)
    assert obs.startswith("You are in the middle of a room. Looking quickly around you, you see")
    assert "Welcome to TextWorld" not in obs
    assert info["task"] == env.task_description() and f"Your task is to: {info['task']}" in obs
    assert info["task_type"] in TWO_TYPES
    actions = info["admissible_actions"]
    assert actions == env.admissible_actions() and "help" not in actions
    assert {"look", "inventory"} <= set(actions) and any(a.startswith("go to ") for a in actions)
    assert info["success"] is False and info["invalid_action"] is False
    other, _ = env.reset(1)
    assert env.game_file(1) != env.game_file(0) and other != obs
    assert env.game_file(2) == env.game_file(0)  # seeds wrap around the game list


def test_invalid_actions_cost_the_penalty_and_change_nothing(env):
    _, info = env.reset(0)
    before = info["admissible_actions"]
    for bad in ("fly to the moon", "help", "go to the fridge please"):
        obs, reward, done, info = env.step(bad)
        assert (obs, reward, done, info["invalid_action"]) == ("Nothing happens.", -0.1, False, True)
        assert info["admissible_actions"] == before
    target = next(a for a in before if a.startswith("go to "))
    obs, reward, done, info = env.step("  " + target.upper().replace(" ", "   ") + " ")
    assert info["invalid_action"] is False and reward == 0.0
    assert obs.startswith("You arrive at " + target[len("go to "):])


def test_winning_pays_the_success_reward(env):
    _, info = env.reset(1)
    walkthrough = _walkthrough(info["game_file"])
    rewards = []
    for command in walkthrough:
        _, reward, done, info = env.step(command)
        rewards.append(reward)
    assert done and info["success"] and not info["truncated"]
    assert rewards[-1] == 10.0 and set(rewards[:-1]) <= {0.0}
    assert info["raw_reward"] == 1.0
    with pytest.raises(RuntimeError, match="finished episode"):
        env.step("look")


def test_episode_is_truncated_at_max_steps(cache_dir):
    short = _env(cache_dir, max_steps=3, task_types=["pick_and_place_simple"], counts={"train": 1, "test": 1})
    try:
        short.reset(0)
        results = [short.step("look") for _ in range(3)]
        assert [r[2] for r in results] == [False, False, True]
        _, reward, _, info = results[-1]
        assert info["truncated"] and not info["success"] and reward == 0.0
        assert info["admissible_actions"] is None
        assert short.expert_action() is None  # nothing to suggest on a finished episode
    finally:
        short.close()


def test_close_releases_the_engine_and_reset_reopens_it(cache_dir):
    env = _env(cache_dir)
    env.reset(0)
    env.close()
    assert env._engine is None
    obs, _ = env.reset(0)
    assert obs.startswith("You are in the middle of a room")
    env.close()


def test_bad_parameters_are_rejected_with_the_valid_values(cache_dir):
    for kw, message in (
        ({"source": "web"}, "source must be one of"),
        ({"test_split": "test"}, "test_split must be one of .*valid_unseen"),
        ({"task_types": ["pick_and_place"]}, "unknown alfworld task type.*pick_and_place_simple"),
        ({"num_generated_games": {"train": 0}}, "num_generated_games must map"),
    ):
        with pytest.raises(ValueError, match=message):
            AlfWorldEnv(split="train", cache_dir=cache_dir, **kw)


# ----------------------------------------------------------------------------- the expert
def test_expert_solves_and_explains_its_steps(env):
    for seed in (0, 1):
        env.reset(seed)
        done, steps, thoughts = False, 0, []
        while not done:
            action, thought = env.expert_action(), env.expert_thought()
            assert action in env.admissible_actions()
            thoughts.append(thought)
            _, reward, done, info = env.step(action)
            steps += 1
        assert info["success"] and reward == 10.0 and steps <= env.max_steps
        assert all(t and t.startswith("Step ") for t in thoughts)
        # the same episode as the one that validated the game (same expert random stream)
        assert steps == len(_walkthrough(env.game_file(seed)))


def test_expert_picks_up_after_the_agent_wandered(cache_dir):
    env = _env(cache_dir, max_steps=100, task_types=["pick_two_obj_and_place"], counts={"train": 1, "test": 1})
    try:
        rng = random.Random(0)
        for seed in range(3):
            env.reset(seed)
            for _ in range(6):  # the agent wanders (taking and moving things around), then asks the expert
                env.step(rng.choice(env.admissible_actions()))
            done = env.done
            while not done:
                action = env.expert_action()
                assert action is not None and env.expert_thought()
                _, _, done, info = env.step(action)
            assert info["success"], f"seed {seed}"
    finally:
        env.close()


def test_repaired_expert_notices_move_as_put(env):
    """alfworld 0.4.2's tracking only recognises 'put'; the grammar says 'move X to Y'."""
    from alfworld.agents.expert import HandCodedTWAgent

    from agentgen.envs.alfworld.engine import close_engine, open_engine
    from agentgen.envs.alfworld.expert import FixedHandCodedTWAgent

    game = next(g for g in env.game_files if "pick_two_obj_and_place" in g)
    engine = open_engine()
    try:
        engine.load(game)
        state = engine.reset()
        agents = [HandCodedTWAgent(max_steps=200), FixedHandCodedTWAgent(max_steps=200)]
        for agent in agents:
            agent.reset(game)
            agent.observe(state["feedback"])
        walkthrough = _walkthrough(game)
        first_move = next(i for i, c in enumerate(walkthrough) if c.startswith("move "))
        for command in walkthrough[: first_move + 1]:
            state, _, _ = engine.step(command)
            for agent in agents:
                agent.policy.update_state_tracking(state, command)
        original, repaired = (a.policy for a in agents)
        assert original.inventory  # still believes it holds the object it put down
        assert repaired.inventory == []
    finally:
        close_engine(engine)


@pytest.mark.slow
def test_expert_solves_every_task_type_in_seen_and_unseen_rooms(cache_dir):
    solved = {}
    for split, counts in (("train", {"train": 12, "test": 1}), ("test", {"train": 1, "test": 6})):
        env = _env(cache_dir, split=split, task_types=list(TASK_TYPES), counts=counts)
        try:
            for seed in range(len(env.game_files)):
                _, info = env.reset(seed)
                done = False
                while not done:
                    _, _, done, info = env.step(env.expert_action())
                solved.setdefault(env._task_type(env.game_file(seed)), []).append(info["success"])
        finally:
            env.close()
    assert sorted(solved) == sorted(TASK_TYPES)
    assert all(all(v) for v in solved.values()), solved
    assert sum(len(v) for v in solved.values()) == 18


# ----------------------------------------------------------------------------- released-data loader
def test_loader_reads_a_json_2_1_1_folder(tmp_path, monkeypatch):
    root = tmp_path / "alfworld_data"
    generate_dataset(str(root), {"train": 2, "valid_seen": 1, "valid_unseen": 1}, seed=5,
                     task_types=["pick_and_place_simple"], progress=False)
    kw = {"max_steps": 50, "reward": REWARD, "task_types": ["pick_and_place_simple"], "progress": False}
    train = AlfWorldEnv("train", data_dir=str(root), source="data", **kw)
    test = AlfWorldEnv("test", data_dir=str(root), **kw)
    seen = AlfWorldEnv("test", data_dir=str(root), test_split="valid_seen", **kw)
    monkeypatch.setenv("ALFWORLD_DATA", str(root))
    from_env_var = AlfWorldEnv("train", **kw)
    try:
        assert train.source == test.source == seen.source == from_env_var.source == "data"
        assert len(train.game_files) == 2 and from_env_var.game_files == train.game_files
        assert all("/json_2.1.1/train/" in g for g in train.game_files)
        assert all("/json_2.1.1/valid_unseen/" in g for g in test.game_files)
        assert all("/json_2.1.1/valid_seen/" in g for g in seen.game_files)
        assert not set(train.game_files) & set(test.game_files)
        obs, info = test.reset(0)
        assert info["game_file"] == test.game_files[0] and "Your task is to:" in obs
    finally:
        for e in (train, test, seen, from_env_var):
            e.close()
    with pytest.raises(FileNotFoundError, match="json_2.1.1"):
        AlfWorldEnv("train", data_dir=str(tmp_path / "nowhere"), source="data", **kw)


def test_engine_speedups_leave_the_game_unchanged(env, tmp_path):
    script = (
        "import json, random, sys\n"
        "from agentgen.envs.alfworld.engine import open_engine\n"
        "game, out = sys.argv[1], sys.argv[2]\n"
        "e = open_engine(); e.load(game); s = e.reset(); rng = random.Random(0)\n"
        "log = [s['feedback'], s['admissible_commands']]\n"
        "for _ in range(8):\n"
        "    c = rng.choice([c for c in s['admissible_commands'] if c != 'help'])\n"
        "    s, _, _ = e.step(c)\n"
        "    log.append([c, s['feedback'], s['admissible_commands'], sorted(map(str, s['facts']))])\n"
        "s = e.reset(); log.append([s['feedback'], s['admissible_commands']])\n"
        "json.dump(log, open(out, 'w'))\n"
    )
    outputs = []
    for flag in ("0", "1"):
        out = tmp_path / f"log{flag}.json"
        result = subprocess.run(
            [sys.executable, "-c", script, env.game_files[0], str(out)], check=False, cwd=REPO, capture_output=True,
            text=True, timeout=300, env={**os.environ, "AGENTGEN_ALFWORLD_NO_SPEEDUPS": flag},
        )
        assert result.returncode == 0, result.stderr
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1]
