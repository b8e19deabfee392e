"""ScienceWorld stepping speed and JVM memory: package step vs fast server stepping vs SciWorldEnv.

Each mode replays the gold paths of the same tasks (variation 0) and counts only the time spent in
step calls (loads are timed separately). Figures:
- package: ``scienceworld.ScienceWorldEnv.step`` (also lists every valid action each step);
- engine:  ``SciWorldEngine.step`` (step + score + completion over py4j), with the deterministic JVM
  (fixed identity hashes, the default) and without;
- env:     ``SciWorldEnv.step`` with and without the objects line in the observation;
- JVM resident memory of the package's uncapped JVM vs ours with the heap cap.

    .venv/bin/python bench/bench_sciworld.py [--tasks boil,use-thermometer,...] [--heap 768m]
"""

from __future__ import annotations

import argparse
import statistics
import time

import psutil

from agentgen.envs.sciworld import SciWorldEnv
from agentgen.envs.sciworld.engine import SciWorldEngine

DEFAULT_TASKS = "boil,use-thermometer,power-component,chemistry-mix,find-animal,identify-life-stages-1"


def gold_paths(engine: SciWorldEngine, tasks: list[str]) -> dict[str, list[str]]:
    out = {}
    for task in tasks:
        engine.load(task, 0, "easy", gold_path=True)
        out[task] = engine.gold_actions()
    return out


def bench_package(gold: dict[str, list[str]], max_steps: int) -> tuple[float, int, int]:
    from scienceworld import ScienceWorldEnv

    env = ScienceWorldEnv("", envStepLimit=1000)
    proc = env._gateway.java_process
    steps, spent = 0, 0.0
    try:
        for task, actions in gold.items():
            env.load(task, 0, "easy")
            env.reset()
            for action in actions[:max_steps]:
                t = time.perf_counter()
                env.step(action)
                spent += time.perf_counter() - t
                steps += 1
        rss = psutil.Process(proc.pid).memory_info().rss
    finally:
        env.close()
        proc.kill()
        proc.wait(10)
    return steps / spent, steps, rss


def bench_engine(
    engine: SciWorldEngine, gold: dict[str, list[str]], repeats: int
) -> tuple[float, int, float]:
    steps, spent, loads = 0, 0.0, []
    for _ in range(repeats):
        for task, actions in gold.items():
            t = time.perf_counter()
            engine.load(task, 0, "easy")
            loads.append(time.perf_counter() - t)
            for action in actions:
                t = time.perf_counter()
                engine.step(action)
                spent += time.perf_counter() - t
                steps += 1
    return steps / spent, steps, statistics.mean(loads)


def bench_env(tasks: list[str], heap: str, show_objects: bool, repeats: int) -> tuple[float, int, float, int]:
    steps, spent, resets = 0, 0.0, []
    with SciWorldEnv("train", max_steps=200, tasks=tasks, show_objects=show_objects, jvm_heap=heap) as env:
        for _ in range(repeats):
            for task in tasks:
                t = time.perf_counter()
                env.reset(env.seed_for_instance(task, 0))
                resets.append(time.perf_counter() - t)
                while not env.done and env.expert_action() is not None:
                    action = env.expert_action()
                    t = time.perf_counter()
                    env.step(action)
                    spent += time.perf_counter() - t
                    steps += 1
        rss = env.engine.memory_rss()
    return steps / spent, steps, statistics.mean(resets), rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated task names")
    ap.add_argument("--heap", default="768m", help="-Xmx of our JVMs")
    ap.add_argument("--repeats", type=int, default=2, help="passes over the tasks (fast modes)")
    ap.add_argument("--package-steps", type=int, default=15, help="gold steps per task for the slow package")
    args = ap.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]

    t = time.perf_counter()
    engine = SciWorldEngine(heap=args.heap)
    start = time.perf_counter() - t
    try:
        gold = gold_paths(engine, tasks)
        bench_engine(engine, gold, 1)  # JIT warm-up, not counted
        fast, fast_n, load = bench_engine(engine, gold, args.repeats)
        engine_rss = engine.memory_rss()
    finally:
        engine.close()
    with SciWorldEngine(heap=args.heap, deterministic=False) as hashed:
        bench_engine(hashed, gold, 1)
        fast_hashed, fast_hashed_n, _ = bench_engine(hashed, gold, args.repeats)
    pkg, pkg_n, pkg_rss = bench_package(gold, args.package_steps)
    env_obj, env_obj_n, reset_s, env_rss = bench_env(tasks, args.heap, True, args.repeats)
    env_plain, env_plain_n, _, _ = bench_env(tasks, args.heap, False, args.repeats)

    print(f"ScienceWorld bench: tasks {', '.join(tasks)} (variation 0, gold paths, 'easy')")
    print(
        f"JVM start: {start:.2f} s; load without gold: {load * 1000:.0f} ms; env reset with gold: {reset_s:.2f} s"
    )
    print(f"{'mode':44s} {'steps/s':>9s} {'steps':>6s}")
    print(f"{'package ScienceWorldEnv.step (valid actions)':44s} {pkg:9.1f} {pkg_n:6d}")
    print(f"{'SciWorldEngine.step (fast, deterministic)':44s} {fast:9.1f} {fast_n:6d}")
    print(f"{'SciWorldEngine.step (fast, hash-ordered JVM)':44s} {fast_hashed:9.1f} {fast_hashed_n:6d}")
    print(f"{'SciWorldEnv.step, objects line':44s} {env_obj:9.1f} {env_obj_n:6d}")
    print(f"{'SciWorldEnv.step, no objects line':44s} {env_plain:9.1f} {env_plain_n:6d}")
    print(f"speed-up engine / package: {fast / pkg:.0f}x; env (objects) / package: {env_obj / pkg:.0f}x")
    print(
        f"JVM resident memory: package (no cap) {pkg_rss / 1e6:.0f} MB; ours -Xmx{args.heap} "
        f"+ SerialGC: engine {engine_rss / 1e6:.0f} MB, env {env_rss / 1e6:.0f} MB"
    )


if __name__ == "__main__":
    main()
