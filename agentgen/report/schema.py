"""The job summary (``summary.json``) and profile (``profile.json``) records the report reads.

Every training job writes one ``summary.json`` in its Hydra output dir; profile jobs may write a
``profile.json``. Parsing is strict about what the arithmetic needs (status, train env, evaluations)
and tolerant of everything else, so a report still builds from a sweep with a few odd jobs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentgen.envs import registry

# The paper's column order (Table 2), a presentation choice; other envs follow alphabetically.
PAPER_ENV_ORDER = ("alfworld", "webshop", "sokoban", "sciworld")
EVAL_KEYS = ("success_rate", "episodes", "avg_steps", "avg_return", "valid_action_ratio")
MIXTURE_SEP, SEQUENCE_SEP = "+", ">"


class SummaryError(ValueError):
    """A summary or profile file that cannot be used; the message names the file and the field."""


def env_title(env: str) -> str:
    """The title the env's plugin declares ("ALFWorld"); the name itself for an env not installed here."""
    return registry.title(env)


def env_sort_key(env: str) -> tuple[int, str]:
    return (PAPER_ENV_ORDER.index(env), "") if env in PAPER_ENV_ORDER else (len(PAPER_ENV_ORDER), env)


def train_label_title(label: str) -> str:
    """'alfworld+webshop' -> 'ALFWorld+WebShop' (mixtures), 'a>b' -> 'A > B' (sequences)."""
    if SEQUENCE_SEP in label:
        return " > ".join(env_title(e) for e in label.split(SEQUENCE_SEP))
    return "+".join(env_title(e) for e in label.split(MIXTURE_SEP))


def train_kind(label: str) -> str:
    """'single', 'mixture' ("a+b") or 'sequential' ("a>b")."""
    if SEQUENCE_SEP in label:
        return "sequential"
    return "mixture" if MIXTURE_SEP in label else "single"


def norm_value(value: Any) -> str:
    """Variant values compared as text: True/'true'/'on' are the same choice, so are 0.5 and '0.5'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    return {"on": "true", "yes": "true", "off": "false", "no": "false"}.get(text, text)


Choice = tuple[tuple[str, str], ...]  # sorted (variant key, normalized value) pairs, seed excluded


@dataclass
class RunSummary:
    """One job's summary.json, parsed. Success rates stay in 0..1 here (the report shows percent)."""

    source: str
    status: str
    error: str | None
    train_env: str
    train_envs: list[str]
    variant: dict[str, Any]
    eval: dict[str, dict[str, float]]
    eval_history: list[tuple[int, dict[str, dict[str, float]]]]
    stages: list[dict[str, Any]] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, dict[str, Any]] | None = None
    wall_seconds: float | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def seed(self) -> str:
        return norm_value(self.variant.get("seed", 0))

    @property
    def choice(self) -> Choice:
        return tuple(sorted((k, norm_value(v)) for k, v in self.variant.items() if k != "seed"))

    @property
    def kind(self) -> str:
        return train_kind(self.train_env)

    def start_eval(self) -> dict[str, dict[str, float]] | None:
        """The evaluation before any RL update (eval_history step 0), if the job ran one."""
        for step, ev in self.eval_history:
            if step == 0:
                return ev
        return None

    def checkpoints(self) -> list[tuple[int, dict[str, dict[str, float]]]]:
        """Checkpoint evaluations after training started (step > 0), by step; if the job logged
        none, its final evaluation stands in as the only checkpoint."""
        pts = sorted((s, ev) for s, ev in self.eval_history if s > 0)
        if not pts and self.eval:
            pts = [(int(self.train.get("steps") or 1), self.eval)]
        return pts

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> RunSummary:
        if not isinstance(data, Mapping):
            raise SummaryError(f"{source}: a summary must be a JSON object, got {type(data).__name__}")
        status = data.get("status")
        if status not in ("completed", "failed"):
            raise SummaryError(f"{source}: 'status' is {status!r}; valid values: 'completed', 'failed'")
        train_env = data.get("train_env")
        if not isinstance(train_env, str) or not train_env:
            raise SummaryError(f"{source}: 'train_env' must be a non-empty string such as 'sokoban', "
                               f"'a+b' (mixture) or 'a>b' (sequential), got {train_env!r}")
        train_envs = data.get("train_envs") or _split_label(train_env)
        variant = data.get("variant") or {}
        if not isinstance(variant, Mapping):
            raise SummaryError(f"{source}: 'variant' must be an object, got {variant!r}")
        history = []
        for i, entry in enumerate(data.get("eval_history") or []):
            if not isinstance(entry, Mapping) or "step" not in entry:
                raise SummaryError(f"{source}: eval_history[{i}] needs 'step' and 'eval', got {entry!r}")
            history.append((int(entry["step"]), _eval_block(entry.get("eval"), f"{source}: eval_history[{i}]")))
        stages = []
        for i, st in enumerate(data.get("stages") or []):
            if not isinstance(st, Mapping) or "env" not in st:
                raise SummaryError(f"{source}: stages[{i}] needs 'env', 'steps' and 'eval', got {st!r}")
            stages.append({**st, "eval": _eval_block(st.get("eval"), f"{source}: stages[{i}]")})
        profile = data.get("profile")
        return cls(
            source=source,
            status=status,
            error=data.get("error"),
            train_env=train_env,
            train_envs=list(train_envs),
            variant=dict(variant),
            eval=_eval_block(data.get("eval"), f"{source}: eval"),
            eval_history=history,
            stages=stages,
            train=dict(data.get("train") or {}),
            profile=dict(profile) if isinstance(profile, Mapping) else None,
            wall_seconds=data.get("wall_seconds"),
            config=dict(data.get("config") or {}),
        )


