"""Advantage estimators for the RL algorithms agentgen trains with.

Two shapes appear here:
- *episode level* (GRPO, RLOO, Tree-GRPO): one scalar per episode, ``Tensor[N]``. In the stepwise
  trainer every step of an episode is its own training sample, and the trainer broadcasts the
  episode's advantage to all of that episode's steps and to every response token of each step.
- *sequence level* (GAE for PPO, REINFORCE++): ``Tensor[B, T]`` with a response mask. The "time"
  axis T can be tokens (token-level credit assignment) or turns (turn-level: one entry per step of
  the episode, reward at the turn, value of the turn's state); see ``gae_advantages``.

Formulas follow the papers in /work/shared/reference/papers.md (sections A, C, D) and verl's
``core_algos`` where the papers leave details open.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agentgen.algos.masked import masked_whiten


# ---------------------------------------------------------------------------------------------- groups
def _group_stats(values: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample group size, group mean and unbiased group std (0 for groups of one)."""
    if values.dim() != 1 or group_ids.dim() != 1 or values.shape != group_ids.shape:
        raise ValueError(
            f"returns and group_ids must be 1-D tensors of the same length, got shapes "
            f"{tuple(values.shape)} and {tuple(group_ids.shape)}"
        )
    values = values.to(torch.float64)  # exact sums even for large batches; cast back by callers
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inverse.max().item()) + 1 if inverse.numel() else 0
    count = torch.zeros(n_groups, dtype=values.dtype, device=values.device).index_add_(
        0, inverse, torch.ones_like(values)
    )
    total = torch.zeros_like(count).index_add_(0, inverse, values)
    mean = total / count
    sq_dev = torch.zeros_like(count).index_add_(0, inverse, (values - mean[inverse]) ** 2)
    std = torch.where(count > 1, (sq_dev / (count - 1).clamp(min=1)).sqrt(), torch.zeros_like(count))
    return count[inverse], mean[inverse], std[inverse]


def grpo_advantages(
    returns: Tensor, group_ids: Tensor, norm_by_std: bool = True, eps: float = 1e-6
) -> Tensor:
    """GRPO group-normalised advantage (Shao et al. 2024; papers.md A, D).

        A_i = (R_i - mean_g(R)) / (std_g(R) + eps)      (std unbiased, n-1)
        A_i = R_i - mean_g(R)                           when ``norm_by_std`` is False (Dr. GRPO)

    ``group_ids`` says which samples were rolled out from the same prompt (environment instance).
    A group of one sample has no baseline and gets advantage 0 (verl would pass the raw reward through,
    which is a biased, unnormalised signal); a group whose rewards are all equal gets 0 too.
    """
    count, mean, std = _group_stats(returns, group_ids)
    centred = returns.to(torch.float64) - mean
    adv = centred / (std + eps) if norm_by_std else centred
    adv = torch.where(count > 1, adv, torch.zeros_like(adv))
    return adv.to(returns.dtype if returns.is_floating_point() else torch.float32)


def rloo_advantages(returns: Tensor, group_ids: Tensor) -> Tensor:
    """REINFORCE Leave-One-Out (Kool et al. 2019; Ahmadian et al. 2024; papers.md C).

        A_i = R_i - 1/(n-1) * sum_{j != i} R_j  =  n/(n-1) * (R_i - mean_g(R))

    The baseline of each sample is the mean of the *other* samples of its group, so it is independent
    of the sample itself (unbiased). Groups of one have no other sample: advantage 0.
    """
    count, mean, _ = _group_stats(returns, group_ids)
    centred = returns.to(torch.float64) - mean
    adv = torch.where(count > 1, centred * count / (count - 1).clamp(min=1), torch.zeros_like(centred))
    return adv.to(returns.dtype if returns.is_floating_point() else torch.float32)


# ------------------------------------------------------------------------------------ sequence level
def outcome_token_rewards(scores: Tensor, mask: Tensor) -> Tensor:
    """Place each sequence's scalar reward on its last response token (AgentGym-RL, papers.md C:
    "outcome reward on the last token"); all other tokens get 0. Rows with an empty mask get nothing."""
    if scores.dim() != 1 or mask.dim() != 2 or scores.shape[0] != mask.shape[0]:
        raise ValueError(
            f"scores must be [B] and mask [B, T], got {tuple(scores.shape)} and {tuple(mask.shape)}"
        )
    mask = mask.to(torch.bool)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask, positions, torch.full_like(positions, -1)).max(dim=1).values
    rewards = torch.zeros(
        mask.shape, dtype=scores.dtype if scores.is_floating_point() else torch.float32, device=mask.device
    )
    rows = torch.nonzero(last >= 0).squeeze(1)
    rewards[rows, last[rows]] = scores[rows].to(rewards.dtype)
    return rewards


