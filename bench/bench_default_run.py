"""The foundation run, measured: `python launch.py` (SFT warm-up + GRPO on Sokoban with the tiny model,
then evaluation on every env) on this machine.

Prints Sokoban success of the base model, after SFT (step 0 of RL, same evaluation seeds) and after RL,
the other envs' success, and the wall time of each phase.

    .venv/bin/python bench/bench_default_run.py [extra overrides...]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def launch(out: Path, *overrides: str) -> tuple[dict, float]:
    t0 = time.time()
    r = subprocess.run([sys.executable, str(ROOT / "launch.py"), *overrides, f"hydra.run.dir={out}"],
                       capture_output=True, text=True, cwd=out.parent)
    if r.returncode != 0:
        sys.exit(f"launch.py {' '.join(overrides)} failed:\n{r.stderr[-3000:]}")
    return json.loads((out / "summary.json").read_text()), time.time() - t0


def main() -> None:
    extra = sys.argv[1:]
    tmp = Path(tempfile.mkdtemp(prefix="agentgen-bench-"))
    # The untrained model never emits a stop token: cap its answers (64 tokens hold any valid answer).
    base, t_base = launch(tmp / "base", "task=eval", "sft=none", "eval.envs=[sokoban]", "logger=none",
                          "env.sokoban.max_response_tokens=64", *extra)
    run, t_run = launch(tmp / "default", *extra)
    hist = run["eval_history"]
    after_sft, after_rl = hist[0]["eval"], run["eval"]
    print(f"output: {tmp}")
    print("base model: random init, answers capped at 64 tokens")
    print(f"{'':24}{'success':>9}{'episodes':>10}{'avg steps':>11}{'valid':>8}")
    rows = [("sokoban base model", base["eval"]["sokoban"]), ("sokoban after SFT", after_sft["sokoban"]),
            ("sokoban after RL", after_rl["sokoban"])]
    rows += [(f"{env} after RL (OOD)", m) for env, m in after_rl.items() if env != "sokoban"]
    for name, m in rows:
        print(f"{name:24}{m['success_rate']:>9.3f}{m['episodes']:>10}{m['avg_steps']:>11.2f}"
              f"{m['valid_action_ratio']:>8.2f}")
    curve = ", ".join(f"{h['step']}: {h['eval']['sokoban']['success_rate']:.3f}" for h in hist)
    print(f"sokoban success by RL step: {curve}")
    sft = run["train"]["sft"]
    print(f"wall time: default run {t_run:.0f} s (SFT {sft.get('sft/seconds', 0):.0f} s on "
          f"{sft.get('sft/samples', 0)} state-action pairs); base eval {t_base:.0f} s")


if __name__ == "__main__":
    main()
