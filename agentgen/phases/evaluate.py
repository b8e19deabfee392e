"""Evaluation: every env in ``eval.envs`` on its test split at ``eval.temperature`` (papers.md A), logged,
written per episode (``eval_episodes/<env>/step_<N>.jsonl``) and kept in the workspace's history.

Paired (``eval.paired``, the default): each episode's sampling is seeded by the run's seed and the episode (env,
instance seed, and which repeat of that instance it is), not by the call or the global RNG. An unchanged model
then gets exactly the same figure at every evaluation, and two checkpoints (of one run, or of runs with the same
seed) are compared on the same draws, so their difference is the models' and not the dice's."""

from __future__ import annotations

from typing import Any

from agentgen import console
from agentgen.config import instance_subset
from agentgen.episode import Episode, EpisodeSpec, derive_seed, episode_metrics
from agentgen.workspace import Workspace


def evaluate(ws: Workspace, step: int, envs: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Evaluate ``envs`` (default: every env in ``eval.envs``) on their test splits at RL step ``step``."""
    cfg = ws.cfg
    results: dict[str, dict[str, float]] = {}
    for name in cfg.eval.envs if envs is None else envs:
        n = int(cfg.eval.episodes_per_env.get(name, cfg.eval.episodes))
        subset = instance_subset(ws.env_cfg(name, "test"), "test")
        seeds = [subset[i % len(subset)] for i in range(n)] if subset else list(range(n))
        runner = ws.runner(name, "test", n, temperature=cfg.eval.temperature)
        specs = episode_specs(name, seeds, int(cfg.seed) if cfg.eval.get("paired", True) else None)
        with ws.timed("eval"):
            eps = ws.run_split(runner, specs, bar=f"eval {name} @ step {step}")
        results[name] = episode_metrics(eps)
        ws.write_records(f"eval_episodes/{name}/step_{step}.jsonl", [
            {"seed": e.spec.seed, "success": bool(e.success), "return": e.ret, "steps": e.steps,
             "aborted": bool(e.aborted)} for e in eps])
        ws.tracker.log({f"eval/{name}/{k}": v for k, v in results[name].items()}, step)
        ws.tracker.log_samples(f"samples/{name}", [sample_row(e) for e in eps[:cfg.logger.get(
            "sample_trajectories", 0) or 0]], step)
        console.progress_log.info("eval %s @ step %d: success %.3f over %d episodes", name, step,
                                  results[name]["success_rate"], n)
    ws.eval_history.append({"step": step, "eval": results})
    return results


def episode_specs(env: str, seeds: list[int], run_seed: int | None) -> list[EpisodeSpec]:
    """The evaluation's episodes; with ``run_seed`` (paired), each carries the sampling seed of (run seed, env,
    instance seed, repeat): the k-th episode on the same instance draws its own numbers, the same at every
    evaluation."""
    specs, repeats = [], {}
    for s in seeds:
        k = repeats[s] = repeats.get(s, -1) + 1
        meta = {} if run_seed is None else {"sampling_seed": derive_seed("eval", run_seed, env, int(s), k)}
        specs.append(EpisodeSpec(env=env, seed=s, meta=meta))
    return specs


def sample_row(ep: Episode) -> dict[str, Any]:
    """One trajectory as a row of the tracker's samples table."""
    return {"env": ep.spec.env, "split": "test", "seed": ep.spec.seed, "success": ep.success, "return": ep.ret,
            "turns": ep.steps,
            "trajectory": "\n\n".join(f"[obs] {t.observation[:400]}\n[response] {t.response}" for t in ep.turns)[:6000]}
