"""Policy, value, KL and entropy terms of the RL objectives.

All per-token tensors are ``[B, T]`` with a 0/1 response ``mask``; only masked-in tokens (what the
policy generated) contribute. Formulas follow papers.md (A: GRPO, KL 0.01 k3; C: AgentGym-RL, KL 1e-3;
D: Tree-GRPO, token-level PPO-clip minus beta * K3) and verl's ``core_algos`` for the details.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agentgen.algos.masked import masked_mean

LOSS_AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")
KL_ESTIMATORS = {
    # canonical name: accepted aliases (verl's names included)
    "k1": ("k1", "kl"),
    "k2": ("k2", "mse"),
    "k3": ("k3", "low_var_kl"),
    "abs": ("abs",),
}
_KL_ALIASES = {alias: name for name, aliases in KL_ESTIMATORS.items() for alias in aliases}

# Clamps as in verl: the log-ratio before exp (avoids inf), and the k3 value itself.
LOG_RATIO_CLAMP = 20.0
K3_CLAMP = 10.0


def aggregate_loss(loss_mat: Tensor, mask: Tensor, agg: str = "token-mean") -> Tensor:
    """Reduce a per-token loss [B, T] to a scalar.

    - ``token-mean``: sum over all response tokens / number of response tokens (DAPO; every token
      weighs the same, so long responses are not down-weighted);
    - ``seq-mean-token-mean``: mean over each sequence's tokens, then mean over sequences (original GRPO);
    - ``seq-mean-token-sum``: sum over each sequence's tokens, then mean over sequences.
    Sequences without any response token are left out of the sequence means.
    """
    mask = mask.to(loss_mat.dtype)
    if agg == "token-mean":
        return masked_mean(loss_mat, mask)
    has_tokens = (mask.sum(dim=1) > 0).to(loss_mat.dtype)
    n_seq = has_tokens.sum().clamp(min=1.0)
    if agg == "seq-mean-token-mean":
        per_seq = masked_mean(loss_mat, mask, dim=1)
    elif agg == "seq-mean-token-sum":
        per_seq = (loss_mat * mask).sum(dim=1)
    else:
        raise ValueError(f"unknown loss aggregation {agg!r}; valid values: {', '.join(LOSS_AGGREGATIONS)}")
    return (per_seq * has_tokens).sum() / n_seq


def kl_divergence(logprobs: Tensor, ref_logprobs: Tensor, estimator: str = "k3") -> Tensor:
    """Per-token estimate of KL(pi || pi_ref) from the sampled tokens' log-probs (Schulman 2020).

    With log r = logp_ref - logp (tokens sampled from pi):
    - k1 = logp - logp_ref                        unbiased, high variance, can be negative
    - k2 = 0.5 * (logp - logp_ref)^2              biased, low variance, >= 0
    - k3 = exp(log r) - log r - 1                 unbiased, low variance, >= 0 ("low_var_kl");
                                                  log r clamped to +-20 and k3 to +-10 as verl does
    - abs = |logp - logp_ref|
    """
    name = _KL_ALIASES.get(estimator)
    if name is None:
        raise ValueError(
            f"unknown KL estimator {estimator!r}; valid values: {', '.join(sorted(_KL_ALIASES))}"
        )
    diff = logprobs - ref_logprobs
    if name == "k1":
        return diff
    if name == "k2":
        return 0.5 * diff.square()
    if name == "abs":
        return diff.abs()
    log_ratio = (-diff).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    k3 = torch.exp(log_ratio) - log_ratio - 1.0
    return k3.clamp(-K3_CLAMP, K3_CLAMP)


def kl_penalty_loss(
    logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, estimator: str = "k3", agg: str = "token-mean"
) -> Tensor:
    """The KL term when it sits in the loss (``kl_in: loss``): aggregate(KL_t), to be added times kl_coef."""
    return aggregate_loss(kl_divergence(logprobs, ref_logprobs, estimator), mask, agg)


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    agg: str = "token-mean",
    dual_clip: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip surrogate (Schulman et al. 2017) with asymmetric clip range (DAPO "clip-higher").

        ratio_t = exp(logp_t - logp_old_t)
        L_t     = max(-A_t * ratio_t, -A_t * clip(ratio_t, 1 - clip_low, 1 + clip_high))
        loss    = aggregate(L, mask, agg)

    ``advantages`` is [B] (one per sample, broadcast over its tokens) or [B, T]. ``dual_clip`` (c > 1,
    Ye et al. 2020) additionally bounds the loss at -c * A for negative advantages, so a token whose
    ratio exploded cannot dominate the update; None disables it (the study's setting).

    Returns (loss, metrics) with metrics: ``clipfrac`` (share of tokens where clipping is active),
    ``clipfrac_high`` / ``clipfrac_low`` (ratio above 1 + clip_high with A > 0 / below 1 - clip_low with
    A < 0), ``approx_kl`` (mean of logp_old - logp, k1 of old vs new), ``ratio_mean``, ``ratio_max``.
    """
    if logprobs.shape != old_logprobs.shape or logprobs.shape != mask.shape:
        raise ValueError(
            f"logprobs, old_logprobs and mask must share the shape [B, T]; got {tuple(logprobs.shape)}, "
            f"{tuple(old_logprobs.shape)}, {tuple(mask.shape)}"
        )
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    if advantages.shape[0] != logprobs.shape[0]:
        raise ValueError(
            f"advantages must be [B] or [B, T] with B={logprobs.shape[0]}, got {tuple(advantages.shape)}"
        )
    if clip_low < 0 or clip_high < 0:
        raise ValueError(f"clip ranges must be >= 0, got clip_low={clip_low}, clip_high={clip_high}")
    advantages = advantages.to(logprobs.dtype)
    mask_f = mask.to(logprobs.dtype)

    log_ratio = (logprobs - old_logprobs).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss_mat = torch.maximum(unclipped, clipped)
    if dual_clip is not None:
        if dual_clip <= 1.0:
            raise ValueError(f"dual_clip must be > 1 (or None to disable), got {dual_clip}")
        bounded = torch.minimum(loss_mat, -advantages * dual_clip)
        loss_mat = torch.where(advantages < 0, bounded, loss_mat)
    loss = aggregate_loss(loss_mat, mask_f, agg)

    with torch.no_grad():
        adv_b = advantages.expand_as(ratio)
        metrics = {
            "clipfrac": masked_mean((clipped > unclipped).to(mask_f.dtype), mask_f).item(),
            "clipfrac_high": masked_mean(
                ((ratio > 1.0 + clip_high) & (adv_b > 0)).to(mask_f.dtype), mask_f
            ).item(),
            "clipfrac_low": masked_mean(
                ((ratio < 1.0 - clip_low) & (adv_b < 0)).to(mask_f.dtype), mask_f
            ).item(),
            "approx_kl": masked_mean(-log_ratio, mask_f).item(),
            "ratio_mean": masked_mean(ratio, mask_f).item(),
            "ratio_max": (ratio * mask_f).max().item() if mask_f.any() else 0.0,
        }
    return loss, metrics


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip: float | None = 0.2,
    agg: str = "token-mean",
) -> tuple[Tensor, dict[str, float]]:
    """Clipped value loss of PPO's critic (as in OpenAI baselines / verl).

        V_clip = old_V + clip(V - old_V, -clip, +clip)
        L_t    = 0.5 * max((V - G)^2, (V_clip - G)^2)

    The clip stops one update from moving the value far from the value the advantages were computed
    with. ``clip=None`` gives the plain 0.5 * (V - G)^2. Returns (loss, {vf_clipfrac, vpred_mean}).
    """
    if not (values.shape == old_values.shape == returns.shape == mask.shape):
        raise ValueError(
            f"values, old_values, returns and mask must share a shape; got {tuple(values.shape)}, "
            f"{tuple(old_values.shape)}, {tuple(returns.shape)}, {tuple(mask.shape)}"
        )
    mask_f = mask.to(values.dtype)
    unclipped = (values - returns).square()
    if clip is None:
        loss_mat, clipfrac = unclipped, torch.zeros(())
    else:
        v_clipped = old_values + (values - old_values).clamp(-clip, clip)
        clipped = (v_clipped - returns).square()
        loss_mat = torch.maximum(unclipped, clipped)
        clipfrac = masked_mean((clipped > unclipped).to(mask_f.dtype), mask_f)
    loss = 0.5 * aggregate_loss(loss_mat, mask_f, agg)
    return loss, {"vf_clipfrac": float(clipfrac), "vpred_mean": masked_mean(values.detach(), mask_f).item()}


