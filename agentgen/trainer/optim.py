"""Optimiser and learning-rate schedule (transformers' schedulers: cosine / linear / constant with warm-up)."""

from __future__ import annotations

import torch
from transformers import get_scheduler


def make_optimizer(model, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999))


def make_scheduler(optimizer, name: str, total_steps: int, warmup_steps: int):
    kind = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[name]
    return get_scheduler(kind, optimizer, num_warmup_steps=warmup_steps, num_training_steps=max(total_steps, 1))
