"""The report's arithmetic against the study's published numbers (papers.md section A).

What papers.md makes checkable, and what it does not:
- OOD ranking: Table 2 gives every success rate the ranking needs, and Table 1 the published scores
  (V2 column and V1+V2 column). Both are reproduced exactly, and only with dense ranks and the 0.5-point
  tie rule (tests below show competition ranks or no tie rule give different scores).
- Delta-OOD: the augmented rows (the study's Table 5) are NOT in papers.md, only the four reported
  percentages. So the published Delta-OOD values cannot be recomputed here. What is checked: the
  formula itself on hand-computed inputs, and that the denominator the report uses for each reported
  figure is the Table 2 row's OOD sum over the envs actually evaluated (V1 rows have no SciWorld), by
  feeding an augmented row consistent with the reported figure (assumption: Table 5's no-augmentation
  rows equal Table 2's rows).
- Thinking-off figures (Table 7: -119%, -234%, -216.5%, -216.9%) disagree with the stated formula:
  with success rates >= 0 the formula cannot go below -100%. They fit a sum of per-env relative
  changes (floor -100% x number of OOD envs); the report shows that column too. The thinking-off rows
  themselves are not in papers.md, so the figures cannot be recomputed either way.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agentgen.report.metrics import (
    delta_ood,
    delta_ood_relative_sum,
    dense_rank_with_ties,
    last_k_mean,
    mean_std,
    ood_envs_for,
    ood_ranking,
    pass_at_k,
    sequential_metrics,
)

PAPER = json.loads((Path(__file__).parent / "data" / "report" / "paper_tables.json").read_text())
TABLE2 = PAPER["table2"]
TABLE1 = PAPER["table1"]


def trained_rows(start: str) -> dict[str, dict[str, float]]:
    """Table 2's trained rows of one starting checkpoint, without the '-' (unevaluated) cells."""
    return {env: {e: v for e, v in row.items() if v is not None}
            for env, row in TABLE2[start].items() if env != "base"}


# --------------------------------------------------------------------------- OOD ranking (Table 1)
def test_ood_ranking_reproduces_table1_v2_column():
    ranking = ood_ranking(trained_rows("v2"), tie_points=0.5)
    assert ranking.scores == {env: TABLE1[env]["ood_rank_v2"] for env in TABLE1}
    # ALFWorld eval: Sokoban 20.0 and SciWorld 19.8 tie (gap 0.2 < 0.5), WebShop 17.0 comes next (dense).
    assert ranking.ranks["alfworld"] == {"sokoban": 1, "sciworld": 1, "webshop": 2}
    assert ranking.ranks["webshop"] == {"sciworld": 1, "sokoban": 2, "alfworld": 3}
    assert ranking.ranks["sokoban"] == {"sciworld": 1, "alfworld": 2, "webshop": 3}  # 9.8 vs 9.0: no tie
    assert ranking.ranks["sciworld"] == {"webshop": 1, "sokoban": 2, "alfworld": 3}  # 13.8 vs 13.0: no tie


def test_ood_ranking_reproduces_table1_v1_plus_v2_column():
    v1 = ood_ranking(trained_rows("v1")).scores
    v2 = ood_ranking(trained_rows("v2")).scores
    # V1 ranks only ALFWorld/WebShop/Sokoban (no SciWorld run, no SciWorld evaluation).
    assert v1 == {"alfworld": 2, "webshop": 4, "sokoban": 2}
    for env, row in TABLE1.items():
        combined = v1[env] + v2[env] if env in v1 else None  # SciWorld: '-' in the paper
        assert combined == row["ood_rank_v1_v2"], env


