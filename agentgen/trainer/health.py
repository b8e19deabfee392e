"""Training health: stop a run that has collapsed instead of letting it burn its allocation, and know which
checkpoint was the last good one.

After every RL step the monitor reads the step's metrics (the same on every rank) against
``trainer.health`` and says whether the run has diverged. The rules, algorithm-independent:

- format-valid answers (``rollout/format_ratio``) below ``min_format_ratio``;
- valid actions (1 - ``rollout/invalid_ratio``) below ``min_valid_ratio``;
- answers that hit the token cap (``rollout/capped_ratio``) above ``max_capped_ratio``;
- the policy's KL to the reference (``train/kl``) above ``max_kl``;
- every update of the step skipped for a non-finite loss or gradient (``train/nonfinite_skipped``).

A rule must fail ``patience`` steps in a row. The three answer rules only count once the run has met them
at least once: a model that has not learnt the format yet (a fresh tiny model) has not collapsed.

The rollouts of step s come from the policy checkpointed after step s-1, so when a run starts failing at
step s the last policy known to be healthy is the one after step s-2: ``trusted_step``; the job keeps the
newest checkpoint at or before it from pruning and names it in summary.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    name: str  # key in the state and the reason
    what: str  # in words, for the reason
    key: str  # the threshold's config key under trainer.health
    needs_arming: bool

    def value(self, m: dict[str, float]) -> float | None:
        if self.name == "format":
            return m.get("rollout/format_ratio")
        if self.name == "valid":
            inv = m.get("rollout/invalid_ratio")
            return None if inv is None else 1.0 - inv
        if self.name == "capped":
            return m.get("rollout/capped_ratio")
        if self.name == "kl":
            return m.get("train/kl")
        if self.name == "nonfinite":
            n, skipped = m.get("train/updates"), m.get("train/nonfinite_skipped")
            return None if not n else skipped / n
        raise KeyError(self.name)

    def fails(self, v: float, cfg) -> bool:
        limit = float(getattr(cfg, self.key))
        if self.name in ("format", "valid"):
            return v < limit
        if self.name == "nonfinite":
            return v >= 1.0  # every update of the step was skipped
        return not math.isfinite(v) or v > limit


RULES = (
    Rule("format", "format-valid answers", "min_format_ratio", True),
    Rule("valid", "valid actions", "min_valid_ratio", True),
    Rule("capped", "answers hitting the token cap", "max_capped_ratio", True),
    Rule("kl", "KL to the reference policy", "max_kl", False),
    Rule("nonfinite", "updates skipped for non-finite loss/gradients", "patience", False),
)


class Diverged(Exception):
    """The run collapsed: ``reason``, the ``step`` it was detected at, the last healthy checkpoint."""

    def __init__(self, reason: str, step: int, healthy_checkpoint: str | None = None,
                 metrics: dict[str, float] | None = None):
        super().__init__(reason)
        self.reason, self.step, self.healthy_checkpoint = reason, step, healthy_checkpoint
        self.metrics = metrics or {}  # the step's, for summary.json's train.final


class HealthMonitor:
    def __init__(self, cfg, state: dict[str, Any] | None = None):
        self.cfg = cfg
        state = state or {}
        self.armed: dict[str, bool] = dict(state.get("armed", {}))
        self.streak: dict[str, int] = dict(state.get("streak", {}))
        self.streak_start: int | None = state.get("streak_start")  # first step of the current failing run
        self.nonfinite_total = float(state.get("nonfinite_total", 0.0))

    def state(self) -> dict[str, Any]:
        return {"armed": self.armed, "streak": self.streak, "streak_start": self.streak_start,
                "nonfinite_total": self.nonfinite_total}

    def trusted_step(self, step: int) -> int:
        """The newest step whose policy produced healthy rollouts, as of step ``step``."""
        return (self.streak_start if self.streak_start is not None else step + 1) - 2

    def observe(self, step: int, metrics: dict[str, float]) -> str | None:
        """Record step ``step``; the reason the run diverged, or None while it is healthy enough."""
        self.nonfinite_total += float(metrics.get("train/nonfinite_skipped", 0.0))
        if not self.cfg.enabled:
            return None
        patience = int(self.cfg.patience)
        failing: list[str] = []
        for rule in RULES:
            v = rule.value(metrics)
            if v is None:
                continue
            bad = rule.fails(v, self.cfg)
            if rule.needs_arming and not self.armed.get(rule.name):
                self.armed[rule.name] = not bad
                bad = False
            self.streak[rule.name] = self.streak.get(rule.name, 0) + 1 if bad else 0
            if bad:
                failing.append(rule.name)
        if not failing:
            self.streak_start = None
            return None
        if self.streak_start is None:
            self.streak_start = step
        for rule in RULES:
            n = self.streak.get(rule.name, 0)
            if n >= patience:
                v = rule.value(metrics)
                limit = "" if rule.name == "nonfinite" else \
                    f" ({'<' if rule.name in ('format', 'valid') else '>'} trainer.health.{rule.key}=" \
                    f"{getattr(self.cfg, rule.key)})"
                return (f"{rule.what} {v:.3g}{limit} for {n} consecutive RL steps "
                        f"({step - n + 1}-{step})")
        return None
