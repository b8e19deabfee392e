"""One agentgen job, start to finish: (optional) SFT warm-up, RL, evaluation on every env in
``eval.envs``, and ``summary.json``. Resumes from its own checkpoints when re-run in the same output
dir (a requeued Slurm job), and skips itself when its summary already says completed."""

from __future__ import annotations

import copy
import logging
import random
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from agentgen import summary as summary_io
from agentgen.agent.prompt import PromptBuilder
from agentgen.config import CONF_DIR, EnvConfig, validate
from agentgen.rollout.runner import Episode, EpisodeRunner, EpisodeSpec, episode_metrics
from agentgen.trainer import checkpoint as ckpt

log = logging.getLogger("agentgen")


def output_dir(cfg: DictConfig) -> Path:
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def env_config(cfg: DictConfig, name: str) -> DictConfig:
    """The config of env ``name``: the training env's own (with the user's overrides) when it is one,
    otherwise conf/env/<name>.yaml plus ``eval.env_overrides[name]``; debug caps applied."""
    if name in cfg.env:
        node = copy.deepcopy(cfg.env[name])
    else:
        node = OmegaConf.merge(OmegaConf.structured(EnvConfig), OmegaConf.load(CONF_DIR / "env" / f"{name}.yaml"),
                               cfg.eval.env_overrides.get(name, {}))
    dbg = cfg.get("debug") or {}
    if dbg.get("max_steps"):
        node.max_steps = min(node.max_steps, int(dbg.max_steps))
    if dbg.get("max_response_tokens"):
        node.max_response_tokens = min(node.max_response_tokens, int(dbg.max_response_tokens))
    return node


def variant(cfg: DictConfig) -> dict[str, Any]:
    """The modeling choices of this job: what the report groups and compares by."""
    return {"augment": cfg.augment.get("name", "none"), "sft": cfg.sft.name, "think": bool(cfg.think),
            "algo": cfg.algo.name, "model": cfg.model.name, "start": cfg.get("start_name") or
            ("base" if not cfg.init_from else Path(str(cfg.init_from)).name), "seed": int(cfg.seed)}


