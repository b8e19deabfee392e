"""Environment profile (papers.md A Table 1, with augmented rows) and the cost of augmentation.

Prints, per env and augment level, the profile figures of the expert (or random) policy and the time
they took, then the per-observation cost of the distractors (augmented vs plain env steps).

.venv/bin/python bench/bench_profile.py [--envs sokoban,webshop,sciworld] [--levels none,low,medium,high]
                                        [--episodes 32] [--policy expert] [--steps 2000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from agentgen.augment import parse_settings
from agentgen.augment.wrapper import AugmentedEnv
from agentgen.config import group_options
from agentgen.profile import compose_config, format_table, run_profile


def bench_profiles(envs: list[str], levels: list[str], episodes: int, policy: str, tmax: int) -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for level in levels:
            t = time.perf_counter()
            cfg = compose_config(
                envs,
                level,
                [
                    f"++profile.episodes={episodes}",
                    f"++profile.tmax={tmax}",
                    f"++profile.policy={policy}",
                    "logger=none",
                ],
            )
            results[level] = run_profile(cfg, Path(tmp) / level)
            per_env = ", ".join(f"{e} {r['wall_seconds']:.1f}s" for e, r in results[level].items())
            print(f"profiled augment={level} in {time.perf_counter() - t:.1f}s ({per_env})", flush=True)
    print(f"\n{policy} policy, {episodes} trajectories per env, Tmax {tmax}:")
    print(format_table(results))


def bench_overhead(env_name: str, level: str, steps: int) -> None:
    """Time spent adding distractors per observation (measured inside the wrapper, so engine speed and
    noise do not enter), next to the env's own step time."""
    import yaml

    from agentgen.config import CONF_DIR

    aug = parse_settings(yaml.safe_load((CONF_DIR / "augment" / f"{level}.yaml").read_text()), 0)
    kwargs = {"max_steps": 15} if env_name != "sciworld" else {"max_steps": 50, "gold_path": False}
    env = AugmentedEnv("train", inner=env_name, inner_kwargs=kwargs, augment=aug)
    spent = [0.0, 0]
    augment = env._augment

    def timed(obs: str) -> str:
        t0 = time.perf_counter()
        out = augment(obs)
        spent[0] += time.perf_counter() - t0
        spent[1] += 1
        return out

    env._augment = timed
    rng, seed, raw_chars, chars = random.Random(0), 0, 0, 0
    obs, info = env.reset(seed)
    t = time.perf_counter()
    for _ in range(steps):
        options = info.get("admissible_actions") or ["look around", "inventory", "wait1"]
        obs, _, done, info = env.step(rng.choice(options).replace("<your query>", "gift for a friend"))
        raw_chars += len(env.raw_observation)
        chars += len(obs)
        if done:
            seed += 1
            obs, info = env.reset(seed)
    total = time.perf_counter() - t
    env.close()
    per_obs = 1e6 * spent[0] / spent[1]
    print(
        f"{env_name:9s} augment={level}: {per_obs:6.0f} us per observation to add distractors "
        f"({raw_chars / steps:5.0f} -> {chars / steps:5.0f} chars/obs); whole step incl. engine "
        f"{1e6 * total / steps:8.0f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", default="sokoban,webshop")
    parser.add_argument("--levels", default="none,low,medium,high")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--tmax", type=int, default=50)
    parser.add_argument("--policy", default="expert")
    parser.add_argument(
        "--steps", type=int, default=2000, help="steps for the overhead measurement (0: skip)"
    )
    args = parser.parse_args()
    envs = [e for e in args.envs.split(",") if e]
    unknown = [e for e in envs if e not in group_options("env")]
    if unknown:
        parser.error(f"unknown env(s) {unknown}; valid: {', '.join(group_options('env'))}")
    bench_profiles(envs, args.levels.split(","), args.episodes, args.policy, args.tmax)
    if args.steps:
        print()
        for env in envs:
            bench_overhead(env, "high", args.steps if env != "sciworld" else min(args.steps, 200))


if __name__ == "__main__":
    main()
