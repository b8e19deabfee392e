"""Sokoban env: generator, optimal solver, renderings, rewards and the env protocol."""

from __future__ import annotations

import random
import re
from collections import deque

import pytest

from agentgen.envs import make
from agentgen.envs.sokoban import ACTIONS, SokobanEnv, State, apply_move, parse_grid, solve
from agentgen.envs.sokoban.flat import FlatRoom
from agentgen.envs.sokoban.generator import generate_puzzle, reverse_search
from agentgen.envs.sokoban.splits import layout_split

REWARD = {"success": 10.0, "failure": 0.0, "invalid": -0.1}


def bfs_optimal_len(room, state) -> int | None:
    """Independent plain BFS over (player, boxes) with the game rules: the reference for optimality."""
    seen = {state}
    queue = deque([(state, 0)])
    while queue:
        s, d = queue.popleft()
        if s.solved(room):
            return d
        for a in ACTIONS:
            n, moved, _ = apply_move(room, s, a)
            if moved and n not in seen:
                seen.add(n)
                queue.append((n, d + 1))
    return None


def play(room, state, plan):
    for a in plan:
        state, _, _ = apply_move(room, state, a)
    return state


def env(**kw) -> SokobanEnv:
    kw.setdefault("max_steps", 15)
    return make("sokoban", kw.pop("split", "train"), reward=REWARD, **kw)


# ----------------------------------------------------------------------------- rules
def test_moves_push_and_blocked_pushes():
    room, state = parse_grid(
        """
        ######
        #_PX_#
        #_XO_#
        #O___#
        ######
        """
    )
    s, moved, pushed = apply_move(room, state, "Right")  # push (1,3) to (1,4)
    assert (moved, pushed) == (True, True) and s.player == (1, 3) and (1, 4) in s.boxes
    s2, moved, pushed = apply_move(room, s, "Right")  # box against the wall: no-op
    assert s2 == s and not moved and not pushed
    s3, moved, _ = apply_move(room, state, "Up")  # wall: no-op
    assert s3 == state and not moved
    # pushing a box into another box is a no-op
    room2, st2 = parse_grid("#####\n#PXX#\n#_OO#\n#####")
    assert apply_move(room2, st2, "Right")[0] == st2


# ----------------------------------------------------------------------------- solver
def test_solver_handmade_cases():
    room, state = parse_grid("######\n#P_XO#\n######")
    assert solve(room, state) == ["Right", "Right"]
    room, state = parse_grid("######\n#X_PO#\n######")  # box against the left wall: lost
    assert solve(room, state) is None
    room, state = parse_grid("#####\n#P√_#\n#####")
    assert solve(room, state) == []


def test_solver_optimal_on_generated_rooms():
    rng = random.Random(123)
    for i in range(150):
        p = generate_puzzle(rng, 6, 6, 1, 1, 15)
        plan = solve(p.room, p.state)
        assert plan is not None and len(plan) == p.optimal_len
        assert play(p.room, p.state, plan).solved(p.room)
        if i < 25:  # independent cross-check
            assert bfs_optimal_len(p.room, p.state) == len(plan)
    for _ in range(4):  # two boxes, bigger room
        p = generate_puzzle(rng, 7, 7, 2, 4, 12)
        plan = solve(p.room, p.state)
        assert len(plan) == p.optimal_len == bfs_optimal_len(p.room, p.state)
        assert play(p.room, p.state, plan).solved(p.room)


def test_reverse_search_depth_is_optimal_length():
    rng = random.Random(7)
    p = generate_puzzle(rng, 6, 6, 1, 1, 15)
    flat = FlatRoom.from_room(p.room)
    targets = tuple(flat.index(t) for t in p.room.targets)
    info = reverse_search(flat, targets, max_depth=15, max_states=10**6)
    keys = list(info)
    for key in random.Random(0).sample(keys, min(40, len(keys))):
        player, boxes = key
        state = State(flat.cell(player), frozenset(flat.cell(b) for b in boxes))
        assert bfs_optimal_len(p.room, state) == info[key][0]


# ----------------------------------------------------------------------------- generator / seeds
def test_difficulty_bounds_honoured():
    e = env(min_optimal_len=6, max_optimal_len=9)
    for seed in range(40):
        e.reset(seed)
        n = bfs_optimal_len(e.room, e.state)
        assert 6 <= n <= 9 and n == e.puzzle.optimal_len
        assert not (e.state.boxes & e.room.targets)  # no box starts on a target


