"""A job's workspace: everything its phases share (``agentgen.phases``).

The config and output dir, the env configs and pools, the policy (model, tokenizer, rollout engine), the
training engine of the current phase, the tracker, and the records a summary is made of (evaluation history,
stage results, wall time per phase, recovery). A phase is a function of the workspace; the job
(``agentgen.run``) decides which phases run and in what order."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from agentgen import console, dist
from agentgen.agent.prompt import PromptBuilder
from agentgen.augment import env_factory, parse_settings
from agentgen.config import built_env_config, env_config
from agentgen.envs.pool import EnvPool
from agentgen.models.loader import load_policy
from agentgen.options import engine_setup, rl_options, rollout_options
from agentgen.rollout import make_generator
from agentgen.rollout.hf import HFGenerator
from agentgen.rollout.policy import ModelPolicy
from agentgen.rollout.runner import Episode, EpisodeRunner, EpisodeSpec
from agentgen.summary import VARIANT_KEYS
from agentgen.trainer import checkpoint as ckpt
from agentgen.trainer.engine import generation_context, make_engine, model_loading, resume_model_path

log = logging.getLogger("agentgen")


def output_dir(cfg: DictConfig) -> Path:
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    from hydra.core.hydra_config import HydraConfig  # only inside a Hydra app

    return Path(HydraConfig.get().runtime.output_dir)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def variant(cfg: DictConfig) -> dict[str, Any]:
    """The modeling choices of this job: what the report groups and compares by."""
    values = {"augment": cfg.augment.get("name", "none"), "sft": cfg.sft.name, "think": bool(cfg.think),
              "algo": cfg.algo.name, "model": cfg.model.name, "start": cfg.get("start_name") or
              ("base" if not cfg.init_from else Path(str(cfg.init_from)).name), "seed": int(cfg.seed)}
    return {key: values[key] for key in VARIANT_KEYS}  # the factors' one list (agentgen.summary)


def stage_plan(cfg: DictConfig) -> list[tuple[list[str], int]]:
    """[(envs, steps)]: one stage on cfg.env (a mixture when several), or the sequential ``stages``."""
    if cfg.get("stages"):
        return [([str(st["env"])], int(st["steps"])) for st in cfg.stages]
    return [(list(cfg.env.keys()), int(cfg.trainer.steps))]


def init_checkpoint(cfg: DictConfig) -> str | None:
    """``init_from``: another job's output dir (its latest checkpoint) or a model directory."""
    if not cfg.init_from:
        return None
    return ckpt.resolve(Path(str(cfg.init_from)))


