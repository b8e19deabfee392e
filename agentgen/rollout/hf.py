"""Batched generation with the policy's own Hugging Face model (``rollout=hf``): nothing to sync after an update.

Two decoders (``rollout.params.decode``):
- ``loop`` (the default): agentgen's own KV-cache loop over the model's forward. It does what ``generate`` does for
  plain sampling and three things it does not: the head all of a batch's prompts share (chat template, the env's
  rules) is prefilled once and its cache copied to every row, instead of once per row; a finished row leaves the
  batch at once, so the steps after it cost what the rows still running cost; and none of ``generate``'s
  per-step machinery (processor lists, stopping-criteria objects, model-kwargs bookkeeping) runs. On the tiny
  model's default run prefill is about 60% of generation (a 95-token prompt for a 30-token answer), so the
  shared head is most of the gain (``bench/bench_generation.py`` measures both decoders side by side);
- ``generate``: transformers' ``generate``, the reference the loop is tested against.

Two things keep the rollouts exactly what the trainer scores:
- sampling reads agentgen's config only: the model's own ``generation_config`` (Qwen2.5-Instruct ships
  ``repetition_penalty=1.05``, ``top_k=20``, ``top_p=0.8``) is swapped for a clean one during ``generate``, so
  the tokens come from softmax(logits / temperature) with agentgen's top-p / top-k and nothing else;
- a response holds only sampled tokens: when a row stops on a multi-token stop string while others go on, HF
  pads the finished row (with the eos token, for tokenizers whose pad is eos); the row is cut right after its
  stop string, so no padding is trained on as if sampled.

``generate_with_logprobs`` also returns each sampled token's log-probability under the distribution it was drawn
from, the behaviour policy: softmax(logits / temperature), truncated and renormalised when top-p or top-k is on,
from the logits the decoder sampled from (with its KV cache). vLLM records the same quantity
(``logprobs_mode=processed_logprobs``), so ``rollout/logprob_gap`` and TIS weights mean one thing whatever the
engine: TIS (Yao et al. 2025, verl's rollout correction) divides by the probability the token was actually
sampled with. Without truncation it equals the trainer's own scoring; with it, the gap includes the truncation
(and the trainer does not take these as its old log-probs).

Logits holding NaN or +inf (diverged or overflowed weights) cannot be sampled: the row is abandoned as a timed-out
one is (None, counted in ``num_nonfinite``, ``last_abort_reason`` says why) instead of drawing the last token id.

Paired evaluation passes ``seeds``, one per prompt: the loop then draws each row's uniforms from a generator of
the row's own seed, so a row's tokens depend on its prompt and seed only, not on the rows beside it or the global
RNG. ``generate`` draws all rows from torch's one generator and refuses seeds.

``generation_timeout`` (``rollout.generation_timeout``) bounds one call: generation runs in this process and
cannot be killed, so the loop checks the deadline after every token (``generate``: its own ``max_time``); a row
the time limit cut (neither ended nor at ``max_new_tokens``) comes back as None, and ``last_abort_reason`` says
why (its episode aborts).
"""

from __future__ import annotations

import contextlib
import random
import time

import torch
from transformers import DynamicCache, GenerationConfig, LogitsProcessor, LogitsProcessorList

from agentgen.errors import ConfigError
from agentgen.options import SEEDS_NEED_LOOP, HFOptions


