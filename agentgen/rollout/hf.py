"""Batched generation with Hugging Face ``generate`` (``rollout=hf``): the policy's own weights, so there
is nothing to sync after an update.

Two things keep the rollouts exactly what the trainer scores:
- sampling reads agentgen's config only: the model's own ``generation_config`` (Qwen2.5-Instruct ships
  ``repetition_penalty=1.05``, ``top_k=20``, ``top_p=0.8``) is swapped for a clean one during ``generate``, so
  the tokens come from softmax(logits / temperature) with agentgen's top-p / top-k and nothing else;
- a response holds only sampled tokens: when a row stops on a multi-token stop string while others go on, HF
  pads the finished row (with the eos token, for tokenizers whose pad is eos); the row is cut right after its
  stop string, so no padding is trained on as if sampled.

``generate_with_logprobs`` also returns each sampled token's log-probability under softmax(logits / temperature),
from the logits ``generate`` sampled from (with its KV cache): the trainer compares them with its own scoring
pass (``rollout/logprob_gap``). With top-p or top-k on, the sampler drew from a truncated distribution; these
log-probs are the untruncated ones, as the trainer computes them.

``generation_timeout`` (``rollout.generation_timeout``) bounds one call: generation runs in this process and
cannot be killed, so ``generate``'s own ``max_time`` stops it; a row the time limit cut (neither ended nor at
``max_new_tokens``) comes back as None, and ``last_abort_reason`` says why (its episode aborts).
"""

from __future__ import annotations

import contextlib
import time

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList


class HFGenerator:
    """Generates responses for token-id prompts with the training model itself."""

    def __init__(self, model, tokenizer, batch_size: int = 64, stop_strings: tuple[str, ...] = ("</action>",),
                 generation_timeout: float | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.generation_timeout = float(generation_timeout) if generation_timeout else None
        self.last_abort_reason: str | None = None
        self.num_aborted = 0  # rows cut by the time limit, over the generator's life
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

    def generate(self, prompts: list[list[int]], max_new_tokens: int, temperature: float, top_p: float = 1.0,
                 top_k: int = 0) -> list[list[int] | None]:
        """The generated token ids for each prompt (end-of-turn token included when emitted); None for a row
        cut by ``generation_timeout``."""
        return self.generate_with_logprobs(prompts, max_new_tokens, temperature, top_p, top_k)[0]

    @torch.no_grad()
    def generate_with_logprobs(self, prompts: list[list[int]], max_new_tokens: int, temperature: float,
                               top_p: float = 1.0, top_k: int = 0
                               ) -> tuple[list[list[int] | None], list[list[float] | None]]:
        """(token ids, their log-probabilities) per prompt, None for a row cut by the time limit; see the module
        docstring."""
        out: list[list[int] | None] = [[] for _ in prompts]
        logprobs: list[list[float] | None] = [[] for _ in prompts]
        deadline = time.monotonic() + self.generation_timeout if self.generation_timeout else None
        self.last_abort_reason = None
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths pad less
        was_training = self.model.training
        self.model.eval()
        pad = self.tokenizer.pad_token_id
        device = next(self.model.parameters()).device
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            left = deadline - time.monotonic() if deadline is not None else None
            if left is not None and left <= 0:  # the call's time is up before this batch: not generated at all
                self._aborted(out, logprobs, idx)
                continue
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # left padding
                ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[row, width - len(prompts[i]):] = 1
            kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=self.eos_ids, pad_token_id=pad)
            if left is not None:
                kwargs["max_time"] = left  # MaxTimeCriteria: stops every row once the call's time is up
            if temperature > 0:
                kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=int(top_k or 0))  # 0: off
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if self.stop_strings:
                kwargs.update(stop_strings=self.stop_strings, tokenizer=self.tokenizer)
            recorder = SampledLogprobs(temperature)
            with clean_generation_config(self.model):
                gen = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                          logits_processor=LogitsProcessorList([recorder]), **kwargs)
            gen = gen[:, width:]
            lps = recorder.finish(gen).tolist()
            gen = gen.tolist()
            cut = []  # rows the time limit stopped: generation ended early while they had not
            for row, i in enumerate(idx):
                out[i] = self.sampled_part(gen[row])
                logprobs[i] = lps[row][:len(out[i])]
                if left is not None and len(gen[row]) < max_new_tokens and not self.ended(out[i]):
                    cut.append(i)
            self._aborted(out, logprobs, cut)
        if was_training:
            self.model.train()
        return out, logprobs

    def _aborted(self, out: list, logprobs: list, rows: list[int]) -> None:
        if not rows:
            return
        for i in rows:
            out[i] = logprobs[i] = None
        self.num_aborted += len(rows)
        self.last_abort_reason = (f"the generation ran past rollout.generation_timeout={self.generation_timeout:g} s "
                                  "(stopped by generate's max_time)")

    def ended(self, sampled: list[int]) -> bool:
        """Whether a row's sampled part ends its answer: an end token or a stop string."""
        if sampled and sampled[-1] in self.eos_ids:
            return True
        text = self.tokenizer.decode(sampled, skip_special_tokens=False) if self.stop_strings else ""
        return any(s in text for s in self.stop_strings)

    def sampled_part(self, seq: list[int]) -> list[int]:
        """The tokens ``generate`` sampled for one row: up to and including its first end token, or up to the end
        of its first stop string, whichever comes first (what follows is padding)."""
        cut = next((j + 1 for j, t in enumerate(seq) if t in self.eos_ids), len(seq))
        if self.stop_strings:
            text = self.tokenizer.decode(seq[:cut], skip_special_tokens=False)
            if any(s in text for s in self.stop_strings):
                lo, hi = 1, cut  # the shortest prefix whose text holds a stop string (prefix texts only grow)
                while lo < hi:
                    mid = (lo + hi) // 2
                    prefix = self.tokenizer.decode(seq[:mid], skip_special_tokens=False)
                    if any(s in prefix for s in self.stop_strings):
                        hi = mid
                    else:
                        lo = mid + 1
                cut = lo
        return seq[:cut]

    def sync_weights(self) -> None:
        """Nothing to do: generation uses the training model's live weights."""


