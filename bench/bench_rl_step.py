"""Where an RL step's time goes, against what this machine can do: per phase seconds, tokens and achieved FLOP/s
next to the machine's dense matmul FLOP/s (measured in the same run), for several configurations side by side.

    python bench/bench_rl_step.py                                   # the default run: rollout=hf vs rollout=vllm
    python bench/bench_rl_step.py --steps 8 \\
        --config "hf=rollout=hf" --config "vllm=rollout=vllm" -- trainer.prompts_per_step=8
    python bench/bench_rl_step.py --issue-22                        # today's default against the issue's (study prompt)

Each configuration is a real ``launch.py`` job (its own SFT, then ``--steps`` RL steps, a one-episode final
evaluation), run one after the other; the phases come from the job's ``metrics.jsonl`` (``time/*`` and
``tokens/*`` of agentgen.trainer.rl_trainer and agentgen.phases.rl_phase), medians over the steps after the first (the
first pays for start-up: vLLM's engine, allocator warm-up). Phases:

- generation: the rollout engine (``time/generate_s``); FLOPs 2 x P x (prompt + generated tokens);
- prompts & parsing: building and tokenizing prompts, decoding and parsing answers (``time/prompt_s``);
- env stepping: waiting on the env pool (``time/env_s``), also as a share of the episode loop's wall time
  (generation, prompts and env, without the scoring passes that ``time/rollout_s`` also holds); with
  ``rollout.env_overlap`` the steps that ran behind generation (``time/env_hidden_s``) are printed apart;
- scoring passes: behaviour and reference log-probs, critic values (``time/score_*_s``); 2 x P x tokens each;
- update: forward and backward of every micro-batch (``time/update_s``); 6 x P x trained tokens;
- other: advantages, batching, the weight sync.
P counts the parameters a token's forward multiplies (everything but the input embedding). The limit is torch's
fp32 matmul on this machine, at a large square shape and at the model's own MLP shape. Jobs are resumable: a
configuration whose summary.json says completed is read, not run again (``--fresh`` runs them again).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_learning import ROOT, launch, metric_rows  # noqa: E402

# The default run's prompt as issue 22 measured it (the study's: coordinates, full rules, one step of history);
# the run's sizes stay today's, so the two differ only in what each step processes.
ISSUE_22 = ["agent.prompt=full", "agent.history_k=1", "model.env_params.sokoban.render=coords",
            "model.env_params.sokoban.instruction=full"]
PHASES = [("generation", "time/generate_s"), ("prompts & parsing", "time/prompt_s"), ("env stepping", "time/env_s"),
          ("score: behaviour", "time/score_old_s"), ("score: reference", "time/score_ref_s"),
          ("score: critic", "time/score_values_s"), ("update", "time/update_s")]


def matmul_flops(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """Achieved fp32 FLOP/s of torch.matmul [m, k] x [k, n], median of timed repeats after a warm-up."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.matmul(a, b)
    times = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 3:
        t0 = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * m * k * n / statistics.median(times)


def model_shape(summary: dict) -> tuple[int, int, int]:
    """(P, hidden, intermediate) of the job's model, read from the config it ran with."""
    from omegaconf import OmegaConf

    from agentgen.models.loader import load_policy

    model, _, _ = load_policy(OmegaConf.create(summary["config"]["model"]))
    p = model.num_parameters() - model.get_input_embeddings().weight.numel()
    if model.config.tie_word_embeddings:  # the output layer multiplies the embedding matrix too
        p += model.get_input_embeddings().weight.numel()
    return p, int(model.config.hidden_size), int(model.config.intermediate_size)