def test_deterministic_per_seed():
    a, b = env(), env()
    for seed in (0, 1, 17, 10**9):
        assert a.reset(seed)[0] == b.reset(seed)[0]
    obs = {env().reset(seed)[0] for seed in range(30)}
    assert len(obs) > 20


def test_train_test_disjoint():
    train, test = env(split="train"), env(split="test")
    layouts = {}
    for split, e in (("train", train), ("test", test)):
        seen = set()
        for seed in range(300):
            e.reset(seed)
            assert layout_split(e.room) == split
            seen.add((e.room.walls, e.room.targets))
        layouts[split] = seen
    assert not layouts["train"] & layouts["test"]
    assert train.reset(5)[0] != test.reset(5)[0]


# ----------------------------------------------------------------------------- renderings
HANDMADE = """
######
#S_X_#
#_√__#
######
"""


def test_renderings_on_handmade_room():
    room, state = parse_grid(HANDMADE)
    e = env(render="coords")
    obs, info = e.reset_to(room, state)
    walls = ", ".join(f"Wall at ({r}, {c})" for r, c in sorted(room.walls))
    assert obs == (
        f"{walls}\n"
        "Box at (1, 3), Box at (2, 2) (on target)\n"
        "Target at (1, 1), Target at (2, 2)\n"
        "Player at (1, 1)"
    )
    assert obs.startswith("Wall at (0, 0), Wall at (0, 1),")
    assert e.render("grid") == HANDMADE.strip()
    assert info["boxes_on_target"] == 1 and info["task"] == "Push all 2 boxes onto the targets."
    g = env(render="grid")
    assert g.reset_to(room, state)[0] == "######\n#S_X_#\n#_√__#\n######"
    assert "(row, column)" in g.instruction() and "√" in g.instruction()
    assert "Up decreases the row" in e.instruction()


# ----------------------------------------------------------------------------- protocol
def test_invalid_actions_penalised_state_unchanged():
    e = env()
    obs0, _ = e.reset(3)
    state0 = e.state
    for bad in ("jump", "", "Upp", "up down", "<action>Up</action>"):
        obs, reward, done, info = e.step(bad)
        assert obs == obs0 and e.state == state0
        assert reward == pytest.approx(-0.1) and info["invalid_action"] and not done
    assert e.steps == 5
    obs, reward, done, info = e.step("  lEfT \n")  # case / whitespace insensitive
    assert not info["invalid_action"] and reward == 0.0
    assert e.admissible_actions() == ["Up", "Down", "Left", "Right"]


def test_wall_bump_is_valid_noop():
    room, state = parse_grid("######\n#P_XO#\n######")
    e = env()
    e.reset_to(room, state)
    _obs, reward, _done, info = e.step("Up")
    assert e.state == state and not info["invalid_action"] and reward == 0.0 and not info["moved"]


def test_success_reward_and_expert_solves_optimally():
    e = env()
    for seed in range(10):
        e.reset(seed)
        total, n = 0.0, 0
        done = False
        while not done:
            _, r, done, info = e.step(e.expert_action())
            total += r
            n += 1
        assert info["success"] and total == pytest.approx(10.0) and n == e.puzzle.optimal_len
        assert e.expert_action() is None


def test_expert_replans_after_deviation_and_thought():
    room, state = parse_grid("#######\n#P__XO#\n#_____#\n#######")
    e = env()
    e.reset_to(room, state)
    assert e.expert_thought() == (
        "Box at (1, 4) must reach target (1, 5). Shortest plan (3 moves): Right, Right, Right."
    )
    e.step("Down")  # leave the plan
    thought = e.expert_thought()
    assert "Shortest plan (4 moves): " in thought
    assert thought.endswith(".") and e.expert_action() == thought.split(": ")[1].split(",")[0]
    while not e.done:
        e.step(e.expert_action())
    assert e.success and e.steps == 5
    # a lost position: no expert action, an honest thought
    room, state = parse_grid("######\n#X_PO#\n######")
    e.reset_to(room, state)
    assert e.expert_action() is None and "stuck" in e.expert_thought()


def test_thought_moves_bounds_the_plan_in_the_thought():
    room, state = parse_grid("#######\n#P__XO#\n#_____#\n#######")
    e = env(thought_moves=1)
    e.reset_to(room, state)
    assert e.expert_thought() == "Box at (1, 4) must reach target (1, 5). Shortest plan (3 moves) starts: Right."
    e = env(thought_moves=3)  # a plan no longer than the bound is written out whole, as without one
    e.reset_to(room, state)
    assert e.expert_thought().endswith("Shortest plan (3 moves): Right, Right, Right.")


