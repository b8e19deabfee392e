"""The RL loop, readable top to bottom: sample environment instances, roll them out, score the rollouts
(behaviour, reference and critic passes), compute advantages, and update the policy with the clipped
surrogate (plus the critic for PPO).

Stepwise formulation (verl-agent / the generalization-tax study): every turn of a trajectory is one
training sample, prompt (with its k-step history) -> response. The algorithm is chosen by
``get_algo(cfg.algo.name)`` (agentgen/algos/registry.py) and every key of its config is honoured:

- ``grpo`` / ``rloo``: ``group_size`` chains per instance; the episode's group-normalised (or leave-one-
  out) return is every step's advantage;
- ``ppo``: chains scored by a learned critic (``agentgen.trainer.critic_trainer``), GAE over turns or tokens
  (``credit``, ``gamma``, ``lam``, ``whiten_advantages``), the critic trained alongside with the clipped
  value loss (``critic.lr``, ``critic.value_clip``, ``critic.warmup_steps``) and checkpointed next to
  the policy;
- ``reinforce_pp``: chains, discounted returns (with the KL penalty folded in per token) whitened over
  the whole batch, no critic;
- ``gigpo``: chains as GRPO, plus a step-level advantage from steps of a group that acted in the same env
  state (``Turn.state_key``), compared by their discounted returns (``agentgen.algos.gigpo``);
- ``gspo``: GRPO's advantages with one clipped importance ratio per response (``agentgen.algos.gspo``);
- ``tree_grpo``: M trees per instance, L rounds of N expansions (``agentgen.trainer.tree_rollout``), intra- plus
  inter-tree advantage, ``step_advantage`` deciding how shared steps become samples.

Common keys: ``kl_coef`` / ``kl_estimator`` (k1, k2, k3, abs) / ``kl_in`` (``loss``: beta * KL added to
the loss; ``reward``: beta * per-token KL subtracted from the rewards before the advantage), ``clip_low``
/ ``clip_high`` (asymmetric clip-higher) / ``dual_clip``, ``entropy_coef``, ``ppo_epochs``, ``loss_agg``,
``norm_adv_by_std``. The per-step advantage maths is the algorithm's module, reached through
``agentgen.algos.stepwise.step_advantages``; its loss is ``Algorithm.policy_loss`` (PPO-clip unless it has its own).

Batches generated ahead of the update (``trainer.max_staleness`` >= 1, agentgen.rollout.ahead): every turn must
carry a weight version no more than that many updates old (``_staleness``; else the step fails), the behaviour
log-probs the clip is around are always the trainer's own (the proximal policy: a stale turn's sampler log-probs
are not), and ``algo.tis_cap`` weights each token by pi_proximal / pi_behaviour: AReaL's decoupled objective.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from agentgen import dist
from agentgen.algos.base import Algorithm
from agentgen.algos.losses import (
    entropy_from_logits,
    kl_divergence,
    kl_penalty_loss,
    logprob_gap,
    tis_weights,
    token_entropy,
    top_entropy_mask,
)
from agentgen.algos.registry import validate_algo_config
from agentgen.algos.schedule import schedule_from_config
from agentgen.algos.stepwise import step_advantages
from agentgen.episode import Episode, EpisodeSpec, Turn
from agentgen.errors import ConfigError
from agentgen.options import RLOptions
from agentgen.trainer.batch import Sample, chunks, collate, response_logits, token_logprobs
from agentgen.trainer.critic_trainer import ValueModel, _right_aligned
from agentgen.trainer.engine import make_engine
from agentgen.trainer.tree_rollout import Forest, TreeRollout

log = logging.getLogger(__name__)

# Seeds of training instances: a job's stream never overlaps another seed's (up to 10M instances).
SEED_STRIDE = 10_000_000


def instance_seeds(step: int, prompts_per_step: int, run_seed: int, round_: int = 0, rounds: int = 1) -> list[int]:
    """Deterministic, resumable: the instances of RL step ``step``. With dynamic sampling a step owns
    ``rounds`` blocks of ``prompts_per_step`` seeds and sampling round ``round_`` plays block ``round_``
    (``rounds=1``: one block per step)."""
    base = run_seed * SEED_STRIDE + (step * rounds + round_) * prompts_per_step
    return [base + i for i in range(prompts_per_step)]


def checked_algo(algo_cfg) -> Algorithm:
    """The algorithm's spec after checking its config; a bad key becomes one ConfigError paragraph."""
    plain = OmegaConf.to_container(algo_cfg, resolve=True) if isinstance(algo_cfg, DictConfig) else dict(algo_cfg)
    try:
        return validate_algo_config(plain)
    except KeyError as err:
        raise ConfigError(err.args[0]) from None
    except ValueError as err:
        raise ConfigError(str(err)) from None


