"""One agentgen job, start to finish: (optional) SFT warm-up, RL stage(s), evaluation on every env in
``eval.envs``, and ``summary.json``. Resumes from its own checkpoints when re-run in the same output dir (a
requeued Slurm job), and skips itself when its summary already says completed.

This module is the job's table of contents; what each step does lives in ``agentgen.phases`` and what they
share in ``agentgen.workspace``."""

from __future__ import annotations

import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from agentgen import attempts, console, dist, reaper, secrets
from agentgen import summary as summary_io
from agentgen.cluster import preemption
from agentgen.cluster.preemption import JobInterrupted, exit_on_sigterm
from agentgen.config import resolve_env_configs, validate
from agentgen.lock import JobLock, OutputDirBusy
from agentgen.phases.evaluate import evaluate
from agentgen.phases.profile_phase import run_profile
from agentgen.phases.rl_phase import diverged, rl_stage, save_state
from agentgen.phases.sft_phase import sft
from agentgen.phases.split import difficulty_split
from agentgen.report.wandb_tables import log_summary_to_wandb
from agentgen.tracking import Tracker
from agentgen.trainer import checkpoint as ckpt
from agentgen.trainer.health import Diverged, HealthMonitor
from agentgen.workspace import Workspace, output_dir, seed_everything, variant

log = logging.getLogger("agentgen")
JOB_CONFIG = "config.yaml"  # in the output dir: the job config as it runs (agentgen.config.envs)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Entry point of a job (called by launch.py under Hydra, locally or on a Slurm node)."""
    restore_sigterm = exit_on_sigterm()  # locally, SIGTERM unwinds the job: its engines' processes end with it
    job_lock = None
    try:
        dist.init()  # one process per GPU (torchrun, Slurm tasks): join the group; a no-op for one process
        out = Path(dist.broadcast_object(str(output_dir(cfg))))  # rank 0's: ranks' Hydra timestamps may differ
        job_lock = _lock_output_dir(out)  # before the job reads or writes anything of its own
        return _run(cfg, out)
    finally:
        if job_lock is not None:
            job_lock.release()
        restore_sigterm()


def _lock_output_dir(out: Path) -> JobLock | None:
    """Rank 0 holds the output dir's lock for the whole job (``agentgen.lock``); when another live job holds
    it, every rank stops with exit code 2 and the one-paragraph error naming that job."""
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
    for stale in reaper.sweep_stale():  # every rank: each node has its own /dev/shm and temp dir
        log.warning("removed %s: left by a job that died with its watchdog", stale)
    prior = summary_io.read(out)
    if prior and prior.get("status") == "completed" and cfg.resume == "skip_completed":
        log.info("%s already completed; skipping (resume=skip_completed)", out)
        console.print_end(out, prior, cfg.logger.name, skipped=True)
        return prior
    validate(cfg)
    cfg = resolve_env_configs(cfg)  # the env-config step, once: what the job reads from here on
    if dist.is_rank0():  # the config as it runs, env configs merged: what `launch.py ... --cfg job` printed
        (out / JOB_CONFIG).write_text(secrets.redact(OmegaConf.to_yaml(cfg, resolve=True)))  # resolved: masked
    seed_everything(int(cfg.seed) + 7919 * dist.rank())  # ranks sample different rollouts
    if cfg.task == "profile":  # writes profile.json (not a training summary)
        return run_profile(cfg, out)
    ws = Workspace(cfg, out)
    t0 = time.time()
    try:
        with console.bars_and_logs():
            result = job(ws)
    except BaseException as exc:  # the summary records failures too, then the error propagates
        interrupted = isinstance(exc, JobInterrupted)  # checkpointed and stopping for requeue: not a failure
        result = ws.failure_summary("interrupted" if interrupted else "failed", f"{type(exc).__name__}: {exc}",
                                    traceback.format_exc(), t0)
        if dist.is_rank0():
            summary_io.write(out, result)
            attempts.end(out, result["status"])
        if ws.tracker:
            ws.tracker.finish(failed=not interrupted)
        ws.close()
        console.print_end(out, result, cfg.logger.name)
        raise
    path = summary_io.write(out, result) if dist.is_rank0() else None
    if dist.is_rank0():
        attempts.end(out, result["status"])
    if ws.tracker.run:
        log_summary_to_wandb(ws.tracker.run, path)
    ws.tracker.finish()
    ws.close()
    console.print_end(out, result, cfg.logger.name)
    return result


