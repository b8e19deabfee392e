"""What the RL trainer's loop (agentgen/trainer/rl_trainer.py) and its training engine read of a job's config, as two
typed objects built once by the caller (``engine_setup``, ``rl_options`` in ``agentgen.options``), so neither holds
the whole ``cfg``. The rules of these keys stay where they are checked in preflight (``trainer.params`` in
``EngineOptions``, the rest in the config schema); these classes only carry the checked values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from agentgen.options.async_rollout import AsyncOptions
from agentgen.options.train_engine import EngineOptions


@dataclass
class EngineSetup:
    """The training engine's settings: ``trainer.strategy``, its typed ``trainer.params``, the RL optimiser
    (``trainer.lr/weight_decay/grad_clip``), the DeepSpeed micro-batch and the model's dtype (precision
    ``auto``). SFT overrides the optimiser per call of ``make_engine``."""

    strategy: str
    options: EngineOptions
    lr: float
    weight_decay: float
    grad_clip: float
    micro_batch: int
    model_dtype: str


@dataclass
class RLOptions:
    """The RL trainer's keys of ``trainer`` and ``rollout`` and the job's seed. Not frozen: tests vary one."""

    seed: int
    prompts_per_step: int
    mini_batch_states: int
    micro_batch_states: int
    grad_clip: float
    weight_decay: float
    engine: Optional[EngineSetup]  # None: the caller always hands the trainer its engine
    check_sampler_every: int = 10  # 0: never score the sampler's log-probs to check them
    check_sampler_samples: int = 8
    max_turns_schedule: Any = None  # trainer.max_turns_schedule (agentgen/algos/schedule.py)
    behaviour_logprobs: str = "auto"
    sampler: str = "hf"  # rollout.name: whose log-probs a step may reuse
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    ahead: AsyncOptions = field(default_factory=AsyncOptions)  # rollouts ahead of the update (max_staleness)