def chain_specs(seeds: list[int], offset: int, group_size: int) -> list[EpisodeSpec]:
    """``group_size`` chains per instance seed; group ids from ``offset`` (unique across sampling rounds)."""
    return [EpisodeSpec(env="", seed=s, group=offset + g) for g, s in enumerate(seeds) for _ in range(group_size)]


def turn_sample(turn: Turn) -> Sample:
    """A training sample for one generated turn; ``extras["reward"]`` is its environment reward and
    ``extras["sampler"]`` the rollout engine's log-probs of its tokens, when the engine gave them."""
    extras: dict = {"reward": float(turn.reward)}
    if turn.sampler_logprobs is not None and len(turn.sampler_logprobs) == len(turn.response_ids):
        extras["sampler"] = torch.tensor(turn.sampler_logprobs, dtype=torch.float32)
    return Sample(list(turn.prompt_ids), list(turn.response_ids), extras=extras)


@dataclass
class StepData:
    """One RL step after rollout and advantages: ``train`` are the samples of the update (a shared
    Tree-GRPO step may appear once per leaf), ``metrics`` the rollout figures."""

    train: list[Sample]
    metrics: dict[str, float] = field(default_factory=dict)


class RLTrainer:
    """The algorithms of agentgen.algos.registry over stepwise samples (see the module docstring)."""

    def __init__(self, model, ref_model, tokenizer, algo, opts: RLOptions,
                 rollout_fn: Callable[[list[EpisodeSpec], int], list[Episode]], log_fn=None, engine=None):
        """``algo``: the job's ``algo`` section; ``opts``: the trainer's own options (``agentgen.options.rl_options``),
        built once by the caller. ``engine``: the phase's engine (None: one from ``opts.engine``)."""
        # the training engine (single process or DeepSpeed ZeRO, LoRA optional) owns the optimiser, the
        # split of every batch over the ranks and the reference model's placement
        self.spec = checked_algo(algo)
        # PPO's critic is built from the full policy before an engine may shard it; its optimiser is its own
        self.value_model = ValueModel.from_config(model, algo, opts) if self.spec.needs_critic else None
        self.engine = engine if engine is not None else make_engine(opts.engine, model)
        if self.value_model is not None and self.engine.world_size > 1:
            raise ConfigError(f"algo={algo.name}'s critic trains in one process only; run it with one rank "
                              f"(this job has {self.engine.world_size}) or choose algo=grpo, rloo or reinforce_pp.")
        self.model = self.engine.model
        self.ref_model = self.engine.wrap_reference(ref_model)
        self.tokenizer = tokenizer
        self.opts = opts
        self.algo = algo
        # what the advantage maths reads: the config, with the KL off when there is no reference model
        self.algo_dict = OmegaConf.to_container(algo, resolve=True) if isinstance(algo, DictConfig) \
            else dict(algo)
        self.rollout_fn = rollout_fn  # (specs, step) -> list[Episode]
        self.log_fn = log_fn or (lambda m, s: None)
        self.optimizer = self.engine.optimizer
        self.temperature = opts.temperature
        self.pad_id = tokenizer.pad_token_id
        self.kl_coef = float(self.algo.kl_coef) if self.ref_model is not None else 0.0
        self.kl_in = str(self.algo.kl_in)
        self.agg = str(self.algo.loss_agg)
        self.tis_cap = self.algo.get("tis_cap")  # None: no importance correction for the sampler's mismatch
        # rollouts ahead of the update (agentgen.rollout.ahead): turns of weights up to this many updates old
        self.max_staleness = opts.ahead.max_staleness
        if self.max_staleness and self.tis_cap is None:
            raise ConfigError(f"trainer.max_staleness={self.max_staleness} needs algo.tis_cap (the cap on "
                              "pi_proximal / pi_behaviour of the decoupled objective), e.g. 2.0")
        # a stale turn's sampler log-probs are the behaviour's, not the proximal policy's: always the trainer's own
        self.sampler_exact = _sampler_is_exact(opts, model) and not self.max_staleness
        # every N steps, when the sampler's log-probs stand in for the scoring pass, score a few samples anyway
        self.check_sampler_every = opts.check_sampler_every
        self.check_sampler_samples = opts.check_sampler_samples
        self._reused: list[Sample] = []  # this step's samples whose behaviour log-probs are the sampler's
        self._gap = [0.0, 0.0, 0]  # this update's |trainer - sampler| log-prob gap: sum, max, tokens
        self._tokens = [0, 0]  # this update's real and padded token positions (prompt + response)
        self._phase_seconds: dict[str, float] = {}  # this step's seconds per scoring pass (time/score_*_s)
        self.credit = str(self.algo.get("credit", "turn"))
        self.critic_warmup = int((self.algo.get("critic") or {}).get("warmup_steps", 0)) if self.value_model else 0
        self.tree = TreeRollout(int(self.algo.M), int(self.algo.N), int(self.algo.L), rollout_fn,
                                opts.seed) if self.spec.uses_tree else None
        self.turn_schedule = schedule_from_config(opts.max_turns_schedule)
        self.algo_dict["kl_coef"] = self.kl_coef
        if float(self.algo.kl_coef) > 0 and self.ref_model is None:
            log.warning("algo.kl_coef=%s but no reference model was given: training without the KL term",
                        self.algo.kl_coef)

    # ------------------------------------------------------------------ one RL step
    @contextlib.contextmanager
    def _timed(self, key: str):
        """Adds the block's wall time to this step's ``key`` (the per-phase split of ``bench/bench_rl_step.py``)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._phase_seconds[key] = self._phase_seconds.get(key, 0.0) + time.perf_counter() - t0

    def step(self, step: int) -> dict[str, float]:
        self._phase_seconds = {}
        t0 = time.time()
        seeds = instance_seeds(step, self.opts.prompts_per_step, self.opts.seed, 0, self._sampling_rounds)
        data = self._tree_step(seeds, step) if self.tree else self._chain_step(seeds, step)
        t_rollout = time.time() - t0
        if not data.train:
            return {**data.metrics, "train/skipped": 1.0, "time/rollout_s": t_rollout}
        update = self.update(data.train, step)
        metrics = {**data.metrics, "time/rollout_s": t_rollout, "time/update_s": time.time() - t0 - t_rollout,
                   **update, **self._phase_seconds}
        if self.turn_schedule is not None:
            metrics["rollout/turn_limit"] = float(self.turn_schedule.turn_limit(step))
        return metrics

    @property
    def _sampling_rounds(self) -> int:
        """Rollout batches a step may play: more than one only with dynamic sampling (algo.filter_groups)."""
        return int(self.algo.get("max_sampling_rounds", 1)) if self.algo.get("filter_groups") else 1

    # ------------------------------------------------------------------ chains: grpo, rloo, ppo, reinforce_pp
    def _chain_step(self, seeds: list[int], step: int) -> StepData:
        group_size = int(self.algo.group_size)
        rounds = self._sampling_rounds
        rolled: list[Episode] = []
        all_live: list[Episode] = []  # every played episode that was not aborted: the rollout figures
        episodes: list[Episode] = []  # what the update sees
        n_signal = 0  # groups in ``episodes`` (with dynamic sampling: groups with a signal)
        for r in range(rounds):
            if r:
                seeds = instance_seeds(step, len(seeds), self.opts.seed, r, rounds)
            specs = chain_specs(seeds, r * len(seeds), group_size)  # group ids stay unique across rounds
            new = self.rollout_fn(specs, step)
            rolled += new
            # An aborted episode (its env worker hung or died) says nothing about the policy: drop it.
            live = [e for e in new if not e.aborted and e.turns]
            all_live += live
            if rounds == 1:
                episodes = live
                break
            chosen = signal_groups(live, limit=len(seeds) - n_signal, by=str(self.algo.filter_groups))
            episodes += chosen
            n_signal += len({e.spec.group for e in chosen})
            if n_signal >= len(seeds):
                break
        metrics = {"rollout/aborted": float(len(rolled) - len(all_live))}
        if self.max_staleness:
            metrics.update(self._staleness(rolled, step))
        if rounds > 1:
            metrics.update({"rollout/sampling_rounds": float(r + 1), "rollout/signal_groups": float(n_signal)})
        if not episodes:
            metrics.update(_episode_metrics(all_live, []) if all_live else {})
            return StepData([], metrics)
        per_episode = [[turn_sample(t) for t in e.turns] for e in episodes]
        steps = [s for ep in per_episode for s in ep]
        train = [s for s in steps if s.response_ids]
        self._score(steps, n_train=len(train))
        lengths = [[_n(s) for s in ep] for ep in per_episode]
        adv = step_advantages(
            self.algo_dict,
            [[s.extras["reward"] for s in ep] for ep in per_episode],
            [e.spec.group for e in episodes],
            values=self._values_for_advantage(per_episode) if self.value_model else None,
            kl=[[s.extras["kl"] for s in ep] for ep in per_episode] if self._kl_in_reward else None,
            response_lengths=lengths,
            state_keys=[[t.state_key for t in e.turns] for e in episodes] if self.spec.advantage_level == "step"
            else None,
            penalties=[[t.penalty for t in e.turns] for e in episodes],
        )
        for e, ep in enumerate(per_episode):
            for k, s in enumerate(ep):
                _set_advantage(s, adv.advantages[e][k])
                if adv.returns is not None:
                    g = adv.returns[e][k]
                    s.extras["returns"] = g if isinstance(g, torch.Tensor) else torch.full((_n(s),), float(g))
        metrics.update(adv.metrics)
        metrics.update(_episode_metrics(all_live, train))  # the rollout figures count every played episode
        metrics.update(_advantage_metrics(train))
        return StepData(train, metrics)

    def step_specs(self, step: int) -> list[EpisodeSpec]:
        """The episodes of step ``step``'s (first) rollout batch: what rollouts ahead of the update generate."""
        seeds = instance_seeds(step, self.opts.prompts_per_step, self.opts.seed, 0, self._sampling_rounds)
        return chain_specs(seeds, 0, int(self.algo.group_size))

    def _staleness(self, episodes: list[Episode], step: int) -> dict[str, float]:
        """``async/staleness_mean`` / ``_max`` (step - the weight version of each turn) and the oldest version;
        a turn older than ``trainer.max_staleness`` (or untagged) stops the job: it must never be trained on."""
        versions = [t.weight_version for e in episodes for t in e.turns]
        if not versions:
            return {}
        if any(v is None for v in versions):
            raise RuntimeError(f"RL step {step}: a turn carries no weight version; with trainer.max_staleness="
                               f"{self.max_staleness} every turn must say which weights generated it")
        ages = [step - v for v in versions]
        if max(ages) > self.max_staleness or min(ages) < 0:
            raise RuntimeError(f"RL step {step}: a turn of weight version {min(versions)} is {max(ages)} updates old, "
                               f"past trainer.max_staleness={self.max_staleness} (or from the future: "
                               f"{max(versions)}); not training on it")
        return {"async/staleness_mean": sum(ages) / len(ages), "async/staleness_max": float(max(ages)),
                "async/weight_version_min": float(min(versions))}

    def _values_for_advantage(self, per_episode: list[list[Sample]]) -> list[list]:
        """Turn credit: V(state of step k) = the value at the step's first response token; token credit:
        the response-aligned values of every token."""
        if self.credit == "turn":
            return [[float(s.extras["values"][0]) for s in ep] for ep in per_episode]
        return [[s.extras["values"] for s in ep] for ep in per_episode]

    # ------------------------------------------------------------------ trees: tree_grpo
    def _tree_step(self, seeds: list[int], step: int) -> StepData:
        forest: Forest = self.tree.build(seeds, step)
        mode = str(self.algo.step_advantage)
        metrics = forest.metrics(mode)
        metrics["rollout/aborted"] = float(forest.aborted_chains + forest.aborted_expansions)
        live = forest.live()
        if not live:
            return StepData([], metrics)
        nodes = [n for _, search in live for n in search.step_nodes()]
        for n in nodes:
            n.data["sample"] = turn_sample(n.data["turn"])
        n_train = sum(search.budget(mode).training_samples for _, search in live)
        self._score([n.data["sample"] for n in nodes], n_train=n_train)
        metrics.update(_tree_rollout_metrics(forest))
        if self._kl_in_reward:  # the leaves' path returns then carry -beta * the KL of every step on the path
            for n in nodes:
                n.reward = n.reward - self.kl_coef * float(n.data["sample"].extras["kl"].sum())
        train: list[Sample] = []
        norm = bool(self.algo.get("norm_adv_by_std", True))
        for _, search in live:
            leaf_adv = search.leaf_advantages(norm_by_std=norm)
            for node, a in search.step_advantages(mode, leaf_advantages=leaf_adv):
                base: Sample = node.data["sample"]
                if base.response_ids:
                    train.append(Sample(base.prompt_ids, base.response_ids, float(a), dict(base.extras)))
        metrics["rollout/samples"] = float(len(train))
        metrics.update(_advantage_metrics(train))
        return StepData(train, metrics)

    # ------------------------------------------------------------------ scoring pass (no gradients)
    @property
    def _kl_in_reward(self) -> bool:
        return self.kl_coef > 0 and self.kl_in == "reward"

    def _on_policy(self, n_train: int) -> bool:
        """One epoch over one mini-batch: the behaviour policy is the current one, ratio = 1 exactly."""
        return int(self.algo.ppo_epochs) == 1 and n_train <= self.opts.mini_batch_states

    @torch.no_grad()
    def _score(self, samples: list[Sample], n_train: int) -> None:
        """Before any parameter changes: behaviour log-probs (``old``, when the update is off-policy or
        the KL goes into the reward), reference log-probs (``ref``), per-token KL (``kl``) and critic
        values (``values``), each a response-aligned [n] tensor in ``sample.extras``."""
        need_old = not self._on_policy(n_train) or self._kl_in_reward
        self._reused = []
        if need_old and self.sampler_exact and all("sampler" in s.extras for s in samples):
            self._reused = [s for s in samples if s.response_ids]
            for s in samples:  # the HF sampler's fp32 log-probs of the policy that sampled: the scoring pass's
                # (an empty response has one time unit, as the scoring pass gives it: the KL and every per-token
                # quantity of the episode stay aligned with the reference's)
                s.extras["old"] = s.extras["sampler"] if s.response_ids else torch.zeros(1)
            need_old = False
        need_ref = self.kl_coef > 0
        self.model.eval()
        # this rank's share; every rank ends up with every sample's rows (share_extras below)
        ordered = by_length(samples)  # less padding; share_extras below reads the same order
        for micro, _ in self.engine.micro_batches(ordered, self.opts.micro_batch_states):
            tb = collate(micro, self.pad_id)
            rows: dict[str, torch.Tensor] = {}
            if need_old:
                with self._timed("time/score_old_s"):
                    rows["old"] = token_logprobs(response_logits(self.model, tb, self.temperature), tb).cpu()
            if need_ref:
                with self._timed("time/score_ref_s"):
                    rows["ref"] = token_logprobs(response_logits(self.ref_model, tb, self.temperature), tb).cpu()
            if self.value_model is not None:
                with self._timed("time/score_values_s"):
                    rows["values"] = self.value_model.response_values(tb).cpu()
            for b, s in enumerate(micro):
                n = len(s.response_ids)
                for key, row in rows.items():
                    s.extras[key] = row[b, row.shape[1] - n:].clone() if n else torch.zeros(1)
                if self._kl_in_reward:
                    s.extras["kl"] = kl_divergence(s.extras["old"], s.extras["ref"], str(self.algo.kl_estimator))
        self.engine.share_extras(ordered, ("old", "ref", "values", "kl"))

    # ------------------------------------------------------------------ policy (and critic) update
    def update(self, samples: list[Sample], step: int) -> dict[str, float]:
        tc, algo = self.opts, self.algo
        if not samples:
            return {"train/skipped": 1.0}
        if "old" not in samples[0].extras and not self._on_policy(len(samples)):
            self._score(samples, len(samples))  # called directly with off-policy settings
        rng = random.Random(self.opts.seed * 1_000_003 + step)
        epochs = int(algo.get("ppo_epochs", 1))
        on_policy = self._on_policy(len(samples))
        train_actor = step >= self.critic_warmup
        micro_size = int(tc.micro_batch_states)
        updates = skipped = 0  # optimiser steps, and those skipped for a non-finite loss or gradient
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}

        def add(metrics: dict[str, float]) -> None:
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
                counts[k] = counts.get(k, 0) + 1

        check = self._check_sampler(step)  # before any parameter moves: the weights that sampled
        self._reused = []
        self.model.train()
        self._gap = [0.0, 0.0, 0]
        self._tokens = [0, 0]  # this update's real and padded token positions (prompt + response)
        for epoch in range(epochs):
            order = samples[:]
            rng.shuffle(order)
            for mb in chunks(order, int(tc.mini_batch_states)):
                # similar lengths share a micro-batch (less padding); each micro-batch's loss is weighted by its
                # share of the mini-batch (_micro_weight), so the grouping does not change the gradient
                for micro, share in self.engine.micro_batches(by_length(mb), micro_size):
                    # share 0: a padding pass that keeps the ranks' collectives in step (no loss, no metrics)
                    if train_actor:
                        m = self._policy_micro_step(micro, _micro_weight(micro, mb, self.agg) * share, on_policy,
                                                    measure_gap=epoch == 0 and share > 0)
                        if share:
                            add(m)
                    if self.value_model is not None:
                        turn = self.credit == "turn"
                        w = len(micro) / len(mb) if turn else _micro_weight(micro, mb, self.agg)
                        add(self.value_model.micro_step(micro, self.pad_id, w, turn, self.agg))
                if train_actor:
                    norm = self.engine.step()  # clip, optimiser step, zero grads; skipped when norm is not finite
                    updates += 1
                    if math.isfinite(norm):
                        add({"train/grad_norm": norm})
                    else:
                        skipped += 1
                        log.warning("RL step %d: non-finite loss or gradient (norm %s): update skipped", step, norm)
                if self.value_model is not None:
                    add({"critic/grad_norm": self.value_model.optimizer_step()})
        self.model.eval()
        for s in samples:
            s.extras.clear()
        out = self.engine.reduce_metrics(sums, counts)  # means over every rank's micro-batches
        out["train/lr"] = self.engine.lr
        out["train/actor_updated"] = float(train_actor)
        out["train/updates"] = float(updates)
        out["train/nonfinite_skipped"] = float(skipped)  # the same on every rank: the norm is global
        out.update(self._gap_metrics())
        out.update(check)
        real, padded = (dist.all_reduce_sum(self._tokens) if self.engine.world_size > 1 else self._tokens)
        if padded:
            out["tokens/trained"] = float(real)  # prompt + response tokens through forward and backward, all epochs
            out["train/padding_frac"] = 1.0 - real / padded
        return out

    @torch.no_grad()
    def _check_sampler(self, step: int) -> dict[str, float]:
        """``rollout/sampler_check_gap_mean`` / ``_max`` every ``trainer.check_sampler_every`` steps: with the
        sampler's log-probs reused as the behaviour's (no scoring pass), ``rollout/logprob_gap`` is 0 and TIS
        weights are 1 by construction, so a sampler drifting from the trainer (a bug in the decode loop's
        shared-head cache, a dtype change) would go unseen. This scores ``trainer.check_sampler_samples`` of the
        step's samples (spread over the batch) with the trainer and logs the true gap; a gap past 1e-3 warns."""
        every, reused = self.check_sampler_every, self._reused
        if not every or step % every or not reused:
            return {}
        k = max(1, min(self.check_sampler_samples, len(reused)))
        subset = [reused[round(i * (len(reused) - 1) / max(1, k - 1))] for i in range(k)] if k > 1 else reused[:1]
        was_training = self.model.training
        self.model.eval()
        total, peak, n = 0.0, 0.0, 0
        with self._timed("time/check_sampler_s"):
            for micro, share in self.engine.micro_batches(subset, self.opts.micro_batch_states):
                tb = collate(micro, self.pad_id)
                lp = token_logprobs(response_logits(self.model, tb, self.temperature), tb).cpu()
                if share:
                    t, p, c = logprob_gap(lp, _right_aligned(micro, "sampler", lp), tb.response_mask.cpu())
                    total, peak, n = total + t, max(peak, p), n + c
        self.model.train(was_training)
        if self.engine.world_size > 1:
            total, n = dist.all_reduce_sum([total, float(n)])
            peak = max(dist.all_gather_objects(peak))
        if not n:
            return {}
        if peak > 1e-3:
            log.warning("RL step %d: the sampler's log-probs, used as the behaviour's, differ from the trainer's by "
                        "up to %.3g (mean %.3g over %d tokens): they are not exact; trainer.behaviour_logprobs=score "
                        "scores them instead", step, peak, total / n, int(n))
        return {"rollout/sampler_check_gap_mean": total / n, "rollout/sampler_check_gap_max": peak}

    def _gap_metrics(self) -> dict[str, float]:
        """``rollout/logprob_gap_mean`` / ``_max``: per token, |trainer's behaviour log-prob - sampler's|, over
        every rank's tokens of this update (absent when the rollout engine gives no log-probs)."""
        total, peak, n = self._gap
        if self.engine.world_size > 1:
            total, n = dist.all_reduce_sum([total, float(n)])
            peak = max(dist.all_gather_objects(peak))
        if not n:
            return {}
        return {"rollout/logprob_gap_mean": total / n, "rollout/logprob_gap_max": peak}

    def _policy_micro_step(self, micro: list[Sample], weight: float, on_policy: bool,
                           measure_gap: bool = False) -> dict[str, float]:
        algo = self.algo
        tb = collate(micro, self.pad_id)
        logits = response_logits(self.model, tb, self.temperature)
        mask = tb.response_mask.to(logits.device)
        lp = token_logprobs(logits, tb)
        old = lp.detach() if on_policy else _right_aligned(micro, "old", lp)
        adv = _advantage_tensor(micro, lp)
        top_frac = algo.get("top_entropy_frac")
        if top_frac is not None:  # the policy gradient of the tokens where the policy chooses (the KL keeps all)
            with torch.no_grad():
                keep = top_entropy_mask(token_entropy(logits.detach()), mask, float(top_frac))
            adv = adv * keep
        if weight:  # not a padding pass
            self._tokens[0] += int(tb.attention_mask.sum())
            self._tokens[1] += tb.attention_mask.numel()
        metrics: dict[str, float] = {}
        if (measure_gap or self.tis_cap is not None) and all("sampler" in s.extras for s in micro):
            sampler = _right_aligned(micro, "sampler", lp)
            if measure_gap:  # each sample once (the first epoch), against the policy that was sampled
                total, peak, n = logprob_gap(old, sampler, mask)
                self._gap = [self._gap[0] + total, max(self._gap[1], peak), self._gap[2] + n]
            if self.tis_cap is not None:
                w = tis_weights(old, sampler, mask, float(self.tis_cap))
                adv = adv * w  # w > 0 scales both branches of the clipped surrogate alike
                tokens = mask.sum().clamp(min=1)
                metrics["train/tis_weight_mean"] = float((w * mask).sum() / tokens)
                metrics["train/tis_capped_frac"] = float(((w >= float(self.tis_cap)) * mask).sum() / tokens)
        pg, pm = self.spec.policy_loss(lp, old, adv, mask, self.algo_dict, self.agg)
        loss = pg
        metrics.update({"train/pg_loss": pg.item(), **{f"train/{k}": float(v) for k, v in pm.items()}})
        if self.kl_coef > 0:
            ref = _right_aligned(micro, "ref", lp)
            estimator = str(algo.kl_estimator)
            if self.kl_in == "loss":
                kl = kl_penalty_loss(lp, ref, mask, estimator=estimator, agg=self.agg)
                loss = loss + self.kl_coef * kl
                metrics["train/kl"] = kl.item()
            else:  # already in the rewards: only report it
                with torch.no_grad():
                    metrics["train/kl"] = kl_penalty_loss(lp.detach(), ref, mask, estimator, self.agg).item()
        ent_coef = float(algo.entropy_coef)
        if ent_coef > 0:
            ent = entropy_from_logits(logits, mask, self.agg)
            loss = loss - ent_coef * ent
            metrics["train/entropy"] = ent.item()
        else:
            with torch.no_grad():
                metrics["train/entropy"] = float(entropy_from_logits(logits.detach(), mask, self.agg))
        self.engine.backward(loss * weight)
        metrics["train/loss"] = loss.item()
        return metrics

    # ------------------------------------------------------------------ checkpoint extras
    def save_state(self, checkpoint_dir: str | Path, step: int) -> None:
        """Write what the policy checkpoint does not hold (PPO's critic) into ``checkpoint_dir``."""
        if self.value_model is not None:
            self.value_model.save(checkpoint_dir, step)

    def load_state(self, checkpoint_dir: str | Path, step: int | None = None) -> None:
        """Restore what ``save_state`` wrote (call after the policy and its optimizer are restored)."""
        if self.value_model is not None:
            self.value_model.load(checkpoint_dir, expected_step=step)


# ---------------------------------------------------------------------- helpers
def by_length(samples: list[Sample]) -> list[Sample]:
    """Samples ordered by token count (prompt + response), so that micro-batches pad little."""
    return sorted(samples, key=lambda s: len(s.prompt_ids) + len(s.response_ids))


def _sampler_is_exact(opts: RLOptions, model) -> bool:
    """Whether the rollout engine's log-probs are the behaviour log-probs a scoring pass would compute: the HF
    sampler records log_softmax(logits / T) of the very weights being trained, in fp32, and without top-p or top-k
    the tokens were drawn from that distribution. vLLM (its own kernels, maybe bf16) never is."""
    if opts.behaviour_logprobs != "auto" or opts.sampler != "hf":
        return False
    truncated = opts.top_p < 1.0 or opts.top_k > 0
    return not truncated and next(model.parameters()).dtype == torch.float32


def _n(sample: Sample) -> int:
    """Time units of a step for token credit (an empty response still counts as one, carrying no loss)."""
    return max(1, len(sample.response_ids))


def _set_advantage(sample: Sample, value) -> None:
    if isinstance(value, torch.Tensor):  # token credit: one advantage per response token
        sample.extras["adv"] = value.float()
        sample.advantage = float(value.mean()) if value.numel() else 0.0
    else:
        sample.advantage = float(value)


def _advantage_tensor(micro: list[Sample], like: torch.Tensor) -> torch.Tensor:
    """[B, R] advantages, right-aligned: per-token ones where present, else the sample's scalar."""
    out = torch.zeros_like(like)
    width = like.shape[1]
    for b, s in enumerate(micro):
        n = len(s.response_ids)
        if "adv" in s.extras:
            out[b, width - n:] = s.extras["adv"][-n:].to(out.device, out.dtype)
        else:
            out[b, width - n:] = s.advantage
    return out


def _micro_weight(micro: list[Sample], mb: list[Sample], agg: str) -> float:
    """A micro-batch's share of its mini-batch, so the summed micro losses equal the mini-batch loss:
    by tokens for token-mean, by sequences for the seq-mean aggregations."""
    if agg == "token-mean":
        return sum(len(s.response_ids) for s in micro) / max(1, sum(len(s.response_ids) for s in mb))
    return len(micro) / len(mb)


def signal_groups(episodes: list[Episode], limit: int, by: str = "return") -> list[Episode]:
    """Dynamic sampling (DAPO's filter_groups): the episodes of the first ``limit`` groups whose rollouts
    differ in ``by``: ``success`` (some succeed, some fail: DAPO's accuracy filter) or ``return``. A group
    whose returns are all equal has zero advantage everywhere; one that differs only by small penalties
    (Sokoban's -0.1 per invalid action) teaches the format, not the task."""
    groups: dict[int, list[Episode]] = {}
    for e in episodes:
        groups.setdefault(e.spec.group, []).append(e)

    keep = [g for g, eps in groups.items()
            if len(eps) > 1 and not _all_equal([float(e.success) if by == "success" else e.ret for e in eps])]
    return [e for g in keep[:max(0, limit)] for e in groups[g]]


