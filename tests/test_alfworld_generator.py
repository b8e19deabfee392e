"""ALFWorld game generator: room layouts, task sampling, determinism, the released folder format,
alfworld's own loader, the CLI and the first-use cache shared by concurrent processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import subprocess
import sys

import pytest

from agentgen.envs.alfworld import generate as G
from agentgen.envs.alfworld import problem as P
from agentgen.envs.alfworld import scenes as S
from agentgen.envs.alfworld.games import collect_games, generated_split_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(path):
    with open(path) as f:
        return f.read()


def _json(path):
    return json.loads(_read(path))


def _games(root):
    return sorted(
        os.path.join(d, "game.tw-pddl") for d, _, files in os.walk(root) if "game.tw-pddl" in files
    )


@pytest.fixture(scope="module")
def two_games(tmp_path_factory):
    """Games 0 and 1 of split valid_seen, seed 3: one look-at-in-light, one two-object task."""
    out = tmp_path_factory.mktemp("gen") / "valid_seen"
    report = G.generate_split(str(out), "valid_seen", 2, seed=3,
                              task_types=["look_at_obj_in_light", "pick_two_obj_and_place"], progress=False)
    return str(out), report


# ----------------------------------------------------------------------------- layouts and sampling
def test_every_scene_layout_loads_with_unique_receptacles():
    assert set(S.TRAIN_SCENES).isdisjoint(S.UNSEEN_SCENES)
    assert len(S.TRAIN_SCENES) + len(S.UNSEEN_SCENES) == 120
    for number in S.TRAIN_SCENES + S.UNSEEN_SCENES:
        scene = S.load_scene(number)
        ids = [r.thor_id for r in scene.receptacles]
        assert len(ids) == len(set(ids)), number
        assert scene.receptacles and scene.object_types
        assert all(r.location.startswith("loc_bar_") for r in scene.receptacles)
        assert all(r.rtype in S.STATIC_RECEPTACLE_TYPES for r in scene.receptacles)
    kitchen = S.load_scene(1)
    assert {"Fridge", "Microwave", "SinkBasin", "StoveBurner"} <= kitchen.receptacle_types()
    assert len(kitchen.receptacles_of("StoveBurner")) == 4


def test_ids_are_mangled_like_alfred():
    assert S.mangle("Sink|-01.90|+00.97|-01.50|SinkBasin") == (
        "Sink_bar__minus_01_dot_90_bar__plus_00_dot_97_bar__minus_01_dot_50_bar_SinkBasin")
    assert S.location_name(0.0, -1.25, 180, 30) == "loc_bar_0_bar__minus_5_bar_2_bar_30"
    assert S.thor_number(0.0) == "00.00" and S.thor_number(-2.2) == "-02.20"


def test_task_candidates_follow_alfred_filters():
    bathroom, kitchen, bedroom = S.load_scene(401), S.load_scene(1), S.load_scene(301)
    assert P.task_candidates("pick_heat_then_place_in_recep", bathroom) == []  # kitchens only
    assert P.task_candidates("look_at_obj_in_light", kitchen) == []            # no lamp there
    heat = P.task_candidates("pick_heat_then_place_in_recep", kitchen)
    assert heat and all(r != "Microwave" for _, r in heat)
    assert all(o in {"Apple", "Bread", "Cup", "Egg", "Mug", "Plate", "Potato", "Tomato"} for o, _ in heat)
    assert all(t == "DeskLamp" for _, t in P.task_candidates("look_at_obj_in_light", bedroom))
    with pytest.raises(ValueError, match="unknown ALFWorld task type 'fly'.*pick_and_place_simple"):
        P.task_candidates("fly", kitchen)
    with pytest.raises(P.TaskUnavailable):
        P.sample_game("pick_cool_then_place_in_recep", bedroom, random.Random(0))


def test_sampled_objects_never_start_where_the_goal_wants_them():
    rng = random.Random(5)
    for _ in range(60):
        task_type = rng.choice(P.TASK_TYPES)
        scene = S.load_scene(rng.choice(S.TRAIN_SCENES))
        try:
            spec = P.sample_game(task_type, scene, rng)
        except P.TaskUnavailable:
            continue
        targets = [o for o in spec.objects if o.otype == spec.object_target]
        assert targets
        appliance = P.APPLIANCE.get(task_type, ("",))[0]
        assert all(o.receptacle.rtype not in {spec.parent_target, appliance} for o in targets)
        if task_type == "pick_two_obj_and_place":
            assert len(targets) >= 2
        text = P.problem_pddl(spec, "p")
        assert text.count("(") == text.count(")")
        assert "#" not in text and "(:domain alfred)" in text


# ----------------------------------------------------------------------------- generated games
def test_generated_games_have_the_released_format(two_games):
    out, report = two_games
    games = _games(out)
    assert len(games) == 2 and report.games == 2
    for game_file in games:
        trial = os.path.dirname(game_file)
        task_folder = os.path.basename(os.path.dirname(trial))
        assert os.path.basename(trial).startswith("trial_")
        with open(game_file) as f:
            game = json.load(f)
        with open(os.path.join(trial, "traj_data.json")) as f:
            traj = json.load(f)
        assert set(game) == {"pddl_domain", "grammar", "pddl_problem", "solvable", "walkthrough"}
        assert game["solvable"] is True and 0 < len(game["walkthrough"]) <= 50
        assert "UNKNOWN GOAL" not in game["grammar"] and traj["task_desc"] in game["grammar"]
        assert game["pddl_problem"].startswith("(define (problem") and "(:goal" in game["pddl_problem"]
        assert task_folder.startswith(traj["task_type"])
        assert set(traj["pddl_params"]) == {"object_target", "parent_target", "toggle_target",
                                            "mrecep_target", "object_sliced"}
        assert traj["scene"]["scene_num"] in S.TRAIN_SCENES  # valid_seen: training rooms
    types = sorted(_json(os.path.join(os.path.dirname(g), "traj_data.json"))["task_type"] for g in games)
    assert types == ["look_at_obj_in_light", "pick_two_obj_and_place"]


def test_goal_is_false_at_start_and_walkthrough_wins(two_games):
    from agentgen.envs.alfworld.engine import close_engine, open_engine

    engine = open_engine()
    try:
        for game_file in _games(two_games[0]):
            engine.load(game_file)
            state = engine.reset()
            assert state["won"] is False
            for command in _json(game_file)["walkthrough"]:
                assert command in state["admissible_commands"]
                state, _, _ = engine.step(command)
            assert state["won"] is True
    finally:
        close_engine(engine)


def test_a_goal_true_at_the_start_is_detected(tmp_path):
    """The engine check behind the generator's rejection: a target already in place wins at reset."""
    from agentgen.envs.alfworld.engine import close_engine, open_engine

    rng = random.Random(2)
    spec = P.sample_game("pick_and_place_simple", S.load_scene(301), rng)
    target = next(o for o in spec.objects if o.otype == spec.object_target)
    target.receptacle = spec.scene.receptacles_of(spec.parent_target)[0]
    domain, grammar = G._logic_files()
    trial = tmp_path / "trial_0"
    trial.mkdir()
    game = {"pddl_domain": domain, "grammar": grammar.replace("UNKNOWN GOAL", spec.task_sentence),
            "pddl_problem": P.problem_pddl(spec, "p"), "solvable": None, "walkthrough": None}
    (trial / "game.tw-pddl").write_text(json.dumps(game))
    (trial / "traj_data.json").write_text(json.dumps(P.traj_data(spec, "t", 0)))
    engine = open_engine()
    try:
        assert G._expert_solves(engine, str(trial / "game.tw-pddl"), 50) == (True, None)
    finally:
        close_engine(engine)


