"""What an RL algorithm is to agentgen: a typed config and the advantages of one batch of steps.

Every algorithm is one module (``grpo.py``, ``gigpo.py``, ...) holding three things:

- its config, a dataclass extending ``AlgoConfig`` (each field documented where it is declared, the way TRL
  documents its trainer configs); ``conf/algo/<name>.yaml`` holds the same keys with the study's values;
- an ``Algorithm`` subclass that says what the trainer must build for it (a critic, groups, trees), checks the
  values types cannot express, and turns a ``StepBatch`` (ragged per-episode step rewards, group ids, anchor
  states, ...) into ``StepAdvantages``;
- optionally its own ``policy_loss`` (GSPO's sequence-level ratio); the default is PPO's clipped surrogate.

The registry (``agentgen.algos.registry``) collects the modules; the trainer dispatches through it, so adding an
algorithm is one module, one yaml and its tests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor

from agentgen.algos.losses import KL_ESTIMATORS, LOSS_AGGREGATIONS, policy_loss

KL_PLACEMENTS = ("loss", "reward")
# How the steps of an episode weigh in the loss: ``step`` = every step is one sample of weight 1 (the
# study's stepwise trainer); ``episode`` = each episode weighs the same, its steps sharing the weight.
STEP_WEIGHTS = ("step", "episode")
FILTER_GROUPS_BY = ("success", "return")  # dynamic sampling: keep groups whose rollouts differ in this

OPTIONAL = {"optional": True}  # field metadata: the key may be left out of a yaml (older configs)


@dataclass
class AlgoConfig:
    """Keys every algorithm has."""

    name: str = ""  # dispatch key: conf/algo/<name>.yaml <-> agentgen/algos/<name>.py
    group_size: int = 8  # rollouts per environment instance (prompt); the group of group-relative advantages
    kl_coef: float = 0.01  # beta of the KL(pi || pi_ref) term (study: 0.01); 0 skips the reference model
    kl_estimator: str = "k3"  # k1 | k2 | k3 (low-variance, clamped to +-10) | abs
    kl_in: str = "loss"  # loss: add beta * KL to the loss | reward: subtract it from the rewards
    clip_low: float = 0.2  # PPO ratio lower clip: ratio >= 1 - clip_low
    clip_high: float = 0.2  # PPO ratio upper clip: ratio <= 1 + clip_high (0.28: DAPO's clip-higher)
    dual_clip: Optional[float] = None  # c > 1 bounds the loss of negative-advantage tokens at -c*A; None = off
    entropy_coef: float = 0.0  # entropy bonus: loss -= entropy_coef * entropy
    ppo_epochs: int = 1  # passes over each rollout batch (1 = on-policy, the ratio starts at 1)
    loss_agg: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum
    tis_cap: Optional[float] = field(default=None, metadata=OPTIONAL)  # truncated importance sampling: weigh
    # each token by min(pi_trainer / pi_sampler, tis_cap) (vLLM sampling in bf16 on a cluster); None = off
    top_entropy_frac: Optional[float] = field(default=None, metadata=OPTIONAL)  # policy gradient on the top
    # fraction of each micro-batch's response tokens by entropy only (Wang et al. 2025: 0.2); None = every token


@dataclass
class ChainConfig(AlgoConfig):
    """Algorithms over independent chains (every algorithm but Tree-GRPO)."""

    step_weight: str = field(default="step", metadata=OPTIONAL)  # step (the study) | episode: each episode
    # weighs the same, so long failed episodes do not outweigh short wins (see ``episode_balanced``)


@dataclass
class GroupConfig(ChainConfig):
    """Chains compared within their group (GRPO, RLOO, GiGPO, GSPO): these can filter groups (DAPO)."""

    filter_groups: Optional[str] = field(default=None, metadata=OPTIONAL)  # dynamic sampling: train only on
    # groups whose rollouts differ in success | return; None = off (the study)
    max_sampling_rounds: int = field(default=3, metadata=OPTIONAL)  # with filter_groups: rollout batches of
    # prompts_per_step new instances a step may play until that many groups carry a signal


@dataclass
class StepBatch:
    """One RL step's rollouts, ragged per episode e and step k, as the advantage maths reads them.

    - ``rewards[e][k]``: environment reward of step k (minus ``kl_coef`` * the step's KL with ``kl_in: reward``);
    - ``group_ids[e]``: the instance (prompt) episode e was rolled out from;
    - ``values[e][k]``: the critic's values (PPO): a float for turn credit, a [n_k] tensor for token credit;
    - ``token_kl[e][k]``: [n_k] per-token KL of step k's response (``kl_in: reward`` with token credit);
    - ``response_lengths[e][k]``: response tokens of step k (token credit);
    - ``state_keys[e][k]``: the env's canonical key of the state step k acted in (GiGPO's anchor states);
    - ``penalties[e][k]``: the invalid-action penalty included in ``rewards[e][k]`` (0 for a valid action), for
      an algorithm that applies it apart (GiGPO's ``invalid_penalty: step``); the others read ``rewards`` only;
    - ``step_kl[e][k]``: ``kl_coef`` * step k's summed KL, already subtracted from ``rewards[e][k]`` (``kl_in:
      reward`` with turn credit; GiGPO's ``kl_reward: row`` applies it apart).
    """

    rewards: list[list[float]]
    group_ids: list[int]
    values: Sequence[Sequence[Any]] | None = None
    token_kl: Sequence[Sequence[Tensor]] | None = None
    kl_coef: float = 0.0
    response_lengths: Sequence[Sequence[int]] | None = None
    state_keys: Sequence[Sequence[Any]] | None = None
    penalties: Sequence[Sequence[float]] | None = None
    step_kl: Sequence[Sequence[float]] | None = None

    def episode_returns(self) -> Tensor:
        """R_e = the sum of episode e's (KL-adjusted) step rewards, float64."""
        return torch.tensor([sum(r) for r in self.rewards], dtype=torch.float64)


@dataclass
class StepAdvantages:
    """``advantages[e][k]``: a float (turn credit) or a [n_tokens] tensor (token credit).
    ``returns[e][k]``: the critic's regression target in the same layout (PPO), else None."""

    advantages: list[list[Any]]
    returns: list[list[Any]] | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # the algorithm's own diagnostics (logged as is)


def broadcast(per_episode: Sequence[float], rewards: Sequence[Sequence[float]]) -> list[list[float]]:
    """Every step of episode e gets episode e's advantage."""
    return [[float(a)] * len(r) for a, r in zip(per_episode, rewards)]


def episode_balanced(advantages: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Scale every step's advantage of episode e by mean_T / T_e, T_e = its number of steps.

    In the stepwise formulation an episode of T steps is T samples, so with a group-normalised return a
    15-step failure pushes its tokens down 15 times while a 5-step success pushes its tokens up 5 times:
    the advantages of a group sum to 0 over episodes but not over samples. Tokens every response shares
    (the answer format, the end of turn) then drift down, and long failures outweigh short successes.
    With this weight each episode counts once, as in trajectory-level GRPO, and the total weight of the
    batch (the number of samples) is unchanged. The PPO-clip loss is linear in a positive scale of A,
    so scaling the advantage is the same as weighting the sample's policy loss."""
    lengths = [len(ep) for ep in advantages]
    mean_t = sum(lengths) / max(1, len(lengths))
    return [[a * (mean_t / n) for a in ep] for ep, n in zip(advantages, lengths)]


BadValue = Callable[[str, str], ValueError]


class Algorithm(ABC):
    """One RL algorithm: what the trainer must build for it, its checks, its advantages and its loss."""

    name: ClassVar[str]
    config: ClassVar[type[AlgoConfig]]
    summary: ClassVar[str]
    needs_critic: ClassVar[bool] = False  # train a value model alongside the policy (PPO)
    uses_groups: ClassVar[bool] = True  # the advantage compares rollouts of the same instance (needs group ids)
    uses_tree: ClassVar[bool] = False  # rollouts are built with TreeSearch instead of independent chains
    advantage_level: ClassVar[str] = "episode"  # episode | step | sequence | tree (what the advantage varies over)

    # ------------------------------------------------------------------ config
    def required_keys(self) -> list[str]:
        return [f.name for f in fields(self.config) if not f.metadata.get("optional")]

    def check(self, cfg: AlgoConfig, bad: BadValue) -> None:  # noqa: B027 - optional hook: few algos need it
        """Values of this algorithm's own keys that types cannot check; ``bad(key, valid)`` builds the error."""

    # ------------------------------------------------------------------ advantages and loss
    @abstractmethod
    def step_advantages(self, algo: Mapping[str, Any], batch: StepBatch) -> StepAdvantages:
        """Per-step advantages (and the critic's returns, and diagnostics) of one batch of chains."""

    def policy_loss(self, logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor,
                    algo: Mapping[str, Any], agg: str) -> tuple[Tensor, dict[str, float]]:
        """PPO's clipped surrogate (token-level ratio), with clip-higher and dual-clip."""
        return policy_loss(logprobs, old_logprobs, advantages, mask, clip_low=float(algo["clip_low"]),
                           clip_high=float(algo["clip_high"]), agg=agg, dual_clip=algo.get("dual_clip"))


def check_common(cfg: AlgoConfig, algorithm: Algorithm, bad: BadValue) -> None:
    """The checks every algorithm's config passes (the keys of ``AlgoConfig``, ``ChainConfig``, ``GroupConfig``)."""
    if cfg.kl_estimator not in {a for aliases in KL_ESTIMATORS.values() for a in aliases}:
        raise bad("kl_estimator", ", ".join(KL_ESTIMATORS))
    if cfg.kl_in not in KL_PLACEMENTS:
        raise bad("kl_in", ", ".join(KL_PLACEMENTS))
    if cfg.loss_agg not in LOSS_AGGREGATIONS:
        raise bad("loss_agg", ", ".join(LOSS_AGGREGATIONS))
    for key in ("kl_coef", "clip_low", "clip_high", "entropy_coef"):
        if getattr(cfg, key) < 0:
            raise bad(key, "a number >= 0")
    if cfg.clip_low >= 1:
        raise bad("clip_low", "a number in [0, 1) (the ratio's lower bound is 1 - clip_low)")
    if cfg.dual_clip is not None and not cfg.dual_clip > 1:
        raise bad("dual_clip", "null or a number > 1")
    if cfg.ppo_epochs < 1:
        raise bad("ppo_epochs", "an integer >= 1")
    if cfg.tis_cap is not None and not cfg.tis_cap > 0:
        raise bad("tis_cap", "null (off) or a number > 0, e.g. 2")
    if cfg.top_entropy_frac is not None and not 0 < cfg.top_entropy_frac <= 1:
        raise bad("top_entropy_frac", "null (every token) or a fraction in (0, 1], e.g. 0.2")
    min_group = 2 if algorithm.uses_groups and not algorithm.uses_tree else 1
    if cfg.group_size < min_group:
        raise bad("group_size", f"an integer >= {min_group}"
                  + (" (the advantage compares rollouts of a group)" if min_group == 2 else ""))
    if isinstance(cfg, ChainConfig) and cfg.step_weight not in STEP_WEIGHTS:
        raise bad("step_weight", ", ".join(STEP_WEIGHTS))
    if isinstance(cfg, GroupConfig):
        if cfg.filter_groups is not None and cfg.filter_groups not in FILTER_GROUPS_BY:
            raise bad("filter_groups", "null (off), " + ", ".join(FILTER_GROUPS_BY))
        if cfg.max_sampling_rounds < 1:
            raise bad("max_sampling_rounds", "an integer >= 1 (rollout batches per step while filtering groups)")
    for key in ("gamma", "lam"):
        if hasattr(cfg, key) and not 0 <= getattr(cfg, key) <= 1:
            raise bad(key, "a number in [0, 1]")
