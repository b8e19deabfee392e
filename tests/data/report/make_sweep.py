"""Writes report fixtures in the exact summary.json schema the trainer writes.

- ``write_demo_sweep(dir)``: a small synthetic sweep (the committed ``sweep/`` folder is its output,
  regenerate with ``python tests/data/report/make_sweep.py``): 4 single-env baselines x 2 seeds,
  augmentation and thinking-off variants, a mixture and a sequential run, a failed job and a
  profile.json. Numbers are made up around the study's Table 2 (V2) but follow the protocol:
  step-0 evaluation, a checkpoint every 15 of 150 steps.
- ``write_paper_sweep(dir)``: the study's Table 2 as jobs (one seed, step 0 = the base row,
  step 150 = the published cell), so the report's arithmetic can be checked against the paper.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

HERE = Path(__file__).parent
ENVS = ("alfworld", "webshop", "sokoban", "sciworld")
STEPS = list(range(0, 151, 15))
PAPER = json.loads((HERE / "paper_tables.json").read_text())
BASE_VARIANT = {"augment": "none", "sft": "none", "think": True, "algo": "grpo", "model": "tiny", "start": "v2"}


def _eval(values: dict[str, float], rng: random.Random | None = None, episodes: int = 64) -> dict:
    """Eval block from success percentages (stored as rates 0..1, like the trainer)."""
    out = {}
    for env, pct in values.items():
        if pct is None:
            continue
        rate = min(max(pct / 100.0, 0.0), 1.0)
        out[env] = {
            "success_rate": round(rate, 4),
            "episodes": episodes,
            "avg_steps": round(15 - 8 * rate if env in ("sokoban", "webshop") else 50 - 30 * rate, 2),
            "avg_return": round(10 * rate - (rng.random() * 0.3 if rng else 0.1), 3),
            "valid_action_ratio": round(0.9 + 0.1 * rate, 3),
        }
    return out


def _summary(train_env: str, variant: dict, history: list[tuple[int, dict]], status: str = "completed",
             error: str | None = None, stages: list | None = None, wall: float = 800.0) -> dict:
    train_envs = [e for e in train_env.replace(">", "+").split("+")]
    return {
        "status": status,
        "error": error,
        "train_env": train_env,
        "train_envs": train_envs,
        "variant": variant,
        "config": {"env": {e: {"name": e} for e in train_envs}, "trainer": {"total_steps": 150, "eval_every": 15},
                   "algo": {"name": variant.get("algo")}, "seed": variant.get("seed")},
        "eval": history[-1][1] if history else {},
        "eval_history": [{"step": s, "eval": ev} for s, ev in history],
        "stages": stages or [],
        "train": {"steps": history[-1][0] if history else 0, "final": {"train/loss": 0.1}},
        "profile": None,
        "wall_seconds": wall,
    }


def _curve(start: dict[str, float], final: dict[str, float], rng: random.Random, noise: float = 1.5) -> list:
    """Checkpoint evaluations rising from ``start`` towards ``final`` (percent), with noise."""
    history = []
    for step in STEPS:
        frac = 1.0 - math.exp(-step / 35.0)
        vals = {e: start[e] + (final[e] - start[e]) * frac + (rng.gauss(0, noise) if step else 0.0)
                for e in final}
        history.append((step, _eval(vals, rng)))
    return history


def write_demo_sweep(root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    rng = random.Random(20260115)
    base = PAPER["table2"]["v2"]["base"]
    trained = {e: PAPER["table2"]["v2"][e] for e in ENVS}
    jobs: list[dict] = []

    def finals(train_env: str, ood_factor: float = 1.0, id_shift: float = 0.0, seed_noise: float = 1.2) -> dict:
        row = trained[train_env]
        return {e: (row[e] + id_shift if e == train_env else row[e] * ood_factor) + rng.gauss(0, seed_noise)
                for e in ENVS}

    for seed in (0, 1):
        for env in ENVS:
            jobs.append(_summary(env, {**BASE_VARIANT, "seed": seed}, _curve(base, finals(env), rng)))
        for env in ("webshop", "sokoban"):
            jobs.append(_summary(env, {**BASE_VARIANT, "augment": "state", "seed": seed},
                                 _curve(base, finals(env, ood_factor=1.3, id_shift=-2.0), rng)))
        for env in ("alfworld", "sokoban"):
            jobs.append(_summary(env, {**BASE_VARIANT, "think": False, "seed": seed},
                                 _curve(base, finals(env, ood_factor=0.35, id_shift=-4.0), rng)))
        # joint training on a mixture, and the same envs one after the other
        mix = {e: (trained["alfworld"][e] + trained["sokoban"][e]) / 2 for e in ENVS}
        mix.update(alfworld=55.0, sokoban=31.0)
        jobs.append(_summary("alfworld+sokoban", {**BASE_VARIANT, "seed": seed},
                             _curve(base, {e: v + rng.gauss(0, 1) for e, v in mix.items()}, rng)))
        after1 = {e: trained["sokoban"][e] + rng.gauss(0, 1) for e in ENVS}
        after2 = {**{e: trained["alfworld"][e] + rng.gauss(0, 1) for e in ENVS}, "sokoban": 24.0 + rng.gauss(0, 1)}
        hist = _curve(base, after1, rng)[:6] + [(s + 75, ev) for s, ev in _curve(after1, after2, rng)[1:6]]
        stages = [{"env": "sokoban", "steps": 75, "eval": _eval(after1)}, {"env": "alfworld", "steps": 75,
                                                                           "eval": _eval(after2)}]
        jobs.append(_summary("sokoban>alfworld", {**BASE_VARIANT, "seed": seed}, hist, stages=stages))
    jobs.append(_summary("sciworld", {**BASE_VARIANT, "seed": 2}, _curve(base, finals("sciworld"), rng)[:3],
                         status="failed", error="ScienceWorld JVM exited with code 137 (out of memory)"))
    for i, job in enumerate(jobs):
        d = root / str(i)
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps(job) + "\n")
    profile = {e: {"avg_chars": PAPER["table1"][e]["avg_chars"], "avg_steps": PAPER["table1"][e]["avg_steps"],
                   "success_rate": round(rng.uniform(0.05, 0.4), 3), "optimal_len": round(rng.uniform(5, 25), 1),
                   "augment": "none"} for e in ENVS}
    (root / "profile").mkdir()
    (root / "profile" / "profile.json").write_text(json.dumps(profile, indent=1) + "\n")


def write_paper_sweep(root: Path) -> None:
    """Table 2 as one job per (start, training env): step 0 = the base row, step 150 = the cell."""
    root.mkdir(parents=True, exist_ok=True)
    for start, rows in PAPER["table2"].items():
        base = rows["base"]
        for env, row in rows.items():
            if env == "base":
                continue
            variant = {**BASE_VARIANT, "start": start, "seed": 0}
            history = [(0, _eval(base)), (150, _eval(row))]
            d = root / f"{start}_{env}"
            d.mkdir()
            (d / "summary.json").write_text(json.dumps(_summary(env, variant, history)))


if __name__ == "__main__":
    write_demo_sweep(HERE / "sweep")
    print(f"wrote {HERE / 'sweep'}")