def token_entropy(logits: Tensor) -> Tensor:
    """Entropy of the next-token distribution at every position: logsumexp(z) - sum softmax(z) * z."""
    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def top_entropy_mask(entropy: Tensor, mask: Tensor, frac: float) -> Tensor:
    """[B, T] 1.0 on the response tokens whose entropy is in the top ``frac`` of ``mask``'s, else 0.0 (Wang et al.
    2025, "Beyond the 80/20 rule": the policy gradient of the high-entropy minority of tokens, where the policy
    chooses, carries RL's gain; the near-certain rest, right in won and lost episodes alike, only takes noise)."""
    chosen = entropy[mask.bool()]
    if chosen.numel() == 0:
        return torch.zeros_like(mask, dtype=entropy.dtype)
    threshold = torch.quantile(chosen.float(), 1.0 - float(frac))
    return ((entropy >= threshold) & mask.bool()).to(entropy.dtype)


def entropy_from_logits(logits: Tensor, mask: Tensor, agg: str = "token-mean") -> Tensor:
    """Aggregated policy entropy over response tokens, for logging and the entropy bonus
    (loss -= entropy_coef * entropy). ``logits`` is [B, T, V], ``mask`` [B, T]."""
    if logits.shape[:-1] != mask.shape:
        raise ValueError(
            f"logits must be [B, T, V] matching mask [B, T]; "
            f"got {tuple(logits.shape)} and {tuple(mask.shape)}"
        )
    return aggregate_loss(token_entropy(logits), mask, agg)


def logprob_gap(behaviour: Tensor, sampler: Tensor, mask: Tensor) -> tuple[float, float, int]:
    """(sum, max, count) over the response tokens of |behaviour - sampler|: how far the trainer's log-probs of
    the sampled tokens are from the rollout engine's (precision, kernels, KV cache, top-p truncation)."""
    gap = (behaviour - sampler).abs() * mask
    n = int(mask.sum())
    return float(gap.sum()), float(gap.max()) if n else 0.0, n


def tis_weights(behaviour: Tensor, sampler: Tensor, mask: Tensor, cap: float) -> Tensor:
    """Truncated importance sampling (Yao et al. 2025, "off-policy RL from the sampler/trainer mismatch"): the
    tokens were sampled by the rollout engine, so each token's policy gradient is weighted by
    min(pi_trainer / pi_sampler, cap), computed from the behaviour log-probs and detached; 1 off the response."""
    w = torch.exp((behaviour - sampler).detach()).clamp(max=float(cap))
    return torch.where(mask > 0, w, torch.ones_like(w))
