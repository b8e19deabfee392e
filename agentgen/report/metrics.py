"""The study's arithmetic as pure functions: checkpoint averaging, seed spread, pass@k, Delta-OOD,
the OOD ranking score (ties under 0.5 points) and forgetting / transfer for sequential runs.

Kept free of I/O and rendering so each figure can be checked against the published numbers.
Success values are whatever unit the caller passes (the report passes percent, like the paper);
``tie_points`` is in that same unit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# Comparisons at the tie threshold: a gap of exactly ``tie_points`` (up to float noise) is not a tie.
_EPS = 1e-9


@dataclass(frozen=True)
class Stat:
    """Mean over seeds with its spread (sample standard deviation, ddof=1; None for one seed)."""

    mean: float
    std: float | None
    n: int
    values: tuple[float, ...] = field(default=(), compare=False)

    @property
    def lo(self) -> float:
        return min(self.values) if self.values else self.mean

    @property
    def hi(self) -> float:
        return max(self.values) if self.values else self.mean


def mean_std(values: Iterable[float]) -> Stat | None:
    """Mean and sample standard deviation of ``values`` (None if there are none)."""
    vals = tuple(float(v) for v in values if v is not None and not math.isnan(float(v)))
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    std = None
    if len(vals) > 1:
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    return Stat(mean=mean, std=std, n=len(vals), values=vals)


def last_k_mean(points: Sequence[tuple[int, float]], k: int = 4) -> float | None:
    """Mean of the values at the last ``k`` checkpoints (by step) of one run.

    ``points`` are (step, value) pairs of the checkpoint evaluations *after* training started; the
    study reports the mean over the last 4 checkpoints (steps 105-150 of 150). Fewer than ``k``
    checkpoints: the mean over those there are.
    """
    if k < 1:
        raise ValueError(f"last-k must be at least 1, got {k}")
    pts = sorted((int(s), float(v)) for s, v in points if v is not None)
    if not pts:
        return None
    tail = pts[-k:]
    return sum(v for _, v in tail) / len(tail)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate from ``n`` attempts of which ``c`` succeeded (Chen et al., 2021):
    1 - C(n-c, k) / C(n, k). pass@1 equals c / n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def ood_envs_for(train_envs: Iterable[str], *evals: Mapping[str, float | None]) -> list[str]:
    """The eval envs that are out-of-domain for ``train_envs`` and have a value in every ``evals``."""
    trained = set(train_envs)
    envs = [e for e in evals[0] if e not in trained] if evals else []
    return [e for e in envs if all(ev.get(e) is not None for ev in evals)]


def delta_ood(variant: Mapping[str, float], baseline: Mapping[str, float], ood_envs: Iterable[str]) -> float | None:
    """The study's Delta-OOD in percent:
    sum_e [succ(variant, e) - succ(baseline, e)] / sum_e succ(baseline, e) x 100, over OOD envs e.

    None when the baseline's OOD sum is zero (the ratio is undefined). With non-negative success
    rates the result is never below -100.
    """
    envs = list(ood_envs)
    if not envs:
        return None
    base = sum(baseline[e] for e in envs)
    if base == 0:
        return None
    return sum(variant[e] - baseline[e] for e in envs) / base * 100.0


def delta_ood_relative_sum(
    variant: Mapping[str, float], baseline: Mapping[str, float], ood_envs: Iterable[str]
) -> float | None:
    """Sum over OOD envs of the per-env relative change, in percent: sum_e (v_e - b_e) / b_e x 100.

    Not the study's stated formula, but the only simple reading consistent with its Table 7
    figures (-119%, -234%, -216.5%, -216.9%), which lie below the stated formula's floor of -100%;
    this one's floor is -100% x number of OOD envs. Envs with a zero baseline are skipped.
    """
    envs = [e for e in ood_envs if baseline[e] != 0]
    if not envs:
        return None
    return sum((variant[e] - baseline[e]) / baseline[e] for e in envs) * 100.0


def dense_rank_with_ties(values: Mapping[str, float], tie_points: float = 0.5) -> dict[str, int]:
    """Rank names by value, best (highest) first, with ties: 1, 1, 2, 3, ...

    Going down the sorted list, a value within ``tie_points`` (strictly less) of the best value of
    the current tie group joins that group; otherwise it starts the next rank. Dense ranks (the next
    group gets rank + 1, not rank + group size) are what reproduce the study's Table 1 figures from
    its Table 2 (e.g. WebShop's V2 score of 6, which competition ranking would make 7).
    """
    ordered = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    ranks: dict[str, int] = {}
    rank, leader = 0, None
    for name, value in ordered:
        if leader is None or leader - value >= tie_points - _EPS:
            rank += 1
            leader = value
        ranks[name] = rank
    return ranks


@dataclass(frozen=True)
class OodRanking:
    """Per OOD eval env, the rank of each training env there; ``scores`` sums them (lower is better)."""

    ranks: dict[str, dict[str, int]]  # eval env -> training env -> rank
    scores: dict[str, int]  # training env -> sum of its ranks over its OOD eval envs
    ranked_on: dict[str, list[str]]  # training env -> the eval envs it was ranked on


def ood_ranking(matrix: Mapping[str, Mapping[str, float | None]], tie_points: float = 0.5) -> OodRanking:
    """The study's OOD ranking score from a success matrix {training env: {eval env: success}}.

    For each eval env, the training envs other than that env with a value there are ranked by
    success (dense ranks, ties under ``tie_points``); a training env's score is the sum of its ranks.
    """
    eval_envs: list[str] = []
    for row in matrix.values():
        eval_envs += [e for e in row if e not in eval_envs]
    ranks: dict[str, dict[str, int]] = {}
    for env in eval_envs:
        contenders = {t: row[env] for t, row in matrix.items() if t != env and row.get(env) is not None}
        if contenders:
            ranks[env] = dense_rank_with_ties(contenders, tie_points)
    scores = {t: 0 for t in matrix}
    ranked_on: dict[str, list[str]] = {t: [] for t in matrix}
    for env, by_train in ranks.items():
        for t, r in by_train.items():
            scores[t] += r
            ranked_on[t].append(env)
    return OodRanking(ranks=ranks, scores={t: s for t, s in scores.items() if ranked_on[t]}, ranked_on=ranked_on)


@dataclass(frozen=True)
class SequentialMetrics:
    """Forgetting and transfer of one sequential run (stages e_1 > e_2 > ... > e_T).

    ``forgetting[e_i]`` (i < T): success on e_i right after its own stage minus at the end; positive
    means the later stages made the agent forget. ``transfer[e_i]`` (i > 1): success on e_i just
    before its own stage minus at the start, i.e. what the earlier stages gave it for free
    (needs the start evaluation). ``after_stage[j][e]`` is success on e after stage j (1-based).
    """

    forgetting: dict[str, float]
    transfer: dict[str, float]
    after_stage: list[dict[str, float]]
    start: dict[str, float] | None


def sequential_metrics(
    stage_envs: Sequence[str], stage_evals: Sequence[Mapping[str, float]], start_eval: Mapping[str, float] | None
) -> SequentialMetrics:
    if len(stage_envs) != len(stage_evals):
        raise ValueError(f"{len(stage_envs)} stage envs but {len(stage_evals)} stage evaluations")
    final = stage_evals[-1] if stage_evals else {}
    forgetting: dict[str, float] = {}
    transfer: dict[str, float] = {}
    for i, env in enumerate(stage_envs):
        own = stage_evals[i].get(env)
        if i < len(stage_envs) - 1 and own is not None and final.get(env) is not None:
            forgetting[env] = own - final[env]
        if i > 0 and start_eval is not None:
            before = stage_evals[i - 1].get(env)
            if before is not None and start_eval.get(env) is not None:
                transfer[env] = before - start_eval[env]
    return SequentialMetrics(
        forgetting=forgetting,
        transfer=transfer,
        after_stage=[dict(e) for e in stage_evals],
        start=dict(start_eval) if start_eval is not None else None,
    )
