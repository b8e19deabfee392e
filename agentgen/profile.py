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

import argparse
import functools
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from agentgen.errors import ConfigError

log = logging.getLogger("agentgen.profile")

PROFILE_FILE = "profile.json"
EPISODES_FILE = "profile_episodes.jsonl"
POLICIES = ("expert", "random", "model")
QUERY_TEMPLATE = (
    "<your query>"  # the slot in WebShop's search template (agentgen.envs.webshop.SEARCH_TEMPLATE)
)


@dataclass
class ProfileConfig:
    """``profile.*`` keys of a task=profile job."""

    policy: str = "expert"  # expert | random | model | <model dir or job output dir>
    episodes: int = 128  # trajectories per env (papers.md A)
    tmax: int = 50  # step cap per trajectory; a failure counts as tmax steps (papers.md A)
    split: str = "train"  # which instances: train or test
    seed_start: int = 0  # episodes play env seeds seed_start .. seed_start + episodes - 1
    temperature: float | None = None  # model policy sampling temperature; null = rollout.temperature


def profile_config(cfg: Any) -> ProfileConfig:
    """The job's ``profile`` node (absent keys take the defaults), checked."""
    node = cfg.get("profile") if hasattr(cfg, "get") else None
    raw: dict[str, Any] = {}
    if node is not None:
        from omegaconf import OmegaConf

        raw = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    known = {f.name for f in fields(ProfileConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"profile has unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}."
        )
    pc = ProfileConfig(**raw)
    if not isinstance(pc.policy, str) or not pc.policy:
        raise ConfigError(
            f"profile.policy={pc.policy!r} is invalid; valid: {', '.join(POLICIES)} or a model path."
        )
    if pc.policy not in POLICIES and not Path(pc.policy).exists():
        raise ConfigError(
            f"profile.policy={pc.policy!r} is neither a policy ({', '.join(POLICIES)}) nor an existing model "
            "directory or job output dir."
        )
    for key in ("episodes", "tmax"):
        value = getattr(pc, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"profile.{key}={value!r} is invalid: it must be a positive integer.")
    if pc.split not in ("train", "test"):
        raise ConfigError(f"profile.split={pc.split!r} is invalid; valid: train, test.")
    if isinstance(pc.seed_start, bool) or not isinstance(pc.seed_start, int) or pc.seed_start < 0:
        raise ConfigError(f"profile.seed_start={pc.seed_start!r} is invalid: it must be an integer >= 0.")
    if pc.temperature is not None and (not isinstance(pc.temperature, (int, float)) or pc.temperature < 0):
        raise ConfigError(f"profile.temperature={pc.temperature!r} is invalid: it must be >= 0 or null.")
    return pc


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
    from agentgen.augment import WRAPPER_TARGET
    from agentgen.envs.pool import resolve_env_class

    cls = resolve_env_class(pool.env_kwargs["inner"]) if pool.env_name == WRAPPER_TARGET else pool.env_class
    return callable(getattr(cls, name, None))


def _fill_template(action: str, task: str, rng: random.Random) -> str:
    """A random policy's query for WebShop's search template: 2-6 words of the task, in order."""
    if QUERY_TEMPLATE not in action:
        return action
    words = [w.strip(",.:;") for w in task.split() if w.strip(",.:;")] or ["item"]
    k = min(len(words), rng.randint(2, 6))
    start = rng.randrange(len(words) - k + 1)
    return action.replace(QUERY_TEMPLATE, " ".join(words[start : start + k]))


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
    pool, policy: str, seeds: list[int], tmax: int, prompts, rng_seed: int = 0
) -> list[Trajectory]:
    """Play ``seeds`` with the expert or a random admissible policy through ``pool``, at most ``tmax``
    actions each."""
    if policy not in ("expert", "random"):
        raise ValueError(f"play_scripted: policy must be expert or random, got {policy!r}")
    valid = _has_method(pool, "valid_actions")
    pool = _OptimalLengthPool(pool)
    out: list[Trajectory] = []
    pending = list(seeds)[::-1]
    while pending:
        batch = {slot: pending.pop() for slot in range(min(pool.num_slots, len(pending)))}
        resets = pool.reset(batch)
        instr = pool.call(list(batch), "instruction")
        state: dict[int, dict[str, Any]] = {}
        for s, (obs, info) in resets.items():
            state[s] = {
                "obs": obs,
                "info": info,
                "hist": [],
                "traj": Trajectory(
                    batch[s], False, 0, [], [], bool(info.get("augmented", False)), pool.optimal.get(batch[s])
                ),
                "rng": random.Random(rng_seed * 1_000_003 + batch[s]),
            }
        active = set(batch)
        while active:
            slots = sorted(active)
            if policy == "expert":
                chosen = pool.expert_actions(slots)
            else:
                chosen = {}
                need_valid = [s for s in slots if state[s]["info"].get("admissible_actions") is None]
                if need_valid and not valid:
                    raise ValueError(
                        f"{pool.env_name}: the random policy needs admissible actions and this env "
                        "lists none (nor valid_actions())"
                    )
                listed = pool.call(need_valid, "valid_actions") if need_valid else {}
                for s in slots:
                    st = state[s]
                    options = st["info"].get("admissible_actions") or listed.get(s) or []
                    chosen[s] = (
                        _fill_template(st["rng"].choice(options), st["info"].get("task", ""), st["rng"])
                        if options
                        else None
                    )
            actions = {}
            for s in slots:
                st, action = state[s], chosen[s]
                if action is None:  # the policy has nothing to do here: the trajectory ends, failed
                    active.discard(s)
                    continue
                user = prompts.user_message(
                    instr[s] or "",
                    st["info"].get("task", ""),
                    st["hist"],
                    st["obs"],
                    st["info"].get("admissible_actions"),
                )
                st["traj"].obs_chars.append(len(st["obs"]))
                st["traj"].prompt_chars.append(len(user))
                st["hist"].append((st["obs"], action))
                actions[s] = action
            if not actions:
                break
            for s, (obs, _reward, done, info) in pool.step(actions).items():
                st = state[s]
                st["obs"], st["info"] = obs, info
                st["traj"].steps += 1
                if done or st["traj"].steps >= tmax:
                    st["traj"].success = bool(info.get("success")) and not info.get("aborted", False)
                    active.discard(s)
        out.extend(state[s]["traj"] for s in batch)
    return out