class Workspace:
    def __init__(self, cfg: DictConfig, out_dir: Path):
        self.cfg = cfg
        self.augment = parse_settings(cfg.augment, default_seed=int(cfg.seed))  # the job's one parse
        self.out = out_dir
        self.stage_plan = stage_plan(cfg)
        self.train_envs = list(dict.fromkeys(e for envs, _ in self.stage_plan for e in envs))
        self.current_envs = self.stage_plan[0][0]
        self.prompts = PromptBuilder.from_config(cfg.agent, cfg.think)
        self.pools: dict[tuple[str, str], EnvPool] = {}
        self.env_cfgs: dict[tuple[str, str], DictConfig] = {}
        self.tracker = None
        self.model = self.tokenizer = self.generator = None
        self.engine = None  # the training engine of the current phase (SFT or an RL stage)
        self.model_source: str | None = None  # where the policy's current weights were loaded from
        self.eval_history: list[dict[str, Any]] = []
        self.stage_results: list[dict[str, Any]] = []
        self.timing: dict[str, float] = {}  # wall seconds per phase (sft, rl, eval), summed over the job's runs
        self.recovery: dict[str, Any] = {}  # summary.json's: earlier runs' failures, preemptions, bad checkpoints
        self.health = None  # the RL stage's HealthMonitor (agentgen.trainer.health)
        # the training engine's and the RL trainer's own options, built once: they never see the whole cfg
        self.engine_setup = engine_setup(cfg.trainer, cfg.model.dtype)
        self.rl_options = rl_options(cfg.trainer, cfg.rollout, cfg.seed, self.engine_setup)

    @contextlib.contextmanager
    def timed(self, phase: str):
        """Adds the wall time of the block to ``timing[phase]`` (summary.json's ``timing``)."""
        t0 = time.time()
        try:
            yield
        finally:
            self.timing[phase] = self.timing.get(phase, 0.0) + time.time() - t0

    def write_records(self, relpath: str, rows: list[dict[str, Any]], append: bool = False) -> None:
        """JSON lines in the output dir (rank 0): the per-step metrics (``metrics.jsonl``, appended; a resumed
        job appends the steps it replays again, the last row of a step wins) and the per-episode evaluation
        records (``eval_episodes/<env>/step_<N>.jsonl``) that benchmarks and notebooks read without wandb."""
        if not dist.is_rank0() or not rows:
            return
        path = self.out / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")

    def train_env_label(self) -> str:
        """"a" (one env), "a+b" (a mixture), "a>b" (sequential stages), as summary.json's train_env."""
        return ">".join("+".join(envs) for envs, _ in self.stage_plan) if self.cfg.get("stages") \
            else "+".join(self.train_envs)

    # ------------------------------------------------------------------ environments
    def env_cfg(self, name: str, split: str) -> DictConfig:
        key = (name, split)
        if key not in self.env_cfgs:
            self.env_cfgs[key] = built_env_config(self.cfg.env_configs, name, split) or \
                env_config(self.cfg, name, for_eval=split == "test")  # a pair the step did not foresee
        return self.env_cfgs[key]

    def pool(self, name: str, split: str, slots: int) -> EnvPool:
        key = (name, split)
        ec = self.env_cfg(name, split)
        want = max(1, min(slots, ec.max_instances))
        if key in self.pools and self.pools[key].num_slots >= want:
            return self.pools[key]
        if key in self.pools:
            self.pools.pop(key).close()
        opts = rollout_options(self.cfg.rollout).pool()
        self.pools[key] = EnvPool(env_factory(name, ec, self.augment, split), None, split=split, num_slots=want,
                                  num_workers=opts.num_workers, step_timeout=opts.step_timeout)
        return self.pools[key]

    def runner(self, name: str, split: str, slots: int, max_turns: int | None = None, temperature: float = 1.0,
               top_p: float = 1.0, top_k: int = 0, generator=None, tokenizer=None) -> EpisodeRunner:
        """The episode runner of env ``name`` driving the model (the job's policy unless ``generator`` is given)."""
        ec = self.env_cfg(name, split)
        policy = ModelPolicy(generator or self.generator, tokenizer or self.tokenizer, self.prompts,
                             ec.max_prompt_tokens, ec.max_response_tokens, temperature, top_p, top_k)
        return EpisodeRunner(self.pool(name, split, slots), policy, max_turns or ec.max_steps,
                             overlap=bool(self.cfg.rollout.get("env_overlap", False)))

    def close(self) -> None:
        for p in self.pools.values():
            p.close()
        self.pools.clear()
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        if hasattr(self.generator, "close"):
            self.generator.close()

    # ------------------------------------------------------------------ policy and training engines
    def open_policy(self, path: str | None) -> None:
        """Load the policy the job starts from (``path``, else ``init_from``, else the preset) and its rollout
        engine."""
        self.model, self.tokenizer, self.model_source = self.load_policy(path or init_checkpoint(self.cfg))
        self.generator = make_generator(self.cfg.rollout, self.model, self.tokenizer)

    def load_policy(self, path: str | None):
        """(model, tokenizer, source dir) from ``path`` (None: the preset); under ZeRO-3 each rank loads only
        its shard; a single-process LoRA checkpoint resumes from the base its adapter applies to."""
        with model_loading(self.engine_setup):
            return load_policy(self.cfg.model, path=resume_model_path(path) if path else None)

    def start_phase(self, phase_start: str | None) -> None:
        """Before a phase (SFT, an RL stage) builds its engine: close the previous phase's. A DeepSpeed
        engine shards the module it wraps and LoRA wraps it in an adapter, so after such a phase the policy
        is reloaded from the checkpoint the phase ended with (``phase_start``)."""
        if self.engine is None:
            return
        reload = self.engine.strategy == "deepspeed" or self.engine.lora.enabled
        self.engine.close()
        self.engine = None
        if reload:
            self.model, _, self.model_source = self.load_policy(phase_start)
            self.generator.model = self.model

    def new_engine(self, **optimiser):
        """The phase's training engine around ``self.model``; the rollout engine then takes its weights."""
        self.engine = make_engine(self.engine_setup, self.model, lora_base=self.model_source, **optimiser)
        if hasattr(self.generator, "attach"):
            self.generator.attach(self.engine)
        return self.engine

    def generation(self):
        """Context for rollouts and evaluation: with rollout=hf under ZeRO-3 every rank holds the full
        weights while it generates."""
        if not isinstance(self.generator, HFGenerator):
            return contextlib.nullcontext()
        return generation_context(self.model, self.engine)

    def run_split(self, runner: EpisodeRunner, specs: list[EpisodeSpec], bar: str | None = None) -> list[Episode]:
        """Run ``specs`` split across the ranks (groups of ranks that generate together, e.g. a vLLM
        tensor-parallel group, share one part) and return every episode, in order, on every rank.
        ``bar``: the title of a bar over this rank's episodes (rank 0's is drawn)."""
        group = int(getattr(self.generator, "group_size", 1))
        mine = dist.split(specs, dist.world_size() // group, dist.rank() // group)
        with console.episode_bar(bar, len(mine)) as on_episode, self.generation():
            eps = runner.run(mine, on_episode=on_episode) if mine else []
        return dist.gather_split(eps, group)

    # ------------------------------------------------------------------ result
    def summary(self, status: str, error: str | None, t0: float, sft_metrics: dict, train_metrics: dict,
                steps: int) -> dict[str, Any]:
        """summary.json of a job that ran to an end (completed or diverged)."""
        final = self.eval_history[-1]["eval"] if self.eval_history else {}
        result = {
            "status": status,
            "error": error,
            "train_env": self.train_env_label(),
            "train_envs": self.train_envs,
            "variant": variant(self.cfg),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "eval": final,
            "eval_history": self.eval_history,
            "train": {"steps": steps, "final": train_metrics, "sft": sft_metrics},
            "wall_seconds": time.time() - t0,
            "timing": {k: round(v, 2) for k, v in self.timing.items()},  # per phase, over every run of the job
            "output_dir": str(self.out),
            "recovery": self.recovery,
        }
        if self.cfg.get("stages"):
            result["stages"] = self.stage_results
        if self.tracker:
            self.tracker.summary({f"final/{k}/success_rate": v["success_rate"] for k, v in final.items()})
        return result

    def failure_summary(self, status: str, error: str, traceback_text: str, t0: float) -> dict[str, Any]:
        """summary.json of a job stopped by an exception (failed) or for a requeue (interrupted)."""
        return {"status": status, "error": error, "traceback": traceback_text,
                "train_env": self.train_env_label(), "train_envs": self.train_envs, "variant": variant(self.cfg),
                "config": OmegaConf.to_container(self.cfg, resolve=True), "eval": {},
                "eval_history": self.eval_history, "train": {}, "wall_seconds": time.time() - t0,
                "output_dir": str(self.out), "recovery": self.recovery}
