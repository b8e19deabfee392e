"""One agentgen job, start to finish: (optional) SFT warm-up, RL, evaluation on every env in
``eval.envs``, and ``summary.json``. Resumes from its own checkpoints when re-run in the same output
dir (a requeued Slurm job), and skips itself when its summary already says completed."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from agentgen import attempts, console, dist, secrets
from agentgen import summary as summary_io
from agentgen.agent.prompt import PromptBuilder
from agentgen.config import EnvConfig, validate
from agentgen.envs.registry import env_conf_file
from agentgen.rollout.runner import Episode, EpisodeRunner, EpisodeSpec, episode_metrics
from agentgen.trainer import checkpoint as ckpt
from agentgen.trainer.health import Diverged

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


def env_config(cfg: DictConfig, name: str, for_eval: bool = False) -> DictConfig:
    """The config of env ``name``: the training env's own (with the user's overrides) when it is one,
    otherwise conf/env/<name>.yaml; for evaluation, ``eval.env_overrides[name]`` on top (e.g. train on the
    easy split, evaluate on the hard one); the chosen difficulty's params merged in, then the model's
    ``env_params[name]``; debug caps and the model's ``max_response_tokens`` applied."""
    if name in cfg.env:
        node = copy.deepcopy(cfg.env[name])
    else:
        node = OmegaConf.merge(OmegaConf.structured(EnvConfig), OmegaConf.load(env_conf_file(name)))
    if for_eval and name in cfg.eval.env_overrides:
        node = OmegaConf.merge(node, cfg.eval.env_overrides[name])
    if node.difficulty != "all":
        if node.difficulty not in node.difficulties:
            raise ValueError(f"env.{name}.difficulty={node.difficulty!r} is invalid; valid: all, "
                             f"{', '.join(node.difficulties)}")
        merged = {**OmegaConf.to_container(node.params, resolve=True),
                  **OmegaConf.to_container(node.difficulties[node.difficulty], resolve=True)}
        with open_dict(node):
            node.params = merged
    model_params = (cfg.model.get("env_params") or {}).get(name)
    if model_params:  # the preset's choice, unless the user set that key (its value differs from the env's file)
        chosen = {k: v for k, v in OmegaConf.to_container(model_params, resolve=True).items()
                  if node.params.get(k) == _env_file_params(name).get(k)}
        with open_dict(node):
            node.params = OmegaConf.merge(node.params, chosen)
    dbg = cfg.get("debug") or {}
    if dbg.get("max_steps"):
        node.max_steps = min(node.max_steps, int(dbg.max_steps))
    if dbg.get("max_response_tokens"):
        node.max_response_tokens = min(node.max_response_tokens, int(dbg.max_response_tokens))
    if cfg.model.get("max_response_tokens"):  # the model preset's own cap (a small model's answers are short)
        node.max_response_tokens = min(node.max_response_tokens, int(cfg.model.max_response_tokens))
    return node


@functools.lru_cache(maxsize=None)
def _env_file_params(name: str) -> dict[str, Any]:
    """conf/env/<name>.yaml's own params: what a key is when nobody (command line, experiment file) set it."""
    return OmegaConf.to_container(OmegaConf.load(env_conf_file(name)).get("params", {}), resolve=True)


def instance_subset(ec, split: str) -> list[int] | None:
    """Seeds of the instances ``env.<name>.instances`` selects ("difficulty.json:easy"), for ``split``."""
    if not ec.get("instances"):
        return None
    path, _, level = str(ec.instances).rpartition(":")
    data = json.loads(Path(path).read_text())
    seeds = data.get(split, {}).get(level)
    if not seeds:
        raise ValueError(f"{path} has no {split!r} instances at level {level!r}; levels there: "
                         f"{', '.join(data.get(split, {}))}")
    return [int(x) for x in seeds]


def variant(cfg: DictConfig) -> dict[str, Any]:
    """The modeling choices of this job: what the report groups and compares by."""
    return {"augment": cfg.augment.get("name", "none"), "sft": cfg.sft.name, "think": bool(cfg.think),
            "algo": cfg.algo.name, "model": cfg.model.name, "start": cfg.get("start_name") or
            ("base" if not cfg.init_from else Path(str(cfg.init_from)).name), "seed": int(cfg.seed)}


