"""GiGPO, Group-in-Group Policy Optimization (Feng et al. 2025, arXiv 2505.10978; verl-agent's algorithm).

GRPO gives every step of an episode the same advantage, so a good move inside a failed episode is pushed down
with the rest. GiGPO adds step-level credit without a critic, from the rollouts' own structure: the episodes of
one group start from the same instance and often pass through the same env state (the first state always; in
Sokoban also every state an invalid move leaves unchanged, or one reached by different paths). Steps of a group
that acted in the same *anchor state* form a step group, and their discounted returns are compared there:

    A_episode(e)  = GRPO's group-normalised return R_e                       (``mode``: mean_std_norm | mean_norm)
    G(e, k)       = sum_{j >= k} gamma^(j-k) r(e, j)                         (``gamma``, default 0.95)
    A_step(e, k)  = (G(e, k) - mean_S G) / (std_S G + 1e-6) over step group S   (mean_norm: G - mean_S G)
    A(e, k)       = A_episode(e) + omega * A_step(e, k)                      (``omega``, default 1)

A step group of one step has no baseline: its step advantage is 0. States come from the env's ``state_key``
(Sokoban: the room; the text envs: the observation without distractors), so augmentation does not split a step
group. ``similarity_thresh`` < 1 also merges text states whose similarity ratio reaches it (verl-agent's
similarity-based grouping), for envs whose observations differ in irrelevant details.

Defaults follow the paper; where verl-agent's code makes another modelling choice it is a named option:
- ``episode_stats``: the episode level's mean and std are over the group's episodes (``episode``, the paper's
  GRPO over trajectories) or over its step rows, each episode's return counted once per step (``step``,
  verl-agent's default, which weighs long episodes more: lengths 1 and 3 with returns 1 and 0 give +-0.707 per
  episode, +1.5 / -0.5 per step);
- ``singletons``: a group of one (an episode group or a step group) has no baseline: advantage 0 (``zero``), or
  verl-agent's mean 0 / std 1, which passes its raw return through (``raw``);
- ``similarity_autojunk``: difflib's autojunk heuristic in the similarity ratio (verl-agent leaves difflib's
  default, true, which for texts of 200+ characters treats every frequent character as junk and lowers the
  ratio of near-identical observations a lot); false compares the texts as they are.
"""

from __future__ import annotations

import difflib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from agentgen.algos.advantages import grpo_advantages
from agentgen.algos.base import OPTIONAL, Algorithm, BadValue, GroupConfig, StepAdvantages, StepBatch

NORM_MODES = ("mean_std_norm", "mean_norm")
EPISODE_STATS = ("episode", "step")  # the episode level's statistics: over episodes (paper) | step rows (verl-agent)
SINGLETONS = ("zero", "raw")  # a group of one: advantage 0 | its raw return (verl-agent's mean 0, std 1)
EPS = 1e-6


@dataclass
class GiGPOConfig(GroupConfig):
    name: str = "gigpo"
    mode: str = "mean_std_norm"  # mean_std_norm: (x - mean) / (std + 1e-6) | mean_norm: x - mean (both levels)
    gamma: float = 0.95  # discount of the step returns compared within a step group
    omega: float = 1.0  # weight of the step-level advantage: A = A_episode + omega * A_step
    similarity_thresh: float = 1.0  # 1.0: identical states only; < 1: text states this similar share a group
    episode_stats: str = field(default="episode", metadata=OPTIONAL)  # episode (paper) | step (verl-agent)
    singletons: str = field(default="zero", metadata=OPTIONAL)  # zero (no baseline) | raw (verl-agent)
    similarity_autojunk: bool = field(default=False, metadata=OPTIONAL)  # difflib's autojunk (verl-agent: true)


def discounted_returns(rewards: Sequence[Sequence[float]], gamma: float) -> list[list[float]]:
    """G(e, k) = r(e, k) + gamma * G(e, k + 1) within each episode."""
    out = []
    for ep in rewards:
        g, row = 0.0, [0.0] * len(ep)
        for k in range(len(ep) - 1, -1, -1):
            g = float(ep[k]) + gamma * g
            row[k] = g
        out.append(row)
    return out


def step_groups(state_keys: Sequence[Sequence[Hashable]], group_ids: Sequence[int],
                similarity_thresh: float = 1.0, autojunk: bool = False) -> list[list[int]]:
    """An id per step: steps of the same episode group whose anchor states are equal (or, for text states,
    at least ``similarity_thresh`` similar to the step group's first state) share it. A missing key (None)
    never matches anything."""
    clusters: dict[int, list[tuple[Hashable, int]]] = {}  # episode group -> [(representative key, id)]
    exact: dict[tuple[int, Hashable], int] = {}
    next_id = 0
    out: list[list[int]] = []
    for keys, g in zip(state_keys, group_ids):
        row = []
        for key in keys:
            sid = None
            if key is not None:
                sid = exact.get((g, key))
                if sid is None and similarity_thresh < 1.0 and isinstance(key, str):
                    sid = next((cid for rep, cid in clusters.get(g, []) if isinstance(rep, str) and
                                difflib.SequenceMatcher(None, rep, key, autojunk=autojunk).ratio()
                                >= similarity_thresh),
                               None)
            if sid is None:
                sid, next_id = next_id, next_id + 1
                if key is not None:
                    clusters.setdefault(g, []).append((key, sid))
            if key is not None:
                exact.setdefault((g, key), sid)
            row.append(sid)
        out.append(row)
    return out


