"""The RL algorithms' mathematics: advantages, losses, KL estimators, the critic's value head, the
Tree-GRPO search structure and the ScalingInter-RL turn schedule, and one module per algorithm (grpo, rloo,
ppo, reinforce_pp, tree_grpo, gigpo, gspo: its typed config, its advantages, its loss where it has its own).
The trainer loop lives elsewhere and dispatches on ``cfg.algo.name`` through ``agentgen.algos.registry``."""

from agentgen.algos.advantages import (
    broadcast_to_tokens,
    discounted_returns,
    gae_advantages,
    grpo_advantages,
    kl_penalised_rewards,
    outcome_token_rewards,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    rloo_advantages,
)
from agentgen.algos.base import AlgoConfig, Algorithm, StepBatch
from agentgen.algos.losses import (
    aggregate_loss,
    entropy_from_logits,
    kl_divergence,
    kl_penalty_loss,
    policy_loss,
    token_entropy,
    value_loss,
)
from agentgen.algos.masked import masked_mean, masked_var, masked_whiten
from agentgen.algos.registry import ALGORITHMS, get_algo, validate_algo_config
from agentgen.algos.schedule import SCALING_INTER_PRESETS, TurnSchedule, schedule_from_config, turn_limit
from agentgen.algos.stepwise import StepAdvantages, step_advantages
from agentgen.algos.tree_search import TreeBudget, TreeNode, TreeSearch

__all__ = [
    "ALGORITHMS",
    "SCALING_INTER_PRESETS",
    "AlgoConfig",
    "Algorithm",
    "StepAdvantages",
    "StepBatch",
    "TreeBudget",
    "TreeNode",
    "TreeSearch",
    "TurnSchedule",
    "aggregate_loss",
    "broadcast_to_tokens",
    "discounted_returns",
    "entropy_from_logits",
    "gae_advantages",
    "get_algo",
    "grpo_advantages",
    "kl_divergence",
    "kl_penalised_rewards",
    "kl_penalty_loss",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "outcome_token_rewards",
    "policy_loss",
    "reinforce_pp_advantages",
    "reinforce_pp_baseline_advantages",
    "rloo_advantages",
    "schedule_from_config",
    "step_advantages",
    "token_entropy",
    "turn_limit",
    "validate_algo_config",
    "value_loss",
]
