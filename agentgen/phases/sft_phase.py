"""SFT warm-up (papers.md A): trajectories of each env of the mixture (the env's expert, or another
checkpoint's own rollouts), mixed so their state-action pair counts follow ``sft.mixture``, then supervised
training of the policy. The trajectories are cached in ``sft_data/`` (``sft.data_dir`` reuses another job's)."""

from __future__ import annotations

import random
from pathlib import Path

from agentgen import console
from agentgen.data import expert
from agentgen.episode import EpisodeSpec
from agentgen.models.loader import load_policy
from agentgen.rollout import make_generator
from agentgen.trainer import checkpoint as ckpt
from agentgen.trainer.sft_trainer import sft_schedule, train_sft
from agentgen.workspace import Workspace


def sft(ws: Workspace) -> dict[str, float]:
    """Collect (or reuse) trajectories for each env of the SFT mixture, then train; returns the metrics."""
    cfg = ws.cfg
    mixture = dict(cfg.sft.mixture) or {n: 1.0 for n in ws.train_envs}
    records = [(name, weight, sft_records(ws, name, cfg.sft.sources.get(name, "expert")))
               for name, weight in mixture.items()]
    mixed = mix_by_state_action_pairs(records, random.Random(cfg.seed))
    ec = max((ws.env_cfg(n, "train") for n in mixture), key=lambda e: e.max_prompt_tokens)
    engine = ws.new_engine(lr=cfg.sft.lr, weight_decay=cfg.sft.weight_decay, grad_clip=1.0,
                           micro_batch=cfg.sft.micro_batch_size, schedule=sft_schedule(cfg.sft))
    metrics = train_sft(ws.model, ws.tokenizer, mixed, cfg.sft, ec.max_prompt_tokens + ec.max_response_tokens,
                        cfg.seed, log_fn=lambda m: ws.tracker.log(m, 0), engine=engine)
    metrics.update({f"sft/pairs/{n}": sum(1 for r in mixed if r["env"] == n) for n in mixture})
    ws.generator.sync_weights()
    console.progress_log.info("SFT done: %s", {k: round(v, 4) for k, v in metrics.items()})
    return metrics


def sft_records(ws: Workspace, name: str, source: str) -> list[dict]:
    """Chat records of env ``name`` from the expert or from a checkpoint's own rollouts, cached on disk
    (``sft_data/<env>[.nothink][.<source>].jsonl``; ``sft.data_dir`` reuses another job's)."""
    cfg = ws.cfg
    tag = "" if source == "expert" else "." + Path(str(source)).name
    aug = cfg.augment.get("name", "none")
    if aug != "none" and cfg.augment.get("apply_to", "train") in ("train", "both"):
        tag += f".aug-{aug}"  # augmented observations: never mixed with plain data in the cache
    fname = f"{name}{'' if cfg.think else '.nothink'}{tag}.jsonl"
    for d in ([Path(cfg.sft.data_dir)] if cfg.sft.data_dir else []) + [ws.out / "sft_data"]:
        if (d / fname).exists():
            return expert.read(d / fname)
    n = int(cfg.sft.episodes_per_env)
    seeds = [cfg.seed * 1_000_003 + 7_000_000 + i for i in range(n)]  # outside the RL seed stream
    max_turns = ws.env_cfg(name, "train").max_steps
    if source == "expert":
        recs = expert.collect(ws.pool(name, "train", min(n, 32)), name, seeds, ws.prompts, max_turns)
    else:
        recs = model_records(ws, name, source, seeds)
    expert.write(recs, ws.out / "sft_data" / fname)
    return recs


def model_records(ws: Workspace, name: str, source: str, seeds: list[int]) -> list[dict]:
    """Trajectories of another checkpoint's policy as chat records (not filtered for success)."""
    model, tokenizer, _ = load_policy(ws.cfg.model, path=ckpt.resolve(Path(str(source))))
    runner = ws.runner(name, "train", len(seeds), temperature=ws.cfg.rollout.temperature,
                       generator=make_generator(ws.cfg.rollout, model, tokenizer), tokenizer=tokenizer)
    episodes = runner.run([EpisodeSpec(env=name, seed=s) for s in seeds],
                          desc=f"trajectories of {Path(str(source)).name} on {name}")
    del model
    return expert.records_from_episodes(episodes, tokenizer)


def mix_by_state_action_pairs(records: list[tuple[str, float, list[dict]]], rng: random.Random) -> list[dict]:
    """Mix per-env records so their state-action pair counts follow the weights (papers.md A: 19:3:1),
    using every record of the env that is scarcest relative to its weight."""
    if len(records) == 1:
        return records[0][2]
    unit = min(len(recs) / w for _, w, recs in records if w > 0)
    mixed: list[dict] = []
    for _, w, recs in records:
        k = int(round(unit * w))
        mixed.extend(rng.sample(recs, min(k, len(recs))))
    rng.shuffle(mixed)
    return mixed
