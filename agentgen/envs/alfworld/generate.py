"""Generate ALFWorld games offline, in the folder format of the released data set.

The released games (``$ALFWORLD_DATA/json_2.1.1/{train,valid_seen,valid_unseen}``) cannot be downloaded
here, so this writes games of the same form from the room layouts alfworld ships:
``<split>/{task_type}-{object}-None-{target}-{scene}/trial_NNNNN/{game.tw-pddl,traj_data.json}``.

Every game is checked on the real engine before it is kept: the goal must not hold at the start and
alfworld's handcoded expert (with our fixes, ``expert.py``) must solve it, without the planner fallback,
within ``max_expert_steps`` commands; its command list is stored as the game's ``walkthrough``, as
alfworld's own ``alfworld-generate`` does. Splits follow ALFRED: ``train`` and ``valid_seen`` use the
training rooms, ``valid_unseen`` the held-out rooms (scenes 1-6 of each room family); every game's
random stream is derived from (seed, split, index), so splits never share a game and a run is
reproducible.

    python -m agentgen.envs.alfworld.generate --out DIR --num-games 60 --seed 0 [--workers 4] \
        [--splits train valid_seen valid_unseen] [--task-types pick_and_place_simple ...]

DIR can then be used as ``data_dir`` (or ``$ALFWORLD_DATA``). About 1-2 s of CPU per game (a kitchen
costs most), spread over ``--workers`` processes.

Rooms follow ALFRED's scene setup: every object kind the floor plan has appears 1-3 times in
receptacles that can hold it (``constants.VAL_RECEPTACLE_OBJECTS``), lamps stand on furniture, and the
agent starts in the middle of the room. Task parameters follow ALFRED's filters (``problem.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from collections import Counter
from dataclasses import dataclass

from tqdm import tqdm

from agentgen.envs.alfworld.problem import (
    TASK_FAMILIES,
    TASK_TYPES,
    TaskUnavailable,
    problem_pddl,
    sample_game,
    traj_data,
)
from agentgen.envs.alfworld.scenes import TRAIN_SCENES, UNSEEN_SCENES, load_scene

GENERATOR_VERSION = 1  # bump when generated games change for the same parameters (cache key)
DATA_SPLITS = ("train", "valid_seen", "valid_unseen")
SPLIT_SCENES = {"train": TRAIN_SCENES, "valid_seen": TRAIN_SCENES, "valid_unseen": UNSEEN_SCENES}
EXPERT_SEED = 0  # the expert's random stream per episode; the env uses the same, so it replays this check
MAX_ATTEMPTS_PER_GAME = 200


def _logic_files() -> tuple[str, str]:
    from alfworld.info import ALFRED_PDDL_PATH, ALFRED_TWL2_PATH

    with open(ALFRED_PDDL_PATH) as f:
        domain = f.read()
    with open(ALFRED_TWL2_PATH) as f:
        grammar = f.read()
    return domain, grammar


def check_task_types(task_types) -> tuple[str, ...]:
    task_types = tuple(task_types)
    bad = [t for t in task_types if t not in TASK_TYPES]
    if bad or not task_types:
        raise ValueError(f"unknown ALFWorld task type(s) {bad or task_types!r}; valid: {', '.join(TASK_TYPES)}")
    return task_types


@dataclass
class SplitReport:
    split: str
    games: int
    attempts: int
    rejected: Counter


def _expert_solves(engine, game_file: str, max_steps: int) -> tuple[bool, list[str] | None]:
    """(goal already true at the start, the expert's winning commands or None)."""
    from agentgen.envs.alfworld.expert import AlfWorldExpert
    from agentgen.envs.alfworld.speedups import planner_unused

    with planner_unused():
        engine.load(game_file)
        state = engine.reset()
    if state["won"]:
        return True, None
    expert = AlfWorldExpert(game_file, engine, seed=EXPERT_SEED, fallback=False)
    expert.start(state)
    commands = []
    for _ in range(max_steps):
        command = expert.action()
        if command is None:
            return False, None
        commands.append(command)
        state, _, _ = engine.step(command)
        if state["won"]:
            return False, commands
        expert.advance(state, command)
    return False, None


_WORKER_ENGINE = None  # one engine per generating process


def _generate_game(job: tuple) -> tuple[int, int, Counter]:
    """Write game ``k`` of a split (retrying with fresh random streams until one passes the checks);
    returns (k, attempts, rejection reasons)."""
    global _WORKER_ENGINE
    from agentgen.envs.alfworld.engine import open_engine

    out_dir, split, k, seed, task_types, max_expert_steps = job
    if _WORKER_ENGINE is None:
        _WORKER_ENGINE = open_engine()
    domain, grammar = _logic_files()
    task_type = task_types[k % len(task_types)]
    hosts = [load_scene(n) for n in SPLIT_SCENES[split]]
    hosts = [s for s in hosts if s.family in TASK_FAMILIES[task_type]]
    rejected: Counter = Counter()
    for attempt in range(MAX_ATTEMPTS_PER_GAME):
        rng = random.Random(f"agentgen-alfworld:{seed}:{split}:{k}:{attempt}")
        try:
            spec = sample_game(task_type, rng.choice(hosts), rng)
        except (TaskUnavailable, IndexError):
            rejected["room cannot host the task"] += 1
            continue
        trial = os.path.join(out_dir, spec.folder_name, f"trial_{k:05d}")
        game_file = os.path.join(trial, "game.tw-pddl")
        os.makedirs(trial, exist_ok=True)
        game = {
            "pddl_domain": domain,
            "grammar": grammar.replace("UNKNOWN GOAL", spec.task_sentence),
            "pddl_problem": problem_pddl(spec, f"agentgen_{split}_{seed}_{k:05d}"),
            "solvable": None,
            "walkthrough": None,
        }
        with open(os.path.join(trial, "traj_data.json"), "w") as f:
            json.dump(traj_data(spec, f"{split}-{seed}-{k:05d}", seed), f, indent=1)
        with open(game_file, "w") as f:
            json.dump(game, f)
        already_won, walkthrough = _expert_solves(_WORKER_ENGINE, game_file, max_expert_steps)
        if walkthrough is None:
            rejected["goal true at the start" if already_won else "expert did not solve it"] += 1
            shutil.rmtree(trial)
            if not os.listdir(os.path.dirname(trial)):
                os.rmdir(os.path.dirname(trial))
            continue
        game["solvable"], game["walkthrough"] = True, walkthrough
        with open(game_file, "w") as f:
            json.dump(game, f)
        return k, attempt + 1, rejected
    raise RuntimeError(f"no valid {task_type} game after {MAX_ATTEMPTS_PER_GAME} attempts "
                       f"(split {split}, game {k}); rejections: {dict(rejected)}")


def generate_split(out_dir: str, split: str, num_games: int, seed: int = 0, task_types=TASK_TYPES,
                   max_expert_steps: int = 50, workers: int = 1, progress: bool = True) -> SplitReport:
    """Write ``num_games`` checked games of data split ``split`` (train | valid_seen | valid_unseen)
    under ``out_dir``, with ``workers`` processes. Game k cycles through ``task_types``, so the types
    are balanced; its content depends only on (seed, split, k, task_types, max_expert_steps)."""
    if split not in DATA_SPLITS:
        raise ValueError(f"unknown ALFWorld data split {split!r}; valid: {', '.join(DATA_SPLITS)}")
    if num_games < 1:
        raise ValueError(f"num_games must be >= 1, got {num_games}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    task_types = check_task_types(task_types)
    os.makedirs(out_dir, exist_ok=True)
    jobs = [(out_dir, split, k, seed, task_types, max_expert_steps) for k in range(num_games)]
    report = SplitReport(split, num_games, 0, Counter())
    bar = tqdm(total=num_games, desc=f"generating alfworld {split} games", disable=not progress, unit="game")
    if workers == 1:
        results = map(_generate_game, jobs)
        pool = None
    else:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap_unordered(_generate_game, jobs)
    try:
        for _, attempts, rejected in results:
            report.attempts += attempts
            report.rejected.update(rejected)
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
        else:
            _release_worker_engine()
    return report


def _release_worker_engine() -> None:
    global _WORKER_ENGINE
    from agentgen.envs.alfworld.engine import close_engine

    close_engine(_WORKER_ENGINE)
    _WORKER_ENGINE = None


def generate_dataset(root: str, num_games: dict[str, int], seed: int = 0, task_types=TASK_TYPES,
                     max_expert_steps: int = 50, workers: int = 1, progress: bool = True) -> list[SplitReport]:
    """Write ``root/json_2.1.1/<split>`` for each split in ``num_games`` ({split: count})."""
    return [
        generate_split(os.path.join(root, "json_2.1.1", split), split, n, seed, task_types,
                       max_expert_steps, workers, progress)
        for split, n in num_games.items()
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agentgen.envs.alfworld.generate",
        description="Generate checked ALFWorld games in the released folder format (DIR/json_2.1.1/<split>/...).",
    )
    parser.add_argument("--out", required=True, help="output root; games go to OUT/json_2.1.1/<split>/")
    parser.add_argument("--num-games", type=int, required=True, help="games per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--splits", nargs="+", default=list(DATA_SPLITS), choices=DATA_SPLITS)
    parser.add_argument("--task-types", nargs="+", default=list(TASK_TYPES), choices=TASK_TYPES)
    parser.add_argument("--max-expert-steps", type=int, default=50,
                        help="keep a game only if the expert solves it within this many commands")
    parser.add_argument("--workers", type=int, default=1, help="generating processes")
    args = parser.parse_args(argv)
    reports = generate_dataset(args.out, {s: args.num_games for s in args.splits}, args.seed,
                               args.task_types, args.max_expert_steps, args.workers)
    for r in reports:
        print(f"{r.split}: {r.games} games from {r.attempts} attempts; rejected: {dict(r.rejected) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
