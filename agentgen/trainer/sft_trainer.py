"""Supervised warm-up on chat records (expert trajectories): next-token loss on the assistant's tokens
only, AdamW with a cosine (or linear / constant) schedule and warm-up ratio, as in the study's SFT
(papers.md A: lr 5e-6, cosine, warm-up 0.1, batch 32, 100 steps)."""

from __future__ import annotations

import logging
import math
import random
import time

from agentgen import dist
from agentgen.console import progress, progress_log
from agentgen.trainer.batch import Sample, collate, response_logits, token_logprobs
from agentgen.trainer.engine import EngineOptions, SingleEngine

log = logging.getLogger(__name__)


def encode_record(record: dict, tokenizer, max_tokens: int) -> Sample:
    """Prompt = chat template up to the assistant turn; response = assistant text + end-of-turn."""
    messages = record["messages"]
    if "prompt_text" in record:  # a model's own trajectory: the exact templated prompt it saw
        prompt = tokenizer.encode(record["prompt_text"], add_special_tokens=False)
    else:
        prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True,
                                               return_dict=False)
        prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    response = tokenizer.encode(messages[-1]["content"], add_special_tokens=False) + [tokenizer.eos_token_id]
    if len(prompt) + len(response) > max_tokens:  # keep the end of the prompt (observation, format rules)
        prompt = prompt[-(max_tokens - len(response)):]
    return Sample(prompt, response)


def sft_schedule(cfg) -> tuple[str, int, int]:
    """(scheduler, total steps, warm-up steps) of ``cfg`` (the sft group)."""
    return str(cfg.scheduler), int(cfg.steps), int(math.ceil(cfg.warmup_ratio * cfg.steps))


def train_sft(model, tokenizer, records: list[dict], cfg, max_tokens: int, seed: int,
              log_fn=None, engine=None) -> dict[str, float]:
    """Run ``cfg.steps`` optimiser steps of ``cfg.batch_size`` state-action pairs; returns final metrics.
    ``engine``: a training engine built for SFT (DeepSpeed, LoRA); default one process, AdamW + schedule."""
    samples = [encode_record(r, tokenizer, max_tokens) for r in records]
    if not samples:
        raise ValueError("SFT has no training data: the expert produced no trajectories")
    rng = random.Random(seed)
    if engine is None:
        engine = SingleEngine(model, EngineOptions(), lr=cfg.lr, weight_decay=cfg.weight_decay, grad_clip=1.0,
                              schedule=sft_schedule(cfg))
    engine.model.train()
    order: list[int] = []
    metrics: dict[str, float] = {}
    t0 = time.time()
    bar = progress(cfg.steps, "sft", unit="step")  # the SFT phase's bar (rank 0, on a terminal)
    every = max(1, cfg.steps // 10)  # without a bar: a log line every tenth of the steps
    for step in range(cfg.steps):
        batch_idx = []
        while len(batch_idx) < cfg.batch_size:
            if not order:
                order = list(range(len(samples)))
                rng.shuffle(order)
            batch_idx.append(order.pop())
        batch = [samples[i] for i in batch_idx]
        total_tokens = sum(len(s.response_ids) for s in batch)
        loss_sum, correct = 0.0, 0.0
        for micro, share in engine.micro_batches(batch, cfg.micro_batch_size):  # this rank's share
            tb = collate(micro, tokenizer.pad_token_id)
            logits = response_logits(engine.model, tb)
            mask = tb.response_mask.to(logits.device)
            nll = -(token_logprobs(logits, tb) * mask).sum()
            engine.backward(nll / total_tokens * share)
            loss_sum += nll.item() * share
            correct += share * float(((logits.detach().argmax(-1) == tb.response_ids.to(logits.device)).float()
                                      * mask).sum())
        grad_norm = engine.step()
        loss_sum, correct = dist.all_reduce_sum([loss_sum, correct])
        metrics = {"sft/loss": loss_sum / total_tokens, "sft/token_accuracy": correct / total_tokens,
                   "sft/grad_norm": grad_norm, "sft/lr": engine.lr, "sft/step": step + 1}
        bar.set_postfix(loss=f"{metrics['sft/loss']:.3f}", acc=f"{metrics['sft/token_accuracy']:.2f}", refresh=False)
        bar.update(1)
        if (step + 1) % every == 0 or step + 1 == cfg.steps:
            progress_log.info("sft step %d/%d: loss %.3f, token accuracy %.2f", step + 1, cfg.steps,
                              metrics["sft/loss"], metrics["sft/token_accuracy"])
        if log_fn:
            log_fn(metrics)
    bar.close()
    metrics["sft/seconds"] = time.time() - t0
    metrics["sft/samples"] = len(samples)
    engine.model.eval()
    return metrics