def _all_equal(values: list[float]) -> bool:
    """A group whose values are all equal: zero advantage for every member."""
    return max(values) - min(values) < 1e-8


def _zero_signal_share(returns_by_group: dict[int, list[float]]) -> float:
    """Share of groups whose returns are all equal (no learning signal): a key GRPO diagnostic."""
    if not returns_by_group:
        return 0.0
    return sum(_all_equal(v) for v in returns_by_group.values()) / len(returns_by_group)


def _episode_metrics(episodes: list[Episode], train: list[Sample]) -> dict[str, float]:
    n = len(episodes)
    turns = [t for e in episodes for t in e.turns]
    tokens = sum(len(t.response_ids) for t in turns)
    groups: dict[int, list[float]] = {}
    for e in episodes:
        groups.setdefault(e.spec.group, []).append(e.ret)
    return {
        "rollout/success_rate": sum(e.success for e in episodes) / n,
        "rollout/return": sum(e.ret for e in episodes) / n,
        "rollout/episode_steps": len(turns) / n,
        "rollout/invalid_ratio": sum(t.invalid for t in turns) / max(1, len(turns)),
        "rollout/format_ratio": sum(t.format_ok for t in turns) / max(1, len(turns)),
        "rollout/capped_ratio": sum(t.capped for t in turns) / max(1, len(turns)),
        "rollout/response_tokens": tokens / max(1, len(turns)),
        "rollout/prompt_tokens": sum(len(t.prompt_ids) for t in turns) / max(1, len(turns)),
        "rollout/samples": float(len(train)),
        "rollout/zero_adv_groups": _zero_signal_share(groups),
        "rollout/trajectories": float(n),
        "rollout/generated_tokens": float(tokens),
        "rollout/generated_tokens_per_trajectory": tokens / n,
        "rollout/generated_tokens_per_sample": tokens / max(1, len(train)),
        "rollout/env_steps": float(len(turns)),
        "rollout/env_steps_per_sample": len(turns) / max(1, len(train)),
    }


