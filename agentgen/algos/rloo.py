"""RLOO, REINFORCE Leave-One-Out (Kool et al. 2019; Ahmadian et al. 2024; AgentGym-RL, papers.md C).

Each episode's baseline is the mean return of the other episodes of its group, so it does not depend on the
episode itself (unbiased); the advantage is every step's advantage, updated with the clipped surrogate.

    A_e = R_e - 1/(n-1) * sum_{j != e} R_j
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from agentgen.algos.advantages import rloo_advantages
from agentgen.algos.base import Algorithm, GroupConfig, StepAdvantages, StepBatch, broadcast


@dataclass
class RLOOConfig(GroupConfig):
    name: str = "rloo"


class RLOO(Algorithm):
    name = "rloo"
    config = RLOOConfig
    summary = "leave-one-out group baseline, PPO-clip"

    def step_advantages(self, algo: Mapping[str, Any], batch: StepBatch) -> StepAdvantages:
        adv = rloo_advantages(batch.episode_returns(), torch.tensor(batch.group_ids))
        return StepAdvantages(broadcast(adv.tolist(), batch.rewards))


ALGORITHM = RLOO()
