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
  ratio of near-identical observations a lot); false compares the texts as they are;
- ``invalid_penalty``: the invalid-action penalty (the env's ``info["invalid_penalty"]``, ``Turn.penalty``) is a
  step reward like any other (``return``, the paper: Eq. 5 discounts every step reward, so a penalty at step j
  lowers G(e, k) of every k <= j by gamma^(j-k), and R_e sums it), or it is charged to its own step only
  (``step``, verl-agent's ``apply_invalid_action_penalty``: R_e and G are the task rewards', and the invalid step's
  row gets the penalty on both levels: its episode-level score R_e + p and its step return G(e, k) + p).
  With ``step`` the episode level scores each step row apart; with ``episode_stats: episode`` the group's mean
  and std are still those of its episodes' (task) returns, each row normalised by them;
- ``kl_reward`` (with ``kl_in: reward``): a step's KL penalty beta * KL(step) is a step reward like any other
  (``return``, as every agentgen algorithm reads ``kl_in: reward``: R_e sums it and G(e, k) discounts the KL of
  step k and every later step), or it reaches the episode level only, each step row's score carrying its own
  step's KL (``row``, verl-agent: ``apply_kl_penalty`` changes ``token_level_rewards``, which only
  ``episode_norm_reward`` reads; ``step_norm_reward`` reads step returns computed from the env rewards before).
