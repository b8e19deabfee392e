"""WebShop offline benchmark: catalog build time, search latency, env steps/s, expert success rate.

.venv/bin/python bench/bench_webshop.py                 # default catalog (3000 products)
.venv/bin/python bench/bench_webshop.py --episodes 200  # quicker expert measurement
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from agentgen.envs import make
from agentgen.envs.webshop.catalog import build_catalog, split_goals
from agentgen.envs.webshop.expert import expert_query
from agentgen.envs.webshop.generator import generate_catalog
from agentgen.envs.webshop.search import ProductSearch


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def bench_build(num_products: int) -> None:
    raw, t_gen = timed(generate_catalog, num_products, seed=0)
    catalog, t_build = timed(build_catalog, raw, "synthetic", seed=0)
    search, t_index = timed(ProductSearch, catalog.products)
    splits = split_goals(catalog.goals, 500)
    print(
        f"catalog: {len(catalog.products)} products, {len(catalog.goals)} goals "
        f"(test {len(splits['test'])}, train {len(splits['train'])})"
    )
    print(
        f"  generate {t_gen:.2f} s, process + goals {t_build:.2f} s, BM25 index {t_index:.2f} s, "
        f"total {t_gen + t_build + t_index:.2f} s"
    )
    queries = [expert_query(g["instruction_text"]) for g in random.Random(0).sample(catalog.goals, 300)]
    times = []
    for q in queries:
        search._cache.clear()
        _, dt = timed(search.search, q)
        times.append(dt * 1000)
    times.sort()
    print(
        f"search (uncached, {len(queries)} goal queries): mean {statistics.mean(times):.2f} ms, "
        f"p50 {times[len(times) // 2]:.2f} ms, p95 {times[int(len(times) * 0.95)]:.2f} ms"
    )


def bench_random_policy(num_products: int | None, steps: int) -> None:
    env = make("webshop", "train", max_steps=15, num_products=num_products)
    rng = random.Random(0)
    env.reset(0)
    words = ["deodorant", "office chair", "green tea", "running shoes", "usb c charger", "mixed nuts"]
    t, episodes = time.perf_counter(), 0
    for i in range(steps):
        actions = env.admissible_actions()
        action = rng.choice(actions)
        if action.startswith("search["):
            action = f"search[{rng.choice(words)}]"
        _, _, done, _ = env.step(action)
        if done:
            episodes += 1
            env.reset(i)
    dt = time.perf_counter() - t
    print(f"env steps/s (random admissible actions, no expert): {steps / dt:.0f} ({episodes} episodes)")


def bench_expert(num_products: int | None, episodes: int) -> None:
    for split in ("test", "train"):
        env = make("webshop", split, max_steps=15, num_products=num_products)
        n = min(episodes, len(env.goals))
        wins, scores, steps = 0, [], 0
        t = time.perf_counter()
        for seed in range(n):
            env.reset(seed)
            info = {}
            while not env.done:
                _, _, _, info = env.step(env.expert_action())
                steps += 1
            wins += info["webshop_reward"] == 1.0
            scores.append(info["webshop_reward"])
        dt = time.perf_counter() - t
        print(
            f"expert on {split} ({n} goals): success (score 1.0) {wins / n:.1%}, mean score "
            f"{statistics.mean(scores):.4f}, {steps / n:.2f} steps/episode, {steps / dt:.0f} steps/s with expert"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-products", type=int, default=3000)
    ap.add_argument("--episodes", type=int, default=500, help="expert episodes per split")
    ap.add_argument("--random-steps", type=int, default=5000)
    args = ap.parse_args()
    bench_build(args.num_products)
    bench_random_policy(args.num_products, args.random_steps)
    bench_expert(args.num_products, args.episodes)


if __name__ == "__main__":
    main()