def job(ws: Workspace) -> dict[str, Any]:
    """The phases of a job: resume point, policy, SFT, evaluation before RL, the RL stages, final evaluation."""
    cfg, t0 = ws.cfg, time.time()
    state, resume_from = _resume(ws)
    ws.open_policy(str(resume_from) if resume_from else None)
    if cfg.task == "split":
        counts = difficulty_split(ws)
        return {**ws.summary("completed", None, t0, {}, {}, 0), "difficulty": counts}

    sft_metrics = state.get("sft_metrics", {})
    if cfg.task == "train" and cfg.sft.name != "none" and not state.get("sft_done"):
        with ws.timed("sft"):
            sft_metrics = sft(ws)
        state = {"sft_done": True, "step": 0, "sft_metrics": sft_metrics, "eval_history": [], "stages": [],
                 "timing": ws.timing}
        ckpt.save(ws.out, "sft", ws.model, ws.tokenizer, None, state, engine=ws.engine)

    train_metrics: dict[str, float] = state.get("train_metrics", {})
    step = int(state.get("step", 0))
    total = sum(n for _, n in ws.stage_plan) if cfg.task == "train" else 0
    if cfg.eval.before_training and not any(h["step"] == step for h in ws.eval_history) and \
            (cfg.task == "eval" or step == 0):
        before = cfg.eval.before_training_envs == "train" and cfg.task == "train"
        evaluate(ws, step, [e for e in cfg.eval.envs if e in ws.train_envs] if before else None)
    begin = 0
    for i, (envs, n) in enumerate(ws.stage_plan if cfg.task == "train" else []):
        end = begin + n
        if step < end:
            ws.current_envs = envs
            try:
                train_metrics, step = rl_stage(ws, step, end, resume_from if step > begin else None, sft_metrics)
            except Diverged as d:
                return diverged(ws, d, t0, sft_metrics)
            if step < end:  # trainer.time_budget_s ran out: the job ends here, evaluated at this step
                total = step
                break
        if cfg.get("stages") and len(ws.stage_results) <= i:
            ws.stage_results.append({"env": "+".join(envs), "steps": n, "end_step": end,
                                     "eval": ws.eval_history[-1]["eval"]})
            save_state(ws, step, None, train_metrics, sft_metrics)
        begin = end
    if not ws.eval_history or ws.eval_history[-1]["step"] != total:
        evaluate(ws, total)
    return ws.summary("completed", None, t0, sft_metrics, train_metrics, total)


def _resume(ws: Workspace) -> tuple[dict[str, Any], Path | None]:
    """The state of the newest complete checkpoint (rank 0 verifies it, every rank reads it), the recovery
    ledger of earlier runs, the health monitor and the tracker."""
    cfg, out = ws.cfg, ws.out
    point = dist.broadcast_object(ckpt.resume_point(out) if dist.is_rank0() else None)
    resume_from = point.path
    state = ckpt.load_state(resume_from) if resume_from else {}
    if dist.is_rank0():
        ckpt.discard_partial(out)
        earlier = attempts.start(out, resume_from.name if resume_from else None, state.get("step"))
        preemption.on_requeue(lambda why: attempts.requeued(out, why))  # a watchdog requeue is no failure
        ws.recovery = {**earlier, "resumed_from": resume_from.name if resume_from else None,
                       "rejected_checkpoints": point.rejected}
    ws.health = HealthMonitor(cfg.trainer.health, state.get("health"))
    ws.eval_history = state.get("eval_history", [])
    ws.stage_results = state.get("stages", [])
    ws.timing = dict(state.get("timing", {}))
    logger = cfg.logger if dist.is_rank0() else OmegaConf.create({"name": "none"})  # rank 0 logs
    ws.tracker = Tracker(logger, out, {**OmegaConf.to_container(cfg, resolve=True), "train_env": ws.train_env_label(),
                                       "train_envs": ws.train_envs, "variant": variant(cfg)},
                         name=out.name, tags=[f"env:{e}" for e in ws.train_envs])
    if resume_from:
        log.info("resuming from %s (step %s)", resume_from, state.get("step"))
    return state, resume_from