class HFGenerator:
    """Generates responses for token-id prompts with the training model itself."""

    def __init__(self, model, tokenizer, batch_size: int = 64, stop_strings: tuple[str, ...] = ("</action>",),
                 generation_timeout: float | None = None, decode: str = "loop", share_prefix: bool = True):
        HFOptions(decode=decode, share_prefix=share_prefix).check()
        if decode == "loop":
            check_loop_cache(model)
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.decode = decode
        self.share_prefix = share_prefix  # loop: prefill the prompts' common head once (MIN_SHARED_PREFIX tokens)
        self.generation_timeout = float(generation_timeout) if generation_timeout else None
        self.last_abort_reason: str | None = None
        self.weight_version = 0  # the RL weight version of ``model`` (Turn.weight_version; set by the RL loop)
        self.num_aborted = 0  # rows abandoned (time limit, non-finite logits), over the generator's life
        self.num_nonfinite = 0  # of which rows whose logits held NaN or +inf
        eos = model.generation_config.eos_token_id
        eos = list(eos) if isinstance(eos, (list, tuple)) else [eos] if eos is not None else []
        for s in stop_strings:  # a one-token stop string is also an end token (the fast path)
            ids = tokenizer.encode(s, add_special_tokens=False)
            if len(ids) == 1 and ids[0] not in eos:
                eos.append(ids[0])
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
            eos.append(tokenizer.eos_token_id)
        self.eos_ids = eos
        # every stop string is also matched on the text: a model may spell a one-token stop string in pieces
        # ("</", "action", ">"), and only the text shows it ended
        self.stop_strings = list(stop_strings)
        self._stop_mark: torch.Tensor | None = None  # loop: tokens whose text may end a stop string (built lazily)

    def generate(self, prompts: list[list[int]], max_new_tokens: int, temperature: float, top_p: float = 1.0,
                 top_k: int = 0, seeds: list[int] | None = None) -> list[list[int] | None]:
        """The generated token ids for each prompt (end-of-turn token included when emitted); None for a row
        cut by ``generation_timeout``."""
        return self.generate_with_logprobs(prompts, max_new_tokens, temperature, top_p, top_k, seeds)[0]

    @torch.no_grad()
    def generate_with_logprobs(self, prompts: list[list[int]], max_new_tokens: int, temperature: float,
                               top_p: float = 1.0, top_k: int = 0, seeds: list[int] | None = None
                               ) -> tuple[list[list[int] | None], list[list[float] | None]]:
        """(token ids, their log-probabilities) per prompt, None for a row cut by the time limit; see the module
        docstring. ``seeds`` (one per prompt; ``loop`` only): each row draws its uniforms from a generator of its
        own seed, so what it samples depends on its prompt and seed alone, not on the batch it shares or the
        global RNG (paired evaluation); None: torch's global RNG."""
        if seeds is not None and self.decode != "loop" and temperature and temperature > 0:
            raise ValueError(SEEDS_NEED_LOOP)
        out: list[list[int] | None] = [[] for _ in prompts]
        logprobs: list[list[float] | None] = [[] for _ in prompts]
        deadline = time.monotonic() + self.generation_timeout if self.generation_timeout else None
        self.last_abort_reason = None
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths pad less
        was_training = self.model.training
        self.model.eval()
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            left = deadline - time.monotonic() if deadline is not None else None
            if left is not None and left <= 0:  # the call's time is up before this batch: not generated at all
                self._aborted(out, logprobs, idx, self._timeout_reason())
                continue
            batch = [prompts[i] for i in idx]
            if self.decode == "loop":
                gen, lps, broken = self._decode_loop(batch, max_new_tokens, temperature, top_p, top_k, deadline,
                                                     None if seeds is None else [seeds[i] for i in idx])
            else:
                gen, lps, broken = self._decode_generate(batch, max_new_tokens, temperature, top_p, top_k, left)
            cut = []  # rows the time limit stopped: generation ended early while they had not
            for row, i in enumerate(idx):
                out[i] = self.sampled_part(gen[row])
                logprobs[i] = lps[row][:len(out[i])]
                if row not in broken and left is not None and len(gen[row]) < max_new_tokens \
                        and not self.ended(out[i]):
                    cut.append(i)
            self._aborted(out, logprobs, cut, self._timeout_reason())
            self._aborted(out, logprobs, [idx[row] for row in sorted(broken)], NONFINITE_REASON)
        if was_training:
            self.model.train()
        return out, logprobs

    def _decode_generate(self, batch: list[list[int]], max_new_tokens: int, temperature: float, top_p: float,
                         top_k: int, left: float | None) -> tuple[list[list[int]], list[list[float]], set[int]]:
        """One batch through transformers' ``generate`` (left-padded; finished rows are padded until all end), and
        the rows whose logits were not finite."""
        pad = self.tokenizer.pad_token_id
        device = next(self.model.parameters()).device
        ids, mask = left_padded(batch, 0, pad)
        width = ids.shape[1]
        kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=self.eos_ids, pad_token_id=pad)
        if left is not None:
            kwargs["max_time"] = left  # MaxTimeCriteria: stops every row once the call's time is up
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=int(top_k or 0))  # 0: off
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.stop_strings:
            kwargs.update(stop_strings=self.stop_strings, tokenizer=self.tokenizer)
        recorder = SampledLogprobs(temperature, top_p, top_k)
        with clean_generation_config(self.model):
            gen = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                      logits_processor=LogitsProcessorList([recorder]), **kwargs)
        gen = gen[:, width:]
        return gen.tolist(), recorder.finish(gen).tolist(), recorder.broken

    def _decode_loop(self, batch: list[list[int]], max_new_tokens: int, temperature: float, top_p: float,
                     top_k: int, deadline: float | None, seeds: list[int] | None = None
                     ) -> tuple[list[list[int]], list[list[float]], set[int]]:
        """One batch through agentgen's KV-cache loop (see the module docstring). Each row's tokens end with its
        end token or stop string, at ``max_new_tokens``, or where the deadline stopped the loop. With ``seeds``,
        row r's t-th token takes the t-th number of ``random.Random(seeds[r])`` as its uniform. Also returns the
        rows whose logits were not finite (they leave the batch at once; the caller aborts them).

        Layout: ``[shared head][left padding][the row's own suffix]``, positions counted over the real tokens
        only (as ``generate`` counts them under left padding), so every row sees what it would alone."""
        model = self.model
        device = next(model.parameters()).device
        n = len(batch)
        head = shared_prefix_length(batch) if self.share_prefix and n > 1 else 0
        if head < MIN_SHARED_PREFIX:
            head = 0
        ids, mask = left_padded(batch, head, self.tokenizer.pad_token_id)
        ids, mask = ids.to(device), mask.to(device)
        cache = DynamicCache(config=model.config)
        if head:  # the common head once, then its keys and values copied to every row
            model(input_ids=torch.tensor([batch[0][:head]], device=device), past_key_values=cache, use_cache=True,
                  logits_to_keep=1)
            cache.batch_repeat_interleave(n)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions[:, head:], past_key_values=cache,
                       use_cache=True, logits_to_keep=1).logits[:, -1]
        next_pos = positions[:, -1:] + 1
        scale = float(temperature) if temperature and temperature > 0 else 1.0
        eos = torch.tensor(self.eos_ids or [-1], device=device)
        stop_mark = self._stop_marks(device)
        out: list[list[int]] = [[] for _ in batch]
        lps: list[list[float]] = [[] for _ in batch]
        rows = list(range(n))  # the batch rows still running, in the order of the cache's rows
        rngs = [random.Random(s) for s in seeds] if seeds is not None else None  # per row, by batch row
        broken: set[int] = set()
        for step in range(max_new_tokens):
            scores = logits.float() / scale
            bad = nonfinite_rows(scores)
            if bool(bad.any()):  # NaN / +inf logits: the row ends here (aborted); a finite stand-in keeps the step
                scores = scores.masked_fill(bad.unsqueeze(1), 0.0)
                broken.update(rows[j] for j in bad.nonzero().flatten().tolist())
            if temperature and temperature > 0:
                truncated = top_k or (top_p is not None and top_p < 1.0)
                # the behaviour log-prob: of the distribution the token is drawn from (truncated when it is)
                logp = torch.log_softmax(truncate(scores, top_p, top_k) if truncated else scores, dim=-1)
                u = None if rngs is None else torch.tensor([[rngs[r].random()] for r in rows], dtype=torch.float64,
                                                           device=device)
                token = sample(logp.exp(), u)
            else:
                logp = torch.log_softmax(scores, dim=-1)
                token = scores.argmax(dim=-1, keepdim=True)
            flat = token.squeeze(1)
            done = torch.isin(flat, eos) | bad
            tokens, token_lps = flat.tolist(), logp.gather(1, token).squeeze(1).tolist()
            for j, r in enumerate(rows):
                out[r].append(tokens[j])
                lps[r].append(token_lps[j])
            if stop_mark is not None:  # a stop string (in pieces) can only end on a token holding its last char
                for j in stop_mark[flat].nonzero().flatten().tolist():
                    if not done[j] and self._ends_on_stop_string(out[rows[j]]):
                        done[j] = True
            if step == max_new_tokens - 1 or (deadline is not None and time.monotonic() >= deadline):
                break
            if bool(done.any()):
                keep = (~done).nonzero().flatten()
                if keep.numel() == 0:
                    break
                rows = [rows[j] for j in keep.tolist()]
                cache.batch_select_indices(keep)
                mask, next_pos, token = mask[keep], next_pos[keep], token[keep]
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
            logits = model(input_ids=token, attention_mask=mask, position_ids=next_pos, past_key_values=cache,
                           use_cache=True).logits[:, -1]
            next_pos = next_pos + 1
        return out, lps, broken

    def _stop_marks(self, device) -> torch.Tensor | None:
        """[vocab] bool: the tokens whose text holds the last character of a stop string."""
        if not self.stop_strings:
            return None
        if self._stop_mark is None or self._stop_mark.device != device:
            last = {s[-1] for s in self.stop_strings}
            vocab = max(len(self.tokenizer), int(self.model.get_output_embeddings().weight.shape[0]))
            texts = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
            mark = torch.zeros(vocab, dtype=torch.bool)
            for i, t in enumerate(texts):
                text = self.tokenizer.convert_tokens_to_string([t]) if t is not None else ""
                mark[i] = any(c in text for c in last)
            self._stop_mark = mark.to(device)
        return self._stop_mark

    def _ends_on_stop_string(self, sampled: list[int]) -> bool:
        """Whether a stop string ends within the row's last tokens (one token a character at least)."""
        tail = max(len(s) for s in self.stop_strings)
        text = self.tokenizer.decode(sampled[-tail:], skip_special_tokens=False)
        return any(s in text for s in self.stop_strings)

    def _timeout_reason(self) -> str:
        how = "by generate's max_time" if self.decode == "generate" else "by the decode loop at the deadline"
        return (f"the generation ran past rollout.generation_timeout={self.generation_timeout or 0:g} s "
                f"(stopped {how})")

    def _aborted(self, out: list, logprobs: list, rows: list[int], reason: str) -> None:
        if not rows:
            return
        for i in rows:
            out[i] = logprobs[i] = None
        self.num_aborted += len(rows)
        if reason == NONFINITE_REASON:
            self.num_nonfinite += len(rows)
        self.last_abort_reason = reason

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


