"""Does the RL in agentgen make the agent better? Runs the default job for several seeds and compares held-out
Sokoban success after SFT (step 0) with success after RL, on the same held-out instances.

    python bench/bench_learning.py                                  # 3 seeds of `python launch.py`
    python bench/bench_learning.py --seeds 0 1 2 3 4 -- algo=grpo    # any launch.py overrides after --
    python bench/bench_learning.py --control                        # and each seed's control (weights frozen)
    python bench/bench_learning.py --compare grpo,gigpo,gspo --init-from <job dir> --minutes 6

Per seed it prints success after SFT and after RL (>= 256 episodes each), the paired difference, and the wall
time of each phase (SFT with its expert data, RL, evaluation) from the job's summary.json. Over the seeds: the
mean difference with two 95% intervals: across seeds (Student t, seeds - 1 degrees of freedom: what another
seed would do) and over all paired episodes (normal; the same instances before and after RL: evaluation noise
only). It writes the learning curve (rollout success per step and evaluation success at its steps, mean over
seeds with a +-std band, as the report draws curves) to ``<out>/learning_curve.png``.

``--compare`` trains each algorithm from the same SFT checkpoint for the same wall time (``trainer.time_budget_s``)
and prints success after RL, steps done and seconds per step side by side.

Runs are resumable: a seed whose summary.json says completed is read, not run again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def launch(out: Path, overrides: list[str]) -> dict:
    """Run one job into ``out`` (skipped when it already completed) and return its summary."""
    summary = out / "summary.json"
    if not (summary.exists() and json.loads(summary.read_text()).get("status") == "completed"):
        cmd = [sys.executable, str(ROOT / "launch.py"), "logger=none", f"hydra.run.dir={out}", *overrides]
        print("$", " ".join(cmd[1:]), flush=True)
        t0 = time.time()
        with (out.parent / f"{out.name}.log").open("w") as log:
            r = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise SystemExit(f"job failed (exit {r.returncode}); see {out.parent / (out.name + '.log')}")
        print(f"  done in {time.time() - t0:.0f} s", flush=True)
    return json.loads(summary.read_text())


def eval_records(out: Path, env: str, step: int) -> dict[int, bool]:
    """seed -> success of the evaluation episodes at ``step``."""
    path = out / "eval_episodes" / env / f"step_{step}.jsonl"
    return {int(r["seed"]): bool(r["success"]) for r in map(json.loads, path.read_text().splitlines())}


def metric_rows(out: Path) -> dict[int, dict]:
    """step -> metrics (the last row of a step wins: a resumed job replays steps after its checkpoint)."""
    path = out / "metrics.jsonl"
    rows = {}
    if path.exists():
        for r in map(json.loads, path.read_text().splitlines()):
            rows[int(r["step"])] = r
    return rows


def interval(diffs: list[float], t: float) -> tuple[float, float, float]:
    mean = statistics.fmean(diffs)
    half = t * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return mean, mean - half, mean + half


def learning_curve(runs: dict[int, Path], env: str, path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    def band(series: list[dict[int, float]]):
        steps = sorted(set.intersection(*(set(s) for s in series)))
        vals = [[s[k] for s in series] for k in steps]
        means = [statistics.fmean(v) for v in vals]
        stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
        return steps, means, stds

    rollout = [{k: r["rollout/success_rate"] for k, r in metric_rows(out).items() if "rollout/success_rate" in r}
               for out in runs.values()]
    evals = [{h["step"]: h["eval"][env]["success_rate"] for h in json.loads((out / "summary.json").read_text())
              ["eval_history"] if env in h["eval"]} for out in runs.values()]
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    for series, label, style in ((rollout, "rollout success (training instances, T=1.0)", "-"),
                                 (evals, f"eval success ({env} test split)", "o-")):
        if not series or not all(series):
            continue
        steps, means, stds = band(series)
        line = ax.plot(steps, means, style, label=label, linewidth=2, markersize=4)[0]
        ax.fill_between(steps, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                        color=line.get_color(), alpha=0.15)
    ax.set_xlabel("RL step")
    ax.set_ylabel("success rate")
    ax.set_title(f"{title}: mean over {len(runs)} seeds, band +- std", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)


def seeds_bench(args, overrides: list[str]) -> None:
    env = args.env
    runs: dict[int, Path] = {}
    rows, controls = [], []
    for seed in args.seeds:
        out = args.out / f"seed_{seed}"
        s = launch(out, [f"seed={seed}", f"eval.episodes={args.episodes}", *overrides])
        runs[seed] = out
        first = min(h["step"] for h in s["eval_history"] if env in h["eval"])
        last = max(h["step"] for h in s["eval_history"] if env in h["eval"])
        before, after = eval_records(out, env, first), eval_records(out, env, last)
        seeds_eval = sorted(before.keys() & after.keys())
        pairs = [float(after[k]) - float(before[k]) for k in seeds_eval]
        timing = s.get("timing", {})
        if args.control:  # the same RL from the same SFT checkpoint with weights that do not move: the noise floor
            c = launch(args.out / f"seed_{seed}_control", [
                f"seed={seed}", f"eval.episodes={args.episodes}", *overrides, "sft=none", "model.lr.rl=1e-12",
                f"init_from={out / 'checkpoints' / 'sft'}"])
            cout = args.out / f"seed_{seed}_control"
            c_first = min(h["step"] for h in c["eval_history"] if env in h["eval"])
            c_last = max(h["step"] for h in c["eval_history"] if env in h["eval"])
            cb, ca = eval_records(cout, env, c_first), eval_records(cout, env, c_last)
            controls.append({"seed": seed, "before": statistics.fmean(float(cb[k]) for k in seeds_eval),
                             "after": statistics.fmean(float(ca[k]) for k in seeds_eval),
                             "pairs": [float(ca[k]) - float(cb[k]) for k in seeds_eval]})
        rows.append({"seed": seed, "before": statistics.fmean(float(before[k]) for k in seeds_eval),
                     "after": statistics.fmean(float(after[k]) for k in seeds_eval), "pairs": pairs,
                     "n": len(seeds_eval), "steps": last - first, "wall": s["wall_seconds"], **timing})
    print(f"\nheld-out {env} success, the same {rows[0]['n']} test instances before and after RL "
          f"(overrides: {' '.join(overrides) or 'none'})")
    print(f"{'seed':>4} {'after SFT':>9} {'after RL':>9} {'diff':>7} {'+-SE':>6} {'RL steps':>8} "
          f"{'SFT s':>6} {'RL s':>6} {'eval s':>6} {'wall s':>7}")
    for r in rows:
        se = statistics.stdev(r["pairs"]) / math.sqrt(len(r["pairs"]))
        print(f"{r['seed']:>4} {r['before']:>9.3f} {r['after']:>9.3f} {r['after'] - r['before']:>+7.3f} "
              f"{se:>6.3f} {r['steps']:>8} {r.get('sft', 0):>6.0f} {r.get('rl', 0):>6.0f} {r.get('eval', 0):>6.0f} "
              f"{r['wall']:>7.0f}")
    diffs = [r["after"] - r["before"] for r in rows]
    mean, lo, hi = interval(diffs, T_975.get(len(diffs) - 1, 1.96))
    print(f"mean RL gain {mean:+.3f}; 95% CI over seeds (t, {len(diffs) - 1} dof) [{lo:+.3f}, {hi:+.3f}]")
    pooled = [p for r in rows for p in r["pairs"]]
    pm, plo, phi = interval(pooled, 1.96)
    print(f"over all {len(pooled)} paired episodes: {pm:+.3f}, 95% CI [{plo:+.3f}, {phi:+.3f}]")
    if controls:
        print("control (model.lr.rl=1e-12 from the same SFT checkpoint, the same RL steps and evaluations):")
        for c in controls:
            se = statistics.stdev(c["pairs"]) / math.sqrt(len(c["pairs"]))
            print(f"{c['seed']:>4} {c['before']:>9.3f} {c['after']:>9.3f} {c['after'] - c['before']:>+7.3f} {se:>6.3f}")
        gains = [r["after"] - r["before"] - (c["after"] - c["before"]) for r, c in zip(rows, controls)]
        mean, lo, hi = interval(gains, T_975.get(len(gains) - 1, 1.96))
        print(f"RL gain over the control {mean:+.3f}; 95% CI over seeds [{lo:+.3f}, {hi:+.3f}]")
    print(f"wall time per run: median {statistics.median(r['wall'] for r in rows):.0f} s "
          f"(min {min(r['wall'] for r in rows):.0f}, max {max(r['wall'] for r in rows):.0f})")
    png = args.out / "learning_curve.png"
    learning_curve(runs, env, png, "RL after SFT" + (f" ({' '.join(overrides)})" if overrides else ""))
    print(f"learning curve: {png}")


def start_records(init_from: Path, env: str) -> dict[int, bool] | None:
    """The step-0 evaluation of the job that ``init_from`` (a job dir or one of its checkpoints) belongs to."""
    for job in (init_from, *init_from.parents[:2]):
        if (job / "eval_episodes" / env / "step_0.jsonl").exists():
            return eval_records(job, env, 0)
    return None


def compare_bench(args, overrides: list[str]) -> None:
    env = args.env
    print(f"from {args.init_from}, {args.minutes} min of RL each, {args.episodes} evaluation episodes on {env}")
    print(f"{'algo':>10} {'after RL':>9} {'+-SE':>6} {'steps':>6} {'s/step':>7} {'rollout succ (last 3)':>22}")
    start = start_records(Path(args.init_from), env)
    if start:  # the starting checkpoint's own evaluation (a job's step-0 evaluation on the same instances)
        p = statistics.fmean(float(v) for v in start.values())
        print(f"{'(start)':>10} {p:>9.3f} {math.sqrt(p * (1 - p) / len(start)):>6.3f} {0:>6}")
    for algo in args.compare.split(","):
        out = args.out / f"compare_{algo}"
        s = launch(out, [f"algo={algo}", f"init_from={args.init_from}", "sft=none", "eval.before_training=false",
                         f"eval.envs=[{env}]", f"eval.episodes={args.episodes}", "trainer.steps=1000", "eval.every=0",
                         f"trainer.time_budget_s={args.minutes * 60}", f"seed={args.seeds[0]}", *overrides])
        last = max(h["step"] for h in s["eval_history"])
        rec = eval_records(out, env, last)
        p = statistics.fmean(float(v) for v in rec.values())
        se = math.sqrt(p * (1 - p) / len(rec))
        m = metric_rows(out)
        recent = [m[k]["rollout/success_rate"] for k in sorted(m)[-3:]]
        print(f"{algo:>10} {p:>9.3f} {se:>6.3f} {last:>6} {s['timing'].get('rl', 0) / max(1, last):>7.1f} "
              f"{statistics.fmean(recent) if recent else float('nan'):>22.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=256, help="evaluation episodes after SFT and after RL")
    ap.add_argument("--env", default="sokoban")
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out" / "learning")
    ap.add_argument("--control", action="store_true",
                    help="also run each seed's RL from its SFT checkpoint with weights that do not move (lr 1e-12)")
    ap.add_argument("--compare", default=None, help="algorithms to train from --init-from for equal wall time")
    ap.add_argument("--init-from", default=None, help="a job dir whose checkpoint (e.g. after SFT) starts --compare")
    ap.add_argument("--minutes", type=float, default=5.0, help="--compare: RL wall time per algorithm")
    ap.add_argument("overrides", nargs="*", help="launch.py overrides for every job (after --)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", "offline")
    if args.compare:
        if not args.init_from:
            raise SystemExit("--compare needs --init-from <job dir> (e.g. a seed's dir of a previous run)")
        compare_bench(args, args.overrides)
    else:
        seeds_bench(args, args.overrides)


if __name__ == "__main__":
    main()