class Job:
    """Holds the job's resources (model, env pools, tracker) and runs its phases:
    SFT (optional) -> RL stage(s) -> evaluation of every env in ``eval.envs``."""

    def __init__(self, cfg: DictConfig, out_dir: Path):
        self.cfg = cfg
        self.out = out_dir
        self.stage_plan = _stage_plan(cfg)
        self.train_envs = list(dict.fromkeys(e for envs, _ in self.stage_plan for e in envs))
        self.current_envs = self.stage_plan[0][0]
        self.prompts = PromptBuilder.from_config(cfg)
        self.pools: dict[tuple[str, str], Any] = {}
        self.env_cfgs: dict[tuple[str, str], DictConfig] = {}
        self.tracker = None
        self.engine = None  # the training engine of the current phase (SFT or an RL stage)
        self.model_source: str | None = None  # where the policy's current weights were loaded from
        self.eval_history: list[dict[str, Any]] = []
        self.stage_results: list[dict[str, Any]] = []
        self._rollout_metrics: dict[str, float] = {}
        self.timing: dict[str, float] = {}  # wall seconds per phase (sft, rl, eval), summed over the job's runs
        self.recovery: dict[str, Any] = {}  # summary.json's: earlier runs' failures, preemptions, bad checkpoints
        self.health = None  # the RL stage's HealthMonitor (agentgen.trainer.health)

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

    # ------------------------------------------------------------------ environments
    def env_cfg(self, name: str, split: str) -> DictConfig:
        key = (name, split)
        if key not in self.env_cfgs:
            self.env_cfgs[key] = env_config(self.cfg, name, for_eval=split == "test")
        return self.env_cfgs[key]

    def pool(self, name: str, split: str, slots: int):
        from agentgen.augment import env_factory
        from agentgen.envs.pool import EnvPool

        key = (name, split)
        ec = self.env_cfg(name, split)
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
        ec = self.env_cfg(name, split)
        return EpisodeRunner(self.pool(name, split, slots), self.generator, self.tokenizer, self.prompts,
                             ec.max_prompt_tokens, ec.max_response_tokens, max_turns or ec.max_steps)

    def close(self) -> None:
        for p in self.pools.values():
            p.close()
        self.pools.clear()
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        if hasattr(getattr(self, "generator", None), "close"):
            self.generator.close()

    # ------------------------------------------------------------------ policy and training engines
    def load_policy(self, path: str | None):
        """(model, tokenizer, source dir) from ``path`` (None: the preset); under ZeRO-3 each rank loads only
        its shard; a single-process LoRA checkpoint resumes from the base its adapter applies to."""
        from agentgen.models.loader import load_policy
        from agentgen.trainer.engine import model_loading, resume_model_path

        with model_loading(self.cfg):
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
        from agentgen.trainer.engine import make_engine

        self.engine = make_engine(self.cfg, self.model, lora_base=self.model_source, **optimiser)
        if hasattr(self.generator, "attach"):
            self.generator.attach(self.engine)
        return self.engine

    def generation(self):
        """Context for rollouts and evaluation: with rollout=hf under ZeRO-3 every rank holds the full
        weights while it generates."""
        from agentgen.rollout.hf import HFGenerator
        from agentgen.trainer.engine import generation_context

        if not isinstance(self.generator, HFGenerator):
            return contextlib.nullcontext()
        return generation_context(self.model, self.engine)

    def run_split(self, runner: EpisodeRunner, specs: list[EpisodeSpec], *args, bar: str | None = None,
                  **kwargs) -> list[Episode]:
        """Run ``specs`` split across the ranks (groups of ranks that generate together, e.g. a vLLM
        tensor-parallel group, share one part) and return every episode, in order, on every rank.
        ``bar``: the title of a bar over this rank's episodes (rank 0's is drawn)."""
        group = int(getattr(self.generator, "group_size", 1))
        mine = dist.split(specs, dist.world_size() // group, dist.rank() // group)
        with console.episode_bar(bar, len(mine)) as on_episode, self.generation():
            eps = runner.run(mine, *args, on_episode=on_episode, **kwargs) if mine else []
        return dist.gather_split(eps, group)

    # ------------------------------------------------------------------ phases
    def run(self) -> dict[str, Any]:
        from agentgen.rollout import make_generator
        from agentgen.tracking import Tracker
        from agentgen.trainer.health import HealthMonitor

        cfg, t0 = self.cfg, time.time()
        point = dist.broadcast_object(ckpt.resume_point(self.out) if dist.is_rank0() else None)  # rank 0 verifies
        resume_from = point.path
        state = ckpt.load_state(resume_from) if resume_from else {}
        if dist.is_rank0():
            ckpt.discard_partial(self.out)
            earlier = attempts.start(self.out, resume_from.name if resume_from else None, state.get("step"))
            self.recovery = {**earlier, "resumed_from": resume_from.name if resume_from else None,
                             "rejected_checkpoints": point.rejected}
        self.health = HealthMonitor(cfg.trainer.health, state.get("health"))
        self.eval_history = state.get("eval_history", [])
        self.stage_results = state.get("stages", [])
        self.timing = dict(state.get("timing", {}))
        logger = cfg.logger if dist.is_rank0() else OmegaConf.create({"name": "none"})  # rank 0 logs
        self.tracker = Tracker(logger, self.out, {**OmegaConf.to_container(cfg, resolve=True),
                                                      "train_env": self.train_env_label(),
                                                      "train_envs": self.train_envs, "variant": variant(cfg)},
                               name=self.out.name, tags=[f"env:{e}" for e in self.train_envs])
        start = str(resume_from) if resume_from else _init_checkpoint(cfg)
        self.model, self.tokenizer, self.model_source = self.load_policy(start)
        self.generator = make_generator(cfg.rollout, self.model, self.tokenizer)
        if resume_from:
            log.info("resuming from %s (step %s)", resume_from, state.get("step"))

        if cfg.task == "split":
            return self.difficulty_split(t0)
        sft_metrics = state.get("sft_metrics", {})
        if cfg.task == "train" and cfg.sft.name != "none" and not state.get("sft_done"):
            with self.timed("sft"):
                sft_metrics = self.sft()
            state = {"sft_done": True, "step": 0, "sft_metrics": sft_metrics, "eval_history": [], "stages": [],
                     "timing": self.timing}
            ckpt.save(self.out, "sft", self.model, self.tokenizer, None, state, engine=self.engine)

        train_metrics: dict[str, float] = state.get("train_metrics", {})
        step = int(state.get("step", 0))
        total = sum(n for _, n in self.stage_plan) if cfg.task == "train" else 0
        if cfg.eval.before_training and not any(h["step"] == step for h in self.eval_history) and \
                (cfg.task == "eval" or step == 0):
            before = cfg.eval.before_training_envs == "train" and cfg.task == "train"
            self.evaluate(step, [e for e in cfg.eval.envs if e in self.train_envs] if before else None)
        begin = 0
        for i, (envs, n) in enumerate(self.stage_plan if cfg.task == "train" else []):
            end = begin + n
            if step < end:
                self.current_envs = envs
                try:
                    train_metrics, step = self.rl(step, end, resume_from if step > begin else None, sft_metrics)
                except Diverged as d:
                    return self.diverged(d, t0, sft_metrics)
                if step < end:  # trainer.time_budget_s ran out: the job ends here, evaluated at this step
                    total = step
                    break
            if cfg.get("stages") and len(self.stage_results) <= i:
                self.stage_results.append({"env": "+".join(envs), "steps": n, "end_step": end,
                                           "eval": self.eval_history[-1]["eval"]})
                self.save_state(step, None, train_metrics, sft_metrics)
            begin = end
        if not self.eval_history or self.eval_history[-1]["step"] != total:
            self.evaluate(total)
        return self.summary("completed", None, t0, sft_metrics, train_metrics, total)

    def difficulty_split(self, t0: float) -> dict[str, Any]:
        """Try ``split.instances`` instances of each split ``split.attempts`` times with the current model and
        write ``difficulty.json`` = {split: {easy: [seeds], hard: [seeds], rates: {seed: rate}}}; train on
        ``env.<name>.instances=<dir>/difficulty.json:easy`` and evaluate on ``...:hard`` (papers.md B)."""
        sc, name = self.cfg.split, self.train_envs[0]
        out: dict[str, Any] = {}
        for split in ("train", "test"):
            seeds = list(range(sc.instances))
            specs = [EpisodeSpec(env=name, seed=s, group=s) for s in seeds for _ in range(sc.attempts)]
            eps = self.runner(name, split, len(specs)).run(specs, self.cfg.rollout.temperature,
                                                           desc=f"difficulty {name}/{split}")
            rates = {s: sum(e.success for e in eps if e.spec.seed == s) / sc.attempts for s in seeds}
            out[split] = {"easy": [s for s in seeds if rates[s] >= sc.hard_below],
                          "hard": [s for s in seeds if rates[s] < sc.hard_below], "rates": rates}
            log.info("difficulty %s/%s: %d easy, %d hard", name, split, len(out[split]["easy"]),
                     len(out[split]["hard"]))
        (self.out / "difficulty.json").write_text(json.dumps(out, indent=1))
        result = self.summary("completed", None, t0, {}, {}, 0)
        result["difficulty"] = {sp: {k: len(v) for k, v in d.items() if k != "rates"} for sp, d in out.items()}
        return result

    def train_env_label(self) -> str:
        """"a" (one env), "a+b" (a mixture), "a>b" (sequential stages), as summary.json's train_env."""
        return ">".join("+".join(envs) for envs, _ in self.stage_plan) if self.cfg.get("stages") \
            else "+".join(self.train_envs)

    def save_state(self, step: int, optimizer, train_metrics: dict, sft_metrics: dict) -> None:
        """All ranks call it; with ``optimizer=None`` the engine writes the model alone. The last healthy
        checkpoint is kept from pruning while the run is failing a health rule."""
        trusted = self.healthy_checkpoint(step)
        ckpt.save(self.out, f"step_{step}", self.model, self.tokenizer, optimizer,
                  {"sft_done": True, "step": step, "eval_history": self.eval_history, "stages": self.stage_results,
                   "train_metrics": train_metrics, "sft_metrics": sft_metrics, "timing": self.timing,
                   "health": self.health.state() if self.health else {}},
                  keep=self.cfg.trainer.keep_checkpoints,
                  engine=self.engine, protect={trusted} if trusted else None)

    def healthy_checkpoint(self, step: int) -> str | None:
        """The newest checkpoint whose policy was still healthy as of RL step ``step`` (health.trusted_step)."""
        if self.health is None:
            return None
        trusted = self.health.trusted_step(step)
        root = ckpt.ckpt_root(self.out)
        steps = [int(p.name.split("_")[1]) for p in root.glob("step_*") if p.name.split("_")[1].isdigit()]
        best = max((n for n in steps if n <= trusted), default=None)
        if best is not None:
            return f"step_{best}"
        return "sft" if (root / "sft").is_dir() else None

    def diverged(self, d: "Diverged", t0: float, sft_metrics: dict) -> dict[str, Any]:
        """The run collapsed: no more training or evaluation; ``latest`` points at the last healthy checkpoint,
        so re-running (e.g. with a lower learning rate) resumes from there."""
        if dist.is_rank0() and d.healthy_checkpoint:
            ckpt.set_latest(self.out, d.healthy_checkpoint)
        log.error("training diverged at RL step %d: %s; last healthy checkpoint: %s", d.step, d.reason,
                  d.healthy_checkpoint or "none (the starting model)")
        result = self.summary("diverged", f"diverged at RL step {d.step}: {d.reason}", t0, sft_metrics,
                              d.metrics, d.step)
        result["diverged"] = {"reason": d.reason, "step": d.step, "healthy_checkpoint": d.healthy_checkpoint}
        return result

    def sft(self) -> dict[str, float]:
        """Collect (or reuse) trajectories for each env of the SFT mixture, then supervised warm-up."""
        from agentgen.trainer.sft import sft_schedule, train_sft

        cfg = self.cfg
        mixture = dict(cfg.sft.mixture) or {n: 1.0 for n in self.train_envs}
        records = [(name, weight, self.sft_records(name, cfg.sft.sources.get(name, "expert")))
                   for name, weight in mixture.items()]
        mixed = _mix_by_state_action_pairs(records, random.Random(cfg.seed))
        ec = max((self.env_cfg(n, "train") for n in mixture), key=lambda e: e.max_prompt_tokens)
        engine = self.new_engine(lr=cfg.sft.lr, weight_decay=cfg.sft.weight_decay, grad_clip=1.0,
                                 micro_batch=cfg.sft.micro_batch_size, schedule=sft_schedule(cfg.sft))
        metrics = train_sft(self.model, self.tokenizer, mixed, cfg.sft, ec.max_prompt_tokens + ec.max_response_tokens,
                            cfg.seed, log_fn=lambda m: self.tracker.log(m, 0), engine=engine)
        metrics.update({f"sft/pairs/{n}": sum(1 for r in mixed if r["env"] == n) for n in mixture})
        self.generator.sync_weights()
        console.progress_log.info("SFT done: %s", {k: round(v, 4) for k, v in metrics.items()})
        return metrics

    def sft_records(self, name: str, source: str) -> list[dict]:
        """Chat records of env ``name`` from the expert or from a checkpoint's own rollouts, cached on disk
        (``sft_data/<env>[.nothink][.<source>].jsonl``; ``sft.data_dir`` reuses another job's)."""
        from agentgen.data import expert

        cfg = self.cfg
        tag = "" if source == "expert" else "." + Path(str(source)).name
        aug = cfg.augment.get("name", "none")
        if aug != "none" and cfg.augment.get("apply_to", "train") in ("train", "both"):
            tag += f".aug-{aug}"  # augmented observations: never mixed with plain data in the cache
        fname = f"{name}{'' if cfg.think else '.nothink'}{tag}.jsonl"
        for d in ([Path(cfg.sft.data_dir)] if cfg.sft.data_dir else []) + [self.out / "sft_data"]:
            if (d / fname).exists():
                return expert.read(d / fname)
        n = int(cfg.sft.episodes_per_env)
        seeds = [cfg.seed * 1_000_003 + 7_000_000 + i for i in range(n)]  # outside the RL seed stream
        max_turns = self.env_cfg(name, "train").max_steps
        if source == "expert":
            recs = expert.collect(self.pool(name, "train", min(n, 32)), name, seeds, self.prompts, max_turns)
        else:
            recs = self.model_records(name, source, seeds)
        expert.write(recs, self.out / "sft_data" / fname)
        return recs

    def model_records(self, name: str, source: str, seeds: list[int]) -> list[dict]:
        """Trajectories of another checkpoint's policy as chat records (not filtered for success)."""
        from agentgen.data.expert import records_from_episodes
        from agentgen.models.loader import load_policy
        from agentgen.rollout import make_generator

        model, tokenizer, _ = load_policy(self.cfg.model, path=_resolve_checkpoint(Path(str(source))))
        ec = self.env_cfg(name, "train")
        runner = EpisodeRunner(self.pool(name, "train", len(seeds)), make_generator(self.cfg.rollout, model, tokenizer),
                               tokenizer, self.prompts, ec.max_prompt_tokens, ec.max_response_tokens, ec.max_steps)
        episodes = runner.run([EpisodeSpec(env=name, seed=s) for s in seeds], self.cfg.rollout.temperature,
                              desc=f"trajectories of {Path(str(source)).name} on {name}")
        del model
        return records_from_episodes(episodes, tokenizer)

    def rl(self, start_step: int, end_step: int, resume_from: Path | None,
           sft_metrics: dict) -> tuple[dict[str, float], int]:
        """RL steps [start_step, end_step) on ``self.current_envs``; evaluates and checkpoints on schedule.
        Returns the last step's metrics and the step reached (< end_step when ``trainer.time_budget_s`` ran out)."""
        from agentgen.cluster import preemption
        from agentgen.trainer.rl import RLTrainer

        cfg = self.cfg
        stage_start = self.stage_start_checkpoint(start_step)
        self.start_phase(stage_start)
        ref = None
        lora = bool(((cfg.trainer.get("params") or {}).get("lora") or {}).get("rank", 0))
        if float(cfg.algo.get("kl_coef", 0.0)) > 0 and not lora:  # LoRA: the policy without its adapter
            if resume_from is not None or cfg.trainer.strategy == "deepspeed":
                # resumed mid-stage, or a policy DeepSpeed will shard: the stage's starting policy from disk
                ref, _, _ = self.load_policy(stage_start)
            else:
                ref = copy.deepcopy(self.model)  # the policy this stage starts from
            ref.eval().requires_grad_(False)
        engine = self.new_engine()
        trainer = RLTrainer(self.model, ref, self.tokenizer, cfg, self.rollout, log_fn=self.tracker.log,
                            engine=engine)
        if resume_from is not None and resume_from.name != "sft":
            engine.load(resume_from)  # optimizer (and DeepSpeed's partitioned state, LoRA adapter)
            ckpt.restore_training(resume_from, None)  # random generators
            trainer.load_state(resume_from, start_step)  # what the policy checkpoint does not hold (PPO's critic)
        metrics: dict[str, float] = {}
        label = f"rl {'+'.join(self.current_envs)}"
        # the stage's bar: steps done (evaluation and checkpoint included), the rollouts' success rate and the
        # seconds of the training step (rollouts + update); tqdm's own rate would count the evaluations too
        bar = console.progress(end_step, label, unit="step", initial=start_step,
                               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
        for step in range(start_step, end_step):
            self._rollout_metrics = {}
            t_step = time.time()
            with self.timed("rl"):
                metrics = {**trainer.step(step), **self._rollout_metrics}
                self.generator.sync_weights()
            seconds = time.time() - t_step
            done = step + 1
            sick = self.health.observe(done, metrics)
            metrics["train/nonfinite_skipped_total"] = self.health.nonfinite_total
            self.tracker.log(metrics, done)
            self.write_records("metrics.jsonl", [{"step": done, **metrics}], append=True)
            if sick:
                raise Diverged(sick, done, self.healthy_checkpoint(done), metrics)
            success = metrics.get("rollout/success_rate", 0.0)
            bar.set_postfix({"success": f"{success:.2f}", "s/step": f"{seconds:.1f}"}, refresh=False)
            console.progress_log.info("%s step %d/%d: rollout success %.2f, return %.2f, %.1f s/step", label, done,
                                      end_step, success, metrics.get("rollout/return", 0.0), seconds)
            budget = cfg.trainer.get("time_budget_s")
            if budget and self.timing.get("rl", 0.0) >= float(budget) and done < end_step:
                log.info("trainer.time_budget_s=%s reached after step %d: evaluating and stopping", budget, done)
                end_step = bar.total = done
            if done == end_step or (cfg.eval.every and done % cfg.eval.every == 0):
                self.evaluate(done)  # before the checkpoint, so a resumed job keeps this evaluation
            stop = preemption.requested()  # Slurm's time-limit / preemption warning, honoured at this boundary
            if stop or (cfg.trainer.save_every and done % cfg.trainer.save_every == 0) or done == end_step:
                self.save_state(done, trainer.optimizer, metrics, sft_metrics)
                trainer.save_state(ckpt.ckpt_root(self.out) / f"step_{done}", done)
            bar.update(1)
            if stop:
                bar.close()
                preemption.exit_for_requeue(done)  # requeue (USR2) and exit; the requeued job resumes here
            if done == end_step:
                break
        bar.close()
        return metrics, end_step

    def stage_start_checkpoint(self, step: int) -> str | None:
        """The weights a stage started from: the checkpoint at its first step, else SFT or the initial model."""
        begin = 0
        for _, n in self.stage_plan:
            if begin <= step < begin + n:
                break
            begin += n
        for tag in ([f"step_{begin}"] if begin else []) + ["sft"]:
            path = ckpt.ckpt_root(self.out) / tag
            if (path / "state.json").exists():
                return str(path)
        return _init_checkpoint(self.cfg)

    def rollout(self, specs: list[EpisodeSpec], step: int) -> list[Episode]:
        """Assign each group an env by the mixture shares, run them, and return all episodes."""
        names = self.current_envs
        shares = [float(self.env_cfg(n, "train").share) for n in names]
        owner = _assign_groups(sorted({s.group for s in specs}), names, shares)
        out: list[Episode] = []
        for name in names:
            subset = instance_subset(self.env_cfg(name, "train"), "train")
            # a spec that names its env (a Tree-GRPO continuation) stays in it
            mine = [EpisodeSpec(env=name, seed=subset[s.seed % len(subset)] if subset else s.seed, group=s.group,
                                meta=s.meta) for s in specs if (s.env or owner[s.group]) == name]
            if not mine:
                continue
            runner = self.runner(name, "train", len(mine), _turn_limit(self.cfg, step, self.env_cfg(name, "train")))
            eps = self.run_split(runner, mine, self.cfg.rollout.temperature, self.cfg.rollout.top_p,
                                 self.cfg.rollout.top_k)
            if len(names) > 1:  # per-env figures of a mixture run
                m = episode_metrics(eps)
                self._rollout_metrics.update({f"rollout/{name}/success_rate": m["success_rate"],
                                              f"rollout/{name}/return": m["avg_return"],
                                              f"rollout/{name}/episodes": m["episodes"]})
            out.extend(eps)
        if hasattr(self.generator, "sleep"):
            self.generator.sleep()  # a colocated vLLM engine frees its GPU memory for the update
        return out

    def evaluate(self, step: int, envs: list[str] | None = None) -> dict[str, dict[str, float]]:
        """Evaluate ``envs`` (default: every env in ``eval.envs``) on their test splits; logged and kept
        in ``eval_history``."""
        cfg = self.cfg
        results: dict[str, dict[str, float]] = {}
        for name in cfg.eval.envs if envs is None else envs:
            n = int(cfg.eval.episodes_per_env.get(name, cfg.eval.episodes))
            subset = instance_subset(self.env_cfg(name, "test"), "test")
            seeds = [subset[i % len(subset)] for i in range(n)] if subset else list(range(n))
            runner = self.runner(name, "test", n)
            with self.timed("eval"):
                eps = self.run_split(runner, [EpisodeSpec(env=name, seed=s) for s in seeds], cfg.eval.temperature,
                                     bar=f"eval {name} @ step {step}")
            results[name] = episode_metrics(eps)
            self.write_records(f"eval_episodes/{name}/step_{step}.jsonl", [
                {"seed": e.spec.seed, "success": bool(e.success), "return": e.ret, "steps": e.steps,
                 "aborted": bool(e.aborted)} for e in eps])
            self.tracker.log({f"eval/{name}/{k}": v for k, v in results[name].items()}, step)
            self.tracker.log_samples(f"samples/{name}", [_sample_row(e) for e in eps[:cfg.logger.get(
                "sample_trajectories", 0) or 0]], step)
            console.progress_log.info("eval %s @ step %d: success %.3f over %d episodes", name, step,
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


def _stage_plan(cfg: DictConfig) -> list[tuple[list[str], int]]:
    """[(envs, steps)]: one stage on cfg.env (a mixture when several), or the sequential ``stages``."""
    if cfg.get("stages"):
        return [([str(st["env"])], int(st["steps"])) for st in cfg.stages]
    return [(list(cfg.env.keys()), int(cfg.trainer.steps))]


def _resolve_checkpoint(src: Path) -> str:
    point = ckpt.resume_point(src, quiet=True)
    if point.path:
        return str(point.path)
    if (src / "config.json").exists():
        return str(src)
    if point.rejected:  # e.g. checkpoints saved before manifests existed: name them and the way around
        why = "; ".join(f"{r['checkpoint']}: {r['reason']}" for r in point.rejected)
        example = ckpt.ckpt_root(src) / point.rejected[0]["checkpoint"]
        raise FileNotFoundError(f"{src} has no complete checkpoint ({why}); to use one anyway, point init_from "
                                f"at its directory, e.g. init_from={example}")
    raise FileNotFoundError(f"{src} is neither a job output dir with checkpoints nor a model directory")


def _init_checkpoint(cfg: DictConfig) -> str | None:
    """``init_from``: another job's output dir (its latest checkpoint) or a model directory."""
    if not cfg.init_from:
        return None
    return _resolve_checkpoint(Path(str(cfg.init_from)))


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
    dist.init()  # one process per GPU (torchrun, Slurm tasks): join the group; a no-op for one process
    out = Path(dist.broadcast_object(str(output_dir(cfg))))  # rank 0's: ranks' Hydra timestamps may differ
    job_lock = _lock_output_dir(out)  # before the job reads or writes anything of its own
    try:
        return _run(cfg, out)
    finally:
        if job_lock is not None:
            job_lock.release()


def _lock_output_dir(out: Path):
    """Rank 0 holds the output dir's lock for the whole job (``agentgen.lock``); when another live job holds
    it, every rank stops with exit code 2 and the one-paragraph error naming that job."""
    from agentgen.lock import JobLock, OutputDirBusy

    held, refusal = None, None
    if dist.is_rank0():
        try:
            held = JobLock(out).acquire()
        except OutputDirBusy as err:
            refusal = str(err)
    refusal = dist.broadcast_object(refusal)
    if refusal:
        print(f"agentgen: error: {refusal}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    return held


def _run(cfg: DictConfig, out: Path) -> dict[str, Any]:
    if dist.is_rank0():  # credentials out of the job's log and Hydra's copy of the command line (agentgen.secrets)
        secrets.install_log_filter()
        secrets.redact_files(sorted((out / ".hydra").glob("*.yaml")))
    prior = summary_io.read(out)
    if prior and prior.get("status") == "completed" and cfg.resume == "skip_completed":
        log.info("%s already completed; skipping (resume=skip_completed)", out)
        console.print_end(out, prior, cfg.logger.name, skipped=True)
        return prior
    validate(cfg)
    seed_everything(int(cfg.seed) + 7919 * dist.rank())  # ranks sample different rollouts
    if cfg.task == "profile":  # writes profile.json (not a training summary)
        from agentgen.profile import run_profile

        return run_profile(cfg, out)
    job = Job(cfg, out)
    t0 = time.time()
    try:
        with console.bars_and_logs():
            result = job.run()
    except BaseException as exc:  # the summary records failures too, then the error propagates
        from agentgen.cluster.preemption import JobInterrupted

        interrupted = isinstance(exc, JobInterrupted)  # checkpointed and stopping for requeue: not a failure
        result = {"status": "interrupted" if interrupted else "failed", "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(),
                  "train_env": job.train_env_label(), "train_envs": job.train_envs, "variant": variant(cfg),
                  "config": OmegaConf.to_container(cfg, resolve=True), "eval": {},
                  "eval_history": job.eval_history, "train": {}, "wall_seconds": time.time() - t0,
                  "output_dir": str(out), "recovery": job.recovery}
        if dist.is_rank0():
            summary_io.write(out, result)
            attempts.end(out, result["status"])
        if job.tracker:
            job.tracker.finish(failed=not interrupted)
        job.close()
        console.print_end(out, result, cfg.logger.name)
        raise
    path = summary_io.write(out, result) if dist.is_rank0() else None
    if dist.is_rank0():
        attempts.end(out, result["status"])
    if job.tracker.run:
        from agentgen.report.wandb_tables import log_summary_to_wandb

        log_summary_to_wandb(job.tracker.run, path)
    job.tracker.finish()
    job.close()
    console.print_end(out, result, cfg.logger.name)
    return result
