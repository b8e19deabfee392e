"""Sokoban speed: puzzles generated per second, solver time per puzzle, env steps per second.

.venv/bin/python bench/bench_sokoban.py [--rooms 2000] [--steps 20000]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter

from agentgen.envs import make
from agentgen.envs.sokoban import ACTIONS, generate_puzzle, solve


def bench_generation(dim: int, boxes: int, n: int, max_len: int) -> list:
    rng = random.Random(0)
    t = time.perf_counter()
    puzzles = [generate_puzzle(rng, dim, dim, boxes, 1, max_len) for _ in range(n)]
    dt = time.perf_counter() - t
    lengths = Counter(p.optimal_len for p in puzzles)
    mean = sum(p.optimal_len for p in puzzles) / n
    print(
        f"generate {dim}x{dim} {boxes} box(es), max_len {max_len}: {n / dt:8.0f} rooms/s "
        f"(mean optimal length {mean:.1f}, {sum(p.attempts for p in puzzles) / n:.2f} rooms grown each)"
    )
    if boxes == 1:
        print("  optimal length histogram:", dict(sorted(lengths.items())))
    return puzzles


def bench_solver(puzzles: list, label: str) -> None:
    t = time.perf_counter()
    for p in puzzles:
        assert len(solve(p.room, p.state)) == p.optimal_len
    print(f"solve {label}: {(time.perf_counter() - t) / len(puzzles) * 1e3:8.3f} ms/room")


def bench_env(steps: int) -> None:
    env = make("sokoban", "train", max_steps=15)
    rng = random.Random(0)
    t = time.perf_counter()
    seed, n, resets = 0, 0, 0
    env.reset(seed)
    while n < steps:
        _, _, done, _ = env.step(ACTIONS[rng.randrange(4)])
        n += 1
        if done:
            seed += 1
            resets += 1
            env.reset(seed)
    dt = time.perf_counter() - t
    print(f"env random play (resets included, {resets} episodes): {n / dt:8.0f} steps/s")
    t = time.perf_counter()
    for seed in range(500):
        env.reset(seed)
    print(f"env reset (split-filtered generation): {500 / (time.perf_counter() - t):8.0f} resets/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rooms", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=20000)
    args = ap.parse_args()
    six = bench_generation(6, 1, args.rooms, 15)
    bench_solver(six[:500], "6x6 1 box")
    eight = bench_generation(8, 2, max(20, args.rooms // 20), 25)
    bench_solver(eight, "8x8 2 boxes")
    ten = bench_generation(10, 3, max(10, args.rooms // 100), 30)
    bench_solver(ten, "10x10 3 boxes")
    bench_env(args.steps)


if __name__ == "__main__":
    main()