def phase_rows(rows: list[dict], p: int, epochs: int) -> dict[str, tuple[float, float, float]]:
    """phase -> (median seconds per step, median tokens per step, GFLOP per step)."""
    def med(key: str) -> float:
        values = [r[key] for r in rows if key in r]
        return statistics.median(values) if values else 0.0

    gen_tokens = med("tokens/prompt") + med("tokens/generated")
    scored = med("tokens/trained") / max(epochs, 1)
    out = {"generation": (med("time/generate_s"), gen_tokens, 2 * p * gen_tokens / 1e9),
           "prompts & parsing": (med("time/prompt_s"), 0.0, 0.0), "env stepping": (med("time/env_s"), 0.0, 0.0)}
    for label, key in PHASES[3:6]:
        if any(key in r for r in rows):
            out[label] = (med(key), scored, 2 * p * scored / 1e9)
    out["update"] = (med("time/update_s"), med("tokens/trained"), 6 * p * med("tokens/trained") / 1e9)
    step = statistics.median(r["time/rollout_s"] + r["time/update_s"] for r in rows)
    out["other"] = (max(0.0, step - sum(v[0] for v in out.values())), 0.0, 0.0)
    out["RL step"] = (step, 0.0, sum(v[2] for v in out.values()))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6, help="RL steps per configuration (the first is not counted)")
    ap.add_argument("--config", action="append", default=[],
                    help='"label=override override ..." (repeatable); default: rollout=hf and rollout=vllm')
    ap.add_argument("--issue-22", action="store_true", help="compare with the default run as issue 22 measured it")
    ap.add_argument("--out", default=str(ROOT / "bench_out" / "rl_step"))
    ap.add_argument("--fresh", action="store_true", help="run every configuration again")
    ap.add_argument("overrides", nargs="*", help="launch.py overrides for every configuration (after --)")
    args = ap.parse_args()
    configs = [(c.split("=", 1)[0], c.split("=", 1)[1].split()) for c in args.config] or \
        [("hf", ["rollout=hf"]), ("vllm", ["rollout=vllm"])]
    if args.issue_22:
        configs = [("issue 22 (study prompt)", ["rollout=hf", *ISSUE_22]), ("today, hf", ["rollout=hf"]),
                   ("today, vllm", ["rollout=vllm"])]
    root = Path(args.out)
    results = []
    for label, overrides in configs:
        out = root / "".join(c if c.isalnum() else "_" for c in label)
        if args.fresh and out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = launch(out, [f"trainer.steps={args.steps}", "trainer.save_every=0", "eval.before_training=false",
                               "eval.every=0", "eval.envs=[sokoban]", "eval.episodes=1",
                               *overrides, *args.overrides])
        rows = [r for s, r in sorted(metric_rows(out).items()) if s > 1] or list(metric_rows(out).values())
        results.append((label, " ".join(overrides), summary, rows))

    p, hidden, inter = model_shape(results[0][2])
    tokens_per_micro = 4096
    limit_square = matmul_flops(2048, 2048, 2048)
    limit_model = matmul_flops(tokens_per_micro, hidden, inter)
    print(f"\nmachine: fp32 matmul {limit_square / 1e9:.0f} GFLOP/s at 2048x2048x2048, {limit_model / 1e9:.0f} GFLOP/s "
          f"at the model's MLP shape [{tokens_per_micro}x{hidden}]x[{hidden}x{inter}]; model P = {p / 1e6:.2f}M "
          f"multiplied parameters per token")
    tables = {}
    for label, overrides, summary, rows in results:
        epochs = int(summary["config"]["algo"].get("ppo_epochs", 1))
        table = tables[label] = phase_rows(rows, p, epochs)
        # the episode loop's wall time: generating, building prompts and parsing, waiting on the env pool
        env_share = statistics.median(r["time/env_s"] / max(1e-9, r["time/generate_s"] + r["time/prompt_s"]
                                                             + r["time/env_s"]) for r in rows)
        print(f"\n== {label}: {overrides or '(defaults)'}   ({len(rows)} steps counted, "
              f"{statistics.median(r['tokens/generated'] for r in rows):.0f} generated tokens per step)")
        print(f"{'phase':<18} {'s/step':>8} {'tokens':>9} {'GFLOP':>8} {'GFLOP/s':>8} {'% limit':>8}")
        for phase, (sec, tok, gflop) in table.items():
            rate = gflop / sec if sec > 0 and gflop else 0.0
            print(f"{phase:<18} {sec:8.2f} {tok:9.0f} {gflop:8.1f} {rate:8.1f} "
                  f"{(100 * rate * 1e9 / limit_model) if rate else 0:7.0f}%")
        gen = table["generation"]
        hidden = statistics.median(r.get("time/env_hidden_s", 0.0) for r in rows)
        print(f"env stepping: {100 * env_share:.1f}% of the episode loop's wall time waited on it"
              + (f" ({hidden:.2f} s/step more ran hidden behind generation, rollout.env_overlap)" if hidden else "")
              + "; generation "
              f"{statistics.median(r['tokens/generated'] for r in rows) / gen[0] if gen[0] else 0:.0f} "
              f"generated tokens/s")
    if len(tables) > 1:
        first = next(iter(tables))
        print(f"\nside by side (seconds per step; ratio = {first} / this)")
        labels = list(tables)
        print(f"{'phase':<18} " + " ".join(f"{lab[:16]:>16}" for lab in labels) + "   ratios")
        for phase in tables[first]:
            secs = [tables[lab].get(phase, (0.0,))[0] for lab in labels]
            ratios = " ".join(f"{secs[0] / s:5.2f}x" if s > 0 else "    -" for s in secs[1:])
            print(f"{phase:<18} " + " ".join(f"{s:16.2f}" for s in secs) + f"   {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
