"""The difficulty split (``task=split``, papers.md B): which instances the current model solves."""

from __future__ import annotations

import json
import logging
from typing import Any

from agentgen.episode import EpisodeSpec
from agentgen.workspace import Workspace

log = logging.getLogger("agentgen")


def difficulty_split(ws: Workspace) -> dict[str, Any]:
    """Try ``split.instances`` instances of each split ``split.attempts`` times with the current model and
    write ``difficulty.json`` = {split: {easy: [seeds], hard: [seeds], rates: {seed: rate}}}; train on
    ``env.<name>.instances=<dir>/difficulty.json:easy`` and evaluate on ``...:hard``. Returns the counts."""
    sc, name = ws.cfg.split, ws.train_envs[0]
    out: dict[str, Any] = {}
    for split in ("train", "test"):
        seeds = list(range(sc.instances))
        specs = [EpisodeSpec(env=name, seed=s, group=s) for s in seeds for _ in range(sc.attempts)]
        runner = ws.runner(name, split, len(specs), temperature=ws.cfg.rollout.temperature)
        eps = runner.run(specs, desc=f"difficulty {name}/{split}")
        rates = {s: sum(e.success for e in eps if e.spec.seed == s) / sc.attempts for s in seeds}
        out[split] = {"easy": [s for s in seeds if rates[s] >= sc.hard_below],
                      "hard": [s for s in seeds if rates[s] < sc.hard_below], "rates": rates}
        log.info("difficulty %s/%s: %d easy, %d hard", name, split, len(out[split]["easy"]), len(out[split]["hard"]))
    (ws.out / "difficulty.json").write_text(json.dumps(out, indent=1))
    return {sp: {k: len(v) for k, v in d.items() if k != "rates"} for sp, d in out.items()}
