"""Environment profiling: the figures on hand-computed Sokoban cases, the job (profile.json, episodes
file, resume, wandb, report compatibility), the CLI, and the model policy through the rollout runner."""

from __future__ import annotations

import json

import pytest

from agentgen.agent.prompt import FORMAT_THINK, PromptBuilder
from agentgen.augment import parse_settings
from agentgen.augment.wrapper import AugmentedEnv
from agentgen.config import ConfigError, profile_config
from agentgen.envs.distractor_words import SOKOBAN_OBJECTS, SOKOBAN_PLACES, with_article
from agentgen.envs.factory import EnvFactory
from agentgen.envs.pool import EnvPool, as_factory
from agentgen.envs.sokoban import SokobanEnv, parse_grid, solve
from agentgen.phases.profile_phase import EPISODES_FILE, PROFILE_FILE, play_scripted, summarize
from agentgen.profile import compose_config, main, run_profile

# Two hand-made rooms: even seeds play A (solved by Right, Right), odd seeds play B (the box is stuck in
# a corner: no solution, so the expert has no action and the trajectory fails at once).
ROOM_A = "######\n#P_XO#\n######"
ROOM_B = "######\n#XP_O#\n######"
# Every observation of room A has 270 characters: 14 walls "Wall at (r, c)" (14 characters each) joined by
# ", " = 14 * 14 + 13 * 2 = 222, then "\nBox at (1, 3)" (1 + 13), "\nTarget at (1, 4)" (1 + 16) and
# "\nPlayer at (1, c)" (1 + 16): 222 + 14 + 17 + 17 = 270.
ROOM_A_CHARS = 270


class HandSokoban(SokobanEnv):
    """Sokoban on the two hand-made rooms above (test instances, not a generator)."""

    def _reset(self, seed):
        room, state = parse_grid(ROOM_B if seed % 2 else ROOM_A)
        self._forced = (room, state)
        try:
            obs, info = super()._reset(seed)
        finally:
            self._forced = None
        plan = solve(room, state)
        if plan is not None:
            info["optimal_len"] = len(plan)
        return obs, info


HAND = f"{__name__}:HandSokoban"
PROMPTS = PromptBuilder(think=True, history_k=2)


def profile_hand(policy, seeds, tmax, max_steps=15, augment=None):
    kwargs = {"max_steps": max_steps}
    factory = as_factory(HAND, kwargs)
    if augment:
        factory = EnvFactory(HAND, AugmentedEnv, {"inner": factory, "augment": augment})
    with EnvPool(factory, None, split="train", num_slots=2, num_workers=0) as pool:
        trajs = play_scripted(pool, policy, seeds, tmax, PROMPTS)
    return trajs, summarize(trajs, tmax)


def test_room_a_observation_has_the_hand_counted_length():
    env = HandSokoban(max_steps=15)
    obs, info = env.reset(0)
    assert len(obs) == ROOM_A_CHARS and info["optimal_len"] == 2
    assert len(env.step("Right")[0]) == ROOM_A_CHARS


def test_expert_profile_on_hand_rooms():
    # A: 2 steps, success; B: no expert action, failure counted as Tmax = 5 steps; seeds 0-3 = A, B, A, B.
    trajs, row = profile_hand("expert", [0, 1, 2, 3], tmax=5)
    assert [(t.seed, t.success, t.steps) for t in trajs] == [
        (0, True, 2),
        (1, False, 0),
        (2, True, 2),
        (3, False, 0),
    ]
    assert row["avg_steps"] == pytest.approx((2 + 5 + 2 + 5) / 4)  # 3.5
    assert row["success_rate"] == pytest.approx(0.5)
    assert row["avg_obs_chars"] == pytest.approx(ROOM_A_CHARS)  # 2 states per A episode, all 270 characters
    assert row["states"] == 4
    # The agent's input per state (avg_chars) is the user prompt. At step 1 it is the instruction, "Your
    # task: <task>", "[Current observation, step 1]\n" + observation, "Admissible actions: Up, Down, Left,
    # Right" and the format line, joined by blank lines: 2 + 11 + 2 + 30 + 270 + 2 + 41 + 2 = 360 characters
    # besides the instruction, task and format line. Step 2 adds the history block "Previous steps (last
    # 1):\n[Step 1 observation]\n" (46) + observation (270) + "\n[Step 1 action] Right" (22) + a blank
    # line (2) = 340 characters. Two states of each kind: mean = step-1 length + 170.
    env = HandSokoban(max_steps=15)
    env.reset(0)
    step1 = len(env.instruction()) + len(env.task_description()) + len(FORMAT_THINK) + 360
    assert row["avg_chars"] == pytest.approx(step1 + 170)
    assert row["optimal_len"] == pytest.approx(2.0)  # known for A only
    assert row["avg_success_steps"] == pytest.approx(2.0)
    assert (row["episodes"], row["tmax"], row["augmented_fraction"]) == (4, 5, 0.0)


