"""The five RL algorithms on Sokoban with the tiny model, measured on this machine.

1. Warm start: one SFT job (``launch.py trainer.steps=0``, the tiny preset's SFT) shared by every algorithm.
2. Same wall-clock budget: each algorithm trains from that checkpoint for ``--budget`` seconds (whole RL
   steps; a step that starts inside the budget finishes), then is evaluated on the same Sokoban test
   seeds at the evaluation temperature. Printed: steps done, success before/after, and the rollout cost
   of its steps (generated tokens per trajectory and per training sample, env steps per sample).
3. Token cost at equal trajectories: from the same SFT policy and the same prompts, one rollout of chain
   GRPO with 12 chains per prompt and of Tree-GRPO with M=4, N=2, L=1 (4 * (1 * 2 + 1) = 12 leaves
   per prompt), and chain GRPO with 8 chains (the tree's formula budget, 4 + 4*1*2/2 = 8).

    .venv/bin/python bench/bench_algos.py [--budget 180] [--eval-episodes 32] [--algos grpo,ppo] [--out DIR]
        [--max-response-tokens 64] [overrides...]

Keep the machine otherwise idle for comparable figures; the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ALGOS = ("grpo", "rloo", "ppo", "reinforce_pp", "tree_grpo")


def sft_checkpoint(out: Path, overrides: list[str]) -> Path:
    """Run (once) the SFT warm-up job and return its checkpoint dir."""
    job = out / "sft_job"
    ckpt = job / "checkpoints" / "sft"
    if (ckpt / "state.json").exists():
        return ckpt
    t0 = time.time()
    cmd = [sys.executable, str(ROOT / "launch.py"), "trainer.steps=0", "eval.envs=[sokoban]", "eval.episodes=2",
           "eval.before_training=false", "logger=none", *overrides, f"hydra.run.dir={job}"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=out, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if r.returncode != 0:
        sys.exit(f"the SFT job failed:\n{r.stderr[-3000:]}")
    print(f"SFT warm-up: {time.time() - t0:.0f} s -> {ckpt}", flush=True)
    return ckpt


class Setup:
    """Policy, reference, pools and rollout function for one algorithm, built from the SFT checkpoint."""

    def __init__(self, algo: str, start: Path, overrides: list[str]):
        from agentgen.agent.prompt import PromptBuilder
        from agentgen.augment import env_kwargs
        from agentgen.envs.pool import EnvPool
        from agentgen.models.loader import load_policy
        from agentgen.preflight import compose_job
        from agentgen.rollout.hf import HFGenerator

        self.cfg = compose_job([f"algo={algo}", "sft=none", "logger=none", "eval.envs=[sokoban]", *overrides])
        self.model, self.tokenizer, _ = load_policy(self.cfg.model, path=str(start))
        self.ec = self.cfg.env.sokoban
        self.prompts = PromptBuilder(think=bool(self.cfg.think), history_k=self.cfg.agent.history_k,
                                     system_prompt=self.cfg.agent.system_prompt)
        self.generator = HFGenerator(self.model, self.tokenizer, batch_size=self.cfg.rollout.generation_batch_size)
        kwargs = env_kwargs(self.ec)
        self.pools = {split: EnvPool("sokoban", kwargs, split=split, num_slots=64, num_workers=0)
                      for split in ("train", "test")}

    def runner(self, split: str, temperature: float, top_p: float = 1.0, top_k: int = 0):
        from agentgen.rollout.policy import ModelPolicy
        from agentgen.rollout.runner import EpisodeRunner

        policy = ModelPolicy(self.generator, self.tokenizer, self.prompts, self.ec.max_prompt_tokens,
                             self.ec.max_response_tokens, temperature, top_p, top_k)
        return EpisodeRunner(self.pools[split], policy, self.ec.max_steps)

    def rollout(self, specs, step):
        r = self.cfg.rollout
        return self.runner("train", r.temperature, r.top_p, r.top_k).run(
            [dataclasses.replace(s, env="sokoban") for s in specs])

    def trainer(self):
        from agentgen.options import engine_setup, rl_options
        from agentgen.trainer.rl_trainer import RLTrainer

        c = self.cfg
        ref = copy.deepcopy(self.model).eval().requires_grad_(False) if float(c.algo.kl_coef) > 0 else None
        opts = rl_options(c.trainer, c.rollout, c.seed, engine_setup(c.trainer, c.model.dtype))
        return RLTrainer(self.model, ref, self.tokenizer, c.algo, opts, self.rollout)

    def evaluate(self, episodes: int) -> float:
        from agentgen.rollout.runner import EpisodeSpec, episode_metrics

        eps = self.runner("test", self.cfg.eval.temperature).run([EpisodeSpec("sokoban", i) for i in range(episodes)])
        return episode_metrics(eps)["success_rate"]

    def close(self):
        for p in self.pools.values():
            p.close()


def train_for(algo: str, start: Path, budget: float, eval_episodes: int, overrides: list[str]) -> dict:
    setup = Setup(algo, start, overrides)
    try:
        trainer = setup.trainer()
        t0, step, per_step = time.time(), 0, []
        while time.time() - t0 < budget:
            per_step.append(trainer.step(step))
            step += 1
        train_s = time.time() - t0

        def mean(key: str) -> float:
            vals = [m[key] for m in per_step if key in m]
            return sum(vals) / len(vals) if vals else float("nan")

        return {"algo": algo, "steps": step, "train_s": train_s, "success": setup.evaluate(eval_episodes),
                "rollout_success": mean("rollout/success_rate"),
                "tokens_per_traj": mean("rollout/generated_tokens_per_trajectory"),
                "tokens_per_sample": mean("rollout/generated_tokens_per_sample"),
                "env_steps_per_sample": mean("rollout/env_steps_per_sample"),
                "samples_per_step": mean("rollout/samples"), "s_per_step": train_s / max(1, step),
                "rollout_s": mean("time/rollout_s"), "update_s": mean("time/update_s")}
    finally:
        setup.close()


def rollout_cost(start: Path, prompts: int, overrides: list[str]) -> list[dict]:
    """One rollout per setting from the same policy and prompts: generated tokens per trajectory/prompt."""
    from agentgen.rollout.runner import EpisodeSpec
    from agentgen.trainer.tree_rollout import TreeRollout

    setup = Setup("grpo", start, overrides)
    seeds = [900_000 + i for i in range(prompts)]
    rows = []
    try:
        for chains in (8, 12):
            t0 = time.time()
            eps = setup.rollout([EpisodeSpec("", s, g) for g, s in enumerate(seeds) for _ in range(chains)], 0)
            tokens = sum(len(t.response_ids) for e in eps for t in e.turns)
            steps = sum(e.steps for e in eps)
            rows.append({"setting": f"GRPO, {chains} chains", "trajectories": len(eps) / prompts,
                         "tokens_per_prompt": tokens / prompts, "tokens_per_traj": tokens / len(eps),
                         "env_steps_per_prompt": steps / prompts, "seconds": time.time() - t0})
        t0 = time.time()
        forest = TreeRollout(4, 2, 1, setup.rollout, run_seed=0).build(seeds, step=0)
        m = forest.metrics("per_leaf")
        rows.append({"setting": "Tree-GRPO M=4 N=2 L=1", "trajectories": m["tree/leaves_per_prompt"],
                     "tokens_per_prompt": m["rollout/generated_tokens"] / prompts,
                     "tokens_per_traj": m["rollout/generated_tokens_per_trajectory"],
                     "env_steps_per_prompt": m["rollout/env_steps"] / prompts, "seconds": time.time() - t0,
                     "measured_chains": m["tree/measured_trajectories_per_prompt"]})
    finally:
        setup.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=180.0, help="training seconds per algorithm")
    ap.add_argument("--eval-episodes", type=int, default=32)
    ap.add_argument("--algos", default=",".join(ALGOS))
    ap.add_argument("--cost-prompts", type=int, default=4, help="prompts of the equal-trajectory token cost rollout")
    ap.add_argument("--max-response-tokens", type=int, default=64, help="generation budget per turn")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for the tiny model)")
    ap.add_argument("--out", type=Path, default=None, help="work dir (reuses its SFT checkpoint)")
    ap.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. trainer.prompts_per_step=2")
    args = ap.parse_args()
    # Expert answers are at most ~45 tokens; batched HF generation waits for the longest answer, so the
    # env's 512-token budget would make every turn as slow as the longest ramble of an untrained policy.
    if not any(o.startswith("env.sokoban.max_response_tokens=") for o in args.overrides):
        args.overrides.append(f"env.sokoban.max_response_tokens={args.max_response_tokens}")
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="agentgen-bench-algos-"))
    out.mkdir(parents=True, exist_ok=True)
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    bad = [a for a in algos if a not in ALGOS]
    if bad:
        sys.exit(f"--algos {','.join(bad)}: not an algorithm; valid: {', '.join(ALGOS)}")
    load_start = os.getloadavg()[0]
    start = sft_checkpoint(out, args.overrides)
    base = Setup("grpo", start, args.overrides)
    try:
        base_success = base.evaluate(args.eval_episodes)
    finally:
        base.close()
    results = []
    for algo in algos:
        results.append(train_for(algo, start, args.budget, args.eval_episodes, args.overrides))
        print(json.dumps(results[-1]), flush=True)
    cost = rollout_cost(start, args.cost_prompts, args.overrides)
    load_end = os.getloadavg()[0]

    print(f"\nSokoban, model=tiny, {args.budget:.0f} s of RL per algorithm from the same SFT checkpoint; "
          f"success on {args.eval_episodes} test episodes (T={0.4}); after SFT only: {base_success:.3f}")
    print(f"{'algo':14}{'steps':>6}{'s/step':>8}{'rollout s':>10}{'update s':>9}{'success':>9}{'rollout succ':>13}"
          f"{'tok/traj':>10}{'tok/sample':>11}{'env/sample':>11}{'samples/step':>13}")
    for r in results:
        print(f"{r['algo']:14}{r['steps']:>6}{r['s_per_step']:>8.1f}{r['rollout_s']:>10.1f}{r['update_s']:>9.1f}"
              f"{r['success']:>9.3f}{r['rollout_success']:>13.3f}{r['tokens_per_traj']:>10.1f}"
              f"{r['tokens_per_sample']:>11.1f}{r['env_steps_per_sample']:>11.2f}{r['samples_per_step']:>13.1f}")
    print(f"\nGenerated-token cost from the same policy on {args.cost_prompts} prompts:")
    print(f"{'setting':24}{'traj/prompt':>12}{'tokens/prompt':>14}{'tokens/traj':>12}{'env steps/prompt':>17}"
          f"{'seconds':>9}")
    for r in cost:
        print(f"{r['setting']:24}{r['trajectories']:>12.1f}{r['tokens_per_prompt']:>14.1f}{r['tokens_per_traj']:>12.1f}"
              f"{r['env_steps_per_prompt']:>17.1f}{r['seconds']:>9.1f}")
    print(f"\nload average (1 min) at start {load_start:.1f}, at end {load_end:.1f}; {os.cpu_count()} cores; "
          f"work dir {out}")


if __name__ == "__main__":
    main()
