"""The ``augment=`` config group as checked, typed settings.

A preset (conf/augment/<name>.yaml) names an eps (injected-text volume, papers.md A section 6) per
environment; ``augment.eps=<number>`` gives every environment the same eps instead. ``prob`` is the
fraction of trajectories augmented (the study: 1.0 for V1, 0.5 for V2), ``apply_to`` which of the
job's phases see augmented states (train = RL rollouts and SFT expert data on the train split, eval =
the test-split evaluations). Settings travel to env worker processes as a plain dict (``as_dict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from agentgen.envs import env_names, registry
from agentgen.errors import ConfigError

APPLY_TO = ("train", "eval", "both")
RESAMPLE = ("step", "episode")
KEYS = ("name", "eps", "prob", "apply_to", "seed", "resample", "webshop_alpha")


def _fail(message: str) -> None:
    """Raise the launcher's ConfigError (printed as one paragraph)."""
    raise ConfigError(message)


@dataclass(frozen=True)
class AugmentSettings:
    name: str = "none"  # label of the setting (reports group runs by it)
    eps: dict[str, float | None] = field(default_factory=dict)  # env -> eps; missing / None / 0: off
    prob: float = 1.0  # fraction of trajectories augmented, decided per episode seed
    apply_to: str = "train"  # train | eval | both
    seed: int | None = None  # distractor randomness; None: the job's seed
    resample: str = "step"  # step: fresh distractors every observation; episode: the same all episode
    webshop_alpha: float = 1.0  # alpha of the results-page decoy formula (the study does not print it)

    @property
    def enabled(self) -> bool:
        return self.name != "none" and self.prob > 0 and any(v for v in self.eps.values())

    def eps_for(self, env: str) -> float | None:
        """The eps of ``env``; None when this setting does not augment it."""
        value = self.eps.get(env)
        return float(value) if value else None

    def applies_to_split(self, split: str) -> bool:
        """Whether the job's ``split`` ("train" or "test" = evaluation) sees augmented states."""
        wanted = {"train": ("train",), "eval": ("test",), "both": ("train", "test")}[self.apply_to]
        return split in wanted

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(f"{key}={value!r} is invalid: it must be a number.")
    return float(value)


def _eps_table(raw: Any) -> dict[str, float | None]:
    """eps as a per-env table: a number applies to every env; a mapping names envs (null = off)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        value = _number(raw, "augment.eps")
        if value < 0:
            _fail(f"augment.eps={raw!r} is invalid: it must be >= 0 (0 turns augmentation off).")
        return {env: value for env in registry.with_augmenter()}
    table: dict[str, float | None] = {}
    for env, value in raw.items():
        if env not in env_names():
            _fail(f"augment.eps names {env!r}, which is not an environment; valid: {', '.join(env_names())}.")
        if value is None:
            table[env] = None
            continue
        if value and env not in registry.with_augmenter():
            _fail(f"augment.eps.{env}={value!r}: the {env} env defines no state augmentation (its plugin names no "
                  f"augmenter); envs with one: {', '.join(registry.with_augmenter())}.")
        number = _number(value, f"augment.eps.{env}")
        if number < 0:
            _fail(f"augment.eps.{env}={value!r} is invalid: it must be >= 0 or null (off).")
        table[env] = number
    return table


def parse_settings(cfg: Any, default_seed: int | None = None) -> AugmentSettings:
    """Check an ``augment`` config node (DictConfig, dict or None) and return its settings."""
    if cfg is None:
        return AugmentSettings()
    from omegaconf import OmegaConf

    if OmegaConf.is_config(cfg):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(cfg, Mapping):
        _fail(f"augment must be a mapping such as {{name: high, eps: 100}}, got {cfg!r}")
    raw = dict(cfg)
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        _fail(f"augment has unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(KEYS)}.")
    name = raw.get("name", "none")
    if not isinstance(name, str) or not name:
        _fail(f"augment.name={name!r} is invalid: it must be a non-empty label such as high.")
    if name == "none":
        return AugmentSettings()
    prob = _number(raw.get("prob", 1.0), "augment.prob")
    if not 0.0 <= prob <= 1.0:
        _fail(
            f"augment.prob={prob!r} is invalid: it is the fraction of trajectories augmented, in [0, 1] "
            "(the study used 1.0 and 0.5)."
        )
    apply_to = raw.get("apply_to", "train")
    if apply_to not in APPLY_TO:
        _fail(f"augment.apply_to={apply_to!r} is invalid; valid: {', '.join(APPLY_TO)}.")
    resample = raw.get("resample", "step")
    if resample not in RESAMPLE:
        _fail(f"augment.resample={resample!r} is invalid; valid: {', '.join(RESAMPLE)}.")
    seed = raw.get("seed")
    if seed is None:
        seed = default_seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        _fail(f"augment.seed={seed!r} is invalid: it must be a non-negative integer or null.")
    alpha = _number(raw.get("webshop_alpha", 1.0), "augment.webshop_alpha")
    if alpha <= 0:
        _fail(f"augment.webshop_alpha={alpha!r} is invalid: it must be > 0.")
    if "eps" not in raw or raw["eps"] == "???":
        _fail(
            f"augment={name} has no eps: give one for every env (augment.eps=50) or a table per env "
            f"({', '.join(registry.with_augmenter())})."
        )
    return AugmentSettings(
        name=name,
        eps=_eps_table(raw["eps"]),
        prob=prob,
        apply_to=apply_to,
        seed=seed,
        resample=resample,
        webshop_alpha=alpha,
    )


def validate_augment(cfg: Any) -> None:
    """For the config checks that run before a job starts (agentgen.config.validate)."""
    parse_settings(cfg, default_seed=0)
