"""ScalingInter-RL turn schedule (AgentGym-RL, Xi et al. 2025; papers.md C).

The maximum number of interaction turns per episode grows in phases: short horizons first, while the
policy learns to act at all, longer ones later so it can learn to explore and plan:

    stage     = min(floor(step / phase), len(rounds) - 1)
    max_turns = rounds[stage]

``step`` is the number of policy updates already done (0-based), so the first ``phase`` updates use
``rounds[0]``, exactly like AgentGym-RL's ``StepRoundsScheduler`` (which counts steps from 1 and
advances after step ``phase``). The last limit holds for the rest of training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TurnSchedule:
    rounds: tuple[int, ...]
    phase: int

    def __post_init__(self):
        if not self.rounds or any(not isinstance(r, int) or r < 1 for r in self.rounds):
            raise ValueError(
                f"turn schedule rounds must be a non-empty list of integers >= 1, got {list(self.rounds)}"
            )
        if not isinstance(self.phase, int) or self.phase < 1:
            raise ValueError(
                f"turn schedule phase must be an integer >= 1 (training steps per stage), got {self.phase!r}"
            )

    def stage(self, step: int) -> int:
        if step < 0:
            raise ValueError(f"training step must be >= 0, got {step}")
        return min(step // self.phase, len(self.rounds) - 1)

    def turn_limit(self, step: int) -> int:
        return self.rounds[self.stage(step)]


# The schedules of the AgentGym-RL repository's ScalingInter-RL scripts: (rounds, phase).
SCALING_INTER_PRESETS: dict[str, TurnSchedule] = {
    "babyai": TurnSchedule((6, 13, 20), 100),
    "sciworld": TurnSchedule((10, 20, 30), 100),
    "textcraft": TurnSchedule((10, 20, 30), 100),
    "searchqa": TurnSchedule((5, 8, 10), 100),
    "webarena": TurnSchedule((8, 12, 15), 80),
}


def turn_limit(step: int, rounds: list[int] | tuple[int, ...], phase: int) -> int:
    """Max interaction turns for rollouts at training ``step`` (0-based) under schedule (rounds, phase)."""
    return TurnSchedule(tuple(rounds), phase).turn_limit(step)


def schedule_from_config(spec: Any) -> TurnSchedule | None:
    """Read ``trainer.max_turns_schedule``. Accepted forms:

    - ``null`` -> no schedule (the environment's own ``max_steps`` holds throughout);
    - a preset name, e.g. ``sciworld`` (see ``SCALING_INTER_PRESETS``);
    - a mapping ``{rounds: [10, 20, 30], phase: 100}`` or ``{preset: sciworld}``.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec not in SCALING_INTER_PRESETS:
            raise ValueError(
                f"unknown turn-schedule preset {spec!r}; valid presets: {', '.join(SCALING_INTER_PRESETS)} "
                "(or give {rounds: [...], phase: N})"
            )
        return SCALING_INTER_PRESETS[spec]
    if isinstance(spec, Mapping) or hasattr(spec, "keys"):
        keys = set(spec.keys())
        if keys == {"preset"}:
            return schedule_from_config(spec["preset"])
        if keys == {"rounds", "phase"}:
            return TurnSchedule(tuple(int(r) for r in spec["rounds"]), int(spec["phase"]))
        raise ValueError(
            f"max_turns_schedule must have keys {{rounds, phase}} or {{preset}}, got {sorted(keys)}"
        )
    raise ValueError(f"max_turns_schedule must be null, a preset name or a mapping, got {spec!r}")


def rollout_turn_limit(step: int, schedule: TurnSchedule | None, env_max_steps: int) -> int:
    """The env step limit for rollouts at ``step``: the schedule's limit, or the env's own ``max_steps``
    when no schedule is set. The schedule may exceed the env default on purpose (longer horizons)."""
    return env_max_steps if schedule is None else schedule.turn_limit(step)
