"""PPO with a learned critic and GAE (Schulman et al. 2017, 2016), AgentGym-RL's settings (papers.md C).

The critic (``agentgen.trainer.critic_trainer``) scores every step; GAE runs over the steps of an episode (credit
``turn``) or over its response tokens (credit ``token``, see ``agentgen.algos.sequence``); the critic regresses
on G = A + V with the clipped value loss and is checkpointed next to the policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict

from agentgen.algos.advantages import gae_advantages
from agentgen.algos.base import Algorithm, BadValue, ChainConfig, StepAdvantages, StepBatch
from agentgen.algos.sequence import check_credit, pack_rows, unpack


@dataclass
class PPOConfig(ChainConfig):
    name: str = "ppo"
    gamma: float = 1.0  # discount (AgentGym-RL / verl default 1.0)
    lam: float = 1.0  # GAE lambda
    credit: str = "turn"  # turn: one time unit per agent step | token: one per response token
    whiten_advantages: bool = True  # normalise advantages over the batch's response tokens (verl does)
    # lr, value_clip, warmup_steps (agentgen/trainer/critic_trainer.py)
    critic: Dict[str, Any] = field(default_factory=dict)


class PPO(Algorithm):
    name = "ppo"
    config = PPOConfig
    summary = "learned critic, GAE over turns or tokens, clipped value loss"
    needs_critic = True
    uses_groups = False
    advantage_level = "sequence"

    def check(self, cfg: PPOConfig, bad: BadValue) -> None:
        check_credit(cfg, bad)

    def step_advantages(self, algo: Mapping[str, Any], batch: StepBatch) -> StepAdvantages:
        if batch.values is None:
            raise ValueError("ppo needs the critic's values for every step")
        rows = pack_rows(batch, str(algo.get("credit", "turn")), with_values=True)
        adv, ret = gae_advantages(rows.rewards, rows.values, rows.mask, gamma=float(algo.get("gamma", 1.0)),
                                  lam=float(algo.get("lam", 1.0)), whiten=bool(algo.get("whiten_advantages", True)))
        return StepAdvantages(unpack(adv, rows), unpack(ret, rows))


ALGORITHM = PPO()
