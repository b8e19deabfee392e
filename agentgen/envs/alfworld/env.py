"""ALFWorld as an agentgen TextEnv: household tasks in text, played on TextWorld's PDDL engine.

Splits as in the study (papers.md A): ``train`` plays the training games, ``test`` the
out-of-distribution ``valid_unseen`` games (rooms never seen in training; ``test_split: valid_seen``
selects the in-distribution validation games instead). ``reset(seed)`` plays game
``order[seed % n_games]`` of the split, ``order`` being a fixed shuffle of the sorted game list, so
consecutive seeds mix task types.

A turn: the agent sends one command; a command that is not among the admissible commands (compared
after lower-casing and collapsing spaces; "help" is not offered) is invalid: the state is unchanged,
the observation is the engine's "Nothing happens." and the invalid penalty applies. The episode is won
when the task's goal holds (+10), and otherwise ends after ``max_steps`` commands (50 in the study).
"""

from __future__ import annotations

import os
import random
from typing import Any

from agentgen.envs.alfworld.games import (
    DATA_VERSION_DIR,
    SOURCES,
    collect_games,
    default_data_dir,
    generated_split_dir,
)
from agentgen.envs.alfworld.generate import EXPERT_SEED
from agentgen.envs.alfworld.problem import TASK_TYPES
from agentgen.envs.base import TextEnv

TEST_SPLITS = ("valid_unseen", "valid_seen")
BANNER = "-= Welcome to TextWorld, ALFRED! =-"
TASK_PREFIX = "Your task is to: "
INVALID_FEEDBACK = "Nothing happens."
DEFAULT_GENERATED = {"train": 32, "test": 16}


def normalize_command(text: str) -> str:
    return " ".join(str(text).lower().split())