def test_stepwise_thought_names_each_clause():
    room, state = parse_grid("#######\n#__X_O#\n#P____#\n#######")
    e = env(thought="steps")
    e.reset_to(room, state)
    # the box must go Right 2, pushed from (1, 2); the way back from there to the player: (1, 2), then (2, 2) or
    # (1, 1), the first in Up, Down, Left, Right order, so the move is Right (from (2, 1) to (2, 2))
    assert e.expert_thought() == ("I am at (2, 1). Box (1, 3) to (1, 5): Right 2. "
                                  "Push Right from (1, 2): back (1, 2), (2, 2).")
    assert e.expert_action() == "Right"
    e.step("Right")
    assert e.expert_thought().endswith("Push Right from (1, 2): back (1, 2).") and e.expert_action() == "Up"
    e.step("Up")
    assert e.expert_thought() == "I am at (1, 2). Box (1, 3) to (1, 5): Right 2. Push Right from (1, 2): here."
    assert e.expert_action() == "Right"


def test_stepwise_expert_is_optimal_and_reads_its_own_thought():
    """On 150 generated puzzles the stepwise expert solves each in exactly the optimal number of moves, and its
    action is always what its thought says: the push when it stands on the push cell, else the move from where it
    is to the last cell of the way back."""
    from agentgen.envs.sokoban.room import DELTAS

    e = env(thought="steps")
    cell = re.compile(r"\((\d+), (\d+)\)")
    for seed in range(150):
        _obs, info = e.reset(seed)
        optimal, moves, done = info["optimal_len"], 0, False
        while not done:
            thought, action = e.expert_thought(), e.expert_action()
            assert action in e.optimal_actions()  # the optimal moves here, the expert's among them
            me = tuple(map(int, cell.search(thought).groups()))
            if thought.endswith("here."):
                assert action == thought.split("Push ", 1)[1].split(" ", 1)[0], thought
            else:
                last = tuple(map(int, cell.findall(thought)[-1]))
                assert DELTAS[action] == (last[0] - me[0], last[1] - me[1]), thought
            _obs, _r, done, info = e.step(action)
            moves += 1
        assert info["success"] and moves == optimal and e.optimal_actions() is None


def test_truncation_at_max_steps():
    room, state = parse_grid("#######\n#P__XO#\n#_____#\n#######")
    e = env(max_steps=4)
    e.reset_to(room, state)
    for i in range(4):
        _obs, reward, done, info = e.step("Left" if i % 2 else "Down")
        assert reward == 0.0
    assert done and info["truncated"] and not info["success"] and info["admissible_actions"] is None
    with pytest.raises(RuntimeError):
        e.step("Up")


def test_reachable_cells_for_augmentation():
    room, state = parse_grid(
        """
        #######
        #P_X_O#
        ###_###
        #__#__#
        #######
        """
    )
    e = env()
    e.reset_to(room, state)
    assert e.reachable_cells() == {(1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (2, 3)}
    assert {(3, 1), (3, 2), (3, 4), (3, 5), (0, 0)} <= e.unreachable_cells()
    ctx = e.augmentation_context()
    assert (ctx["height"], ctx["width"]) == (5, 7)
    assert len(ctx["reachable"]) + len(ctx["unreachable"]) == 35
    assert set(map(tuple, ctx["walls"])) == set(room.walls)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"render": "ascii"}, "ascii"),
        ({"dim": 2}, "dim"),
        ({"dim": [6, 6, 6]}, "dim"),
        ({"num_boxes": 0}, "num_boxes"),
        ({"min_optimal_len": 9, "max_optimal_len": 3}, "min_optimal_len"),
        ({"thought_moves": 0}, "thought_moves"),
        ({"thought": "deep"}, "thought"),
    ],
)
def test_bad_parameters_explain_themselves(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        env(**kwargs)


def test_bigger_rooms_and_grid_dims():
    e = env(dim=[7, 9], num_boxes=2, max_steps=30, min_optimal_len=5)
    _obs, info = e.reset(0)
    assert (e.room.height, e.room.width) == (7, 9) and len(e.state.boxes) == 2
    assert 5 <= info["optimal_len"] <= 30
    assert len(solve(e.room, e.state)) == info["optimal_len"]
