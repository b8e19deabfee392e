"""Environment profiling (papers.md A section 5): how rich an environment's states are and how hard its
planning is, measured on N trajectories of at most Tmax steps (the study: 128 and 50) of a policy.

Per environment (``profile.json`` in the output dir, one row per env; the report's Table 1 reads it):
- ``avg_chars``: state information richness, the mean number of characters of the state the agent
  acted on, as it saw it (so augmentation raises it), over all states of all trajectories. The state
  is the agent's whole input of that turn, i.e. the user prompt: instruction, task, the last k
  observation/action pairs, the observation and the admissible actions. That is the study's measure:
  with the expert, ALFWorld gives 1593 here against 1572 in Table 1 and WebShop 3129 against 3063,
  while their observations alone average 76 and 573 characters;
- ``avg_obs_chars``: the mean number of characters of the observation alone (after augmentation);
- ``avg_steps``: planning complexity, the mean trajectory length with a failed trajectory counted as
  Tmax; ``success_rate``: goal reachability; ``avg_success_steps``: mean length of the successes;
- ``optimal_len``: the mean length of the optimal (Sokoban's solver) or gold (ScienceWorld's gold path,
  ALFWorld's walkthrough) solution from the start state, where the env has one, else null;
- ``episodes``, ``tmax``, ``augment``, ``eps``, ``prob``, ``augmented_fraction``, ``policy``, ``split``.
Episodes end at the env's own step limit or Tmax, whichever comes first (a failure either way).

Policies: ``expert`` (the env's expert), ``random`` (uniform over the admissible actions; for
WebShop's search template, words drawn from the task; ScienceWorld's list comes from the engine's
valid actions), ``model`` (the job's model preset, or ``init_from``), or a path to a model directory or
a job output dir (its latest checkpoint).

    python launch.py task=profile env=sokoban augment=high            # a job (run.py dispatches here)
    python launch.py -m task=profile env=sokoban,alfworld,sciworld,webshop augment=none,high
    python -m agentgen.profile --env sokoban --policy expert --episodes 128 --tmax 50 --augment high
    python -m agentgen.profile --env all --augment none,medium,high --out profiles/   # Table 1 and its augmented rows
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from agentgen.agent.prompt import PromptBuilder
from agentgen.augment import env_factory, parse_settings
from agentgen.config import env_config, profile_config
from agentgen.envs.pool import EnvPool
from agentgen.models.loader import load_policy
from agentgen.options import rollout_options
from agentgen.rollout import make_generator
from agentgen.rollout.policy import ExpertPolicy, ModelPolicy, RandomPolicy
from agentgen.rollout.runner import Episode, EpisodeRunner, EpisodeSpec
from agentgen.tracking import Tracker
from agentgen.trainer import checkpoint as ckpt

log = logging.getLogger("agentgen.profile")

PROFILE_FILE = "profile.json"
EPISODES_FILE = "profile_episodes.jsonl"


# ============================================================================ trajectories
@dataclass
class Trajectory:
    """What the profile needs from one episode."""

    seed: int
    success: bool
    steps: int  # actions taken
    obs_chars: list[int]  # per acted state: characters of the observation as the agent saw it
    prompt_chars: list[int]  # per acted state: characters of the user prompt
    augmented: bool = False
    optimal_len: int | None = None


def _optimal_len(info: dict[str, Any]) -> int | None:
    value = info.get("optimal_len", info.get("gold_len"))
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _has_method(pool, name: str) -> bool:
    cls = pool.factory.base.env_class  # the env's own class, under the augmenting wrapper if any
    return callable(getattr(cls, name, None))


@functools.lru_cache(maxsize=4096)
def _walkthrough_len(game_file: str) -> int | None:
    """Length of the walkthrough stored in an ALFWorld game file (game.tw-pddl), if it has one."""
    try:
        with open(game_file) as f:
            walkthrough = json.load(f).get("walkthrough")
    except (OSError, ValueError):
        return None
    return len(walkthrough) if isinstance(walkthrough, list) and walkthrough else None


class _OptimalLengthPool:
    """Forwards everything to an env pool and notes, at each reset, the optimal / gold solution length of
    the start state by seed (so the rollout runner's own resets provide it)."""

    def __init__(self, pool):
        self._pool = pool
        self._gold = _has_method(pool, "gold_actions")  # ScienceWorld's gold path
        self._game_file = _has_method(pool, "game_file")  # ALFWorld's game files carry a walkthrough
        self.optimal: dict[int, int | None] = {}

    def reset(self, seeds: dict[int, int]):
        out = self._pool.reset(seeds)
        known = {slot: _optimal_len(info) for slot, (_obs, info) in out.items()}
        missing = [slot for slot, opt in known.items() if opt is None]
        if missing and self._gold:
            for slot, path in self._pool.call(missing, "gold_actions").items():
                known[slot] = len(path) if path else None
        elif missing and self._game_file:
            for slot in missing:
                known[slot] = _walkthrough_len(self._pool.call([slot], "game_file", seeds[slot])[slot])
        for slot, opt in known.items():
            self.optimal[seeds[slot]] = opt
        return out

    def __getattr__(self, name: str):
        return getattr(self._pool, name)


def play_scripted(
    pool, policy: str, seeds: list[int], tmax: int, prompts: PromptBuilder, rng_seed: int = 0
) -> list[Trajectory]:
    """Play ``seeds`` with the expert or a random admissible policy through ``pool``, at most ``tmax``
    actions each."""
    if policy not in ("expert", "random"):
        raise ValueError(f"play_scripted: policy must be expert or random, got {policy!r}")
    recording = _OptimalLengthPool(pool)
    actor = (ExpertPolicy(recording, prompts) if policy == "expert" else
             RandomPolicy(recording, prompts, rng_seed, can_list_valid=_has_method(pool, "valid_actions")))
    return _play(recording, actor, seeds, tmax)


def play_model(
    pool, cfg, policy: str, seeds: list[int], tmax: int, env_cfg, temperature: float
) -> list[Trajectory]:
    """Play ``seeds`` with a model through the rollout runner (the same prompts as training)."""
    model, tokenizer, _ = load_policy(cfg.model, path=_model_path(cfg, policy))
    model.eval()
    prompts = PromptBuilder.from_config(cfg.agent, cfg.think)
    actor = ModelPolicy(make_generator(cfg.rollout, model, tokenizer), tokenizer, prompts,
                        env_cfg.max_prompt_tokens, env_cfg.max_response_tokens, temperature)
    return _play(_OptimalLengthPool(pool), actor, seeds, tmax, desc=f"profile {env_cfg.name}")


def _play(pool: _OptimalLengthPool, actor, seeds: list[int], tmax: int, desc: str | None = None) -> list[Trajectory]:
    episodes = EpisodeRunner(pool, actor, tmax).run([EpisodeSpec(env=pool.env_name, seed=s) for s in seeds], desc=desc)
    return [_trajectory(ep, pool) for ep in episodes]


def _trajectory(ep: Episode, pool: _OptimalLengthPool) -> Trajectory:
    return Trajectory(ep.spec.seed, bool(ep.success) and not ep.aborted, ep.steps,
                      [len(t.observation) for t in ep.turns], [len(t.user) for t in ep.turns],
                      ep.augmented, pool.optimal.get(ep.spec.seed))


def _model_path(cfg, policy: str) -> str | None:
    """The model to load: a given path (a job output dir means its latest checkpoint), else init_from, else
    the model preset."""
    source = policy if policy != "model" else (str(cfg.init_from) if cfg.get("init_from") else None)
    if source is None:
        return None
    found = ckpt.latest(source)
    if found:
        return str(found)
    if (Path(source) / "config.json").exists():
        return source
    raise FileNotFoundError(f"{source} is neither a job output dir with checkpoints nor a model directory")


# ============================================================================ figures
def summarize(trajs: list[Trajectory], tmax: int) -> dict[str, Any]:
    """The profile figures of one env from its trajectories (see the module docstring)."""
    n = len(trajs)
    if n == 0:
        raise ValueError("summarize: no trajectories")
    obs = [c for t in trajs for c in t.obs_chars]
    prompt = [c for t in trajs for c in t.prompt_chars]
    wins = [t for t in trajs if t.success]
    optimal = [t.optimal_len for t in trajs if t.optimal_len is not None]
    return {
        "avg_chars": sum(prompt) / len(prompt) if prompt else 0.0,
        "avg_obs_chars": sum(obs) / len(obs) if obs else 0.0,
        "avg_steps": sum(min(t.steps, tmax) if t.success else tmax for t in trajs) / n,
        "success_rate": len(wins) / n,
        "optimal_len": sum(optimal) / len(optimal) if optimal else None,
        "avg_success_steps": sum(t.steps for t in wins) / len(wins) if wins else None,
        "states": len(obs),
        "episodes": n,
        "tmax": tmax,
        "augmented_fraction": sum(t.augmented for t in trajs) / n,
    }


# ============================================================================ the job
def run_profile(cfg, out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Profile every env of ``cfg.env`` with ``cfg.profile``; write ``profile.json`` (and the per-episode
    ``profile_episodes.jsonl``) in ``out_dir``, log to wandb, and return {env: figures}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / PROFILE_FILE
    if path.exists() and cfg.get("resume", "skip_completed") == "skip_completed":
        log.info("%s exists; skipping (resume=skip_completed)", path)
        return json.loads(path.read_text())
    pc = profile_config(cfg)
    (out / EPISODES_FILE).unlink(missing_ok=True)  # a rerun after a failure starts the episode log afresh
    aug = parse_settings(cfg.get("augment"), default_seed=int(cfg.seed))  # the job's one parse
    pool_opts = rollout_options(cfg.rollout).pool()
    seeds = list(range(pc.seed_start, pc.seed_start + pc.episodes))
    prompts = PromptBuilder.from_config(cfg.agent, cfg.think)
    tracker = Tracker(
        cfg.logger,
        out,
        OmegaConf.to_container(cfg, resolve=True),
        name=out.name,
        tags=["task:profile", *(f"env:{e}" for e in cfg.env)],
    )
    rows: dict[str, dict[str, Any]] = {}
    try:
        for name in cfg.env:
            # as a job builds it: difficulty, the model's env_params and answer cap, debug caps
            env_cfg = env_config(cfg, name)
            t0 = time.time()
            factory = env_factory(name, env_cfg, aug, pc.split, force=True)
            slots = max(1, min(pc.episodes, int(env_cfg.get("max_instances", 64))))
            with EnvPool(factory, None, split=pc.split, num_slots=slots, num_workers=pool_opts.num_workers,
                         step_timeout=pool_opts.step_timeout) as pool:
                if pc.policy in ("expert", "random"):
                    trajs = play_scripted(pool, pc.policy, seeds, pc.tmax, prompts, rng_seed=int(cfg.seed))
                else:
                    temp = cfg.rollout.temperature if pc.temperature is None else pc.temperature
                    trajs = play_model(pool, cfg, pc.policy, seeds, pc.tmax, env_cfg, float(temp))
            row = summarize(trajs, pc.tmax)
            eps = aug.eps_for(env_cfg.get("name", name)) if aug.enabled else None
            row.update(
                {
                    "augment": aug.name,
                    "eps": eps,
                    "prob": aug.prob if eps else 0.0,
                    "policy": pc.policy,
                    "split": pc.split,
                    "wall_seconds": time.time() - t0,
                }
            )
            rows[name] = row
            _append_episodes(out / EPISODES_FILE, name, trajs)
            tracker.log({f"profile/{name}/{k}": v for k, v in row.items() if _is_number(v)}, 0)
            log.info("profile %s (augment=%s): %s", name, aug.name, _brief(row))
        _write_json(path, rows)
        _log_table(tracker, rows)
        tracker.summary(
            {f"profile/{e}/{k}": v for e, r in rows.items() for k, v in r.items() if _is_number(v)}
        )
    finally:
        tracker.finish()
    return rows


TABLE_KEYS = (
    "augment",
    "eps",
    "avg_chars",
    "avg_obs_chars",
    "avg_steps",
    "success_rate",
    "optimal_len",
    "episodes",
    "tmax",
)


def _log_table(tracker, rows: dict[str, dict[str, Any]]) -> None:
    """The profile rows as one wandb table (Table 1 style)."""
    if tracker.run is None:
        return
    import wandb

    columns = ["env", *TABLE_KEYS]
    data = [[env, *(r.get(k) for k in TABLE_KEYS)] for env, r in rows.items()]
    tracker.log({"profile/table": wandb.Table(columns=columns, data=data)}, 0)


def _is_number(v: Any) -> bool:
    return (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and not (isinstance(v, float) and math.isnan(v))
    )


def _brief(row: dict[str, Any]) -> str:
    opt = "-" if row["optimal_len"] is None else f"{row['optimal_len']:.1f}"
    return (
        f"avg_chars {row['avg_chars']:.0f}, avg_obs_chars {row['avg_obs_chars']:.0f}, avg_steps "
        f"{row['avg_steps']:.1f}, success {100 * row['success_rate']:.1f}%, optimal_len {opt}"
    )


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _append_episodes(path: Path, env: str, trajs: list[Trajectory]) -> None:
    with open(path, "a") as f:
        f.writelines(json.dumps({"env": env, **asdict(t)}) + "\n" for t in trajs)


def format_table(profiles: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Table 1 style text: one row per (env, augment level)."""
    head = ["env", "augment", "eps", "avg chars", "avg obs chars", "avg steps", "success %", "optimal len"]
    rows = [head]
    for table in profiles.values():
        for env, r in table.items():
            rows.append(
                [
                    env,
                    str(r["augment"]),
                    "-" if r.get("eps") is None else f"{r['eps']:g}",
                    f"{r['avg_chars']:.0f}",
                    f"{r['avg_obs_chars']:.0f}",
                    f"{r['avg_steps']:.1f}",
                    f"{100 * r['success_rate']:.1f}",
                    "-" if r["optimal_len"] is None else f"{r['optimal_len']:.1f}",
                ]
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
