"""Batched generation with Hugging Face ``generate`` (``rollout=hf``): the policy's own weights, so there
is nothing to sync after an update."""

from __future__ import annotations

import torch


class HFGenerator:
    """Generates responses for token-id prompts with the training model itself."""

    def __init__(self, model, tokenizer, batch_size: int = 64, stop_strings: tuple[str, ...] = ("</action>",)):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        eos = model.generation_config.eos_token_id
        eos = list(eos) if isinstance(eos, (list, tuple)) else [eos] if eos is not None else []
        for s in stop_strings:  # stop right after the action when the stop string is one token
            ids = tokenizer.encode(s, add_special_tokens=False)
            if len(ids) == 1 and ids[0] not in eos:
                eos.append(ids[0])
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
            eos.append(tokenizer.eos_token_id)
        self.eos_ids = eos
        self.stop_strings = [s for s in stop_strings if len(tokenizer.encode(s, add_special_tokens=False)) > 1]

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], max_new_tokens: int, temperature: float, top_p: float = 1.0,
                 top_k: int = 0) -> list[list[int]]:
        """Return the generated token ids for each prompt (end-of-turn token included when emitted)."""
        out: list[list[int]] = [[] for _ in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths pad less
        was_training = self.model.training
        self.model.eval()
        pad = self.tokenizer.pad_token_id
        device = next(self.model.parameters()).device
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # left padding
                ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[row, width - len(prompts[i]):] = 1
            kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=self.eos_ids, pad_token_id=pad)
            if temperature > 0:
                kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k or None)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if self.stop_strings:
                kwargs.update(stop_strings=self.stop_strings, tokenizer=self.tokenizer)
            gen = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
            gen = gen[:, width:].tolist()
            for row, i in enumerate(idx):
                seq = gen[row]
                cut = next((j + 1 for j, t in enumerate(seq) if t in self.eos_ids), len(seq))
                out[i] = seq[:cut]
        if was_training:
            self.model.train()
        return out

    def sync_weights(self) -> None:
        """Nothing to do: generation uses the training model's live weights."""
