"""rollout=hf's own decode loop (``rollout.params.decode=loop``, the default) against transformers' ``generate``.

The loop prefills the head its batch's prompts share once and copies its cache to every row, and drops a row from
the batch as soon as it ends. Neither may change what a row samples: greedy answers are token for token those of
``generate``, the recorded log-probs are the trainer's, and the top-k / top-p filter is transformers' own."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from agentgen.errors import ConfigError
from agentgen.models.loader import load_policy
from agentgen.preflight import compose_job, validate
from agentgen.rollout.hf import HFGenerator, sample, shared_prefix_length, truncate
from agentgen.trainer.batch import Sample, collate, response_logits, token_logprobs


@pytest.fixture(scope="module")
def tiny():
    """The tiny model with weights drawn wide (std 0.2): a freshly initialised one answers every prompt with one
    token repeated, which would hide rows mixed up or ending at the wrong step."""
    cfg = compose_job(["debug=smoke"])
    model, tok, _ = load_policy(cfg.model)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
    return model.eval(), tok


def chat_prompts(tok, rooms: list[str]) -> list[list[int]]:
    """Prompts that share a long head (the template and the rules) and differ in their rooms and lengths."""
    rules = "Sokoban: push the box X onto the target O. You are P. # wall, _ floor.\nPush the box onto the target.\n"
    return [list(tok.apply_chat_template([{"role": "user", "content": rules + room}], add_generation_prompt=True,
                                         tokenize=True, return_dict=False)) for room in rooms]


ROOMS = ["######\n#P_XO#\n######", "######\n#_PX_#\n#___O#\n######", "#####\n#PXO#\n#####",
         "######\n#O__##\n#_X_P#\n#____#\n######"]


def test_shared_prefix_leaves_every_prompt_a_token_of_its_own():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # identical prompts: the last token is each row's
    assert shared_prefix_length([[7, 1], [8, 1]]) == 0


def test_inverse_cdf_sampling_draws_the_distribution_and_never_a_zero_probability_token():
    torch.manual_seed(0)
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.2, 0.3, 0.0]]).repeat(40_000, 1)
    drawn = sample(probs).flatten()
    assert drawn.shape == (40_000,)
    freq = torch.bincount(drawn, minlength=6).float() / len(drawn)
    assert freq[[0, 2, 5]].sum() == 0  # a zero-probability token is never drawn
    # within 4 standard errors (sqrt(p(1-p)/n) <= 0.0025) of each probability
    assert torch.allclose(freq, probs[0], atol=0.01), freq.tolist()
    one_hot = torch.zeros(3, 6)
    one_hot[torch.arange(3), torch.tensor([5, 0, 3])] = 1.0
    assert sample(one_hot).flatten().tolist() == [5, 0, 3]


QWEN_VOCAB = 152_064


def dominant_row() -> torch.Tensor:
    """Qwen's vocabulary with p(top) = 0.997 at id 3 and the rest spread evenly: each tail token about 2e-8,
    under half a float32 step once the CDF passes 0.5."""
    probs = torch.full((QWEN_VOCAB,), 0.003 / (QWEN_VOCAB - 1))
    probs[3] = 0.997
    return probs


def test_every_token_of_a_152k_vocabulary_keeps_its_own_slice_of_the_uniform():
    """The uniform at the middle of each token's exact CDF interval draws that token: no token with p > 0 has a
    zero (or misplaced) step. A float32 cumsum gives most of this tail a step of exactly 0."""
    probs = dominant_row()
    exact = probs.double().cumsum(0)
    start = exact - probs.double()
    tokens = torch.cat([torch.arange(0, 600), torch.arange(600, QWEN_VOCAB, 97), torch.arange(QWEN_VOCAB - 300,
                                                                                              QWEN_VOCAB)])
    for chunk in tokens.split(512):
        mid = ((start[chunk] + exact[chunk]) / 2 / exact[-1]).unsqueeze(1)
        drawn = sample(probs.unsqueeze(0).expand(len(chunk), -1), mid).flatten()
        assert torch.equal(drawn, chunk), (chunk[drawn != chunk][:5].tolist(), drawn[drawn != chunk][:5].tolist())


def test_rare_tokens_are_drawn_as_often_as_their_probability():
    """Over many draws from the dominant row, the tail tokens a float32 cumsum cannot reach (most of the tail
    mass) are drawn within four standard errors of their total probability; so is the tail as a whole."""
    probs = dominant_row()
    f32 = probs.cumsum(0)
    unreachable = torch.diff(f32, prepend=f32.new_zeros(1)) == 0  # the old sampler's zero steps
    assert unreachable.sum() > 100_000
    torch.manual_seed(0)
    n = 8192
    drawn = torch.cat([sample(probs.unsqueeze(0).expand(1024, -1)).flatten() for _ in range(n // 1024)])
    for where in (unreachable, torch.arange(QWEN_VOCAB) != 3):
        p = float(probs[where].sum())
        hits = int(where[drawn].sum())
        assert abs(hits - n * p) <= 4 * (n * p * (1 - p)) ** 0.5, (hits, n * p)


def test_sampled_frequencies_match_a_many_block_distribution():
    """Tokens spread over several sampler blocks (and a partial last one), probabilities from 0.2 down to 1e-12
    and zeros: each token expected 10 times or more is drawn within 4.5 standard errors of its probability (about
    500 tokens), the rarer ones together within 4, and a zero-probability token never."""
    torch.manual_seed(1)
    v, n = 1000, 200_000
    probs = torch.rand(v) ** 6
    probs[torch.randperm(v)[:100]] = 0.0
    probs[[7, 300, 999]] = torch.tensor([0.2 * probs.sum(), 0.1 * probs.sum(), 0.05 * probs.sum()])
    probs = (probs / probs.sum()).double()
    counts = torch.bincount(sample(probs.float().unsqueeze(0).expand(n, -1)).flatten(), minlength=v).double()
    assert counts[probs == 0].sum() == 0
    common = probs * n >= 10
    assert common.sum() > 400
    z = (counts - n * probs) / (n * probs * (1 - probs)).sqrt()
    assert z[common].abs().max() <= 4.5, z[common].abs().max()
    rare = float(probs[~common].sum())
    assert abs(counts[~common].sum() - n * rare) <= 4 * (n * rare * (1 - rare)) ** 0.5


@pytest.mark.parametrize("top_k,top_p", [(0, 0.9), (5, 1.0), (7, 0.5), (0, 1.0)])
def test_truncation_is_transformers_top_k_then_top_p(top_k, top_p):
    torch.manual_seed(0)
    scores = torch.randn(6, 50) * 3
    want = scores.clone()
    if top_k:
        want = TopKLogitsWarper(top_k)(None, want)
    if top_p < 1:
        want = TopPLogitsWarper(top_p)(None, want)
    assert torch.equal(truncate(scores, top_p, top_k), want)


def test_greedy_answers_are_generates_token_for_token_with_a_shared_head_and_rows_ending_early(tiny):
    model, tok = tiny
    prompts = chat_prompts(tok, ROOMS)
    assert shared_prefix_length(prompts) >= 20  # the head is shared: the loop prefills it once
    probe = HFGenerator(model, tok, decode="generate")
    probe.eos_ids, probe.stop_strings = [], []
    free = probe.generate(prompts, 16, 0.0)
    # end tokens that stop the rows at different steps, so rows leave the loop's batch one by one
    ends = sorted({free[0][2], free[1][6], free[2][11]})
    answers = {}
    for decode in ("generate", "loop"):
        gen = HFGenerator(model, tok, decode=decode)
        gen.eos_ids, gen.stop_strings = ends, []
        answers[decode] = gen.generate_with_logprobs(prompts, 16, 0.0)
    ids, lps = answers["loop"]
    assert ids == answers["generate"][0]
    assert len({len(r) for r in ids}) > 1  # the rows did end at different steps
    for a, b in zip(lps, answers["generate"][1]):
        assert a == pytest.approx(b, abs=1e-4)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_are_the_trainers_full_forward(tiny, temperature):
    model, tok = tiny
    prompts = chat_prompts(tok, ROOMS)
    gen = HFGenerator(model, tok, decode="loop")
    torch.manual_seed(0)
    ids, lps = gen.generate_with_logprobs(prompts, 12, temperature)
    assert all(ids) and [len(a) for a in ids] == [len(b) for b in lps]
    tb = collate([Sample(p, r) for p, r in zip(prompts, ids)], tok.pad_token_id)
    with torch.no_grad():
        scored = token_logprobs(response_logits(model, tb, temperature), tb)
    for b, (r, lp) in enumerate(zip(ids, lps)):
        assert scored[b, scored.shape[1] - len(r):].tolist() == pytest.approx(lp, abs=1e-4)


def test_sampling_follows_the_seed_and_top_k_one_is_greedy(tiny):
    model, tok = tiny
    prompts = chat_prompts(tok, ROOMS)
    gen = HFGenerator(model, tok, decode="loop")
    torch.manual_seed(3)
    first = gen.generate(prompts, 10, 1.0)
    torch.manual_seed(3)
    assert gen.generate(prompts, 10, 1.0) == first
    assert gen.generate(prompts, 10, 1.0, top_k=1) == gen.generate(prompts, 10, 0.0)


def test_without_the_shared_head_the_answers_are_the_same(tiny):
    model, tok = tiny
    prompts = chat_prompts(tok, ROOMS)
    shared = HFGenerator(model, tok, decode="loop").generate(prompts, 12, 0.0)
    assert HFGenerator(model, tok, decode="loop", share_prefix=False).generate(prompts, 12, 0.0) == shared


@pytest.mark.parametrize("override,named", [("rollout.params.decode=fast", "rollout.params.decode='fast'"),
                                            ("+rollout.params.beams=2", "rollout.params.beams"),
                                            ("rollout.params.share_prefix=maybe", "rollout.params.share_prefix")])
def test_a_bad_hf_setting_stops_the_job_before_it_starts(override, named):
    with pytest.raises(ConfigError, match="valid") as err:
        validate(compose_job(["debug=smoke", override]))
    assert named in str(err.value)


def test_a_hybrid_cache_model_is_refused_by_the_loop_naming_its_type():
    """A hybrid model (LFM2: convolution layers beside attention) keeps a state per row that the loop's shared-head
    copy and row removal do not handle: refused when the generator is built, before anything is generated;
    ``decode=generate`` takes it."""
    from transformers import Lfm2Config, Lfm2ForCausalLM

    cfg = Lfm2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=2, layer_types=["conv", "full_attention"])
    model = Lfm2ForCausalLM(cfg).eval()
    with pytest.raises(ConfigError, match=r"decode=loop cannot decode model type 'lfm2'.*conv layers.*decode=generate"):
        HFGenerator(model, PlainTok(), stop_strings=())
    HFGenerator(model, PlainTok(), stop_strings=(), decode="generate")


class PlainTok:
    pad_token_id, eos_token_id = 0, 1

    def encode(self, text, add_special_tokens=False):
        return [2, 3]
