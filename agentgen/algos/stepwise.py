"""Advantages for the stepwise trainer, where every agent step (turn) is its own training sample.

The trainer holds ragged data: per episode, per step, a reward (and, for PPO, the critic's values; for
``kl_in: reward``, the per-token KL of the step's response). ``step_advantages`` packs an episode's
steps into one row, runs the algorithm's estimator over the rows and hands back one advantage per step
(turn-level credit) or one per response token of each step (token-level credit):

- grpo / rloo: episode return R = sum of its step rewards (minus kl_coef * the episode's summed KL when
  ``kl_in: reward``), normalised within the group, the same value for every step of the episode;
- ppo, credit turn: one time unit per step, r_k = step reward (minus kl_coef * sum of the step's KL),
  V_k = the value of the state step k acted in; GAE over the episode's steps;
- ppo, credit token: one time unit per response token, the step reward on the step's last token, the
  KL penalty on every token, per-token values; GAE runs across step boundaries (the bootstrap of a
  step's last token is the value of the next step's first token), the episode's end is terminal;
- reinforce_pp: the same two layouts, discounted returns whitened over the whole batch, no critic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from agentgen.algos.advantages import (
    gae_advantages,
    grpo_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
)

EPISODE_LEVEL = ("grpo", "rloo")
# How the steps of an episode weigh in the loss: ``step`` = every step is one sample of weight 1 (the
# study's stepwise trainer); ``episode`` = each episode weighs the same, its steps sharing the weight.
STEP_WEIGHTS = ("step", "episode")
SEQUENCE_LEVEL = ("ppo", "reinforce_pp")


@dataclass
class StepAdvantages:
    """``advantages[e][k]``: a float (episode-level and turn credit) or a [n_tokens] tensor (token credit).
    ``returns[e][k]``: the critic's regression target in the same layout (PPO), else None."""

    advantages: list[list[Any]]
    returns: list[list[Any]] | None


def _pack(per_episode: Sequence[Sequence[Tensor]], width: int) -> tuple[Tensor, Tensor]:
    """Concatenate each episode's per-step 1-D tensors into one row, right-padded: ([E, width], mask)."""
    rows = torch.zeros(len(per_episode), width)
    mask = torch.zeros(len(per_episode), width)
    for e, steps in enumerate(per_episode):
        flat = torch.cat([s.reshape(-1).float() for s in steps]) if steps else torch.zeros(0)
        rows[e, : flat.numel()] = flat
        mask[e, : flat.numel()] = 1.0
    return rows, mask


def _unpack(rows: Tensor, lengths: Sequence[Sequence[int]], as_float: bool) -> list[list[Any]]:
    out = []
    for e, lens in enumerate(lengths):
        chunks, start = [], 0
        for n in lens:
            chunk = rows[e, start : start + n]
            chunks.append(float(chunk[0]) if as_float else chunk.clone())
            start += n
        out.append(chunks)
    return out