def gigpo_advantages(rewards: Sequence[Sequence[float]], group_ids: Sequence[int],
                     state_keys: Sequence[Sequence[Hashable]], *, gamma: float = 0.95, omega: float = 1.0,
                     mode: str = "mean_std_norm", similarity_thresh: float = 1.0, episode_stats: str = "episode",
                     singletons: str = "zero", similarity_autojunk: bool = False) -> list[list[float]]:
    """Per-step GiGPO advantages (see the module docstring), ragged like ``rewards``."""
    sid = step_groups(state_keys, group_ids, similarity_thresh, similarity_autojunk)
    return advantages_over_step_groups(rewards, group_ids, sid, gamma=gamma, omega=omega, mode=mode,
                                       episode_stats=episode_stats, singletons=singletons)


def normalised(values: torch.Tensor, groups: torch.Tensor, norm: bool, singletons: str) -> torch.Tensor:
    """GRPO's group normalisation; a group of one gets 0 (``zero``) or its value through mean 0 / std 1
    (``raw``, as verl-agent)."""
    adv = grpo_advantages(values, groups, norm_by_std=norm, eps=EPS)
    if singletons == "raw":
        _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
        alone = counts[inverse] == 1
        adv = torch.where(alone, values / (1.0 + EPS) if norm else values, adv)
    return adv


def advantages_over_step_groups(rewards: Sequence[Sequence[float]], group_ids: Sequence[int],
                                sid: Sequence[Sequence[int]], *, gamma: float, omega: float, mode: str,
                                episode_stats: str = "episode", singletons: str = "zero") -> list[list[float]]:
    """``gigpo_advantages`` given the step-group id of every step (``step_groups``)."""
    if mode not in NORM_MODES:
        raise ValueError(f"gigpo mode={mode!r} is invalid; valid: {', '.join(NORM_MODES)}")
    if episode_stats not in EPISODE_STATS or singletons not in SINGLETONS:
        raise ValueError(f"gigpo episode_stats={episode_stats!r} / singletons={singletons!r}: valid "
                         f"{', '.join(EPISODE_STATS)} / {', '.join(SINGLETONS)}")
    if [len(k) for k in sid] != [len(r) for r in rewards]:
        raise ValueError("state_keys must hold one key per step of every episode")
    norm = mode == "mean_std_norm"
    returns = torch.tensor([sum(r) for r in rewards], dtype=torch.float64)
    groups = torch.tensor(list(group_ids))
    if episode_stats == "step":  # one row per step, each holding its episode's return (verl-agent)
        lengths = torch.tensor([max(1, len(r)) for r in rewards])
        rows = normalised(returns.repeat_interleave(lengths), groups.repeat_interleave(lengths), norm, singletons)
        a_episode = rows[torch.cumsum(lengths, 0) - lengths].tolist()  # each episode's first row
    else:
        a_episode = normalised(returns, groups, norm, singletons).tolist()
    g = discounted_returns(rewards, gamma)
    flat_g = torch.tensor([x for row in g for x in row], dtype=torch.float64)
    flat_s = torch.tensor([x for row in sid for x in row])
    a_step_flat = normalised(flat_g, flat_s, norm, singletons).tolist()
    out, i = [], 0
    for e, row in enumerate(rewards):
        out.append([a_episode[e] + omega * a_step_flat[i + k] for k in range(len(row))])
        i += len(row)
    return out


def step_group_sizes(sid: Sequence[Sequence[int]]) -> list[int]:
    """Size of every step group, from ``step_groups``'s ids (the ``gigpo/*`` diagnostics)."""
    counts: dict[int, int] = {}
    for row in sid:
        for s in row:
            counts[s] = counts.get(s, 0) + 1
    return list(counts.values())


class GiGPO(Algorithm):
    name = "gigpo"
    config = GiGPOConfig
    summary = "GRPO's episode advantage plus a step advantage from anchor-state groups (step-level credit)"
    advantage_level = "step"

    def check(self, cfg: GiGPOConfig, bad: BadValue) -> None:
        if cfg.mode not in NORM_MODES:
            raise bad("mode", ", ".join(NORM_MODES))
        if not 0 < cfg.similarity_thresh <= 1:
            raise bad("similarity_thresh", "a number in (0, 1] (1: identical states only)")
        if cfg.omega < 0:
            raise bad("omega", "a number >= 0 (the step advantage's weight)")
        if cfg.episode_stats not in EPISODE_STATS:
            raise bad("episode_stats", ", ".join(EPISODE_STATS) + " (the episode level's mean and std over the "
                      "group's episodes, as the paper, or over its step rows, as verl-agent)")
        if cfg.singletons not in SINGLETONS:
            raise bad("singletons", ", ".join(SINGLETONS) + " (a group of one: advantage 0, or its raw return as "
                      "verl-agent)")

    def step_advantages(self, algo: Mapping[str, Any], batch: StepBatch) -> StepAdvantages:
        if batch.state_keys is None:
            raise ValueError("gigpo needs the anchor state of every step (Turn.state_key from the env's state_key)")
        sid = step_groups(batch.state_keys, batch.group_ids, float(algo["similarity_thresh"]),
                          bool(algo.get("similarity_autojunk", False)))
        adv = advantages_over_step_groups(batch.rewards, batch.group_ids, sid, gamma=float(algo["gamma"]),
                                          omega=float(algo["omega"]), mode=str(algo["mode"]),
                                          episode_stats=str(algo.get("episode_stats", "episode")),
                                          singletons=str(algo.get("singletons", "zero")))
        sizes = step_group_sizes(sid)
        steps = sum(sizes)
        metrics = {  # how much step-level credit there is: steps in a step group of 2 or more get some
            "gigpo/step_groups": float(len(sizes)),
            "gigpo/shared_step_frac": sum(n for n in sizes if n > 1) / max(1, steps),
            "gigpo/step_group_size_mean": steps / max(1, len(sizes)),
        }
        return StepAdvantages(adv, metrics=metrics)


ALGORITHM = GiGPO()
