"""Advantages for the stepwise trainer, where every agent step (turn) is its own training sample.

The trainer holds ragged data: per episode, per step, a reward (and, for PPO, the critic's values; for
``kl_in: reward``, the per-token KL of the step's response; for GiGPO, the anchor state). ``step_advantages``
folds the KL penalty into the rewards, hands the batch to the algorithm's own module (``agentgen.algos.<name>``)
and applies ``step_weight``. With ``kl_in: reward``, a step's reward loses ``kl_coef`` times its summed KL
(turn credit and the episode-level algorithms) or every response token pays its own KL (token credit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from agentgen.algos.base import STEP_WEIGHTS, StepAdvantages, StepBatch, episode_balanced
from agentgen.algos.registry import get_algo

__all__ = ["STEP_WEIGHTS", "StepAdvantages", "episode_balanced", "step_advantages"]


def step_advantages(
    algo: Mapping[str, Any],
    step_rewards: Sequence[Sequence[float]],
    group_ids: Sequence[int],
    *,
    values: Sequence[Sequence[Any]] | None = None,
    kl: Sequence[Sequence[Tensor]] | None = None,
    response_lengths: Sequence[Sequence[int]] | None = None,
    state_keys: Sequence[Sequence[Any]] | None = None,
    penalties: Sequence[Sequence[float]] | None = None,
) -> StepAdvantages:
    """Per-step advantages for ``algo`` (an ``algo`` config as a mapping).

    - ``step_rewards[e][k]``: environment reward of step k of episode e;
    - ``group_ids[e]``: the prompt (instance) episode e was rolled out from;
    - ``values[e][k]``: PPO only; a float V(state of step k) for turn credit, or a [n_k] tensor of
      response-aligned token values for token credit;
    - ``kl[e][k]``: [n_k] per-token KL of step k's response (only read when ``kl_in: reward``);
    - ``response_lengths[e][k]``: number of response tokens of step k (token credit);
    - ``state_keys[e][k]``: the anchor state step k acted in (GiGPO);
    - ``penalties[e][k]``: the invalid-action penalty included in ``step_rewards[e][k]`` (GiGPO's
      ``invalid_penalty``; every other algorithm reads the rewards as they are).

    ``step_weight: episode`` then scales the advantages (not the critic's returns) of episode e by
    mean_T / T_e (T = steps), see ``episode_balanced``.
    """
    algorithm = get_algo(algo["name"])
    weight = algo.get("step_weight", "step")
    if weight not in STEP_WEIGHTS:
        raise ValueError(f"algo.step_weight={weight!r} is invalid; valid values: {', '.join(STEP_WEIGHTS)}")
    if len(step_rewards) != len(group_ids):
        raise ValueError(f"step_rewards has {len(step_rewards)} episodes but group_ids {len(group_ids)}")
    if any(len(steps) == 0 for steps in step_rewards):
        raise ValueError("every episode needs at least one step")
    kl_coef = float(algo.get("kl_coef", 0.0)) if algo.get("kl_in") == "reward" else 0.0
    if kl_coef and kl is None:
        raise ValueError(
            f"algo {algorithm.name!r} has kl_in: reward and kl_coef {kl_coef}: pass the per-token kl of each step")
    per_token = algorithm.advantage_level == "sequence" and algo.get("credit", "turn") == "token"
    rewards = [[float(r) for r in ep] for ep in step_rewards]
    step_kl = None
    if kl_coef and not per_token:
        step_kl = [[kl_coef * float(t.sum()) for t in ep_kl] for ep_kl in kl]
        rewards = [[r - c for r, c in zip(ep, ep_kl)] for ep, ep_kl in zip(rewards, step_kl)]
    batch = StepBatch(rewards, list(group_ids), values=values, token_kl=kl if per_token and kl_coef else None,
                      kl_coef=kl_coef if per_token else 0.0, response_lengths=response_lengths,
                      state_keys=state_keys, penalties=penalties, step_kl=step_kl)
    out = algorithm.step_advantages(algo, batch)
    if weight == "episode":
        return StepAdvantages(episode_balanced(out.advantages), out.returns, out.metrics)
    return out