def step_advantages(
    algo: Mapping[str, Any],
    step_rewards: Sequence[Sequence[float]],
    group_ids: Sequence[int],
    *,
    values: Sequence[Sequence[Any]] | None = None,
    kl: Sequence[Sequence[Tensor]] | None = None,
    response_lengths: Sequence[Sequence[int]] | None = None,
) -> StepAdvantages:
    """Per-step advantages for ``algo`` (an ``algo`` config: name, kl_coef, kl_in, and gamma / lam /
    credit / whiten_advantages / norm_adv_by_std / step_weight where the algorithm has them).

    - ``step_rewards[e][k]``: environment reward of step k of episode e;
    - ``group_ids[e]``: the prompt (instance) episode e was rolled out from;
    - ``values[e][k]``: PPO only; a float V(state of step k) for turn credit, or a [n_k] tensor of
      response-aligned token values for token credit;
    - ``kl[e][k]``: [n_k] per-token KL of step k's response (only read when ``kl_in: reward``);
    - ``response_lengths[e][k]``: number of response tokens of step k (token credit).

    ``step_weight: episode`` then scales the advantages (not the critic's returns) of episode e by
    mean_T / T_e (T = steps), see ``episode_balanced``.
    """
    name = algo["name"]
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
            f"algo {name!r} has kl_in: reward and kl_coef {kl_coef}: pass the per-token kl of each step"
        )
    step_kl = [[float(t.sum()) for t in ep] for ep in kl] if kl_coef else None

    if name in EPISODE_LEVEL:
        returns = torch.tensor(
            [sum(r) - (kl_coef * sum(step_kl[e]) if step_kl else 0.0) for e, r in enumerate(step_rewards)],
            dtype=torch.float64,
        )
        groups = torch.tensor(list(group_ids))
        if name == "rloo":
            adv = rloo_advantages(returns, groups)
        else:
            adv = grpo_advantages(returns, groups, norm_by_std=bool(algo.get("norm_adv_by_std", True)))
        return _weighted(weight, StepAdvantages([[float(a)] * len(r) for a, r in zip(adv, step_rewards)], None))

    if name not in SEQUENCE_LEVEL:
        raise ValueError(
            f"step_advantages handles {', '.join(EPISODE_LEVEL + SEQUENCE_LEVEL)}; {name!r} is not one of "
            "them (tree_grpo: use TreeSearch.step_advantages)"
        )
    credit = algo.get("credit", "turn")
    if name == "ppo" and values is None:
        raise ValueError("ppo needs the critic's values for every step")

    if credit == "turn":
        lengths = [[1] * len(r) for r in step_rewards]
        rewards = [
            [torch.tensor([r - (kl_coef * step_kl[e][k] if step_kl else 0.0)]) for k, r in enumerate(ep)]
            for e, ep in enumerate(step_rewards)
        ]
        vals = [[torch.tensor([float(v)]) for v in ep] for ep in values] if values is not None else None
        token_kl = None
    elif credit == "token":
        if response_lengths is None:
            raise ValueError("credit: token needs response_lengths (response tokens of every step)")
        lengths = [list(map(int, ep)) for ep in response_lengths]
        if any(n < 1 for ep in lengths for n in ep):
            raise ValueError("every step needs at least one response token for token-level credit")
        rewards = []
        for ep_r, ep_len in zip(step_rewards, lengths):
            row = []
            for r, n in zip(ep_r, ep_len):
                t = torch.zeros(n)
                t[-1] = r  # the step's reward arrives with its last token (its action)
                row.append(t)
            rewards.append(row)
        vals = [[torch.as_tensor(v).float() for v in ep] for ep in values] if values is not None else None
        token_kl = kl if kl_coef else None
    else:
        raise ValueError(f"algo.credit={credit!r} is invalid; valid values: turn, token")

    width = max(sum(lens) for lens in lengths)
    reward_rows, mask = _pack(rewards, width)
    if token_kl is not None:
        kl_rows, _ = _pack(token_kl, width)
        reward_rows = reward_rows - kl_coef * kl_rows * mask
    as_float = credit == "turn"
    if name == "ppo":
        value_rows, _ = _pack(vals, width)
        adv, ret = gae_advantages(
            reward_rows,
            value_rows,
            mask,
            gamma=float(algo.get("gamma", 1.0)),
            lam=float(algo.get("lam", 1.0)),
            whiten=bool(algo.get("whiten_advantages", True)),
        )
        return _weighted(weight, StepAdvantages(_unpack(adv, lengths, as_float), _unpack(ret, lengths, as_float)))
    adv, _ = reinforce_pp_advantages(reward_rows, mask, gamma=float(algo.get("gamma", 1.0)))
    return _weighted(weight, StepAdvantages(_unpack(adv, lengths, as_float), None))


def _weighted(step_weight: str, out: StepAdvantages) -> StepAdvantages:
    """Apply ``step_weight`` to the advantages (the critic's returns stay as they are)."""
    if step_weight == "episode":
        return StepAdvantages(episode_balanced(out.advantages), out.returns)
    return out


def episode_balanced(advantages: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Scale every step's advantage of episode e by mean_T / T_e, T_e = its number of steps.

    In the stepwise formulation an episode of T steps is T samples, so with a group-normalised return a
    15-step failure pushes its tokens down 15 times while a 5-step success pushes its tokens up 5 times:
    the advantages of a group sum to 0 over episodes but not over samples. Tokens every response shares
    (the answer format, the end of turn) then drift down, and long failures outweigh short successes.
    With this weight each episode counts once, as in trajectory-level GRPO, and the total weight of the
    batch (the number of samples) is unchanged. The PPO-clip loss is linear in a positive scale of A,
    so scaling the advantage is the same as weighting the sample's policy loss."""
    lengths = [len(ep) for ep in advantages]
    mean_t = sum(lengths) / max(1, len(lengths))
    return [[a * (mean_t / n) for a in ep] for ep, n in zip(advantages, lengths)]