class Job:
    """Holds the job's resources (model, env pools, tracker) and runs its phases."""

    def __init__(self, cfg: DictConfig, out_dir: Path):
        self.cfg = cfg
        self.out = out_dir
        self.train_envs = list(cfg.env.keys())
        self.env_cfgs = {n: env_config(cfg, n) for n in dict.fromkeys(self.train_envs + list(cfg.eval.envs))}
        self.prompts = PromptBuilder(think=bool(cfg.think), history_k=cfg.agent.history_k,
                                     system_prompt=cfg.agent.system_prompt)
        self.pools: dict[tuple[str, str], Any] = {}
        self.tracker = None
        self.eval_history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ environments
    def pool(self, name: str, split: str, slots: int):
        from agentgen.augment import env_factory
        from agentgen.envs.pool import EnvPool

        key = (name, split)
        ec = self.env_cfgs[name]
        want = max(1, min(slots, ec.max_instances))
        if key in self.pools and self.pools[key].num_slots >= want:
            return self.pools[key]
        if key in self.pools:
            self.pools.pop(key).close()
        target, kwargs = env_factory(name, ec, self.cfg.augment, split, self.cfg.seed)
        self.pools[key] = EnvPool(target, kwargs, split=split, num_slots=want,
                                  num_workers=self.cfg.rollout.num_workers, step_timeout=self.cfg.rollout.step_timeout)
        return self.pools[key]

    def runner(self, name: str, split: str, slots: int, max_turns: int | None = None) -> EpisodeRunner:
        ec = self.env_cfgs[name]
        return EpisodeRunner(self.pool(name, split, slots), self.generator, self.tokenizer, self.prompts,
                             ec.max_prompt_tokens, ec.max_response_tokens, max_turns or ec.max_steps)

    def close(self) -> None:
        for p in self.pools.values():
            p.close()
        self.pools.clear()

    # ------------------------------------------------------------------ phases
    def run(self) -> dict[str, Any]:
        from agentgen.models.loader import load_policy
        from agentgen.rollout import make_generator
        from agentgen.tracking import Tracker

        cfg, t0 = self.cfg, time.time()
        resume_from = ckpt.latest(self.out)
        state = ckpt.load_state(resume_from) if resume_from else {}
        self.eval_history = state.get("eval_history", [])
        self.tracker = Tracker(cfg.logger, self.out, {**OmegaConf.to_container(cfg, resolve=True),
                                                      "train_env": "+".join(self.train_envs),
                                                      "train_envs": self.train_envs, "variant": variant(cfg)},
                               name=self.out.name, tags=[f"env:{e}" for e in self.train_envs])
        start = str(resume_from) if resume_from else _init_checkpoint(cfg)
        self.model, self.tokenizer, base_dir = load_policy(cfg.model, path=start)
        self.generator = make_generator(cfg.rollout, self.model, self.tokenizer)
        if resume_from:
            log.info("resuming from %s (step %s)", resume_from, state.get("step"))

        sft_metrics = state.get("sft_metrics", {})
        if cfg.task == "train" and cfg.sft.name != "none" and not state.get("sft_done"):
            sft_metrics = self.sft()
            state = {"sft_done": True, "step": 0, "sft_metrics": sft_metrics, "eval_history": []}
            ckpt.save(self.out, "sft", self.model, self.tokenizer, None, state)

        train_metrics: dict[str, float] = {}
        steps = int(cfg.trainer.steps) if cfg.task == "train" else 0
        step = int(state.get("step", 0))
        if cfg.eval.before_training and not any(h["step"] == step for h in self.eval_history) and \
                (cfg.task == "eval" or step == 0):
            self.evaluate(step)
        if steps > step:
            train_metrics = self.rl(step, steps, resume_from)
        if not self.eval_history or self.eval_history[-1]["step"] != steps:
            self.evaluate(steps)
        result = self.summary("completed", None, t0, sft_metrics, train_metrics, steps)
        return result

    def sft(self) -> dict[str, float]:
        """Collect (or reuse) expert trajectories for the training env(s), then supervised warm-up."""
        from agentgen.data import expert
        from agentgen.trainer.sft import train_sft

        cfg = self.cfg
        mixture = dict(cfg.sft.mixture) or {n: 1.0 for n in self.train_envs}
        data_dir = Path(cfg.sft.data_dir) if cfg.sft.data_dir else self.out / "sft_data"
        records: list[dict] = []
        for name, weight in mixture.items():
            if name not in self.env_cfgs:
                self.env_cfgs[name] = env_config(cfg, name)
            path = data_dir / f"{name}{'' if cfg.think else '.nothink'}.jsonl"
            if path.exists():
                recs = expert.read(path)
            else:
                n = int(cfg.sft.episodes_per_env)
                pool = self.pool(name, "train", min(n, 32))
                seeds = [cfg.seed * 1_000_003 + 7_000_000 + i for i in range(n)]  # outside the RL seed stream
                recs = expert.collect(pool, name, seeds, self.prompts, self.env_cfgs[name].max_steps)
                expert.write(recs, self.out / "sft_data" / path.name)
            records.append((name, weight, recs))
        mixed = _mix_by_state_action_pairs(records, random.Random(cfg.seed))
        ec = max((self.env_cfgs[n] for n in mixture), key=lambda e: e.max_prompt_tokens)
        metrics = train_sft(self.model, self.tokenizer, mixed, cfg.sft, ec.max_prompt_tokens + ec.max_response_tokens,
                            cfg.seed, log_fn=lambda m: self.tracker.log(m, 0))
        metrics.update({f"sft/pairs/{n}": sum(1 for r in mixed if r["env"] == n) for n in mixture})
        self.generator.sync_weights()
        log.info("SFT done: %s", {k: round(v, 4) for k, v in metrics.items()})
        return metrics

    def rl(self, start_step: int, steps: int, resume_from: Path | None) -> dict[str, float]:
        from agentgen.trainer.rl import RLTrainer

        cfg = self.cfg
        kl = float(cfg.algo.get("kl_coef", 0.0))
        ref = None
        if kl > 0:
            ref_dir = ckpt.ckpt_root(self.out) / "sft"
            if resume_from and resume_from.name != "sft":
                from agentgen.models.loader import load_policy

                ref, _, _ = load_policy(cfg.model, path=str(ref_dir) if ref_dir.exists() else _init_checkpoint(cfg))
            else:
                ref = copy.deepcopy(self.model)
            ref.eval().requires_grad_(False)
        trainer = RLTrainer(self.model, ref, self.tokenizer, cfg, self.rollout, log_fn=self.tracker.log)
        if resume_from and resume_from.name != "sft":
            ckpt.restore_training(resume_from, trainer.optimizer)
        metrics: dict[str, float] = {}
        from tqdm.auto import tqdm

        bar = tqdm(range(start_step, steps), desc="rl", initial=start_step, total=steps)
        for step in bar:
            metrics = trainer.step(step)
            self.generator.sync_weights()
            done = step + 1
            self.tracker.log(metrics, done)
            bar.set_postfix(success=f"{metrics['rollout/success_rate']:.2f}", ret=f"{metrics['rollout/return']:.2f}")
            if done == steps or (cfg.eval.every and done % cfg.eval.every == 0):
                self.evaluate(done)  # before the checkpoint, so a resumed job keeps this evaluation
            if (cfg.trainer.save_every and done % cfg.trainer.save_every == 0) or done == steps:
                ckpt.save(self.out, f"step_{done}", self.model, self.tokenizer, trainer.optimizer,
                          {"sft_done": True, "step": done, "eval_history": self.eval_history,
                           "train_metrics": metrics}, keep=cfg.trainer.keep_checkpoints)
        return metrics

    def rollout(self, specs: list[EpisodeSpec], step: int) -> list[Episode]:
        """Assign each group an env by the mixture shares, run them, and return episodes in spec order."""
        names = self.train_envs
        shares = [float(self.env_cfgs[n].share) for n in names]
        groups = sorted({s.group for s in specs})
        owner = _assign_groups(groups, names, shares)
        out: list[Episode] = []
        for name in names:
            mine = [EpisodeSpec(env=name, seed=s.seed, group=s.group) for s in specs if owner[s.group] == name]
            if not mine:
                continue
            runner = self.runner(name, "train", len(mine), _turn_limit(self.cfg, step, self.env_cfgs[name]))
            out.extend(runner.run(mine, self.cfg.rollout.temperature, self.cfg.rollout.top_p, self.cfg.rollout.top_k))
        return out

    def evaluate(self, step: int) -> dict[str, dict[str, float]]:
        cfg = self.cfg
        results: dict[str, dict[str, float]] = {}
        for name in cfg.eval.envs:
            n = int(cfg.eval.episodes_per_env.get(name, cfg.eval.episodes))
            runner = self.runner(name, "test", n)
            eps = runner.run([EpisodeSpec(env=name, seed=i) for i in range(n)], cfg.eval.temperature,
                             desc=f"eval {name} @ step {step}")
            results[name] = episode_metrics(eps)
            self.tracker.log({f"eval/{name}/{k}": v for k, v in results[name].items()}, step)
            self.tracker.log_samples(f"samples/{name}", [_sample_row(e) for e in eps[:cfg.logger.get(
                "sample_trajectories", 0) or 0]], step)
            log.info("eval %s @ step %d: success %.3f over %d episodes", name, step,
                     results[name]["success_rate"], n)
        self.eval_history.append({"step": step, "eval": results})
        return results

    # ------------------------------------------------------------------ result
    def summary(self, status: str, error: str | None, t0: float, sft_metrics: dict, train_metrics: dict,
                steps: int) -> dict[str, Any]:
        final = self.eval_history[-1]["eval"] if self.eval_history else {}
        result = {
            "status": status,
            "error": error,
            "train_env": "+".join(self.train_envs),
            "train_envs": self.train_envs,
            "variant": variant(self.cfg),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "eval": final,
            "eval_history": self.eval_history,
            "train": {"steps": steps, "final": train_metrics, "sft": sft_metrics},
            "wall_seconds": time.time() - t0,
            "output_dir": str(self.out),
        }
        if self.tracker:
            self.tracker.summary({f"final/{k}/success_rate": v["success_rate"] for k, v in final.items()})
        return result


def _init_checkpoint(cfg: DictConfig) -> str | None:
    """``init_from``: another job's output dir (its latest checkpoint) or a model directory."""
    if not cfg.init_from:
        return None
    src = Path(str(cfg.init_from))
    found = ckpt.latest(src)
    if found:
        return str(found)
    if (src / "config.json").exists():
        return str(src)
    raise FileNotFoundError(f"init_from={src} is neither a job output dir with checkpoints nor a model directory")


def _turn_limit(cfg: DictConfig, step: int, ec) -> int:
    sched = cfg.trainer.get("max_turns_schedule")
    if not sched:
        return ec.max_steps
    from agentgen.algos.schedule import turn_limit

    return min(ec.max_steps, turn_limit(step, list(sched.rounds), int(sched.phase)))


def _assign_groups(groups: list[int], names: list[str], shares: list[float]) -> dict[int, str]:
    """Largest-remainder split of the step's groups over the envs by their shares, interleaved."""
    if len(names) == 1:
        return {g: names[0] for g in groups}
    total = sum(shares)
    quotas = [len(groups) * s / total for s in shares]
    counts = [int(q) for q in quotas]
    for i in sorted(range(len(names)), key=lambda i: quotas[i] - counts[i], reverse=True)[:len(groups) - sum(counts)]:
        counts[i] += 1
    order = [n for n, c in zip(names, counts) for _ in range(c)]
    return dict(zip(groups, order))


