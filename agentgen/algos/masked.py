"""Masked statistics over token tensors.

Every sequence tensor in the trainer is ``[B, T]`` with a 0/1 ``mask`` that marks the tokens the policy
generated (response tokens). Prompt, padding and environment-observation tokens are 0 and must not enter
any mean, variance or loss; these helpers are the single place that rule is implemented.
"""

from __future__ import annotations

import torch
from torch import Tensor


def masked_sum(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """sum(values * mask) over ``dim`` (all elements when None)."""
    masked = values * mask
    return masked.sum() if dim is None else masked.sum(dim=dim)


def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """sum(values * mask) / sum(mask); 0 where the mask is empty (instead of NaN)."""
    mask = mask.to(values.dtype)
    total = masked_sum(values, mask, dim)
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    return total / count.clamp(min=1.0)


def masked_var(values: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of the masked elements; unbiased (Bessel, n-1) by default as in verl's ``masked_var``."""
    mask = mask.to(values.dtype)
    mean = masked_mean(values, mask)
    sq = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        if n <= 1:
            return torch.zeros((), dtype=values.dtype, device=values.device)
        sq = sq * n / (n - 1)
    return sq


def masked_whiten(values: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """(x - mean) / sqrt(var + eps) with mean and unbiased var over the masked elements only.

    ``shift_mean=False`` keeps the mean (scales only), as PPO implementations offer. Masked-out
    positions are returned as computed (callers multiply by the mask where it matters)."""
    mean = masked_mean(values, mask)
    var = masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened
