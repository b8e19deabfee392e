"""The learned critic of PPO: a value head on a causal language model.

The critic reads the same token sequence as the policy and predicts, at every position, the expected
return from there on. Alignment follows verl: for a sequence ``[prompt | response]`` with R response
tokens, ``values[:, -R-1:-1]`` are the values of the states *before* each response token, so
``response_values(...)[:, 0]`` is V(state after the prompt) -- the turn-level value of a step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ValueHead(nn.Module):
    """hidden state [.., H] -> scalar value. Small init so the first advantages are ~ the returns."""

    def __init__(self, hidden_size: int, init_std: float | None = None):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.linear.weight, std=init_std if init_std is not None else 1.0 / (hidden_size + 1))
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1).float()


class CausalLMCritic(nn.Module):
    """A transformers decoder backbone (``AutoModel``, no LM head) plus a ``ValueHead``."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.value_head = ValueHead(backbone.config.hidden_size)

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> CausalLMCritic:
        """Load the backbone from a local checkpoint (``local_files_only``: nothing downloads at run time)."""
        from transformers import AutoModel

        kwargs.setdefault("local_files_only", True)
        return cls(AutoModel.from_pretrained(path, **kwargs))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Per-position values [B, T] (float32)."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.value_head(hidden)


def response_values(values: Tensor, response_length: int) -> Tensor:
    """Values aligned to the response tokens: position t holds V(state before response token t)."""
    if response_length < 1 or response_length >= values.shape[1]:
        raise ValueError(f"response_length must be in [1, {values.shape[1] - 1}], got {response_length}")
    return values[:, -response_length - 1 : -1]


def state_values(resp_values: Tensor, mask: Tensor) -> Tensor:
    """[B, R] response-aligned values -> [B]: the value at each row's first response token, i.e.
    V(state the step acted in). Rows without response tokens get 0."""
    mask = mask.to(torch.bool)
    first = mask.float().argmax(dim=1)
    vals = resp_values.gather(1, first.unsqueeze(1)).squeeze(1)
    return torch.where(mask.any(dim=1), vals, torch.zeros_like(vals))