def test_tmax_and_the_env_step_limit_both_end_trajectories_as_failures():
    # Tmax 1: the 2-step room cannot be solved; every trajectory counts Tmax = 1 step.
    _, row = profile_hand("random", [0, 2, 4], tmax=1)
    assert (row["avg_steps"], row["success_rate"], row["states"]) == (1.0, 0.0, 3)
    assert row["avg_obs_chars"] == pytest.approx(ROOM_A_CHARS)
    # The env's own limit (1 step) ends it before Tmax (5): still a failure, counted as Tmax.
    trajs, row = profile_hand("expert", [0], tmax=5, max_steps=1)
    assert trajs[0].steps == 1 and not trajs[0].success
    assert (row["avg_steps"], row["success_rate"]) == (5.0, 0.0)


def test_augmentation_raises_richness_and_nothing_else_on_hand_rooms():
    aug = parse_settings({"name": "t", "eps": {"sokoban": 10}}, default_seed=0)  # 1 line per state
    _, plain = profile_hand("expert", [0, 1, 2, 3], tmax=5)
    trajs, row = profile_hand("expert", [0, 1, 2, 3], tmax=5, augment=aug)
    for key in ("avg_steps", "success_rate", "optimal_len", "states", "avg_success_steps"):
        assert row[key] == plain[key], key
    assert row["augmented_fraction"] == 1.0
    # One line "(r, c) shows <a/an object> (<place>; unreachable)." on a new line; all walls here have
    # one-digit coordinates, so "(r, c) shows " is 13 characters.
    lengths = [
        13 + len(with_article(o)) + 2 + len(p) + len("; unreachable).")
        for o in SOKOBAN_OBJECTS
        for p in SOKOBAN_PLACES
    ]
    per_state = [c - ROOM_A_CHARS for t in trajs for c in t.obs_chars]
    assert all(1 + min(lengths) <= extra <= 1 + max(lengths) for extra in per_state)
    assert row["avg_obs_chars"] == pytest.approx(ROOM_A_CHARS + sum(per_state) / len(per_state))
    assert (
        row["avg_chars"] - plain["avg_chars"] >= row["avg_obs_chars"] - ROOM_A_CHARS
    )  # history repeats them


def test_profile_config_checks_values():
    assert profile_config({}).episodes == 128 and profile_config({}).tmax == 50  # the study's defaults
    for raw, needle in (
        ({"policy": "oracle"}, "profile.policy='oracle'"),
        ({"episodes": 0}, "profile.episodes=0"),
        ({"split": "dev"}, "profile.split='dev'"),
        ({"colour": 1}, "unknown key(s) colour"),
        ({"tmax": 2.5}, "profile.tmax=2.5"),
    ):
        with pytest.raises(ConfigError) as err:
            profile_config({"profile": raw})
        assert needle in str(err.value)


