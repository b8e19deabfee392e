"""Env stepping's share of the episode loop when the policy acts validly: every env, with and without
``rollout.env_overlap``, at the default run's batch (32 episodes: 4 instances x 8).

    python bench/bench_env_share.py --init-from <job dir>                       # all four envs
    python bench/bench_env_share.py --init-from <job dir> --envs alfworld,sciworld --workers 2 -- think=false

Why not just run RL on the text envs: the CPU model (the tiny one, SFT'd on Sokoban) almost never gives a valid
action there, so its env steps are cheap rejections and the env's share looks small for the wrong reason. Here
each episode plays the *expert's* actions, while the model generates every answer for real on the env's real
prompt, through the job's rollout engine: the env does the work a competent policy's actions cost, the model the
work of writing them. Each answer is exactly as long as the expert's answer for that state would be in tokens
(median over the expert's answers of the env, end tokens off), so generation costs what a policy answering
like the expert pays.

Per env and mode it prints seconds per turn-batch of generation (with prompts and parsing), of waiting on the
env pool, and of env work hidden behind generation, and the env share of the loop's wall time (the quantity
issue 22 item 3 bounds: < 5% for Sokoban and WebShop, < 15% for ALFWorld and ScienceWorld). The first pass
(the expert alone) pays the engines' start-up (ScienceWorld's JVMs, ALFWorld's game files) and is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentgen.preflight import compose_job  # noqa: E402
from agentgen.rollout.policy import ExpertPolicy  # noqa: E402
from agentgen.rollout.runner import EpisodeRunner, EpisodeSpec  # noqa: E402
from agentgen.workspace import Workspace  # noqa: E402

ENVS = ("sokoban", "webshop", "alfworld", "sciworld")
TARGET = {"sokoban": 0.05, "webshop": 0.05, "alfworld": 0.15, "sciworld": 0.15}


class ExpertActions:
    """The model writes each answer (real prompts, real generation); the expert's recorded action is stepped."""

    def __init__(self, model_policy, actions: dict[int, list[str]]):
        self.model = model_policy
        self.actions = actions  # episode seed -> the expert's actions, in order

    def act(self, states):
        out = []
        for st, d in zip(states, self.model.act(states)):
            plan, turn = self.actions.get(st.episode.spec.seed, []), len(st.episode.turns)
            if d is not None and turn < len(plan):
                d.action, d.format_ok = plan[turn], True
            out.append(d if turn < len(plan) else None)  # past the expert's plan the episode ends
        return out


def measure(env: str, job: str, instances: int, group: int, workers: int, overrides: list[str], seed: int) -> list:
    cfg = compose_job(["logger=none", "sft=none", f"init_from={job}", f"env={env}", f"rollout.num_workers={workers}",
                       *overrides])
    ws = Workspace(cfg, Path(tempfile.mkdtemp(prefix="bench-env-share-")))
    rows = []
    try:
        ws.open_policy(None)
        slots = instances * group
        specs = [EpisodeSpec(env, seed + i // group) for i in range(slots)]
        runner = ws.runner(env, "train", slots)
        t0 = time.perf_counter()
        expert = EpisodeRunner(runner.pool, ExpertPolicy(runner.pool, ws.prompts), runner.max_turns)
        played = expert.run(specs)
        warm = time.perf_counter() - t0
        plans = {e.spec.seed: [t.action for t in e.turns] for e in played}
        answers = [len(ws.tokenizer.encode(t.response, add_special_tokens=False)) for e in played for t in e.turns]
        answer_tokens = max(1, int(statistics.median(answers)))
        turns = sum(len(e.turns) for e in played)
        print(f"\n== {env}: {slots} episodes ({instances} instances x {group}), {workers} env workers; expert: "
              f"{turns} turns, success {sum(e.success for e in played) / len(played):.2f}, answers "
              f"{answer_tokens} tokens (median); first pass {warm:.1f} s (start-up, not counted)", flush=True)
        for overlap in (False, True):
            runner = ws.runner(env, "train", slots)
            runner.waves = 2 if overlap else 1
            policy = runner.policy
            policy.max_response_tokens = answer_tokens
            policy.generator.eos_ids, policy.generator.stop_strings = [], []  # every answer exactly that long
            runner.policy = ExpertActions(policy, plans)
            t0 = time.perf_counter()
            eps = runner.run(specs)
            wall = time.perf_counter() - t0
            s = runner.seconds
            loop = s["policy"] + s["env"]
            rows.append((env, overlap, wall, policy.generate_seconds, s["policy"], s["env"], s["env_hidden"],
                         s["env"] / loop, sum(len(e.turns) for e in eps), sum(e.success for e in eps) / len(eps)))
            gen = policy.generate_seconds
            print(f"  overlap {'on ' if overlap else 'off'}: loop {wall:6.1f} s, generation {gen:6.1f} s "
                  f"(+ prompts {s['policy'] - policy.generate_seconds:4.1f} s), env waited {s['env']:6.1f} s, "
                  f"hidden {s['env_hidden']:5.1f} s -> env share {100 * s['env'] / loop:5.1f}% "
                  f"(target < {100 * TARGET.get(env, 0.15):.0f}%); {rows[-1][8]} turns, success {rows[-1][9]:.2f}",
                  flush=True)
    finally:
        ws.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--init-from", required=True, help="a job dir whose latest checkpoint is the model")
    ap.add_argument("--envs", default=",".join(ENVS))
    ap.add_argument("--instances", type=int, default=4)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0, help="rollout.num_workers (0: the envs step in-process)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("overrides", nargs="*", help="launch.py overrides (after --)")
    args = ap.parse_args()
    rows = []
    for env in args.envs.split(","):
        rows += measure(env, args.init_from, args.instances, args.group, args.workers, args.overrides, args.seed)
    print(f"\n{'env':<10} {'overlap':>7} {'loop s':>8} {'gen s':>7} {'env s':>7} {'hidden s':>9} {'env share':>10} "
          f"{'target':>7}")
    for env, overlap, wall, gen, _, env_s, hidden, share, _, _ in rows:
        print(f"{env:<10} {'on' if overlap else 'off':>7} {wall:8.1f} {gen:7.1f} {env_s:7.1f} {hidden:9.1f} "
              f"{100 * share:9.1f}% {'< ' + str(int(100 * TARGET.get(env, 0.15))) + '%':>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