class AlfWorldEnv(TextEnv):
    """ALFWorld on its real engine (TextWorld ``PddlEnv`` + alfworld's wrappers and handcoded expert).

    Parameters (conf/env/alfworld.yaml ``params``):
        source: "auto" (released data if found, else generated games), "data" or "generated".
        data_dir: folder holding ``json_2.1.1``; default ``$ALFWORLD_DATA`` / ``~/.cache/alfworld``.
        test_split: "valid_unseen" (default, out-of-distribution) or "valid_seen".
        task_types: subset of the six ALFWorld task types (default all).
        num_generated_games: games per split when generating, {"train": n, "test": m}.
        generator_seed, generator_workers, cache_dir: generation seed, processes, cache root
            (default ``$AGENTGEN_CACHE`` or ``~/.cache/agentgen``).
        generator_max_expert_steps: a generated game is kept only if the expert solves it within this
            many commands (default 50, the study's step limit).
    """

    name = "alfworld"

    def __init__(self, split: str = "train", max_steps: int = 50, reward=None, *, source: str = "auto",
                 data_dir: str | None = None, test_split: str = "valid_unseen", task_types=None,
                 num_generated_games: dict | None = None, generator_seed: int = 0,
                 generator_workers: int = 1, cache_dir: str | None = None,
                 generator_max_expert_steps: int = 50, progress: bool = True):
        super().__init__(split=split, max_steps=max_steps, reward=reward)
        if source not in SOURCES:
            raise ValueError(f"alfworld source must be one of {SOURCES}, got {source!r}")
        if test_split not in TEST_SPLITS:
            raise ValueError(f"alfworld test_split must be one of {TEST_SPLITS}, got {test_split!r}")
        self.task_types = tuple(task_types) if task_types else TASK_TYPES
        bad = [t for t in self.task_types if t not in TASK_TYPES]
        if bad:
            raise ValueError(f"unknown alfworld task type(s) {bad}; valid: {', '.join(TASK_TYPES)}")
        counts = {**DEFAULT_GENERATED, **(dict(num_generated_games) if num_generated_games else {})}
        if set(counts) != {"train", "test"} or any(int(v) < 1 for v in counts.values()):
            raise ValueError(f"alfworld num_generated_games must map 'train' and 'test' to positive "
                             f"counts, got {num_generated_games!r}")

        if int(generator_max_expert_steps) < 1:
            raise ValueError(f"alfworld generator_max_expert_steps must be >= 1, got {generator_max_expert_steps}")
        self.data_split = "train" if split == "train" else test_split
        self.game_files, self.source = self._find_games(
            source, data_dir, counts[split], generator_seed, generator_workers, cache_dir,
            int(generator_max_expert_steps), progress,
        )
        self._order = list(range(len(self.game_files)))
        random.Random(f"alfworld:{self.data_split}").shuffle(self._order)

        self._engine = None
        self._loaded: str | None = None
        self._state = None
        self._task = ""
        self._admissible: dict[str, str] = {}
        self._expert = None
        self._expert_pending: list[tuple[Any, str]] = []  # steps the expert has not seen yet

    # ------------------------------------------------------------------ games
    def _find_games(self, source, data_dir, num_games, seed, workers, cache_dir, expert_steps, progress):
        data_dir = os.path.expanduser(data_dir) if data_dir else default_data_dir()
        split_dir = os.path.join(data_dir, DATA_VERSION_DIR, self.data_split)
        if source in ("auto", "data"):
            games = collect_games(split_dir, self.task_types) if os.path.isdir(split_dir) else []
            if games:
                return games, "data"
            if source == "data":
                raise FileNotFoundError(
                    f"no ALFWorld games of task types {list(self.task_types)} under {split_dir}; set "
                    f"data_dir (or $ALFWORLD_DATA) to the folder holding {DATA_VERSION_DIR}/, or use "
                    f"source=generated (or auto) to play generated games")
        split_dir = generated_split_dir(self.data_split, num_games, seed, self.task_types, expert_steps,
                                        cache_dir, workers, progress)
        games = collect_games(split_dir, self.task_types)
        if len(games) != num_games:
            raise RuntimeError(f"expected {num_games} generated games in {split_dir}, found {len(games)}; "
                               f"delete that folder to regenerate it")
        return games, "generated"

    def game_file(self, seed: int) -> str:
        """The game played by ``reset(seed)``."""
        return self.game_files[self._order[int(seed) % len(self.game_files)]]

    # ------------------------------------------------------------------ protocol
    def _reset(self, seed: int) -> tuple[str, dict[str, Any]]:
        from agentgen.envs.alfworld.engine import open_engine

        game = self.game_file(seed)
        if self._engine is None:
            self._engine = open_engine()
        if game != self._loaded:
            self._loaded = None
            self._engine.load(game)
            self._loaded = game
        state = self._engine.reset()
        self._set_state(state)
        text = state["feedback"]
        self._task = text.split(TASK_PREFIX, 1)[1].strip() if TASK_PREFIX in text else ""
        self._expert, self._expert_pending = None, [(state, "")]
        obs = text.replace(BANNER, "").strip()
        return obs, {"game_file": game, "task_type": self._task_type(game), "raw_reward": 0.0}

    def _step(self, action: str) -> tuple[str, bool, bool, dict[str, Any]]:
        command = self._admissible.get(normalize_command(action))
        if command is None:
            return INVALID_FEEDBACK, False, True, {"raw_reward": 0.0}
        state, score, _ = self._engine.step(command)
        self._set_state(state)
        self._expert_pending.append((state, command))
        return state["feedback"].strip(), bool(state["won"]), False, {"raw_reward": float(score)}

    def admissible_actions(self) -> list[str] | None:
        return sorted(self._admissible.values())

    def task_description(self) -> str:
        return self._task

    def instruction(self) -> str:
        return (
            "You are a household robot in ALFWorld, a text version of a home simulator. Each turn you "
            "see what happened and the list of admissible actions, and you reply with exactly one of "
            "them, spelled as listed. Actions look like: go to <receptacle>, open <receptacle>, "
            "close <receptacle>, take <object> from <receptacle>, move <object> to <receptacle>, "
            "heat <object> with <microwave>, cool <object> with <fridge>, clean <object> with "
            "<sinkbasin>, use <lamp>, examine <object or receptacle>, look, inventory. You hold at "
            "most one object. Anything else does nothing and costs a penalty. The episode ends when "
            f"the task is done or after {self.max_steps} actions."
        )

    def expert_action(self) -> str | None:
        expert = self._catch_up_expert()
        return expert.action() if expert is not None else None

    def expert_thought(self) -> str | None:
        expert = self._catch_up_expert()
        return expert.thought() if expert is not None else None

    def close(self) -> None:
        from agentgen.envs.alfworld.engine import close_engine

        close_engine(self._engine)
        self._engine = self._loaded = self._state = self._expert = None
        self._expert_pending = []

    # ------------------------------------------------------------------ helpers
    def _set_state(self, state) -> None:
        self._state = state
        self._admissible = {normalize_command(c): c for c in state["admissible_commands"] if c != "help"}

    def _catch_up_expert(self):
        """The expert follows the episode lazily: it replays the steps since it was last asked, so
        episodes that never ask for it (RL rollouts) do not pay for it."""
        if self._state is None or self.done:
            return None
        from agentgen.envs.alfworld.expert import AlfWorldExpert

        if self._expert is None:
            state, _ = self._expert_pending.pop(0)
            self._expert = AlfWorldExpert(self._loaded, self._engine, seed=EXPERT_SEED)
            self._expert.start(state)
        for state, command in self._expert_pending:
            self._expert.advance(state, command)
        self._expert_pending = []
        return self._expert

    @staticmethod
    def _task_type(game_file: str) -> str:
        folder = os.path.basename(os.path.dirname(os.path.dirname(game_file)))
        return next((t for t in TASK_TYPES if folder.startswith(t)), "unknown")
