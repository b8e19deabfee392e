"""One RL stage: steps [start, end) on the stage's envs (a mixture shares each step's groups by ``share``).

Each step: rollouts of the current policy through the episode runner, the algorithm's update
(``agentgen.trainer.rl_trainer.RLTrainer``), the rollout engine's weights synced, the health rules checked
(``agentgen.trainer.health``: a collapse raises ``Diverged``), then evaluation and a checkpoint on schedule. A
Slurm time-limit or preemption warning is honoured at the step boundary: checkpoint, requeue, exit."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

from agentgen import console, dist
from agentgen.algos.schedule import turn_limit
from agentgen.cluster import preemption
from agentgen.config import instance_subset
from agentgen.episode import Episode, EpisodeSpec, episode_metrics
from agentgen.phases.evaluate import evaluate
from agentgen.trainer import checkpoint as ckpt
from agentgen.trainer.health import Diverged
from agentgen.trainer.rl_trainer import RLTrainer
from agentgen.workspace import Workspace, init_checkpoint

log = logging.getLogger("agentgen")


def rl_stage(ws: Workspace, start_step: int, end_step: int, resume_from: Path | None,
             sft_metrics: dict) -> tuple[dict[str, float], int]:
    """RL steps [start_step, end_step) on ``ws.current_envs``; evaluates and checkpoints on schedule.
    Returns the last step's metrics and the step reached (< end_step when ``trainer.time_budget_s`` ran out)."""
    cfg = ws.cfg
    stage_start = stage_start_checkpoint(ws, start_step)
    ws.start_phase(stage_start)
    ref = None
    lora = bool(((cfg.trainer.get("params") or {}).get("lora") or {}).get("rank", 0))
    if float(cfg.algo.get("kl_coef", 0.0)) > 0 and not lora:  # LoRA: the policy without its adapter
        if resume_from is not None or cfg.trainer.strategy == "deepspeed":
            # resumed mid-stage, or a policy DeepSpeed will shard: the stage's starting policy from disk
            ref, _, _ = ws.load_policy(stage_start)
        else:
            ref = copy.deepcopy(ws.model)  # the policy this stage starts from
        ref.eval().requires_grad_(False)
    engine = ws.new_engine()
    stats: dict[str, float] = {}  # the step's rollout figures the trainer does not make: where its time went,
    # tokens, generations abandoned at rollout.generation_timeout, a mixture's per env

    def rollout_fn(specs: list[EpisodeSpec], step: int) -> list[Episode]:
        return rollout(ws, specs, step, stats)

    trainer = RLTrainer(ws.model, ref, ws.tokenizer, cfg.algo, ws.rl_options, rollout_fn, log_fn=ws.tracker.log,
                        engine=engine)
    if resume_from is not None and resume_from.name != "sft":
        engine.load(resume_from)  # optimizer (and DeepSpeed's partitioned state, LoRA adapter)
        ckpt.restore_training(resume_from, None)  # random generators
        trainer.load_state(resume_from, start_step)  # what the policy checkpoint does not hold (PPO's critic)
    metrics: dict[str, float] = {}
    label = f"rl {'+'.join(ws.current_envs)}"
    # the stage's bar: steps done (evaluation and checkpoint included), the rollouts' success rate and the
    # seconds of the training step (rollouts + update); tqdm's own rate would count the evaluations too
    bar = console.progress(end_step, label, unit="step", initial=start_step,
                           bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
    for step in range(start_step, end_step):
        stats.clear()
        t_step = time.time()
        with ws.timed("rl"):
            metrics = {**trainer.step(step), **stats}
            ws.generator.sync_weights()
        seconds = time.time() - t_step
        done = step + 1
        sick = ws.health.observe(done, metrics)
        metrics["train/nonfinite_skipped_total"] = ws.health.nonfinite_total
        ws.tracker.log(metrics, done)
        ws.write_records("metrics.jsonl", [{"step": done, **metrics}], append=True)
        if sick:
            raise Diverged(sick, done, healthy_checkpoint(ws, done), metrics)
        success = metrics.get("rollout/success_rate", 0.0)
        bar.set_postfix({"success": f"{success:.2f}", "s/step": f"{seconds:.1f}"}, refresh=False)
        console.progress_log.info("%s step %d/%d: rollout success %.2f, return %.2f, %.1f s/step", label, done,
                                  end_step, success, metrics.get("rollout/return", 0.0), seconds)
        budget = cfg.trainer.get("time_budget_s")
        if budget and ws.timing.get("rl", 0.0) >= float(budget) and done < end_step:
            log.info("trainer.time_budget_s=%s reached after step %d: evaluating and stopping", budget, done)
            end_step = bar.total = done
        if done == end_step or (cfg.eval.every and done % cfg.eval.every == 0):
            evaluate(ws, done)  # before the checkpoint, so a resumed job keeps this evaluation
        stop = preemption.requested()  # Slurm's time-limit / preemption warning, honoured at this boundary
        if stop or (cfg.trainer.save_every and done % cfg.trainer.save_every == 0) or done == end_step:
            save_state(ws, done, trainer.optimizer, metrics, sft_metrics)
            trainer.save_state(ckpt.ckpt_root(ws.out) / f"step_{done}", done)
        bar.update(1)
        if stop:
            bar.close()
            preemption.exit_for_requeue(done)  # requeue (USR2) and exit; the requeued job resumes here
        if done == end_step:
            break
    bar.close()
    return metrics, end_step


def rollout(ws: Workspace, specs: list[EpisodeSpec], step: int, stats: dict[str, float]) -> list[Episode]:
    """Assign each group an env by the mixture shares, run them, and return all episodes. ``stats`` adds up this
    rank's seconds in the rollout engine (``time/generate_s``), in the policy's prompts and parsing
    (``time/prompt_s``), waiting on the env pool (``time/env_s``) and stepping it behind generation
    (``time/env_hidden_s``, rollout.env_overlap), the prompt and generated tokens, the episodes
    aborted by a hung generation (``rollout/aborted_generations``, rollout.generation_timeout), and a
    mixture's per-env figures."""
    cfg, names = ws.cfg, ws.current_envs
    stats.setdefault("rollout/aborted_generations", 0.0)
    shares = [float(ws.env_cfg(n, "train").share) for n in names]
    owner = assign_groups(sorted({s.group for s in specs}), names, shares)
    out: list[Episode] = []
    for name in names:
        ec = ws.env_cfg(name, "train")
        subset = instance_subset(ec, "train")
        # a spec that names its env (a Tree-GRPO continuation) stays in it
        mine = [EpisodeSpec(env=name, seed=subset[s.seed % len(subset)] if subset else s.seed, group=s.group,
                            meta=s.meta) for s in specs if (s.env or owner[s.group]) == name]
        if not mine:
            continue
        runner = ws.runner(name, "train", len(mine), step_turn_limit(cfg, step, ec), cfg.rollout.temperature,
                           cfg.rollout.top_p, cfg.rollout.top_k)
        eps = ws.run_split(runner, mine)
        policy = runner.policy
        for key, value in (("time/generate_s", policy.generate_seconds),
                           ("time/prompt_s", runner.seconds["policy"] - policy.generate_seconds),
                           ("time/env_s", runner.seconds["env"]), ("time/env_hidden_s", runner.seconds["env_hidden"]),
                           ("tokens/prompt", policy.prompt_tokens),
                           ("tokens/generated", policy.generated_tokens)):
            stats[key] = stats.get(key, 0.0) + float(value)
        stats["rollout/aborted_generations"] += sum(bool(e.final_info.get("generation_aborted")) for e in eps)
        if len(names) > 1:
            m = episode_metrics(eps)
            stats.update({f"rollout/{name}/success_rate": m["success_rate"],
                          f"rollout/{name}/return": m["avg_return"], f"rollout/{name}/episodes": m["episodes"]})
        out.extend(eps)
    if hasattr(ws.generator, "sleep"):
        ws.generator.sleep()  # a colocated vLLM engine frees its GPU memory for the update
    return out


def save_state(ws: Workspace, step: int, optimizer, train_metrics: dict, sft_metrics: dict) -> None:
    """All ranks call it; with ``optimizer=None`` the engine writes the model alone. The last healthy
    checkpoint is kept from pruning while the run is failing a health rule."""
    trusted = healthy_checkpoint(ws, step)
    ckpt.save(ws.out, f"step_{step}", ws.model, ws.tokenizer, optimizer,
              {"sft_done": True, "step": step, "eval_history": ws.eval_history, "stages": ws.stage_results,
               "train_metrics": train_metrics, "sft_metrics": sft_metrics, "timing": ws.timing,
               "health": ws.health.state() if ws.health else {}},
              keep=ws.cfg.trainer.keep_checkpoints, engine=ws.engine, protect={trusted} if trusted else None)


def healthy_checkpoint(ws: Workspace, step: int) -> str | None:
    """The newest checkpoint whose policy was still healthy as of RL step ``step`` (health.trusted_step)."""
    if ws.health is None:
        return None
    trusted = ws.health.trusted_step(step)
    root = ckpt.ckpt_root(ws.out)
    steps = [int(p.name.split("_")[1]) for p in root.glob("step_*") if p.name.split("_")[1].isdigit()]
    best = max((n for n in steps if n <= trusted), default=None)
    if best is not None:
        return f"step_{best}"
    return "sft" if (root / "sft").is_dir() else None


def diverged(ws: Workspace, d: Diverged, t0: float, sft_metrics: dict) -> dict[str, Any]:
    """The run collapsed: no more training or evaluation; ``latest`` points at the last healthy checkpoint,
    so re-running (e.g. with a lower learning rate) resumes from there."""
    if dist.is_rank0() and d.healthy_checkpoint:
        ckpt.set_latest(ws.out, d.healthy_checkpoint)
    log.error("training diverged at RL step %d: %s; last healthy checkpoint: %s", d.step, d.reason,
              d.healthy_checkpoint or "none (the starting model)")
    result = ws.summary("diverged", f"diverged at RL step {d.step}: {d.reason}", t0, sft_metrics, d.metrics, d.step)
    result["diverged"] = {"reason": d.reason, "step": d.step, "healthy_checkpoint": d.healthy_checkpoint}
    return result


def stage_start_checkpoint(ws: Workspace, step: int) -> str | None:
    """The weights a stage started from: the checkpoint at its first step, else SFT or the initial model."""
    begin = 0
    for _, n in ws.stage_plan:
        if begin <= step < begin + n:
            break
        begin += n
    for tag in ([f"step_{begin}"] if begin else []) + ["sft"]:
        path = ckpt.ckpt_root(ws.out) / tag
        if (path / "state.json").exists():
            return str(path)
    return init_checkpoint(ws.cfg)


def step_turn_limit(cfg, step: int, ec) -> int:
    """The episode length cap at RL step ``step``: the env's, or the turn schedule's (ScalingInter-RL)."""
    sched = cfg.trainer.get("max_turns_schedule")
    if not sched:
        return ec.max_steps
    return min(ec.max_steps, turn_limit(step, list(sched.rounds), int(sched.phase)))


def assign_groups(groups: list[int], names: list[str], shares: list[float]) -> dict[int, str]:
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
