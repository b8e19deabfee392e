"""Which algorithm needs what: the trainer dispatches on ``cfg.algo.name`` through this table.

``advantage_level`` tells the trainer which inputs to build:
- ``episode``: ``advantage_fn(returns[N], group_ids[N]) -> [N]``, one value per episode, broadcast to
  all steps and response tokens of the episode (GRPO, RLOO);
- ``sequence``: ``advantage_fn(rewards[B, T], ..., mask[B, T])`` over turns or tokens (``credit`` in
  the config): GAE with the critic's values (PPO), discounted returns whitened over the batch
  (REINFORCE++);
- ``tree``: ``TreeSearch.leaf_advantages`` / ``step_advantages`` after a tree rollout (Tree-GRPO).

For the stepwise trainer (one sample per turn), ``agentgen.algos.stepwise.step_advantages`` wraps the
episode and sequence levels: ragged per-episode step rewards (and values, KL) in, per-step advantages out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agentgen.algos.advantages import (
    gae_advantages,
    grpo_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
)
from agentgen.algos.losses import KL_ESTIMATORS, LOSS_AGGREGATIONS
from agentgen.algos.stepwise import STEP_WEIGHTS
from agentgen.algos.tree import STEP_ADVANTAGE_MODES, TreeSearch

KL_PLACEMENTS = ("loss", "reward")
CREDIT_LEVELS = ("turn", "token")
FILTER_GROUPS_BY = ("success", "return")  # dynamic sampling: keep groups whose rollouts differ in this


@dataclass(frozen=True)
class AlgoSpec:
    name: str
    needs_critic: bool  # train a value model (CausalLMCritic) alongside the policy
    uses_groups: bool  # the advantage compares rollouts of the same prompt (needs group ids)
    uses_tree: bool  # rollouts are built with TreeSearch instead of independent chains
    advantage_level: str  # "episode" | "sequence" | "tree" (see module docstring)
    advantage_fn: Callable[..., Any]
    summary: str


ALGORITHMS: dict[str, AlgoSpec] = {
    spec.name: spec
    for spec in (
        AlgoSpec(
            "grpo",
            False,
            True,
            False,
            "episode",
            grpo_advantages,
            "group-normalised outcome advantage, PPO-clip, KL in the loss",
        ),
        AlgoSpec(
            "rloo", False, True, False, "episode", rloo_advantages, "leave-one-out group baseline, PPO-clip"
        ),
        AlgoSpec(
            "ppo",
            True,
            False,
            False,
            "sequence",
            gae_advantages,
            "learned critic, GAE over turns or tokens, clipped value loss",
        ),
        AlgoSpec(
            "reinforce_pp",
            False,
            False,
            False,
            "sequence",
            reinforce_pp_advantages,
            "discounted return with token-level KL penalty, whitened over the global batch",
        ),
        AlgoSpec(
            "tree_grpo",
            False,
            True,
            True,
            "tree",
            TreeSearch.leaf_advantages,
            "tree rollouts (M trees, L rounds x N expansions), intra- plus inter-tree advantage",
        ),
    )
}

# Keys every algo config holds, and the extra keys of each algorithm.
COMMON_KEYS = (
    "name",
    "group_size",
    "kl_coef",
    "kl_estimator",
    "kl_in",
    "clip_low",
    "clip_high",
    "dual_clip",
    "entropy_coef",
    "ppo_epochs",
    "loss_agg",
)
EXTRA_KEYS = {
    "grpo": ("norm_adv_by_std",),
    "rloo": (),
    "ppo": ("gamma", "lam", "credit", "whiten_advantages", "critic"),
    "reinforce_pp": ("gamma", "credit"),
    "tree_grpo": ("M", "N", "L", "norm_adv_by_std", "step_advantage"),
}


def get_algo(name: str) -> AlgoSpec:
    if name not in ALGORITHMS:
        raise KeyError(f"unknown algorithm {name!r}; valid algorithms: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def validate_algo_config(cfg: Mapping[str, Any]) -> AlgoSpec:
    """Check an ``algo`` config (conf/algo/<name>.yaml, possibly overridden) and return its spec.
    Fails with one clear message naming the bad key, its value and the valid values."""
    spec = get_algo(cfg.get("name"))
    missing = [k for k in COMMON_KEYS + EXTRA_KEYS[spec.name] if k not in cfg]
    if missing:
        raise ValueError(
            f"algo config {spec.name!r} is missing keys {missing}; see conf/algo/{spec.name}.yaml"
        )

    def bad(key: str, valid: str) -> ValueError:
        return ValueError(f"algo.{key}={cfg[key]!r} is invalid for {spec.name!r}; valid values: {valid}")

    if cfg["kl_estimator"] not in {a for aliases in KL_ESTIMATORS.values() for a in aliases}:
        raise bad("kl_estimator", ", ".join(KL_ESTIMATORS))
    if cfg["kl_in"] not in KL_PLACEMENTS:
        raise bad("kl_in", ", ".join(KL_PLACEMENTS))
    if cfg["loss_agg"] not in LOSS_AGGREGATIONS:
        raise bad("loss_agg", ", ".join(LOSS_AGGREGATIONS))
    for key in ("kl_coef", "clip_low", "clip_high", "entropy_coef"):
        if not isinstance(cfg[key], (int, float)) or cfg[key] < 0:
            raise bad(key, "a number >= 0")
    if cfg["clip_low"] >= 1:
        raise bad("clip_low", "a number in [0, 1) (the ratio's lower bound is 1 - clip_low)")
    if cfg["dual_clip"] is not None and not (
        isinstance(cfg["dual_clip"], (int, float)) and cfg["dual_clip"] > 1
    ):
        raise bad("dual_clip", "null or a number > 1")
    if not isinstance(cfg["ppo_epochs"], int) or cfg["ppo_epochs"] < 1:
        raise bad("ppo_epochs", "an integer >= 1")
    min_group = 2 if spec.uses_groups and not spec.uses_tree else 1
    if not isinstance(cfg["group_size"], int) or cfg["group_size"] < min_group:
        raise bad(
            "group_size",
            f"an integer >= {min_group}"
            + (" (the advantage compares rollouts of a group)" if min_group == 2 else ""),
        )
    for key in ("gamma", "lam"):
        if key in cfg and not (isinstance(cfg[key], (int, float)) and 0 <= cfg[key] <= 1):
            raise bad(key, "a number in [0, 1]")
    if "step_weight" in cfg:  # optional: chain algorithms only (Tree-GRPO has step_advantage)
        if spec.uses_tree:
            raise ValueError(f"algo.step_weight is not a {spec.name!r} setting; its steps are weighted by "
                             f"algo.step_advantage ({', '.join(STEP_ADVANTAGE_MODES)})")
        if cfg["step_weight"] not in STEP_WEIGHTS:
            raise bad("step_weight", ", ".join(STEP_WEIGHTS))
    if cfg.get("filter_groups") is not None:  # optional (dynamic sampling): group chain algorithms only
        if cfg["filter_groups"] not in FILTER_GROUPS_BY:
            raise bad("filter_groups", "null (off), " + ", ".join(FILTER_GROUPS_BY))
        if not spec.uses_groups or spec.uses_tree:
            raise ValueError(f"algo.filter_groups={cfg['filter_groups']} needs an algorithm that compares independent "
                             f"rollouts of a group (grpo, rloo); {spec.name!r} does not")
    if "max_sampling_rounds" in cfg:
        rounds = cfg["max_sampling_rounds"]
        if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
            raise bad("max_sampling_rounds", "an integer >= 1 (rollout batches per step while filtering groups)")
    if "credit" in cfg and cfg["credit"] not in CREDIT_LEVELS:
        raise bad("credit", ", ".join(CREDIT_LEVELS))
    if spec.uses_tree:
        for key, minimum in (("M", 1), ("N", 1), ("L", 0)):
            if not isinstance(cfg[key], int) or cfg[key] < minimum:
                raise bad(key, f"an integer >= {minimum}")
        if cfg["step_advantage"] not in STEP_ADVANTAGE_MODES:
            raise bad("step_advantage", ", ".join(STEP_ADVANTAGE_MODES))
    return spec
