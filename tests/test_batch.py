"""Token batching and the GRPO update's wiring: left-padded batches give the same response
log-probs as unpadded sequences, and micro-batching gives the same gradient as one batch."""


import torch
from transformers import LlamaConfig, LlamaForCausalLM

from agentgen.algos.losses import policy_loss
from agentgen.trainer.batch import Sample, collate, response_logits, token_logprobs


def tiny_model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


def test_left_padding_matches_unpadded():
    model = tiny_model()
    samples = [Sample([5, 6, 7, 8], [9, 10]), Sample([11, 12], [13, 14, 15])]
    tb = collate(samples, pad_id=0)
    assert tb.response_mask.tolist() == [[0, 1, 1], [1, 1, 1]]
    lp = token_logprobs(response_logits(model, tb), tb)
    for b, s in enumerate(samples):
        ids = torch.tensor([s.prompt_ids + s.response_ids])
        logits = model(input_ids=ids).logits[0, :-1]
        ref = torch.log_softmax(logits, -1)[torch.arange(len(ids[0]) - 1), ids[0, 1:]][-len(s.response_ids):]
        got = lp[b][tb.response_mask[b].bool()]
        assert torch.allclose(got, ref, atol=1e-5), (got, ref)


def test_micro_batch_weighting_equals_full_batch():
    """Token-mean over a mini-batch = sum of micro-batch token-means weighted by their token share."""
    model = tiny_model()
    samples = [Sample([1, 2, 3], [4, 5], 1.0), Sample([6, 7], [8], -0.5), Sample([9], [10, 11, 12], 0.25)]

    def loss_of(batch):
        tb = collate(batch, 0)
        lp = token_logprobs(response_logits(model, tb), tb)
        adv = torch.tensor([s.advantage for s in batch])
        return policy_loss(lp, lp.detach(), adv, tb.response_mask)[0], tb.num_tokens

    model.zero_grad()
    loss_of(samples)[0].backward()
    full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    total = sum(len(s.response_ids) for s in samples)
    for micro in (samples[:1], samples[1:]):
        loss, n = loss_of(micro)
        (loss * n / total).backward()
    for g, p in zip(full, model.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)