def play_model(
    pool, cfg, policy: str, seeds: list[int], tmax: int, env_cfg, temperature: float
) -> list[Trajectory]:
    """Play ``seeds`` with a model through the rollout runner (the same prompts as training)."""
    from agentgen.agent.prompt import PromptBuilder
    from agentgen.models.loader import load_policy
    from agentgen.rollout import make_generator
    from agentgen.rollout.runner import EpisodeRunner, EpisodeSpec

    class MeasuringRunner(EpisodeRunner):
        """Records the user prompt length of every turn (before any token truncation)."""

        def encode_prompt(self, state):
            user = self.prompts.user_message(
                state.instruction, state.episode.task, state.history, state.observation, state.admissible
            )
            self.prompt_chars.setdefault(id(state.episode), []).append(len(user))
            return super().encode_prompt(state)

    model, tokenizer, _ = load_policy(cfg.model, path=_model_path(cfg, policy))
    model.eval()
    generator = make_generator(cfg.rollout, model, tokenizer)
    prompts = PromptBuilder.from_config(cfg)
    recording = _OptimalLengthPool(pool)
    runner = MeasuringRunner(
        recording, generator, tokenizer, prompts, env_cfg.max_prompt_tokens, env_cfg.max_response_tokens, tmax
    )
    runner.prompt_chars = {}
    episodes = runner.run(
        [EpisodeSpec(env=str(env_cfg.name), seed=s) for s in seeds],
        temperature,
        desc=f"profile {env_cfg.name}",
    )
    return [
        Trajectory(
            ep.spec.seed,
            bool(ep.success) and not ep.aborted,
            ep.steps,
            [len(t.observation) for t in ep.turns],
            runner.prompt_chars.get(id(ep), []),
            bool(ep.final_info.get("augmented", False)),
            recording.optimal.get(ep.spec.seed),
        )
        for ep in episodes
    ]