def test_generation_is_deterministic_per_game_index(two_games, tmp_path):
    out, _ = two_games
    # game 1 alone (task type 2 of the cycle) must come out byte-identical
    again = tmp_path / "again"
    G._generate_game((str(again), "valid_seen", 1, 3, ("look_at_obj_in_light", "pick_two_obj_and_place"), 50))
    G._release_worker_engine()
    (new,) = _games(again)
    rel = os.path.relpath(new, again)
    for name in ("game.tw-pddl", "traj_data.json"):
        assert _read(os.path.join(out, os.path.dirname(rel), name)) == _read(
            os.path.join(again, os.path.dirname(rel), name))
    other = tmp_path / "other"
    G._generate_game((str(other), "valid_seen", 1, 4, ("look_at_obj_in_light", "pick_two_obj_and_place"), 50))
    G._release_worker_engine()
    (diff,) = _games(other)
    assert _json(diff)["pddl_problem"] != _json(new)["pddl_problem"]


def test_generated_games_load_in_alfworlds_own_loader(two_games):
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv

    out, _ = two_games
    config = {
        "env": {"goal_desc_human_anns_prob": 0, "task_types": [1, 2, 3, 4, 5, 6],
                "domain_randomization": False, "expert_type": "handcoded"},
        "dataset": {"data_path": out, "num_train_games": -1, "eval_id_data_path": out,
                    "eval_ood_data_path": out, "num_eval_games": -1},
        "general": {"training_method": "dagger"},
        "dagger": {"training": {"max_nb_steps_per_episode": 50}},
    }
    tw = AlfredTWEnv(config, train_eval="train")
    assert sorted(tw.game_files) == _games(out)
    env = tw.init_env(batch_size=1)
    try:
        obs, infos = env.reset()
        assert "Your task is to:" in obs[0] and "You are in the middle of a room" in obs[0]
        assert any(c.startswith("go to ") for c in infos["admissible_commands"][0])
    finally:
        env.close()


def test_split_unknown_or_empty_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown ALFWorld data split 'dev'.*valid_unseen"):
        G.generate_split(str(tmp_path), "dev", 1, progress=False)
    with pytest.raises(ValueError, match="num_games must be >= 1"):
        G.generate_split(str(tmp_path), "train", 0, progress=False)
    with pytest.raises(ValueError, match="unknown ALFWorld task type"):
        G.generate_split(str(tmp_path), "train", 1, task_types=["pick_and_place"], progress=False)


def test_cli_writes_a_data_folder(tmp_path):
    out = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "agentgen.envs.alfworld.generate", "--out", str(out), "--num-games", "1",
         "--splits", "valid_unseen", "--task-types", "pick_and_place_simple", "--seed", "7"],
        check=False, capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "valid_unseen: 1 games" in result.stdout
    (game,) = collect_games(str(out / "json_2.1.1" / "valid_unseen"))
    traj = _json(os.path.join(os.path.dirname(game), "traj_data.json"))
    assert traj["task_type"] == "pick_and_place_simple"
    assert traj["scene"]["scene_num"] in S.UNSEEN_SCENES  # unseen rooms only


def _generate_in_child(cache_dir, queue):
    path = generated_split_dir("valid_unseen", 1, 11, ["pick_and_place_simple"], 50, cache_dir, progress=False)
    queue.put(path)


def test_cache_is_generated_once_when_processes_race(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_generate_in_child, args=(str(tmp_path), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    paths = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert paths[0] == paths[1] and os.path.isdir(paths[0])
    assert len(collect_games(paths[0])) == 1
    root = os.path.join(str(tmp_path), "alfworld")
    assert not [n for n in os.listdir(root) if ".tmp-" in n]  # the temporary folder was renamed