# ============================================================================ the job
def test_run_profile_writes_profile_json_and_resumes(tmp_path):
    from agentgen.report.schema import load_profile

    common = ["++profile.episodes=6", "++profile.tmax=50", "logger=wandb", "seed=1"]
    plain = run_profile(compose_config(["sokoban"], "none", common), tmp_path / "none")
    high = run_profile(compose_config(["sokoban"], "high", common), tmp_path / "high")
    p, h = plain["sokoban"], high["sokoban"]
    # the expert is optimal: every trajectory succeeds in exactly the optimal number of moves
    assert p["success_rate"] == 1.0 and p["avg_steps"] == pytest.approx(p["optimal_len"])
    assert p["avg_success_steps"] == pytest.approx(p["optimal_len"])
    for key in ("avg_steps", "success_rate", "optimal_len", "states"):
        assert h[key] == p[key], key
    assert h["avg_obs_chars"] > p["avg_obs_chars"] + 16 * 40  # 16 lines of ~45 characters per state
    assert h["avg_chars"] > p["avg_chars"] + 16 * 40  # the prompt shows them too (and in its history)
    assert (h["augment"], h["eps"], h["augmented_fraction"], p["augment"], p["eps"]) == (
        "high",
        160,
        1.0,
        "none",
        None,
    )
    assert json.loads((tmp_path / "high" / PROFILE_FILE).read_text()) == high
    episodes = [json.loads(line) for line in (tmp_path / "high" / EPISODES_FILE).read_text().splitlines()]
    assert [e["seed"] for e in episodes] == list(range(6)) and all(e["env"] == "sokoban" for e in episodes)
    assert list((tmp_path / "high" / "wandb").glob("offline-run-*"))
    # the report reads it as Table 1 rows
    (entry,) = load_profile(tmp_path / "high" / PROFILE_FILE)
    assert (entry.env, entry.augment) == ("sokoban", "high") and entry.metrics["avg_chars"] == h["avg_chars"]
    # a finished profile is not redone (resume=skip_completed)
    marked = {"sokoban": {**h, "avg_chars": -1.0}}
    (tmp_path / "high" / PROFILE_FILE).write_text(json.dumps(marked))
    assert run_profile(compose_config(["sokoban"], "high", common), tmp_path / "high") == marked


def test_cli_profiles_envs_by_augment_level(tmp_path, capsys):
    code = main(
        [
            "--env",
            "sokoban",
            "--policy",
            "random",
            "--episodes",
            "4",
            "--tmax",
            "8",
            "--augment",
            "none,low",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "sokoban  none" in table and "sokoban  low" in table and "avg steps" in table
    rows = {
        lvl: json.loads((tmp_path / lvl / PROFILE_FILE).read_text())["sokoban"] for lvl in ("none", "low")
    }
    assert rows["low"]["eps"] == 40 and rows["low"]["avg_chars"] > rows["none"]["avg_chars"]
    assert rows["none"]["policy"] == "random" and rows["none"]["tmax"] == 8
    assert (
        main(["--env", "sokoban", "--augment", "none", "--episodes", "0", "--out", str(tmp_path / "bad")])
        == 2
    )
    with pytest.raises(SystemExit):
        main(["--env", "chess"])


@pytest.mark.slow
def test_model_policy_profiles_through_the_rollout_runner(tmp_path):
    overrides = [
        "++profile.policy=model",
        "++profile.episodes=2",
        "++profile.tmax=3",
        "model=tiny",
        "logger=none",
        "env.sokoban.max_response_tokens=12",
        "agent.history_k=0",
        "agent.prompt=full",  # the study's prompt on the coordinate state (the tiny preset's are compact, grid)
        "model.env_params.sokoban.render=coords",
        "model.env_params.sokoban.instruction=full",
    ]
    rows = run_profile(compose_config(["sokoban"], "medium", overrides), tmp_path)
    row = rows["sokoban"]
    assert row["episodes"] == 2 and row["policy"] == "model" and row["augmented_fraction"] == 1.0
    assert 1 <= row["avg_steps"] <= 3 and row["optimal_len"] is not None
    episodes = [json.loads(line) for line in (tmp_path / EPISODES_FILE).read_text().splitlines()]
    assert all(len(e["obs_chars"]) == len(e["prompt_chars"]) == e["steps"] for e in episodes)
    assert row["avg_chars"] > 400 + 8 * 40  # the medium level's 8 lines on a ~400-character state