"""

from __future__ import annotations

import difflib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from agentgen.algos.advantages import _group_stats, grpo_advantages
from agentgen.algos.base import OPTIONAL, Algorithm, BadValue, GroupConfig, StepAdvantages, StepBatch

NORM_MODES = ("mean_std_norm", "mean_norm")
EPISODE_STATS = ("episode", "step")  # the episode level's statistics: over episodes (paper) | step rows (verl-agent)
SINGLETONS = ("zero", "raw")  # a group of one: advantage 0 | its raw return (verl-agent's mean 0, std 1)
INVALID_PENALTY = ("return", "step")  # the penalty discounted into the returns (paper) | on its own step (verl-agent)
KL_REWARD = ("return", "row")  # kl_in: reward on both levels as a step reward | on the episode rows only (verl-agent)
CHOICES = {  # agentgen's default first, verl-agent's choice second, and what they mean (for the errors)
    "episode_stats": (EPISODE_STATS, "the episode level's mean and std over the group's episodes, as the paper, or "
                      "over its step rows, as verl-agent"),
    "singletons": (SINGLETONS, "a group of one: advantage 0, or its raw return as verl-agent"),
    "invalid_penalty": (INVALID_PENALTY, "the invalid-action penalty a step reward, discounted into the returns, as "
                        "the paper, or charged to its own step only, as verl-agent"),
    "kl_reward": (KL_REWARD, "with kl_in: reward, the KL penalty a step reward on both levels, or on each step row's "
                  "episode-level score only, as verl-agent"),
}
EPS = 1e-6
Ragged = list[list[float]]  # per episode, per step


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
    invalid_penalty: str = field(default="return", metadata=OPTIONAL)  # return: a step reward, discounted (paper)
    # | step: charged to the invalid step's own row on both levels (verl-agent's apply_invalid_action_penalty)
    kl_reward: str = field(default="return", metadata=OPTIONAL)  # kl_in: reward: the KL penalty a step reward on
    # both levels | row: each step row's episode-level score only, the step returns KL-free (verl-agent)


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


def split_kl(rewards: Ragged, rows: Ragged | None, step_kl: Sequence[Sequence[float]] | None,
             kl_reward: str) -> tuple[Ragged, Ragged | None]:
    """(the rewards the returns are built from, the episode-level terms of each row): with ``row`` each step's KL
    penalty (``StepBatch.step_kl``, already in the rewards) moves out of the returns onto its own row."""
    if kl_reward not in KL_REWARD:
        raise ValueError(f"gigpo kl_reward={kl_reward!r} is invalid; valid: {', '.join(KL_REWARD)}")
    if kl_reward == "return" or step_kl is None:
        return rewards, rows
    rows = rows or [[0.0] * len(ep) for ep in rewards]
    return ([[r + c for r, c in zip(er, ec)] for er, ec in zip(rewards, step_kl)],
            [[t - c for t, c in zip(et, ec)] for et, ec in zip(rows, step_kl)])


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
                     singletons: str = "zero", similarity_autojunk: bool = False,
                     penalties: Sequence[Sequence[float]] | None = None,
                     invalid_penalty: str = "return") -> list[list[float]]:
    """Per-step GiGPO advantages (see the module docstring), ragged like ``rewards``; ``penalties[e][k]`` is the
    invalid-action penalty included in ``rewards[e][k]`` (read with ``invalid_penalty: step``)."""
    sid = step_groups(state_keys, group_ids, similarity_thresh, similarity_autojunk)
    rewards, own = split_penalties(rewards, penalties, invalid_penalty)
    return advantages_over_step_groups(rewards, group_ids, sid, gamma=gamma, omega=omega, mode=mode,
                                       episode_stats=episode_stats, singletons=singletons, row_terms=own,
                                       step_terms=own)


def split_penalties(rewards: Sequence[Sequence[float]], penalties: Sequence[Sequence[float]] | None,
                    invalid_penalty: str) -> tuple[list[list[float]], list[list[float]] | None]:
    """(the rewards the returns are built from, the terms charged to their own step only): with ``return`` the
    rewards as they are and no own-step terms; with ``step`` the penalties taken out of the rewards and
    charged to their own steps."""
    if invalid_penalty not in INVALID_PENALTY:
        raise ValueError(f"gigpo invalid_penalty={invalid_penalty!r} is invalid; valid: {', '.join(INVALID_PENALTY)}")
    rewards = [[float(r) for r in ep] for ep in rewards]
    if invalid_penalty == "return":
        return rewards, None
    if penalties is None or [len(p) for p in penalties] != [len(r) for r in rewards]:
        raise ValueError("gigpo invalid_penalty=step needs the invalid-action penalty of every step (Turn.penalty, "
                         "from the env's info['invalid_penalty'])")
    own = [[float(p) for p in ep] for ep in penalties]
    return [[r - p for r, p in zip(er, ep)] for er, ep in zip(rewards, own)], own


def normalised(values: torch.Tensor, groups: torch.Tensor, norm: bool, singletons: str) -> torch.Tensor:
    """GRPO's group normalisation; a group of one gets 0 (``zero``) or its value through mean 0 / std 1
    (``raw``, as verl-agent)."""
    adv = grpo_advantages(values, groups, norm_by_std=norm, eps=EPS)
    if singletons == "raw":
        _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
        alone = counts[inverse] == 1
        adv = torch.where(alone, values / (1.0 + EPS) if norm else values, adv)
    return adv


def rows_normalised_by_episodes(rows: torch.Tensor, row_groups: torch.Tensor, returns: torch.Tensor,
                                groups: torch.Tensor, norm: bool, singletons: str) -> torch.Tensor:
    """Each step row's own score normalised with its group's mean and std over the group's episodes' returns
    (``episode_stats: episode`` when a row carries a term of its own step); a group of one episode as in
    ``normalised``."""
    count, mean, std = _group_stats(returns, groups)
    first: dict[int, int] = {}
    for i, g in enumerate(groups.tolist()):
        first.setdefault(g, i)
    at = torch.tensor([first[g] for g in row_groups.tolist()], dtype=torch.long)
    centred = rows - mean[at]
    alone = count[at] == 1
    adv = torch.where(alone, torch.zeros_like(centred), centred / (std[at] + EPS) if norm else centred)
    if singletons == "raw":
        adv = torch.where(alone, rows / (1.0 + EPS) if norm else rows, adv)
    return adv


def advantages_over_step_groups(rewards: Sequence[Sequence[float]], group_ids: Sequence[int],
                                sid: Sequence[Sequence[int]], *, gamma: float, omega: float, mode: str,
                                episode_stats: str = "episode", singletons: str = "zero",
                                row_terms: Sequence[Sequence[float]] | None = None,
                                step_terms: Sequence[Sequence[float]] | None = None) -> list[list[float]]:
    """``gigpo_advantages`` given the step-group id of every step (``step_groups``). R_e and G(e, k) are built
    from ``rewards``; ``row_terms[e][k]`` is added to step k's episode-level score only (R_e + t) and
    ``step_terms[e][k]`` to its step return only (G(e, k) + t), never summed or discounted into other steps."""
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
    lengths = torch.tensor([len(r) for r in rewards])
    row_groups = groups.repeat_interleave(lengths)
    rows = returns.repeat_interleave(lengths)  # one row per step, each holding its episode's return
    if row_terms is not None:
        rows = rows + torch.tensor([t for ep in row_terms for t in ep], dtype=torch.float64)
    if episode_stats == "step":  # statistics over the step rows (verl-agent)
        a_rows = normalised(rows, row_groups, norm, singletons)
    elif row_terms is not None:
        a_rows = rows_normalised_by_episodes(rows, row_groups, returns, groups, norm, singletons)
    else:
        a_rows = normalised(returns, groups, norm, singletons).repeat_interleave(lengths)
    g = discounted_returns(rewards, gamma)
    flat_g = torch.tensor([x for row in g for x in row], dtype=torch.float64)
    if step_terms is not None:
        flat_g = flat_g + torch.tensor([t for ep in step_terms for t in ep], dtype=torch.float64)
    flat_s = torch.tensor([x for row in sid for x in row])
    a_flat = (a_rows + omega * normalised(flat_g, flat_s, norm, singletons)).tolist()
    out, i = [], 0
    for row in rewards:
        out.append(a_flat[i:i + len(row)])
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
        for key, (valid, meaning) in CHOICES.items():
            if getattr(cfg, key) not in valid:
                raise bad(key, f"{', '.join(valid)} ({meaning})")
        if cfg.kl_reward == "row" and cfg.kl_in != "reward":
            raise bad("kl_reward", f"return here: row places a KL penalty in the reward, and kl_in={cfg.kl_in!r} puts "
                      "it in the loss (set algo.kl_in=reward for verl-agent's placement)")

    def step_advantages(self, algo: Mapping[str, Any], batch: StepBatch) -> StepAdvantages:
        if batch.state_keys is None:
            raise ValueError("gigpo needs the anchor state of every step (Turn.state_key from the env's state_key)")
        sid = step_groups(batch.state_keys, batch.group_ids, float(algo["similarity_thresh"]),
                          bool(algo.get("similarity_autojunk", False)))
        rewards, own = split_penalties(batch.rewards, batch.penalties, str(algo.get("invalid_penalty", "return")))
        rewards, rows = split_kl(rewards, own, batch.step_kl, str(algo.get("kl_reward", "return")))
        adv = advantages_over_step_groups(rewards, batch.group_ids, sid, gamma=float(algo["gamma"]),
                                          omega=float(algo["omega"]), mode=str(algo["mode"]),
                                          episode_stats=str(algo.get("episode_stats", "episode")),
                                          singletons=str(algo.get("singletons", "zero")), row_terms=rows,
                                          step_terms=own)
        sizes = step_group_sizes(sid)
        steps = sum(sizes)
        metrics = {  # how much step-level credit there is: steps in a step group of 2 or more get some
            "gigpo/step_groups": float(len(sizes)),
            "gigpo/shared_step_frac": sum(n for n in sizes if n > 1) / max(1, steps),
            "gigpo/step_group_size_mean": steps / max(1, len(sizes)),
        }
        return StepAdvantages(adv, metrics=metrics)


ALGORITHM = GiGPO()