def _mix_by_state_action_pairs(records: list[tuple[str, float, list[dict]]], rng: random.Random) -> list[dict]:
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


def _sample_row(ep: Episode) -> dict[str, Any]:
    return {"env": ep.spec.env, "split": "test", "seed": ep.spec.seed, "success": ep.success, "return": ep.ret,
            "turns": ep.steps,
            "trajectory": "\n\n".join(f"[obs] {t.observation[:400]}\n[response] {t.response}" for t in ep.turns)[:6000]}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Entry point of a job (called by launch.py under Hydra, locally or on a Slurm node)."""
    out = output_dir(cfg)
    prior = summary_io.read(out)
    if prior and prior.get("status") == "completed" and cfg.resume == "skip_completed":
        log.info("%s already completed; skipping (resume=skip_completed)", out)
        return prior
    validate(cfg)
    seed_everything(int(cfg.seed))
    job = Job(cfg, out)
    t0 = time.time()
    try:
        result = job.run()
    except BaseException as exc:  # the summary records failures too, then the error propagates
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                  "train_env": "+".join(job.train_envs), "train_envs": job.train_envs, "variant": variant(cfg),
                  "config": OmegaConf.to_container(cfg, resolve=True), "eval": {},
                  "eval_history": job.eval_history, "train": {}, "wall_seconds": time.time() - t0,
                  "output_dir": str(out)}
        summary_io.write(out, result)
        if job.tracker:
            job.tracker.finish(failed=True)
        job.close()
        raise
    path = summary_io.write(out, result)
    if job.tracker.run:
        from agentgen.report.wandb_tables import log_summary_to_wandb

        log_summary_to_wandb(job.tracker.run, path)
    job.tracker.finish()
    job.close()
    return result