def test_table1_needs_dense_ranks_and_the_half_point_tie_rule():
    # Without ties (threshold 0) the V2 scores differ from the published 10/6, 7/5, 10/8, -/3 ...
    no_ties = ood_ranking(trained_rows("v2"), tie_points=0.0).scores
    assert no_ties != {env: TABLE1[env]["ood_rank_v2"] for env in TABLE1}
    assert no_ties["sciworld"] == 4 and no_ties["webshop"] == 7
    # ... and so does V1's (ALFWorld 15.2 vs Sokoban 15.0 on WebShop would no longer tie).
    assert ood_ranking(trained_rows("v1"), tie_points=0.0).scores["sokoban"] == 3
    # Dense ranks (1, 1, 2), not competition ranks (1, 1, 3): on ALFWorld (evaluated: Sokoban 20.0, SciWorld
    # 19.8, WebShop 17.0) the WebShop-trained model ranks 2nd, which is what gives WebShop its V2 score of 6;
    # competition ranking would rank it 3rd and score it 7.
    alf_eval = {"sokoban": 20.0, "sciworld": 19.8, "webshop": 17.0}
    assert dense_rank_with_ties(alf_eval, 0.5) == {"sokoban": 1, "sciworld": 1, "webshop": 2}
    v2 = ood_ranking(trained_rows("v2"))
    assert v2.ranks["alfworld"]["webshop"] == 2 and v2.scores["webshop"] == 6


def test_dense_rank_tie_rules():
    assert dense_rank_with_ties({"a": 10.0, "b": 9.6, "c": 9.0}) == {"a": 1, "b": 1, "c": 2}
    # A gap of exactly 0.5 points is not a tie ("ties under 0.5 points"), float noise included.
    assert dense_rank_with_ties({"a": 10.3, "b": 9.8}) == {"a": 1, "b": 2}
    # Ties are measured from the best value of the group, so they do not chain: 20.0 ~ 19.7 ~ 19.4
    # pairwise, but 19.4 is 0.6 below the group's best.
    assert dense_rank_with_ties({"a": 20.0, "b": 19.7, "c": 19.4}) == {"a": 1, "b": 1, "c": 2}
    assert dense_rank_with_ties({}) == {}


def test_ood_ranking_skips_unevaluated_cells_and_in_domain():
    ranking = ood_ranking({"a": {"a": 90.0, "b": 10.0}, "b": {"a": 5.0, "b": 80.0, "c": 3.0}})
    assert ranking.ranks == {"a": {"b": 1}, "b": {"a": 1}, "c": {"b": 1}}
    assert ranking.scores == {"a": 1, "b": 2}
    assert ranking.ranked_on == {"a": ["b"], "b": ["a", "c"]}


# --------------------------------------------------------------------------- Delta-OOD
def test_delta_ood_formula_by_hand():
    base = {"a": 50.0, "b": 10.0, "c": 20.0}
    var = {"a": 45.0, "b": 16.0, "c": 26.0}
    # OOD envs for training on "a": b and c. (16-10 + 26-20) / (10+20) = 40%.
    envs = ood_envs_for(["a"], var, base)
    assert envs == ["b", "c"]
    assert delta_ood(var, base, envs) == pytest.approx(40.0)
    # Per-env relative changes: 60% + 30% = 90%.
    assert delta_ood_relative_sum(var, base, envs) == pytest.approx(90.0)
    assert delta_ood(var, {"a": 1.0, "b": 0.0, "c": 0.0}, envs) is None  # undefined, not infinite
    assert delta_ood(var, base, []) is None


