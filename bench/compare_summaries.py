"""Does a restructuring change what a job computes? Run the same 9 small jobs on two checkouts and compare their
``summary.json`` the way issue 16 did: ``status``, ``eval``, the whole ``eval_history``, every SFT metric and every
final training metric except the wall-clock ones.

Excluded, because they differ between any two runs of the same code: keys holding wall-clock time (``time/*``,
``*seconds*``, ``*_per_s``/throughput) inside the compared sections, and the summary's other fields: ``wall_seconds``
and ``timing`` (wall clock), ``output_dir`` (the path), ``recovery`` (this run's attempts), ``config`` and
``variant`` (the config's text: a restructuring may add keys, e.g. ``env_configs``, without changing a value the
job computes). Everything compared must be equal to the last digit. A key present on one side only is listed
but is not a difference (a newer tree may log more metrics); a changed value of a common key is one.

Only a restructuring-only diff can be compared this way: a change that moves the sampler's RNG or the order of
floating-point sums (other work merged in between) changes every figure.

    python bench/compare_summaries.py run <checkout> <outdir> [job ...]   # runs the jobs missing in <outdir>
    python bench/compare_summaries.py compare <before_outdir> <after_outdir>
    python bench/compare_summaries.py jobs                                 # the 9 jobs and their overrides

Jobs run one after the other with OMP_NUM_THREADS=1 under ``nice``; each is a real ``launch.py`` job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

COMMON = ["debug=smoke", "seed=3", "logger=none"]
ALGOS = ["grpo", "rloo", "ppo", "reinforce_pp", "tree_grpo", "gigpo", "gspo"]
JOBS: dict[str, list[str]] = {
    "default": COMMON,
    **{f"algo_{a}": [*COMMON, f"algo={a}"] for a in ALGOS},
    # a job that learns something: format-valid answers and non-zero RL advantages
    "learn": [*COMMON, "sft.steps=150", "sft.episodes_per_env=64", "eval.envs=[sokoban]",
              "eval.episodes_per_env.sokoban=16"],
}
COMPARED = ("status", "eval", "eval_history", "train/sft", "train/final", "train/steps")
WALL_CLOCK = ("time/", "seconds", "_per_s", "per_second", "throughput", "elapsed")


def run(checkout: Path, out: Path, names: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(checkout)}
    for name in names or list(JOBS):
        if (out / name / "summary.json").is_file():
            continue
        cmd = ["nice", "-n", "10", sys.executable, "launch.py", *JOBS[name], f"hydra.run.dir={out / name}"]
        with open(out / f"{name}.log", "w") as log:
            rc = subprocess.call(cmd, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT)
        print(f"{name} rc={rc}", flush=True)


def flat(obj, prefix: str = "") -> dict:
    """Nested dicts and lists as one level of 'a/b/0/c' keys, so a difference is named by its path."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return {prefix: obj}
    out: dict = {}
    for k, v in items:
        out.update(flat(v, f"{prefix}/{k}" if prefix else str(k)))
    return out


def section(summary: dict, key: str) -> dict:
    """One compared section ('train/final' = summary['train']['final']) as flat keys."""
    value = summary
    for part in key.split("/"):
        value = value.get(part) if isinstance(value, dict) else None
    return flat(value if value is not None else {}, key)


def compare_one(a: dict, b: dict) -> tuple[int, list[str], list[str]]:
    """(number of values compared, differing keys in order, keys on one side only)."""
    fa, fb = {}, {}
    for key in COMPARED:
        fa.update(section(a, key))
        fb.update(section(b, key))
    keep = [k for k in fa if not any(w in k for w in WALL_CLOCK)]
    keep_b = [k for k in fb if not any(w in k for w in WALL_CLOCK)]
    common = [k for k in keep if k in fb]
    diff = [k for k in common if fa[k] != fb[k]]
    only = sorted({k for k in keep if k not in fb} | {k for k in keep_b if k not in fa})
    return len(common), diff, only


def compare(before: Path, after: Path) -> bool:
    rows, ok = [], True
    for name in JOBS:
        pa, pb = before / name / "summary.json", after / name / "summary.json"
        if not (pa.is_file() and pb.is_file()):
            rows.append((name, "-", "not run", "missing: " + ", ".join(str(p) for p in (pa, pb) if not p.is_file())))
            continue
        a, b = json.loads(pa.read_text()), json.loads(pb.read_text())
        n, diff, only = compare_one(a, b)
        fa, fb = flat(a), flat(b)
        first = f"{diff[0]}: {fa.get(diff[0])!r} vs {fb.get(diff[0])!r}" if diff else ""
        if only:
            first += ("; " if first else "") + f"{len(only)} keys on one side only (e.g. {only[0]})"
        rows.append((name, str(n), "no" if diff else "yes", first or "-"))
        ok &= not diff
    print("| job | values compared | identical | first difference |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return ok


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 0
    cmd, *args = argv
    if cmd == "run":
        run(Path(args[0]).resolve(), Path(args[1]).resolve(), args[2:])
        return 0
    if cmd == "compare":
        return 0 if compare(Path(args[0]), Path(args[1])) else 1
    if cmd == "jobs":
        for name, overrides in JOBS.items():
            print(f"{name}: {' '.join(overrides)}")
        return 0
    print(f"unknown command {cmd!r}; valid: run, compare, jobs", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