def _tree_rollout_metrics(forest: Forest) -> dict[str, float]:
    """Chain-comparable figures over the forest's leaves (a leaf = one root-to-leaf trajectory)."""
    leaves = forest.leaves()
    n = max(1, len(leaves))
    nodes = [node for _, s in forest.live() for node in s.step_nodes()]
    turns: list[Turn] = [node.data["turn"] for node in nodes]
    groups: dict[int, list[float]] = {}
    for g, search in forest.live():
        groups[g] = [leaf.path_return() for leaf in search.leaves()]
    return {
        "rollout/success_rate": sum(bool(leaf.data.get("success")) for leaf in leaves) / n,
        "rollout/return": sum(leaf.path_return() for leaf in leaves) / n,
        "rollout/episode_steps": sum(leaf.depth for leaf in leaves) / n,
        "rollout/invalid_ratio": sum(t.invalid for t in turns) / max(1, len(turns)),
        "rollout/format_ratio": sum(t.format_ok for t in turns) / max(1, len(turns)),
        "rollout/capped_ratio": sum(t.capped for t in turns) / max(1, len(turns)),
        "rollout/response_tokens": sum(len(t.response_ids) for t in turns) / max(1, len(turns)),
        "rollout/prompt_tokens": sum(len(t.prompt_ids) for t in turns) / max(1, len(turns)),
        "rollout/zero_adv_groups": _zero_signal_share(groups),
    }


def _advantage_metrics(train: list[Sample]) -> dict[str, float]:
    if not train:
        return {}
    adv = torch.tensor([s.advantage for s in train])
    out = {"adv/mean": float(adv.mean()), "adv/std": float(adv.std()) if len(train) > 1 else 0.0,
           "adv/abs_max": float(adv.abs().max())}
    if "returns" in train[0].extras:
        out["critic/returns_mean"] = float(torch.stack([s.extras["returns"][0] for s in train]).mean())
        out["critic/values_mean"] = float(torch.stack([s.extras["values"][0] for s in train]).mean())
    if "kl" in train[0].extras:
        out["rollout/kl_in_reward"] = float(torch.cat([s.extras["kl"] for s in train]).mean())
    return out