@pytest.mark.parametrize("row", PAPER["augmentation_delta_ood"], ids=lambda r: f"{r['start']}-{r['train_env']}")
def test_reported_augmentation_delta_ood_denominators(row):
    """The reported figures cannot be recomputed (no augmented rows in papers.md); this checks the
    OOD envs and baseline sum the formula uses for each, and that a consistent row gives the figure."""
    baseline = trained_rows(row["start"])[row["train_env"]]
    expected_envs = {"v1": 2, "v2": 3}[row["start"]]  # V1 rows were not evaluated on SciWorld
    envs = ood_envs_for([row["train_env"]], baseline)
    assert len(envs) == expected_envs and row["train_env"] not in envs
    base_sum = sum(baseline[e] for e in envs)
    expected_sums = {("v1", "webshop"): 23.6, ("v1", "sokoban"): 35.5, ("v2", "webshop"): 39.8,
                     ("v2", "alfworld"): 50.3}
    assert base_sum == pytest.approx(expected_sums[(row["start"], row["train_env"])])
    # The whole reported gain on one OOD env (a uniform scaling would give the figure under the mean of
    # per-env relative changes too): Delta-OOD, a ratio of sums, still gives the figure; the sum of per-env
    # relative changes gives gain / that env's baseline instead.
    first = envs[0]
    gain = base_sum * row["delta_ood"] / 100
    augmented = {**baseline, first: baseline[first] + gain}
    assert delta_ood(augmented, baseline, envs) == pytest.approx(row["delta_ood"])
    assert delta_ood_relative_sum(augmented, baseline, envs) == pytest.approx(gain / baseline[first] * 100)


@pytest.mark.parametrize("row", PAPER["thinking_off_ood_change"], ids=lambda r: f"{r['start']}-{r['train_env']}")
def test_reported_thinking_off_figures_disagree_with_the_stated_formula(row):
    """Table 7 reports OOD changes below -100%, which the stated Delta-OOD formula cannot produce:
    even an agent that never succeeds OOD scores exactly -100%. The figures do fit the sum of per-env
    relative changes, whose floor is -100% per OOD env (-200% for V1, -300% for V2)."""
    baseline = trained_rows(row["start"])[row["train_env"]]
    envs = ood_envs_for([row["train_env"]], baseline)
    never = {e: 0.0 for e in baseline}
    floor = delta_ood(never, baseline, envs)
    assert floor == pytest.approx(-100.0)
    assert row["change"] < floor  # the paper's own figure is outside the formula's range
    relative_floor = delta_ood_relative_sum(never, baseline, envs)
    assert relative_floor == pytest.approx(-100.0 * len(envs))
    assert relative_floor <= row["change"] < -100.0


# --------------------------------------------------------------------------- protocol helpers
def test_last_k_mean_uses_the_last_checkpoints_by_step():
    points = [(150, 0.9), (15, 0.1), (105, 0.6), (120, 0.7), (135, 0.8), (90, 0.5)]
    assert last_k_mean(points, 4) == pytest.approx((0.6 + 0.7 + 0.8 + 0.9) / 4)
    assert last_k_mean(points[:2], 4) == pytest.approx(0.5)  # fewer than K: what there is
    assert last_k_mean([], 4) is None
    with pytest.raises(ValueError, match="at least 1"):
        last_k_mean(points, 0)


def test_mean_std_is_the_sample_spread():
    stat = mean_std([40.0, 44.0, 48.0])
    assert stat.mean == pytest.approx(44.0) and stat.std == pytest.approx(4.0) and stat.n == 3
    assert mean_std([42.0]).std is None
    assert mean_std([None, float("nan")]) is None


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 8, 3) == 1.0  # fewer than k failures: some draw always succeeds
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k(4, 5, 1)


def test_sequential_forgetting_and_transfer():
    start = {"a": 10.0, "b": 20.0, "c": 5.0}
    stages = [{"a": 50.0, "b": 25.0, "c": 6.0}, {"a": 40.0, "b": 60.0, "c": 9.0}, {"a": 35.0, "b": 52.0, "c": 70.0}]
    m = sequential_metrics(["a", "b", "c"], stages, start)
    assert m.forgetting == {"a": pytest.approx(15.0), "b": pytest.approx(8.0)}  # last stage forgets nothing yet
    assert m.transfer == {"b": pytest.approx(5.0), "c": pytest.approx(4.0)}
    assert sequential_metrics(["a", "b"], stages[:2], None).transfer == {}
    with pytest.raises(ValueError, match="stage"):
        sequential_metrics(["a"], stages, start)