def _model_path(cfg, policy: str) -> str | None:
    """The model to load: a given path (a job output dir means its latest checkpoint), else init_from, else
    the model preset."""
    from agentgen.trainer import checkpoint as ckpt

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
    from omegaconf import OmegaConf

    from agentgen.agent.prompt import PromptBuilder
    from agentgen.augment import env_factory, parse_settings
    from agentgen.envs.pool import EnvPool
    from agentgen.run import env_config
    from agentgen.tracking import Tracker

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / PROFILE_FILE
    if path.exists() and cfg.get("resume", "skip_completed") == "skip_completed":
        log.info("%s exists; skipping (resume=skip_completed)", path)
        return json.loads(path.read_text())
    pc = profile_config(cfg)
    (out / EPISODES_FILE).unlink(missing_ok=True)  # a rerun after a failure starts the episode log afresh
    aug = parse_settings(cfg.get("augment"), default_seed=int(cfg.seed))
    seeds = list(range(pc.seed_start, pc.seed_start + pc.episodes))
    prompts = PromptBuilder.from_config(cfg)
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
            target, kwargs = env_factory(name, env_cfg, cfg.augment, pc.split, int(cfg.seed), force=True)
            slots = max(1, min(pc.episodes, int(env_cfg.get("max_instances", 64))))
            with EnvPool(
                target,
                kwargs,
                split=pc.split,
                num_slots=slots,
                num_workers=cfg.rollout.num_workers,
                step_timeout=cfg.rollout.step_timeout,
            ) as pool:
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


# ============================================================================ CLI
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


def compose_config(envs: list[str], augment: str, overrides: list[str]):
    """The job config a ``task=profile`` launch would get, via Hydra's compose API."""
    from hydra import compose, initialize_config_dir

    from agentgen.config import CONF_DIR

    env_override = f"env={envs[0]}" if len(envs) == 1 else f"env=[{','.join(envs)}]"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["task=profile", env_override, f"augment={augment}", *overrides])


def main(argv: list[str] | None = None) -> int:
    from hydra.errors import HydraException

    from agentgen.config import describe_compose_error, group_options

    envs_available = group_options("env")
    parser = argparse.ArgumentParser(
        prog="python -m agentgen.profile",
        description="Profile environments (papers.md A section 5): state richness, planning complexity, goal "
        "reachability, optimal length; writes profile.json per augment level.",
    )
    parser.add_argument("--env", default="sokoban", help=f"comma list of {', '.join(envs_available)}, or all")
    parser.add_argument(
        "--policy", default="expert", help="expert | random | model | <model dir or job output dir>"
    )
    parser.add_argument("--episodes", type=int, default=128)
    parser.add_argument("--tmax", type=int, default=50)
    parser.add_argument(
        "--augment",
        default="none",
        help=f"comma list of augment settings ({', '.join(group_options('augment'))}); one profile.json each",
    )
    parser.add_argument("--eps", type=float, default=None, help="explicit eps for every env (augment.eps=)")
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="env worker processes (0: in-process)")
    parser.add_argument("--model", default=None, help="model preset for --policy model/<path> (conf/model)")
    parser.add_argument("--logger", default="none", choices=("none", "wandb"))
    parser.add_argument("--out", default=None, help="output dir (default outputs/profile/<time>)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. env.sokoban.params.dim=8")
    args = parser.parse_args(argv)

    envs = envs_available if args.env == "all" else [e.strip() for e in args.env.split(",") if e.strip()]
    bad = [e for e in envs if e not in envs_available]
    levels = [a.strip() for a in args.augment.split(",") if a.strip()]
    bad_aug = [a for a in levels if a not in group_options("augment")]
    if bad or bad_aug or not envs or not levels:
        parser.error(
            f"unknown env(s) {bad} (valid: {', '.join(envs_available)}, all) or augment setting(s) {bad_aug} "
            f"(valid: {', '.join(group_options('augment'))})"
        )
    root = Path(args.out or Path("outputs") / "profile" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    extra = [
        f"++profile.policy={args.policy}",
        f"++profile.episodes={args.episodes}",
        f"++profile.tmax={args.tmax}",
        f"++profile.split={args.split}",
        f"seed={args.seed}",
        f"rollout.num_workers={args.workers}",
        f"logger={args.logger}",
    ]
    if args.model:
        extra.append(f"model={args.model}")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        for level in levels:
            ov = extra + ([f"augment.eps={args.eps:g}"] if args.eps is not None and level != "none" else [])
            ov += list(args.overrides)
            try:
                cfg = compose_config(envs, level, ov)
            except HydraException as exc:
                raise ConfigError(describe_compose_error(exc, ov)) from exc
            out = root / level if len(levels) > 1 else root
            results[level] = run_profile(cfg, out)
            print(f"wrote {out / PROFILE_FILE}", file=sys.stderr)
    except ConfigError as err:
        print(f"agentgen: error: {err}", file=sys.stderr)
        return 2
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