MIN_SHARED_PREFIX = 4  # a shorter common head is not worth its own forward pass
NONFINITE_REASON = ("the model's logits were not finite (NaN or +inf; all -inf) while sampling this answer: the "
                    "weights or activations have diverged or overflowed (fp16?)")


LOOP_LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention")  # per-token KV: rows copy, drop


def check_loop_cache(model) -> None:
    """Refuse a model whose cache the loop cannot handle, before anything is generated: the shared-head copy
    (``batch_repeat_interleave``) and finished-row removal (``batch_select_indices``) are written for per-token
    key/value layers; hybrid models' linear-attention, convolution or recurrent layers hold a state per row that
    they do not copy or select (transformers' own layer types, from ``get_layer_types_and_kwargs``)."""
    from transformers.cache_utils import get_layer_types_and_kwargs

    config = model.config.get_text_config(decoder=True)
    types, _ = get_layer_types_and_kwargs(config)
    other = sorted(set(types) - set(LOOP_LAYER_TYPES))
    if other:
        raise ConfigError(
            f"rollout.params.decode=loop cannot decode model type {config.model_type!r}: its cache has "
            f"{', '.join(other)} layers (a state per row, not per-token keys and values), which the loop's "
            "shared-head copy and finished-row removal do not handle. Use rollout.params.decode=generate "
            "(transformers' generate handles them) or rollout=vllm; the loop supports "
            f"{', '.join(LOOP_LAYER_TYPES)} layers.")