class SampledLogprobs(LogitsProcessor):
    """Notes log_softmax(logits / temperature) at each step and, one step later (when the sampled token is the
    last of ``input_ids``), that token's entry; ``finish`` adds the last step's. Custom processors run before
    HF's warpers, so the scores seen here are the model's logits (no processor of the clean generation config
    changes them). Greedy decoding (temperature 0) is scored at temperature 1."""

    def __init__(self, temperature: float):
        self.temperature = float(temperature) if temperature and temperature > 0 else 1.0
        self.prev: torch.Tensor | None = None
        self.rows: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prev is not None:
            self.rows.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
        self.prev = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def finish(self, generated: torch.Tensor) -> torch.Tensor:
        """[B, T] log-probs of the ``generated`` tokens (the rows past a row's end are padding)."""
        if self.prev is not None and len(self.rows) < generated.shape[1]:
            self.rows.append(self.prev.gather(1, generated[:, len(self.rows)].unsqueeze(1).to(self.prev.device))
                             .squeeze(1))
        if not self.rows:
            return torch.zeros(generated.shape, dtype=torch.float32)
        return torch.stack(self.rows, dim=1).cpu()


@contextlib.contextmanager
def clean_generation_config(model):
    """Run ``generate`` under a generation config holding only the model's special token ids: no sampling
    defaults from the model's files (repetition penalty, top-k, top-p, temperature) can reach the rollouts."""
    saved = model.generation_config
    model.generation_config = GenerationConfig(bos_token_id=saved.bos_token_id, eos_token_id=saved.eos_token_id,
                                               pad_token_id=saved.pad_token_id, decoder_start_token_id=None)
    try:
        yield
    finally:
        model.generation_config = saved
