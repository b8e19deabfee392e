"""SFT (the warm-up and mid-training jobs' trainer) on the tiny model: the loss is the next-token loss of the
assistant's tokens only (checked against a hand computation on unpadded sequences), and it falls on a fixed
batch."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from agentgen.models.loader import load_policy
from agentgen.preflight import compose_job
from agentgen.trainer.sft_trainer import encode_record, train_sft

RECORDS = [
    {"messages": [{"role": "system", "content": "You push boxes."},
                  {"role": "user", "content": "Player at (1, 1). Box at (2, 1). Target at (3, 1)."},
                  {"role": "assistant", "content": "<think>The box is below me.</think><action>Down</action>"}]},
    {"messages": [{"role": "system", "content": "You push boxes."},
                  {"role": "user", "content": "Wall at (0, 0), Player at (4, 3)"},
                  {"role": "assistant", "content": "<action>Up</action>"}]},
    {"messages": [{"role": "user", "content": "Box at (2, 3)"},
                  {"role": "assistant", "content": "<think>Go left first.</think><action>Left</action>"}]},
]


@pytest.fixture(scope="module")
def tiny():
    job = compose_job(["debug=smoke"])
    model, tok, _ = load_policy(job.model)
    return job, model, tok


def sft_cfg(job, **over):
    return OmegaConf.merge(job.sft, {"steps": 1, "batch_size": len(RECORDS), "micro_batch_size": 2, **over})


def test_sft_loss_is_the_assistant_tokens_next_token_loss_only(tiny):
    job, model, tok = tiny
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    nll, tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for record in RECORDS:
            sample = encode_record(record, tok, max_tokens=4096)
            assert tok.decode(sample.response_ids) == record["messages"][-1]["content"] + tok.eos_token
            assert tok.decode(sample.prompt_ids).endswith("<|im_start|>assistant\n")
            full = torch.tensor([sample.prompt_ids + sample.response_ids])
            logprobs = torch.log_softmax(model(input_ids=full).logits[0].float(), -1)
            p = len(sample.prompt_ids)
            nll -= sum(logprobs[p - 1 + i, t].item() for i, t in enumerate(sample.response_ids))
            tokens += len(sample.response_ids)
    metrics = train_sft(model, tok, RECORDS, sft_cfg(job, lr=0.0), max_tokens=4096, seed=0)
    assert metrics["sft/loss"] == pytest.approx(nll / tokens, rel=1e-4)
    model.load_state_dict(initial)


def test_sft_loss_falls_on_a_fixed_batch(tiny):
    job, model, tok = tiny
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    logged: list[dict] = []
    train_sft(model, tok, RECORDS, sft_cfg(job, steps=20, lr=2e-3, scheduler="constant", warmup_ratio=0.0),
              max_tokens=4096, seed=0, log_fn=logged.append)
    losses = [m["sft/loss"] for m in logged]
    model.load_state_dict(initial)
    assert len(losses) == 20 and losses[-1] < 0.5 * losses[0], losses
    assert logged[-1]["sft/token_accuracy"] > logged[0]["sft/token_accuracy"]