def nonfinite_rows(scores: torch.Tensor) -> torch.Tensor:
    """[B] bool: rows of [B, V] logits no distribution can be sampled from (a NaN or +inf, or every entry -inf;
    single -inf entries are masked tokens, fine)."""
    return torch.isnan(scores).any(-1) | torch.isposinf(scores).any(-1) | torch.isneginf(scores).all(-1)



def left_padded(batch: list[list[int]], head: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids [n, width], attention mask [n, head + width]) of prompts whose first ``head`` tokens are shared: the
    ids hold each prompt after its head, left-padded to the longest; the mask covers the head too
    (``[head][padding][suffix]``). ``head`` 0 is plain left padding."""
    width = max(len(p) for p in batch) - head
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), head + width), dtype=torch.long)
    mask[:, :head] = 1
    for row, p in enumerate(batch):
        ids[row, width - (len(p) - head):] = torch.tensor(p[head:])
        mask[row, head + width - (len(p) - head):] = 1
    return ids, mask


def shared_prefix_length(prompts: list[list[int]]) -> int:
    """The length of the token prefix all ``prompts`` share, leaving every prompt one token of its own (the
    forward over each row's suffix must give that row's next-token logits)."""
    first, n = prompts[0], min(len(p) for p in prompts) - 1
    k = 0
    while k < n and all(p[k] == first[k] for p in prompts):
        k += 1
    return k


SAMPLE_BLOCK = 256  # tokens per block of the two-level sampler below


def sample(probs: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row of [B, V] probabilities, [B, 1]: inverse-CDF sampling with one uniform number per row
    (``u``, [B, 1] in [0, 1); drawn here when None), in two levels so that every token keeps its own probability.

    A float32 ``cumsum`` over the whole vocabulary cannot do that: past a CDF of 0.5 each step is rounded to about
    6e-8, so with a dominant token and Qwen's 152k vocabulary most tail tokens get a step of exactly 0 (never
    drawn) and their mass lands on a few others; a float64 one costs a few times as much on CPU. Instead: the
    float32 sums of blocks of ``SAMPLE_BLOCK`` tokens (a reduction: no absorption of small entries into a large
    running total, relative error ~1e-7 of each block's own mass), their float64 CDF picks a block, and a float64
    CDF of that block alone picks the token within it, from the same uniform rescaled to the block. Each token's
    probability is then its own to about 1e-6 relative, however small (a block holding less than ~1e-16 of the
    row's mass excepted), a zero-probability token is never drawn, and the work is two reductions and a short
    scan instead of a scan over the vocabulary. ``torch.multinomial`` draws a random number per vocabulary entry,
    which costs several times as much per decode step."""
    b, v = probs.shape
    full, tail = divmod(v, SAMPLE_BLOCK)
    sums = probs[:, :full * SAMPLE_BLOCK].unflatten(-1, (full, SAMPLE_BLOCK)).sum(-1)
    if tail:
        sums = torch.cat([sums, probs[:, full * SAMPLE_BLOCK:].sum(-1, keepdim=True)], dim=1)
    sums = sums.double()
    cdf = sums.cumsum(-1)
    if u is None:
        u = torch.rand((b, 1), device=probs.device, dtype=torch.float64)
    u = u.to(torch.float64) * cdf[:, -1:]
    block = torch.searchsorted(cdf, below(u, cdf[:, -1:]), right=True)  # first block whose CDF passes u
    before = torch.where(block > 0, cdf.gather(1, (block - 1).clamp(min=0)), torch.zeros_like(u))
    ids = block * SAMPLE_BLOCK + torch.arange(SAMPLE_BLOCK, device=probs.device)
    inside = probs.gather(1, ids.clamp(max=v - 1)).masked_fill(ids >= v, 0.0).double().cumsum(-1)
    within = (u - before).clamp(min=0) / sums.gather(1, block) * inside[:, -1:]  # u rescaled to the block
    return ids.gather(1, torch.searchsorted(inside, below(within, inside[:, -1:]), right=True))


