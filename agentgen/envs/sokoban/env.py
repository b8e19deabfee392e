"""Sokoban as an agentgen text environment (6x6, one box, 15 steps in the generalization-tax study).

Instances come from our own reverse-play generator (generator.py), seeded per (split, seed); layouts
are split between train and test by hash (splits.py). The expert is the optimal solver (solver.py),
re-planning whenever the agent leaves the current plan.

For state augmentation (unreachable-cell distractor lines) the env exposes ``room`` (size, walls,
targets), ``state`` (player, boxes), ``reachable_cells()``, ``unreachable_cells()`` and the picklable
``augmentation_context()``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from agentgen.envs.base import TextEnv
from agentgen.envs.sokoban.generator import GeneratedPuzzle, generate_puzzle
from agentgen.envs.sokoban.render import RENDER_MODES, fmt_cell, render
from agentgen.envs.sokoban.room import ACTIONS, Cell, Room, State, apply_move, parse_action
from agentgen.envs.sokoban.solver import SolverBudgetExceeded, solve
from agentgen.envs.sokoban.splits import layout_split
from agentgen.envs.sokoban.steps import DistanceTable, expert_step

# full: the rules in words (the study's prompt) | short: one line for CPU presets (model.env_params), which learn
# the rules from their SFT data and pay for every prompt token in every rollout and update.
INSTRUCTION_STYLES = ("full", "short")
# plan: the solver's plan (its length and first moves, thought_moves); steps: the stepwise expert (steps.py), a
# thought whose every clause a small model can compute from the room and the clauses before it.
THOUGHT_STYLES = ("plan", "steps")
# Entropy word per split: the two splits draw from unrelated seed streams.
_SPLIT_WORD = {"train": 0x5E7A1, "test": 0x7E57}


def _parse_dim(dim: Any) -> tuple[int, int]:
    if isinstance(dim, int) and not isinstance(dim, bool):
        height = width = dim
    elif isinstance(dim, Sequence) and not isinstance(dim, str) and len(dim) == 2:
        height, width = (int(x) for x in dim)
    else:
        raise ValueError(f"sokoban: dim must be an int or [height, width], got {dim!r}")
    if height < 4 or width < 4:
        raise ValueError(
            f"sokoban: dim {dim!r} too small; height and width must be >= 4 (walls on the border)"
        )
    return height, width


class SokobanEnv(TextEnv):
    """Push every box onto a target; actions Up / Down / Left / Right."""

    name = "sokoban"

    def __init__(
        self,
        split: str = "train",
        max_steps: int = 15,
        reward: dict | None = None,
        dim: int | Sequence[int] = 6,
        num_boxes: int = 1,
        min_optimal_len: int = 1,
        max_optimal_len: int | None = None,
        render: str = "coords",
        solver_max_expansions: int = 1_000_000,
        thought_moves: int | None = None,
        instruction: str = "full",
        thought: str = "plan",
    ):
        super().__init__(split=split, max_steps=max_steps, reward=reward)
        self.height, self.width = _parse_dim(dim)
        interior = (self.height - 2) * (self.width - 2)
        if not 1 <= int(num_boxes) < interior:
            raise ValueError(
                f"sokoban: num_boxes={num_boxes!r} invalid for a {self.height}x{self.width} room; "
                f"use 1..{interior - 1}"
            )
        self.num_boxes = int(num_boxes)
        max_len = self.max_steps if max_optimal_len is None else int(max_optimal_len)
        if not 1 <= int(min_optimal_len) <= max_len:
            raise ValueError(
                f"sokoban: need 1 <= min_optimal_len <= max_optimal_len, got "
                f"min_optimal_len={min_optimal_len!r}, max_optimal_len={max_optimal_len!r} "
                f"(null means max_steps={self.max_steps})"
            )
        self.min_optimal_len, self.max_optimal_len = int(min_optimal_len), max_len
        if render not in RENDER_MODES:
            raise ValueError(f"sokoban: unknown render {render!r}; valid: {', '.join(RENDER_MODES)}")
        self.render_mode = render
        if instruction not in INSTRUCTION_STYLES:
            raise ValueError(f"sokoban: unknown instruction {instruction!r}; valid: {', '.join(INSTRUCTION_STYLES)}")
        self.instruction_style = instruction
        if thought_moves is not None and (isinstance(thought_moves, bool) or int(thought_moves) < 1):
            raise ValueError(f"sokoban: thought_moves must be null (the whole plan) or >= 1, got {thought_moves!r}")
        self.thought_moves = None if thought_moves is None else int(thought_moves)
        if thought not in THOUGHT_STYLES:
            raise ValueError(f"sokoban: unknown thought {thought!r}; valid: {', '.join(THOUGHT_STYLES)}")
        self.thought_style = thought
        self._table: DistanceTable | None = None  # thought=steps: the episode's distance table, built on first use
        self._expert: tuple[str, str] | None = None  # thought=steps: the expert's (thought, action) at _step_state
        self._step_state: State | None = None
        self.solver_max_expansions = int(solver_max_expansions)
        self.room: Room | None = None
        self.state: State | None = None
        self.puzzle: GeneratedPuzzle | None = None
        self._forced: tuple[Room, State] | None = None
        self._plan: list[str] | None = None  # optimal plan from _plan_state (None: no plan exists)
        self._plan_state: State | None = None
        self._plan_failure = ""

    # ----------------------------------------------------------------- episodes
    def _rng(self, seed: int) -> random.Random:
        if seed < 0:
            raise ValueError(f"sokoban: seed must be >= 0, got {seed}")
        words = np.random.SeedSequence([_SPLIT_WORD[self.split], seed]).generate_state(2, np.uint32)
        return random.Random(int(words[0]) << 32 | int(words[1]))

    def _reset(self, seed: int) -> tuple[str, dict[str, Any]]:
        if self._forced is not None:
            self.room, self.state = self._forced
            self.puzzle = None
        else:
            self.puzzle = generate_puzzle(
                self._rng(seed),
                self.height,
                self.width,
                self.num_boxes,
                self.min_optimal_len,
                self.max_optimal_len,
                accept_layout=lambda room: layout_split(room) == self.split,
            )
            self.room, self.state = self.puzzle.room, self.puzzle.state
        self._plan_state = None
        self._table = self._step_state = None
        info = {"boxes_on_target": self.state.boxes_on_targets(self.room), "raw_reward": 0.0}
        if self.puzzle is not None:
            info["optimal_len"] = self.puzzle.optimal_len
        return self.render(), info

    def reset_to(self, room: Room, state: State) -> tuple[str, dict[str, Any]]:
        """Start an episode on a given puzzle (hand-made rooms, tests); ``seed`` is then None."""
        self._forced = (room, state)
        try:
            out = self.reset(0)
        finally:
            self._forced = None
        self.seed = None
        return out

    def _step(self, action: str) -> tuple[str, bool, bool, dict[str, Any]]:
        move = parse_action(action)
        before = self.state.boxes_on_targets(self.room)
        if move is None:
            return self.render(), False, True, {"boxes_on_target": before, "raw_reward": 0.0}
        old = self.state
        self.state, moved, pushed = apply_move(self.room, old, move)
        if self._plan_state == old and self._plan and self._plan[0] == move:
            self._plan, self._plan_state = self._plan[1:], self.state  # still on the optimal plan
        after = self.state.boxes_on_targets(self.room)
        solved = self.state.solved(self.room)
        # The classic gym-sokoban reward, logged as the engine's own reward.
        raw = -0.1 + (after - before) + (10.0 if solved else 0.0)
        info = {"boxes_on_target": after, "moved": moved, "pushed": pushed, "raw_reward": raw}
        return self.render(), solved, False, info

    def state_key(self) -> tuple:
        """The player and the boxes (the room is fixed within an instance), whatever the rendering."""
        return (self.state.player, tuple(sorted(self.state.boxes)))

    # ----------------------------------------------------------------- text
    def render(self, mode: str | None = None) -> str:
        if self.room is None:
            raise RuntimeError("sokoban: render() before reset()")
        return render(self.room, self.state, mode or self.render_mode)

    def admissible_actions(self) -> list[str]:
        return list(ACTIONS)

    def task_description(self) -> str:
        n = len(self.room.targets) if self.room is not None else self.num_boxes
        return "Push the box onto the target." if n == 1 else f"Push all {n} boxes onto the targets."

    def instruction(self) -> str:
        h, w = (self.room.height, self.room.width) if self.room is not None else (self.height, self.width)
        if self.instruction_style == "short":  # the goal and how to read the state; the rules are the model's to learn
            if self.render_mode == "coords":
                return (f"Sokoban, {h}x{w} room, (row, column): push the box onto the target. Up: row - 1, "
                        f"Down: row + 1, Left: column - 1, Right: column + 1.")
            return "Sokoban: push the box X onto the target O. You are P. # wall, _ floor, √ box on target."
        if self.render_mode == "coords":
            seen = (
                "Each observation lists the walls, the boxes, the targets and the player by position. "
                "Every cell of the room that is not a wall is floor."
            )
        else:
            seen = (
                "Each observation is the room, one row per line: # wall, _ floor, O target, X box, "
                "√ box on a target, P player, S player on a target."
            )
        return (
            f"You are playing Sokoban in a {h}x{w} room. Positions are (row, column): row 0 is the top row "
            f"and column 0 the left column. Up decreases the row, Down increases it, Left decreases the "
            f"column, Right increases it.\n"
            f"Goal: push every box onto a target.\n"
            f"Rules: each action moves you one cell: Up, Down, Left or Right. Moving into a box pushes it "
            f"one cell further in the same direction if that cell is free (not a wall or another box). You "
            f"cannot pull boxes, so a box pushed into a corner is stuck for good. Moving into a wall, or "
            f"pushing a box into a wall or another box, does nothing.\n"
            f"{seen}\n"
            f"Answer with exactly one action: Up, Down, Left or Right."
        )

    # ----------------------------------------------------------------- expert
    def _current_plan(self) -> list[str] | None:
        """Optimal plan from the current state, cached while the agent follows it."""
        if self.state is None:
            return None
        if self._plan_state != self.state:
            self._plan_failure = ""
            try:
                self._plan = solve(self.room, self.state, self.solver_max_expansions)
                if self._plan is None:
                    self._plan_failure = (
                        "A box is stuck where it can never reach a target; the puzzle is lost."
                    )
            except SolverBudgetExceeded:
                self._plan = None
                self._plan_failure = "The puzzle is too large for the planner to solve."
            self._plan_state = self.state
        return self._plan

    def _stepwise(self) -> DistanceTable | None:
        """thought=steps with one box: the episode's distance table (None: the solver's plan is used)."""
        if self.thought_style != "steps" or len(self.state.boxes) != 1:
            return None
        if self._table is None:
            self._table = DistanceTable(self.room, self.state)
        return self._table

    def _expert_step(self, table: DistanceTable) -> tuple[str, str] | None:
        """The stepwise expert's (thought, action) here, computed once per state: collection asks for both."""
        if self._step_state != self.state:
            self._expert, self._step_state = expert_step(table, self.state), self.state
        return self._expert

    def optimal_actions(self) -> set[str] | None:
        """thought=steps: every move that keeps the shortest solution here (the expert takes the first in a fixed
        order); None for other thoughts or when the puzzle is lost."""
        table = None if self.done else self._stepwise()
        if table is None or self.state not in table.dist:
            return None
        d = table.dist[self.state]
        return {a for a in ACTIONS if table.dist.get(apply_move(self.room, self.state, a)[0]) == d - 1}

    def expert_action(self) -> str | None:
        if self.done:
            return None
        table = self._stepwise()
        if table is not None:
            step = self._expert_step(table)
            return step[1] if step else None
        plan = self._current_plan()
        return plan[0] if plan else None

    def expert_thought(self) -> str | None:
        if self.done:
            return None
        table = self._stepwise()
        if table is not None:
            if self.state not in table.dist:
                return "A box is stuck where it can never reach a target; the puzzle is lost."
            step = self._expert_step(table)
            return step[0] if step else None
        plan = self._current_plan()
        if plan is None:
            return self._plan_failure or None
        if not plan:
            return None
        goals = self._box_destinations(plan)
        if len(goals) == 1:
            ((src, dst),) = goals
            what = f"Box at {fmt_cell(src)} must reach target {fmt_cell(dst)}."
        else:
            pairs = ", ".join(f"{fmt_cell(s)} to {fmt_cell(d)}" for s, d in goals)
            what = f"Boxes must go {pairs}."
        noun = "move" if len(plan) == 1 else "moves"
        if self.thought_moves is not None and len(plan) > self.thought_moves:
            return f"{what} Shortest plan ({len(plan)} {noun}) starts: {', '.join(plan[: self.thought_moves])}."
        return f"{what} Shortest plan ({len(plan)} {noun}): {', '.join(plan)}."

    def _box_destinations(self, plan: list[str]) -> list[tuple[Cell, Cell]]:
        """(start, end) of every box the plan moves, following each box through its pushes."""
        where = {b: b for b in self.state.boxes}  # start cell -> current cell
        state = self.state
        for move in plan:
            nxt, _, pushed = apply_move(self.room, state, move)
            if pushed:
                (left,) = state.boxes - nxt.boxes
                (arrived,) = nxt.boxes - state.boxes
                for start, cur in where.items():
                    if cur == left:
                        where[start] = arrived
            state = nxt
        return sorted((s, e) for s, e in where.items() if s != e)

    # ----------------------------------------------------------------- for augmentation
    def reachable_cells(self) -> set[Cell]:
        """Cells the player can ever stand on or push a box through: the non-wall region connected to
        the player (boxes move, so they do not cut it)."""
        if self.room is None:
            raise RuntimeError("sokoban: reachable_cells() before reset()")
        return self.room.connected_floor(self.state.player)

    def unreachable_cells(self) -> set[Cell]:
        """Every cell of the room rectangle outside ``reachable_cells()`` (walls and sealed floor)."""
        reach = self.reachable_cells()
        return {(r, c) for r in range(self.room.height) for c in range(self.room.width)} - reach

    def augmentation_context(self) -> dict[str, Any]:
        """Picklable facts the state-augmentation code needs (e.g. through EnvPool.call)."""
        return {
            "height": self.room.height,
            "width": self.room.width,
            "walls": sorted(self.room.walls),
            "targets": sorted(self.room.targets),
            "reachable": sorted(self.reachable_cells()),
            "unreachable": sorted(self.unreachable_cells()),
        }