def gae_advantages(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 1.0, whiten: bool = True
) -> tuple[Tensor, Tensor]:
    """Generalised Advantage Estimation (Schulman et al. 2016) for PPO; returns (advantages, returns).

        delta_t = r_t + gamma * V_{t+1} - V_t
        A_t     = delta_t + gamma * lam * A_{t+1}
        G_t     = A_t + V_t                        (the value target)

    Positions with mask 0 are *skipped*, not treated as terminal: in a multi-turn sequence the tokens of
    an environment observation sit between two responses, and "t+1" of the last token of turn k is the
    first token of turn k+1 (verl's multi-turn GAE does the same). So the bootstrap value and the running
    advantage pass across masked spans unchanged, and no reward or value at a masked position counts.

    Credit assignment (set by what the T axis holds):
    - token level: T = tokens; rewards[b, t] = 0 except the outcome reward at the last response token
      (``outcome_token_rewards``), optionally minus a per-token KL penalty; values = critic per token.
    - turn level: T = turns of an episode; rewards[e, k] = the environment reward of step k (invalid-
      action penalty, success bonus), values[e, k] = critic value of the state before step k (the last
      prompt token of that step). The trainer broadcasts A[e, k] to every response token of step k and
      regresses that step's value on G[e, k]. This fits the stepwise trainer, where a step is one sample.

    ``whiten`` normalises the advantages over the masked batch (verl's default); returns are not whitened.
    """
    if not (rewards.shape == values.shape == mask.shape) or rewards.dim() != 2:
        raise ValueError(
            f"rewards, values and mask must all be [B, T]; got {tuple(rewards.shape)}, "
            f"{tuple(values.shape)}, {tuple(mask.shape)}"
        )
    with torch.no_grad():
        mask_f = mask.to(values.dtype)
        next_value = torch.zeros_like(values[:, 0])
        running = torch.zeros_like(values[:, 0])
        advantages = torch.zeros_like(values)
        for t in reversed(range(values.shape[1])):
            delta = rewards[:, t] + gamma * next_value - values[:, t]
            candidate = delta + gamma * lam * running
            m = mask_f[:, t]
            running = m * candidate + (1 - m) * running
            next_value = m * values[:, t] + (1 - m) * next_value
            advantages[:, t] = running
        returns = (advantages + values) * mask_f
        if whiten:
            advantages = masked_whiten(advantages, mask_f)
        return advantages * mask_f, returns


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float = 1.0) -> Tensor:
    """G_t = sum_{k >= t, mask_k = 1} gamma^(#unmasked steps between t and k) * r_k, per row.

    Masked positions (observation tokens, padding) neither add reward nor discount, so a multi-turn
    sequence behaves like the concatenation of its responses. Each row is its own episode."""
    mask_f = mask.to(rewards.dtype)
    running = torch.zeros_like(rewards[:, 0])
    returns = torch.zeros_like(rewards)
    for t in reversed(range(rewards.shape[1])):
        m = mask_f[:, t]
        running = m * (rewards[:, t] + gamma * running) + (1 - m) * running
        returns[:, t] = running
    return returns * mask_f


def reinforce_pp_advantages(
    rewards: Tensor,
    mask: Tensor,
    gamma: float = 1.0,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """REINFORCE++ (Hu 2025; papers.md C): critic-free, baseline = global batch statistics.

        r'_t = r_t - kl_coef * KL_t                 (token-level KL penalty folded into the reward)
        G_t  = sum_{k >= t} gamma^(k-t) r'_k        (over response tokens, see ``discounted_returns``)
        A_t  = whiten(G) over all response tokens of the whole batch (mean 0, unit variance)

    Returns (advantages, returns). ``kl`` is a per-token estimate from ``losses.kl_divergence`` (k1 in
    the REINFORCE++ paper; any estimator works). When ``kl_coef`` is 0 the KL term is ignored.
    """
    if rewards.shape != mask.shape or rewards.dim() != 2:
        raise ValueError(
            f"rewards and mask must both be [B, T], got {tuple(rewards.shape)} and {tuple(mask.shape)}"
        )
    with torch.no_grad():
        shaped = rewards
        if kl is not None and kl_coef != 0.0:
            if kl.shape != rewards.shape:
                raise ValueError(
                    f"kl must match rewards' shape {tuple(rewards.shape)}, got {tuple(kl.shape)}"
                )
            shaped = rewards - kl_coef * kl * mask.to(rewards.dtype)
        returns = discounted_returns(shaped, mask, gamma)
        advantages = masked_whiten(returns, mask) * mask.to(returns.dtype)
        return advantages, returns


def reinforce_pp_baseline_advantages(scores: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
    """REINFORCE++-baseline (verl ``reinforce_plus_plus_baseline``): subtract the group mean of the
    outcome score, broadcast to the response tokens, then whiten over the global batch. Returns [B, T]."""
    count, mean, _ = _group_stats(scores, group_ids)
    centred = torch.where(count > 1, scores.to(torch.float64) - mean, torch.zeros_like(mean)).to(
        torch.float32
    )
    token_adv = centred.unsqueeze(1) * mask.to(torch.float32)
    return masked_whiten(token_adv, mask) * mask.to(torch.float32)


def broadcast_to_tokens(episode_advantages: Tensor, mask: Tensor) -> Tensor:
    """[B] -> [B, T]: every response token of sample b carries the sample's advantage."""
    return episode_advantages.unsqueeze(1).to(torch.float32) * mask.to(torch.float32)


def kl_penalised_rewards(rewards: Tensor, kl: Tensor, mask: Tensor, kl_coef: float) -> Tensor:
    """``kl_in: reward`` for per-sample rewards: r_b - kl_coef * sum_t KL[b, t] over b's response tokens.

    Use it for turn-level credit (one reward per step sample) and for episode-level methods (sum a
    whole episode's KL into its return). Token-level methods fold KL per token instead (see
    ``reinforce_pp_advantages`` and ``gae_advantages`` with ``rewards - kl_coef * kl``)."""
    if kl.shape != mask.shape or rewards.shape != kl.shape[:1]:
        raise ValueError(
            f"expected rewards [B] and kl, mask [B, T]; got {tuple(rewards.shape)}, "
            f"{tuple(kl.shape)}, {tuple(mask.shape)}"
        )
    return rewards - kl_coef * (kl * mask.to(kl.dtype)).sum(dim=1).to(rewards.dtype)
