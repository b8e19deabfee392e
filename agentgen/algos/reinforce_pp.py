"""REINFORCE++ (Hu 2025), one of AgentGym-RL's algorithms (papers.md C): no critic, no group baseline.

The KL penalty is folded into the rewards (per token, or summed per step for credit ``turn``), the discounted
return G_t is the signal, whitened over the whole batch's response tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentgen.algos.advantages import reinforce_pp_advantages
from agentgen.algos.base import Algorithm, BadValue, ChainConfig, StepAdvantages, StepBatch
from agentgen.algos.sequence import check_credit, pack_rows, unpack


@dataclass
class ReinforcePPConfig(ChainConfig):
    name: str = "reinforce_pp"
    gamma: float = 1.0  # discount of the return
    credit: str = "turn"  # turn | token (see agentgen/algos/sequence.py)


class ReinforcePP(Algorithm):
    name = "reinforce_pp"
    config = ReinforcePPConfig
    summary = "discounted return with token-level KL penalty, whitened over the global batch"
    uses_groups = False
    advantage_level = "sequence"

    def check(self, cfg: ReinforcePPConfig, bad: BadValue) -> None:
        check_credit(cfg, bad)

    def step_advantages(self, algo: Mapping[str, Any], batch: StepBatch) -> StepAdvantages:
        rows = pack_rows(batch, str(algo.get("credit", "turn")), with_values=False)
        adv, _ = reinforce_pp_advantages(rows.rewards, rows.mask, gamma=float(algo.get("gamma", 1.0)))
        return StepAdvantages(unpack(adv, rows))


ALGORITHM = ReinforcePP()
