"""GRPO (Shao et al. 2024) as the generalization-tax study runs it (papers.md A).

The episode's return R_e (its summed step rewards) is normalised within its group (the group_size rollouts of
one environment instance), and that advantage is every step's advantage: each turn is one training sample of
the stepwise trainer, updated with PPO's clipped surrogate and a KL term to the reference policy.

    A_e = (R_e - mean_g R) / (std_g R + 1e-6)        (norm_adv_by_std: true)
    A_e =  R_e - mean_g R                            (false: Dr. GRPO)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from agentgen.algos.advantages import grpo_advantages
from agentgen.algos.base import Algorithm, GroupConfig, StepAdvantages, StepBatch, broadcast


@dataclass
class GRPOConfig(GroupConfig):
    name: str = "grpo"
    norm_adv_by_std: bool = True  # divide by the group's std (GRPO); false = mean only (Dr. GRPO)


def episode_advantages(batch: StepBatch, norm_by_std: bool) -> torch.Tensor:
    """[E] group-normalised episode returns (shared with GiGPO and GSPO)."""
    return grpo_advantages(batch.episode_returns(), torch.tensor(batch.group_ids), norm_by_std=norm_by_std)


class GRPO(Algorithm):
    name = "grpo"
    config = GRPOConfig
    summary = "group-normalised outcome advantage, PPO-clip, KL in the loss"

    def step_advantages(self, algo: Mapping[str, Any], batch: StepBatch) -> StepAdvantages:
        adv = episode_advantages(batch, bool(algo.get("norm_adv_by_std", True)))
        return StepAdvantages(broadcast(adv.tolist(), batch.rewards))


ALGORITHM = GRPO()
