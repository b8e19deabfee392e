"""Tree-GRPO (Ji et al. 2025; papers.md D): tree-structured rollouts with intra- plus inter-tree advantages.

Per instance, M trees each start from one full chain; L rounds then pick N expansion nodes per tree and roll a
continuation out from there. A leaf's advantage is its group-normalised return within its tree plus within all
leaves of the instance. The rollout is ``agentgen.trainer.tree_rollout.TreeRollout``; the leaf and step advantages
are ``agentgen.algos.tree_search.TreeSearch`` (``step_advantage`` decides how steps shared by several leaves become
samples).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentgen.algos.base import AlgoConfig, Algorithm, BadValue, StepAdvantages, StepBatch
from agentgen.algos.tree_search import STEP_ADVANTAGE_MODES


@dataclass
class TreeGRPOConfig(AlgoConfig):
    name: str = "tree_grpo"
    M: int = 4  # trees per instance
    N: int = 2  # expansions per tree per round
    L: int = 1  # expansion rounds; leaves per instance M * (L * N + 1), budget ~ M + M*L*N/2 chains
    norm_adv_by_std: bool = True  # (R - mean) / (std + 1e-6) in the intra- and the inter-tree term
    step_advantage: str = "per_leaf"  # per_leaf (authors) | sum | mean: how a step shared by leaves is trained


class TreeGRPO(Algorithm):
    name = "tree_grpo"
    config = TreeGRPOConfig
    summary = "tree rollouts (M trees, L rounds x N expansions), intra- plus inter-tree advantage"
    uses_tree = True
    advantage_level = "tree"

    def check(self, cfg: TreeGRPOConfig, bad: BadValue) -> None:
        for key, minimum in (("M", 1), ("N", 1), ("L", 0)):
            if getattr(cfg, key) < minimum:
                raise bad(key, f"an integer >= {minimum}")
        if cfg.step_advantage not in STEP_ADVANTAGE_MODES:
            raise bad("step_advantage", ", ".join(STEP_ADVANTAGE_MODES))

    def step_advantages(self, algo: Mapping[str, Any], batch: StepBatch) -> StepAdvantages:
        """Chains of independent episodes are not Tree-GRPO's samples: its steps share prefixes in a tree."""
        raise ValueError(f"{self.name}'s step advantages come from its trees: use TreeSearch.step_advantages")


ALGORITHM = TreeGRPO()