def below(u: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """``u`` kept strictly under ``total`` (rounding can reach it): the right-sided search of a CDF whose last
    entry is ``total`` then lands on an entry with a positive step, never past the end."""
    return torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))


def truncate(scores: torch.Tensor, top_p: float, top_k: int) -> torch.Tensor:
    """Top-k, then top-p (nucleus) filtering of [B, V] scores, as transformers' warpers apply them: the tokens
    outside get -inf. top_k 0 and top_p 1 are off."""
    if top_k and 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, int(top_k), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1 - top_p)
        drop[:, -1] = False  # always keep the most likely token
        scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return scores


class SampledLogprobs(LogitsProcessor):
    """Notes the log-softmax of the distribution sampled from at each step (logits / temperature, then
    ``truncate``'s top-k / top-p when sampling with them: what HF's warpers apply next) and, one step later (when
    the sampled token is the last of ``input_ids``), that token's entry; ``finish`` adds the last step's. Custom
    processors run before HF's warpers, so the scores seen here are the model's logits (no processor of the clean
    generation config changes them). Greedy decoding (temperature 0) is scored at temperature 1, untruncated.
    Rows whose logits are not finite are noted in ``broken`` and given finite stand-ins (``multinomial`` would
    raise on them); the caller aborts them."""

    def __init__(self, temperature: float, top_p: float = 1.0, top_k: int = 0):
        sampling = bool(temperature and temperature > 0)
        self.temperature = float(temperature) if sampling else 1.0
        self.top_p, self.top_k = (top_p, top_k) if sampling else (1.0, 0)
        self.prev: torch.Tensor | None = None
        self.rows: list[torch.Tensor] = []
        self.broken: set[int] = set()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prev is not None:
            self.rows.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
        bad = nonfinite_rows(scores)
        if bool(bad.any()):
            self.broken.update(bad.nonzero().flatten().tolist())
            scores = scores.masked_fill(bad.unsqueeze(1), 0.0)
        self.prev = torch.log_softmax(truncate(scores.float() / self.temperature, self.top_p, self.top_k), dim=-1)
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
