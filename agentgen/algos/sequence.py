"""Sequence-level layout shared by PPO and REINFORCE++: an episode's steps packed into one row.

- credit ``turn``: one time unit per step, r_k = the step reward (KL already folded in by the trainer with
  ``kl_in: reward``), V_k = the value of the state step k acted in;
- credit ``token``: one time unit per response token, the step reward on the step's last token, the KL
  penalty on every token, per-token values; the row runs across step boundaries (the bootstrap of a step's
  last token is the value of the next step's first token), the episode's end is terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from agentgen.algos.base import BadValue, StepBatch

CREDIT_LEVELS = ("turn", "token")


@dataclass
class Rows:
    """[E, width] rewards (and values), the mask, and how to cut a row back into steps."""

    rewards: Tensor
    mask: Tensor
    values: Tensor | None
    lengths: list[list[int]]
    as_float: bool  # turn credit: one float per step; token credit: one tensor per step


def check_credit(cfg: Any, bad: BadValue) -> None:
    """``credit`` of a sequence-level algorithm (PPO, REINFORCE++) is one of CREDIT_LEVELS."""
    if cfg.credit not in CREDIT_LEVELS:
        raise bad("credit", ", ".join(CREDIT_LEVELS))


def _pack(per_episode: Sequence[Sequence[Tensor]], width: int) -> tuple[Tensor, Tensor]:
    """Concatenate each episode's per-step 1-D tensors into one row, right-padded: ([E, width], mask)."""
    rows = torch.zeros(len(per_episode), width)
    mask = torch.zeros(len(per_episode), width)
    for e, steps in enumerate(per_episode):
        flat = torch.cat([s.reshape(-1).float() for s in steps]) if steps else torch.zeros(0)
        rows[e, : flat.numel()] = flat
        mask[e, : flat.numel()] = 1.0
    return rows, mask


def unpack(rows: Tensor, layout: Rows) -> list[list[Any]]:
    out = []
    for e, lens in enumerate(layout.lengths):
        chunks, start = [], 0
        for n in lens:
            chunk = rows[e, start : start + n]
            chunks.append(float(chunk[0]) if layout.as_float else chunk.clone())
            start += n
        out.append(chunks)
    return out


def pack_rows(batch: StepBatch, credit: str, with_values: bool) -> Rows:
    """The batch as rows over turns or tokens (see the module docstring)."""
    if credit not in CREDIT_LEVELS:
        raise ValueError(f"algo.credit={credit!r} is invalid; valid values: {', '.join(CREDIT_LEVELS)}")
    if credit == "turn":
        lengths = [[1] * len(r) for r in batch.rewards]
        rewards = [[torch.tensor([r]) for r in ep] for ep in batch.rewards]
        vals = [[torch.tensor([float(v)]) for v in ep] for ep in batch.values] if with_values else None
    else:
        if batch.response_lengths is None:
            raise ValueError("credit: token needs response_lengths (response tokens of every step)")
        lengths = [list(map(int, ep)) for ep in batch.response_lengths]
        if any(n < 1 for ep in lengths for n in ep):
            raise ValueError("every step needs at least one response token for token-level credit")
        rewards = []
        for ep_r, ep_len in zip(batch.rewards, lengths):
            row = []
            for r, n in zip(ep_r, ep_len):
                t = torch.zeros(n)
                t[-1] = r  # the step's reward arrives with its last token (its action)
                row.append(t)
            rewards.append(row)
        vals = [[torch.as_tensor(v).float() for v in ep] for ep in batch.values] if with_values else None
    width = max(sum(lens) for lens in lengths)
    reward_rows, mask = _pack(rewards, width)
    if credit == "token" and batch.kl_coef and batch.token_kl is not None:
        kl_rows, _ = _pack(batch.token_kl, width)
        reward_rows = reward_rows - batch.kl_coef * kl_rows * mask
    value_rows = _pack(vals, width)[0] if vals is not None else None
    return Rows(reward_rows, mask, value_rows, lengths, as_float=credit == "turn")
