"""Token batches for training: a sample is (prompt ids, response ids); the loss only ever sees the
response tokens. Sequences are left-padded so every response ends at the last position, which lets the
model compute logits for the response positions only (``logits_to_keep``), with position ids taken
from the attention mask exactly as ``generate`` does."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Sample:
    prompt_ids: list[int]
    response_ids: list[int]
    advantage: float = 0.0
    extras: dict = field(default_factory=dict)  # old/ref logprobs, values, token rewards, env name ...


@dataclass
class TokenBatch:
    input_ids: torch.Tensor  # [B, L] left-padded
    attention_mask: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [B, L]
    response_mask: torch.Tensor  # [B, R]: 1 on response tokens (right-aligned in the last R positions)
    response_ids: torch.Tensor  # [B, R]

    @property
    def num_tokens(self) -> int:
        return int(self.response_mask.sum())


def collate(samples: list[Sample], pad_id: int) -> TokenBatch:
    lengths = [len(s.prompt_ids) + len(s.response_ids) for s in samples]
    width = max(lengths)
    r_width = max(len(s.response_ids) for s in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(samples), width), dtype=torch.long)
    rmask = torch.zeros((len(samples), r_width), dtype=torch.float32)
    rids = torch.full((len(samples), r_width), pad_id, dtype=torch.long)
    for b, s in enumerate(samples):
        seq = s.prompt_ids + s.response_ids
        ids[b, width - len(seq):] = torch.tensor(seq)
        attn[b, width - len(seq):] = 1
        n = len(s.response_ids)
        if n:
            rmask[b, r_width - n:] = 1.0
            rids[b, r_width - n:] = torch.tensor(s.response_ids)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    return TokenBatch(ids, attn, pos, rmask, rids)


def response_logits(model, batch: TokenBatch, temperature: float = 1.0) -> torch.Tensor:
    """Logits [B, R, V] that predict each response token (temperature-scaled like the sampler's)."""
    device = next(model.parameters()).device
    r = batch.response_ids.shape[1]
    out = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                position_ids=batch.position_ids.to(device), logits_to_keep=r + 1, use_cache=False)
    logits = out.logits[:, :-1, :].float()  # position j predicts token j+1
    if temperature and temperature != 1.0:
        logits = logits / temperature
    return logits


def token_logprobs(logits: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
    """Log-probabilities [B, R] of the response tokens under ``logits``."""
    target = batch.response_ids.to(logits.device)
    return torch.log_softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]
