"""Where an ALFWorld env's games come from: the released data, or generated games cached on disk.

Released data: ``<data_dir>/json_2.1.1/{train,valid_seen,valid_unseen}`` (``data_dir`` defaults to
``$ALFWORLD_DATA``, else alfworld's own default ``~/.cache/alfworld``, where ``alfworld-download`` puts
it). Games are collected the way alfworld's ``AlfredTWEnv`` does: a folder with ``traj_data.json`` and
``game.tw-pddl`` marked solvable, of a requested task type, no movable-receptacle or sliced tasks.

Generated games: made by ``generate.py`` on first use into
``<cache_dir>/alfworld/<key>/json_2.1.1/<split>``, where ``key`` hashes every generator parameter.
Several processes may start at once: one generates under a file lock into a temporary folder and
renames it into place when complete; the others wait for the lock and then read the finished folder.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import shutil

from agentgen.envs.alfworld.problem import TASK_TYPES

DATA_VERSION_DIR = "json_2.1.1"
SOURCES = ("auto", "data", "generated")


def default_data_dir() -> str:
    """``$ALFWORLD_DATA`` or alfworld's default download folder (importing alfworld sets the former)."""
    return os.path.expandvars(os.environ.get("ALFWORLD_DATA") or os.path.expanduser("~/.cache/alfworld"))


def default_cache_dir() -> str:
    return os.environ.get("AGENTGEN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "agentgen")


def collect_games(split_dir: str, task_types=TASK_TYPES) -> list[str]:
    """Solvable game files under ``split_dir`` of the given task types, sorted by path. Cached per
    process (many env instances read the same folder; the released train split has 3,553 games)."""
    mtime = os.stat(split_dir).st_mtime_ns if os.path.isdir(split_dir) else None
    return list(_collect_games(os.path.abspath(split_dir), mtime, tuple(sorted(set(task_types)))))


@functools.lru_cache(maxsize=64)
def _collect_games(split_dir: str, mtime, task_types: tuple[str, ...]) -> tuple[str, ...]:
    games = []
    for traj_path in glob.glob(os.path.join(split_dir, "**", "traj_data.json"), recursive=True):
        root = os.path.dirname(traj_path)
        game_file = os.path.join(root, "game.tw-pddl")
        if "movable" in root or "Sliced" in root or not os.path.exists(game_file):
            continue
        with open(traj_path) as f:
            if json.load(f).get("task_type") not in task_types:
                continue
        with open(game_file) as f:
            if not json.load(f).get("solvable"):
                continue
        games.append(game_file)
    return tuple(sorted(games))


def generator_key(split: str, num_games: int, seed: int, task_types, max_expert_steps: int) -> str:
    from agentgen.envs.alfworld.generate import GENERATOR_VERSION

    params = {
        "version": GENERATOR_VERSION,
        "split": split,
        "num_games": int(num_games),
        "seed": int(seed),
        "task_types": sorted(task_types),
        "max_expert_steps": int(max_expert_steps),
    }
    return f"{split}-{hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]}"


def generated_split_dir(split: str, num_games: int, seed: int = 0, task_types=TASK_TYPES,
                        max_expert_steps: int = 50, cache_dir: str | None = None, workers: int = 1,
                        progress: bool = True) -> str:
    """The folder of generated games for data split ``split``, generating it on first use."""
    from filelock import FileLock

    from agentgen.envs.alfworld.generate import generate_split

    root = os.path.join(cache_dir or default_cache_dir(), "alfworld")
    key = generator_key(split, num_games, seed, task_types, max_expert_steps)
    final = os.path.join(root, key)
    split_dir = os.path.join(final, DATA_VERSION_DIR, split)
    if os.path.isdir(final):
        return split_dir
    os.makedirs(root, exist_ok=True)
    with FileLock(os.path.join(root, key + ".lock")):
        if os.path.isdir(final):  # another process finished it while we waited
            return split_dir
        for stale in glob.glob(os.path.join(root, f".{key}.tmp-*")):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        tmp = os.path.join(root, f".{key}.tmp-{os.getpid()}")
        generate_split(os.path.join(tmp, DATA_VERSION_DIR, split), split, num_games, seed, task_types,
                       max_expert_steps, workers, progress)
        os.rename(tmp, final)
    return split_dir
