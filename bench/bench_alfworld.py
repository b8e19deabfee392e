"""ALFWorld speed: load+reset time and steps per second, raw TextWorld engine vs AlfWorldEnv.

    .venv/bin/python bench/bench_alfworld.py [--games 6] [--steps 30] [--split train]

Plays the same games (generated ones from the env's cache, made on first use) three ways:
1. raw: TextWorld's PddlEnv with alfworld's AlfredDemangler/AlfredInfos wrappers, unmodified;
2. raw + speedups: the same engine with agentgen's cached parsing and PDDL->SAS translation;
3. AlfWorldEnv: the agentgen env (speedups, command normalisation, info dict), random valid commands,
   then whole episodes following the expert (expert_action + expert_thought every step).
1 and 2 run in fresh processes (the speed-ups patch TextWorld process-wide). Figures are wall-clock
and CPU seconds (the CPU figure is the one to compare on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time


class Clock:
    def __init__(self):
        self.wall = self.cpu = 0.0

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def bench_raw(game_files, steps, seed):
    """First load+reset, a second reset, and random valid steps on the bare engine."""
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
    from textworld.envs import PddlEnv

    from agentgen.envs.alfworld.engine import REQUEST

    engine = AlfredInfos(AlfredDemangler(PddlEnv(textworld.EnvInfos(**REQUEST)), shuffle=False))
    rng = random.Random(seed)
    first, again, stepping, n = [], [], Clock(), 0
    for game in game_files:
        with Clock() as c:
            engine.load(game)
            state = engine.reset()
        first.append(c)
        with Clock() as c:
            state = engine.reset()
        again.append(c)
        for _ in range(steps):
            command = rng.choice([x for x in state["admissible_commands"] if x != "help"])
            with stepping:
                state, _, done = engine.step(command)
            n += 1
            if done:
                break
    return first, again, stepping, n


def bench_env(env, steps, seed):
    rng = random.Random(seed)
    first, again, stepping, n = [], [], Clock(), 0
    for i in range(len(env.game_files)):
        with Clock() as c:
            env.reset(i)
        first.append(c)
        with Clock() as c:
            env.reset(i)
        again.append(c)
        for _ in range(steps):
            with stepping:
                _, _, done, _ = env.step(rng.choice(env.admissible_actions()))
            n += 1
            if done:
                break
    expert, expert_steps, solved = Clock(), 0, 0
    for i in range(len(env.game_files)):
        env.reset(i)
        done = False
        while not done:
            with expert:
                action = env.expert_action()
                env.expert_thought()
                _, _, done, info = env.step(action)
            expert_steps += 1
        solved += info["success"]
    return first, again, stepping, n, expert, expert_steps, solved


def bench_experts(game_files, max_steps=50, seed=0):
    """Games solved within ``max_steps`` by alfworld's own handcoded expert (through its AlfredExpert
    wrapper, which answers "look" when the expert's command is not possible) and by ours (repaired,
    without the planner fallback)."""
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredExpert, AlfredInfos
    from textworld.envs import PddlEnv

    from agentgen.envs.alfworld.engine import close_engine, open_engine
    from agentgen.envs.alfworld.expert import AlfWorldExpert

    random.seed(seed)  # alfworld's expert draws from the global generator
    infos = textworld.EnvInfos(won=True, admissible_commands=True, facts=True, extras=["expert_plan"])
    original = AlfredExpert(AlfredInfos(AlfredDemangler(PddlEnv(infos))), expert_type="handcoded")
    ours = open_engine()
    solved = {"alfworld": 0, "agentgen": 0}
    for game in game_files:
        original.load(game)
        state = original.reset()
        try:
            for _ in range(max_steps):
                state, _, _ = original.step(state["extra.expert_plan"][0])
                if state["won"]:
                    solved["alfworld"] += 1
                    break
        except Exception:  # its step budget ("Timeout") or a crash counts as unsolved
            pass
        ours.load(game)
        state = ours.reset()
        expert = AlfWorldExpert(game, ours, seed=seed, fallback=False)
        expert.start(state)
        for _ in range(max_steps):
            command = expert.action()
            if command is None:
                break
            state, _, _ = ours.step(command)
            if state["won"]:
                solved["agentgen"] += 1
                break
            expert.advance(state, command)
    close_engine(ours)
    return solved


def _summary(first, again, stepping, n):
    mean = lambda clocks, attr: statistics.mean(getattr(c, attr) for c in clocks)  # noqa: E731
    return {"first_wall": mean(first, "wall"), "first_cpu": mean(first, "cpu"),
            "again_wall": mean(again, "wall"), "again_cpu": mean(again, "cpu"),
            "steps_wall": n / stepping.wall, "steps_cpu": n / stepping.cpu}


def _row(name, r):
    print(f"{name:<22} {r['first_wall']:>8.2f} {r['first_cpu']:>8.2f} {r['again_wall']:>8.2f} "
          f"{r['again_cpu']:>8.2f} {r['steps_wall']:>9.1f} {r['steps_cpu']:>9.1f}")


def _raw_in_subprocess(games, steps, seed, speedups: bool):
    """Each engine variant runs in a fresh process: the speed-ups patch TextWorld process-wide."""
    env = {**os.environ, "AGENTGEN_ALFWORLD_NO_SPEEDUPS": "0" if speedups else "1"}
    out = subprocess.run(
        [sys.executable, __file__, "--raw-worker", json.dumps({"games": games, "steps": steps, "seed": seed,
                                                               "speedups": speedups})],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--games", type=int, default=6, help="games to play (one of each task type at 6)")
    parser.add_argument("--steps", type=int, default=30, help="random valid commands per game")
    parser.add_argument("--split", default="train", choices=["train", "test"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="generated-games cache (default: the env's)")
    parser.add_argument("--compare-experts", type=int, default=0, metavar="N",
                        help="also play N generated games with alfworld's handcoded expert and ours")
    parser.add_argument("--raw-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.raw_worker:
        job = json.loads(args.raw_worker)
        if job["speedups"]:
            from agentgen.envs.alfworld import speedups

            speedups.install()
        print(json.dumps(_summary(*bench_raw(job["games"], job["steps"], job["seed"]))))
        return

    from agentgen.envs.alfworld import AlfWorldEnv

    counts = {"train": args.games, "test": args.games}
    env = AlfWorldEnv(split=args.split, max_steps=50, source="generated", num_generated_games=counts,
                      cache_dir=args.cache_dir)
    games = [env.game_file(i) for i in range(len(env.game_files))]
    raw = _raw_in_subprocess(games, args.steps, args.seed, speedups=False)
    patched = _raw_in_subprocess(games, args.steps, args.seed, speedups=True)
    import fast_downward

    if hasattr(fast_downward.pddl2sas, "cache"):
        fast_downward.pddl2sas.cache.cache_clear()  # the env's first resets start cold, like the others
    first, again, stepping, n, expert, expert_steps, solved = bench_env(env, args.steps, args.seed)
    env.close()

    print(f"\nALFWorld, {len(games)} generated {env.data_split} games, {args.steps} random valid steps each")
    print(f"{'':<22} {'load+reset (s)':>17} {'reset again (s)':>17} {'steps/s':>19}")
    print(f"{'':<22} {'wall':>8} {'cpu':>8} {'wall':>8} {'cpu':>8} {'wall':>9} {'cpu':>9}")
    _row("raw TextWorld", raw)
    _row("raw + speedups", patched)
    _row("AlfWorldEnv", _summary(first, again, stepping, n))
    print(f"AlfWorldEnv following the expert: {expert_steps / expert.wall:.1f} steps/s wall, "
          f"{expert_steps / expert.cpu:.1f} cpu; solved {solved}/{len(games)} in {expert_steps} steps")
    if args.compare_experts:
        games = _unchecked_games(args.compare_experts, args.seed)
        solved = bench_experts(games, 50, args.seed)
        print(f"handcoded expert within 50 steps on {len(games)} freshly sampled, unchecked games: "
              f"alfworld 0.4.2 {solved['alfworld']}, agentgen (repaired) {solved['agentgen']}")


def _unchecked_games(n, seed):
    """``n`` games sampled like the generator's (cycling through the six task types, training rooms)
    but not filtered by the expert check, so neither expert is favoured."""
    import tempfile

    from agentgen.envs.alfworld import generate as G
    from agentgen.envs.alfworld.problem import (
        TASK_FAMILIES,
        TASK_TYPES,
        TaskUnavailable,
        problem_pddl,
        sample_game,
        traj_data,
    )
    from agentgen.envs.alfworld.scenes import TRAIN_SCENES, load_scene

    domain, grammar = G._logic_files()
    out = tempfile.mkdtemp(prefix="alfworld-bench-")
    games = []
    for k in range(n):
        task_type = TASK_TYPES[k % len(TASK_TYPES)]
        rng = random.Random(f"bench:{seed}:{k}")
        hosts = [s for s in map(load_scene, TRAIN_SCENES) if s.family in TASK_FAMILIES[task_type]]
        while True:
            try:
                spec = sample_game(task_type, rng.choice(hosts), rng)
                break
            except TaskUnavailable:
                continue
        trial = os.path.join(out, spec.folder_name, f"trial_{k:05d}")
        os.makedirs(trial)
        game = {"pddl_domain": domain, "grammar": grammar.replace("UNKNOWN GOAL", spec.task_sentence),
                "pddl_problem": problem_pddl(spec, f"bench_{k}"), "solvable": True, "walkthrough": None}
        with open(os.path.join(trial, "game.tw-pddl"), "w") as f:
            json.dump(game, f)
        with open(os.path.join(trial, "traj_data.json"), "w") as f:
            json.dump(traj_data(spec, f"bench-{k}", seed), f)
        games.append(os.path.join(trial, "game.tw-pddl"))
    return games

if __name__ == "__main__":
    main()