def _split_label(label: str) -> list[str]:
    for sep in (SEQUENCE_SEP, MIXTURE_SEP):
        if sep in label:
            return [e for e in label.split(sep) if e]
    return [label]


def _eval_block(block: Any, where: str) -> dict[str, dict[str, float]]:
    """{env: {metric: number}}; non-numeric metric values are dropped, NaN kept as missing."""
    if block is None:
        return {}
    if not isinstance(block, Mapping):
        raise SummaryError(f"{where} must map env names to metric objects, got {block!r}")
    out: dict[str, dict[str, float]] = {}
    for env, metrics in block.items():
        if not isinstance(metrics, Mapping):
            raise SummaryError(f"{where}[{env!r}] must be an object such as {{'success_rate': 0.4}}, got {metrics!r}")
        out[env] = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(float(v))
        }
    return out


def load_summary(path: str | Path) -> RunSummary:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SummaryError(f"{path}: not valid JSON ({err})") from err
    return RunSummary.from_dict(data, str(path))


@dataclass
class ProfileEntry:
    """Section 5's environment metrics for one env (and augmentation level)."""

    env: str
    augment: str
    metrics: dict[str, float]
    source: str


def profile_entries(data: Mapping[str, Any], source: str, augment: str | None = None) -> list[ProfileEntry]:
    """Entries from a profile block {env: {avg_chars, avg_steps, success_rate, optimal_len, augment?}}."""
    if not isinstance(data, Mapping):
        raise SummaryError(f"{source}: a profile must map env names to metric objects, got {data!r}")
    out = []
    for env, row in data.items():
        if not isinstance(row, Mapping):
            raise SummaryError(f"{source}: profile[{env!r}] must be an object, got {row!r}")
        aug = norm_value(row.get("augment", augment if augment is not None else "none"))
        nums = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        out.append(ProfileEntry(env=env, augment=aug, metrics=nums, source=source))
    return out


def load_profile(path: str | Path) -> list[ProfileEntry]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SummaryError(f"{path}: not valid JSON ({err})") from err
    return profile_entries(data, str(path))
