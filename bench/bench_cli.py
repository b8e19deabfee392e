"""Command-line speed a new user feels: ``launch.py --help`` and the dry-run plan of the study's 84-job grid,
each the wall time of a fresh ``python launch.py`` process (median of a few runs, as typed at a shell).

.venv/bin/python bench/bench_cli.py [--runs 3]

Targets (issue 18): help under 2 s, the plan under 5 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {
    "help": ["--help"],
    "tab completion (env=)": ["-sc", "query=bash"],
    "plan of the 84-job gen_tax grid": ["-m", "+sweeps=gen_tax", "model=llama3_1_8b_instruct", "cluster=slurm_8gpu",
                                        "--plan"],
}


def wall(args: list[str]) -> float:
    env = None
    if args[:1] == ["-sc"]:
        import os

        env = {**os.environ, "COMP_LINE": "python launch.py env=", "COMP_POINT": "21"}
    tic = time.perf_counter()
    proc = subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, capture_output=True, text=True, env=env,
                          check=False)
    took = time.perf_counter() - tic
    if proc.returncode != 0:
        raise SystemExit(f"launch.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    runs = ap.parse_args().runs
    for name, args in COMMANDS.items():
        times = [wall(args) for _ in range(runs)]
        print(f"{name:<34} median {statistics.median(times):5.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
