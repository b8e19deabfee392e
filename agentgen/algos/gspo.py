"""GSPO, Group Sequence Policy Optimization (Zheng et al. 2025, arXiv 2507.18071).

GRPO's advantage is per response but its importance ratio is per token, so one response's tokens are clipped
(and weighted) unevenly, which is noisy for long answers and unstable for mixture-of-experts models. GSPO uses
one ratio per response, the geometric mean of its token ratios, and clips it per sequence with small ranges:

    s_i     = exp( 1/|y_i| * sum_t (log pi(y_i,t) - log pi_old(y_i,t)) )
    L_i     = max(-A_i * s_i, -A_i * clip(s_i, 1 - clip_low, 1 + clip_high))    (paper: 3e-4, 4e-4)
    loss    = mean_i L_i                                                          (seq-mean-token-mean)

The paper's objective has no KL term: ``kl_coef`` defaults to 0 (GRPO's 0.01 is the study's choice for GRPO, not
GSPO's); set it to add GRPO's KL to the reference. ``loss_agg`` is the one aggregation the objective defines.

Written token-wise (the paper's GSPO-token: s_i,t = sg[s_i] * pi(y_i,t) / sg[pi(y_i,t)]), whose value is s_i
and whose gradient is s_i * grad log pi(y_i,t), so the mean over tokens is exactly grad s_i. Advantages are
GRPO's. With one on-policy mini-batch per step s_i = 1 and GSPO equals GRPO with sequence-mean aggregation;
the ratio matters from the second mini-batch of a step on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from agentgen.algos.base import BadValue
from agentgen.algos.grpo import GRPO, GRPOConfig
from agentgen.algos.losses import aggregate_loss

LOG_RATIO_MAX = 10.0  # as verl: exp(10) bounds a sequence ratio that would overflow


@dataclass
class GSPOConfig(GRPOConfig):
    name: str = "gspo"
    clip_low: float = 3e-4  # the sequence ratio's lower clip: s >= 1 - clip_low (paper: 3e-4)
    clip_high: float = 4e-4  # upper clip: s <= 1 + clip_high (paper: 4e-4)
    loss_agg: str = "seq-mean-token-mean"  # each response counts once (GSPO's objective; the only one it defines)
    kl_coef: float = 0.0  # the paper's objective has no KL term (> 0 adds GRPO's KL to the reference)


LOSS_AGGREGATIONS = ("seq-mean-token-mean",)  # GSPO's objective: a mean over responses of per-token means


def gspo_policy_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor,
                     clip_low: float = 3e-4, clip_high: float = 4e-4,
                     agg: str = "seq-mean-token-mean") -> tuple[Tensor, dict[str, float]]:
    """The clipped sequence-ratio surrogate (module docstring). ``advantages``: [B], or [B, T] applied token by
    token: GSPO's advantage is one per response, but the trainer folds per-token factors into it (TIS weights,
    ``algo.tis_cap``), and as in verl each token's weight scales its own term; a row's mean would give the same
    loss value but not the same gradient. A weight is positive, so the clip side is the row's advantage's."""
    mask_f = mask.to(logprobs.dtype)
    adv = advantages.to(logprobs.dtype)
    adv = adv.unsqueeze(1) if adv.dim() == 1 else adv
    lengths = mask_f.sum(-1).clamp(min=1)
    seq_log_ratio = ((logprobs - old_logprobs) * mask_f).sum(-1) / lengths  # [B]
    log_ratio = (logprobs - logprobs.detach() + seq_log_ratio.detach().unsqueeze(1)).clamp(max=LOG_RATIO_MAX)
    ratio = torch.exp(log_ratio)  # value s_i on every token of row i, gradient s_i * grad log pi
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = aggregate_loss(torch.maximum(unclipped, clipped), mask_f, agg)
    with torch.no_grad():
        seq_ratio = torch.exp(seq_log_ratio.clamp(max=LOG_RATIO_MAX))
        rows = mask_f.sum(-1) > 0
        a = (adv * mask_f).sum(-1) if adv.shape[1] > 1 else adv.squeeze(1)  # the sign of the row's advantage
        clipped_rows = ((seq_ratio > 1 + clip_high) & (a > 0)) | ((seq_ratio < 1 - clip_low) & (a < 0))
        metrics = {
            "clipfrac": float(clipped_rows[rows].float().mean()) if rows.any() else 0.0,  # share of sequences
            "ratio_mean": float(seq_ratio[rows].mean()) if rows.any() else 1.0,
            "ratio_max": float(seq_ratio[rows].max()) if rows.any() else 1.0,
            "approx_kl": float(-seq_log_ratio[rows].mean()) if rows.any() else 0.0,
        }
    return loss, metrics


class GSPO(GRPO):
    """GRPO's advantages (inherited); only the loss differs."""

    name = "gspo"
    config = GSPOConfig
    summary = "GRPO advantages with one clipped importance ratio per response (sequence level)"

    def check(self, cfg: GSPOConfig, bad: BadValue) -> None:
        if cfg.loss_agg not in LOSS_AGGREGATIONS:  # token-mean would weigh a response by its length
            raise bad("loss_agg", ", ".join(LOSS_AGGREGATIONS) + " (GSPO's objective counts each response once; "
                      "other aggregations are not GSPO)")

    def policy_loss(self, logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor,
                    algo: Mapping[str, Any], agg: str) -> tuple[Tensor, dict[str, float]]:
        return gspo_policy_loss(logprobs, old_logprobs, advantages, mask, float(algo["clip_low"]),
                                float(algo["clip_high"]), agg)


ALGORITHM = GSPO()
