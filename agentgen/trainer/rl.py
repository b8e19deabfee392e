"""The RL loop, readable top to bottom: sample environment instances, roll out groups, compute
advantages, and update the policy with the clipped surrogate plus a KL term to the frozen reference.

Stepwise formulation (verl-agent / the generalization-tax study): every turn of a trajectory is one
training sample, prompt (with its k-step history) -> response, carrying its episode's advantage.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import torch

from agentgen.algos.advantages import grpo_advantages, rloo_advantages
from agentgen.algos.losses import entropy_from_logits, kl_penalty_loss, policy_loss
from agentgen.rollout.runner import Episode, EpisodeSpec
from agentgen.trainer.batch import Sample, chunks, collate, response_logits, token_logprobs
from agentgen.trainer.optim import make_optimizer

log = logging.getLogger(__name__)

# Seeds of training instances: a job's stream never overlaps another seed's (up to 10M instances).
SEED_STRIDE = 10_000_000


def instance_seeds(step: int, prompts_per_step: int, run_seed: int) -> list[int]:
    """Deterministic, resumable: the instances of RL step ``step``."""
    base = run_seed * SEED_STRIDE + step * prompts_per_step
    return [base + i for i in range(prompts_per_step)]


def episode_advantages(episodes: list[Episode], algo) -> torch.Tensor:
    """One advantage per episode from its return, normalised within its group (same instance)."""
    returns = torch.tensor([e.ret for e in episodes], dtype=torch.float32)
    groups = torch.tensor([e.spec.group for e in episodes], dtype=torch.long)
    if algo.name == "rloo":
        return rloo_advantages(returns, groups)
    return grpo_advantages(returns, groups, norm_by_std=bool(algo.get("norm_adv_by_std", True)))


@dataclass
class RLState:
    step: int = 0


class RLTrainer:
    """GRPO (and RLOO) with PPO-clip updates and a KL term to the reference model."""

    def __init__(self, model, ref_model, tokenizer, cfg, rollout_fn, log_fn=None):
        self.model = model
        self.ref_model = ref_model
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.algo = cfg.algo
        self.rollout_fn = rollout_fn  # (specs, step) -> list[Episode]
        self.log_fn = log_fn or (lambda m, s: None)
        self.optimizer = make_optimizer(model, cfg.trainer.lr, cfg.trainer.weight_decay)
        self.temperature = float(cfg.rollout.temperature) or 1.0

    # ------------------------------------------------------------------ one RL step
    def step(self, step: int) -> dict[str, float]:
        t0 = time.time()
        group_size = int(self.algo.group_size)
        seeds = instance_seeds(step, self.cfg.trainer.prompts_per_step, self.cfg.seed)
        specs = [EpisodeSpec(env="", seed=s, group=g) for g, s in enumerate(seeds) for _ in range(group_size)]
        rolled = self.rollout_fn(specs, step)
        t_rollout = time.time() - t0
        # An aborted episode (its env worker hung or died) says nothing about the policy: drop it.
        episodes = [e for e in rolled if not e.aborted]
        if not episodes:
            return {"rollout/aborted": len(rolled), "train/skipped": 1.0}
        adv = episode_advantages(episodes, self.algo)
        samples = [Sample(t.prompt_ids, t.response_ids, float(a)) for e, a in zip(episodes, adv) for t in e.turns
                   if t.response_ids]
        update = self.update(samples, step)
        metrics = {
            "rollout/success_rate": sum(e.success for e in episodes) / len(episodes),
            "rollout/return": sum(e.ret for e in episodes) / len(episodes),
            "rollout/episode_steps": sum(e.steps for e in episodes) / len(episodes),
            "rollout/invalid_ratio": sum(t.invalid for e in episodes for t in e.turns) / max(1, len(samples)),
            "rollout/response_tokens": sum(len(s.response_ids) for s in samples) / max(1, len(samples)),
            "rollout/prompt_tokens": sum(len(s.prompt_ids) for s in samples) / max(1, len(samples)),
            "rollout/aborted": len(rolled) - len(episodes),
            "rollout/samples": len(samples),
            "rollout/zero_adv_groups": _zero_adv_groups(episodes, adv),
            "time/rollout_s": t_rollout,
            "time/update_s": time.time() - t0 - t_rollout,
            **update,
        }
        return metrics

    # ------------------------------------------------------------------ policy update
    def update(self, samples: list[Sample], step: int) -> dict[str, float]:
        tc, algo = self.cfg.trainer, self.algo
        if not samples:
            return {"train/skipped": 1.0}
        rng = random.Random(self.cfg.seed * 1_000_003 + step)
        epochs = int(algo.get("ppo_epochs", 1))
        minibatches = chunks(samples, tc.mini_batch_states)
        on_policy = epochs == 1 and len(minibatches) == 1
        kl_coef = float(algo.get("kl_coef", 0.0))
        pad = self.tokenizer.pad_token_id
        with torch.no_grad():  # behaviour and reference log-probs, before any parameter changes
            for micro in chunks(samples, tc.micro_batch_states):
                tb = collate(micro, pad)
                if not on_policy:
                    lp = token_logprobs(response_logits(self.model, tb, self.temperature), tb)
                    for s, row in zip(micro, lp):
                        s.extras["old"] = row
                if kl_coef > 0 and self.ref_model is not None:
                    lp = token_logprobs(response_logits(self.ref_model, tb, self.temperature), tb)
                    for s, row in zip(micro, lp):
                        s.extras["ref"] = row
        self.model.train()
        sums: dict[str, float] = {}
        count = 0
        for _ in range(epochs):
            order = samples[:]
            rng.shuffle(order)
            for mb in chunks(order, tc.mini_batch_states):
                mb_tokens = sum(len(s.response_ids) for s in mb)
                for micro in chunks(mb, tc.micro_batch_states):
                    m = self._micro_step(micro, mb_tokens, on_policy, kl_coef)
                    for k, v in m.items():
                        sums[k] = sums.get(k, 0.0) + v
                    count += 1
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                sums["train/grad_norm"] = sums.get("train/grad_norm", 0.0) + float(grad_norm) * len(
                    chunks(mb, tc.micro_batch_states))
        self.model.eval()
        for s in samples:
            s.extras.clear()
        return {k: v / max(count, 1) for k, v in sums.items()} | {"train/lr": self.optimizer.param_groups[0]["lr"]}

    def _micro_step(self, micro: list[Sample], mb_tokens: int, on_policy: bool, kl_coef: float) -> dict[str, float]:
        algo = self.algo
        tb = collate(micro, self.tokenizer.pad_token_id)
        logits = response_logits(self.model, tb, self.temperature)
        mask = tb.response_mask.to(logits.device)
        lp = token_logprobs(logits, tb)
        old = lp.detach() if on_policy else _stack(micro, "old", lp)
        adv = torch.tensor([s.advantage for s in micro], dtype=lp.dtype, device=lp.device)
        pg, pm = policy_loss(lp, old, adv, mask, clip_low=float(algo.get("clip_low", 0.2)),
                             clip_high=float(algo.get("clip_high", 0.2)), agg="token-mean",
                             dual_clip=algo.get("dual_clip"))
        loss = pg
        metrics = {"train/pg_loss": pg.item(), **{f"train/{k}": float(v) for k, v in pm.items()}}
        if kl_coef > 0 and self.ref_model is not None:
            kl = kl_penalty_loss(lp, _stack(micro, "ref", lp), mask, estimator=algo.get("kl_estimator", "k3"))
            loss = loss + kl_coef * kl
            metrics["train/kl"] = kl.item()
        ent_coef = float(algo.get("entropy_coef", 0.0))
        if ent_coef > 0:
            ent = entropy_from_logits(logits, mask)
            loss = loss - ent_coef * ent
            metrics["train/entropy"] = ent.item()
        else:
            with torch.no_grad():
                metrics["train/entropy"] = float(entropy_from_logits(logits.detach(), mask))
        # token-mean over the whole mini-batch: weight this micro-batch by its share of the tokens
        (loss * (tb.num_tokens / mb_tokens)).backward()
        metrics["train/loss"] = loss.item()
        return metrics


def _stack(micro: list[Sample], key: str, like: torch.Tensor) -> torch.Tensor:
    """Right-align per-sample logprob rows (computed in other micro-batches) to this batch's width."""
    out = torch.zeros_like(like)
    width = like.shape[1]
    for b, s in enumerate(micro):
        row = s.extras[key]
        n = len(s.response_ids)
        out[b, width - n:] = row[row.shape[0] - n:].to(out.device)
    return out


def _zero_adv_groups(episodes: list[Episode], adv: torch.Tensor) -> float:
    """Share of groups whose returns are all equal (no learning signal): a key GRPO diagnostic."""
    groups: dict[int, list[float]] = {}
    for e, a in zip(episodes, adv.tolist()):
        groups.setdefault(e.spec.group, []).append(a)
    return sum(all(abs(a) < 1e-8 for a in v) for v in groups.values()) / max(1, len(groups))
