"""The report end to end: summary.json files on disk -> aggregation -> HTML / Markdown / CSV.

The study's Table 2 goes in as jobs (one per start checkpoint and training env, step 0 = the base
row, step 150 = the published cell); the report must give back Table 2 and Table 1's OOD ranking
scores. The committed demo sweep (tests/data/report/sweep, see make_sweep.py) covers seeds,
variants, a mixture, a sequential run, a failed job and a profile.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentgen.report import build_report, load_directory, write_report
from agentgen.report.aggregate import Settings
from agentgen.report.schema import RunSummary, SummaryError
from agentgen.report.tables import Cell, matrix_table

DATA = Path(__file__).parent / "data" / "report"
ROOT = Path(__file__).parent.parent
_spec = importlib.util.spec_from_file_location("report_fixtures", DATA / "make_sweep.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)
PAPER = fixtures.PAPER


@pytest.fixture(scope="module")
def paper_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper_sweep")
    fixtures.write_paper_sweep(root)
    profile = {e: {"avg_chars": row["avg_chars"], "avg_steps": row["avg_steps"], "success_rate": 0.2,
                   "optimal_len": 10.0} for e, row in PAPER["table1"].items()}
    (root / "profile.json").write_text(json.dumps(profile))
    loaded = load_directory(root)
    return build_report(loaded.runs, str(root), profiles=loaded.profiles, problems=loaded.problems, plots=False)


@pytest.fixture(scope="module")
def demo_report():
    loaded = load_directory(DATA / "sweep")
    return build_report(loaded.runs, "demo sweep", profiles=loaded.profiles, problems=loaded.problems)


def _cells(table, first_col: str) -> list:
    return next(row for row in table.rows if row[0] == first_col)


def _mean(cell):
    value = cell.value if isinstance(cell, Cell) else cell
    return None if value is None else value.mean


def test_paper_sweep_gives_back_table2(paper_report):
    agg = paper_report.aggregate
    assert [agg.choice_label(c) for c in agg.choices] == ["start=v1", "start=v2"]
    for choice in agg.choices:
        start = dict(choice)["start"]
        table = matrix_table(agg, choice)
        envs = ["alfworld", "webshop", "sokoban", "sciworld"]
        assert table.columns[1:5] == ["ALFWorld", "WebShop", "Sokoban", "SciWorld"]
        base = _cells(table, "start checkpoint (step 0)")
        assert [_mean(c) for c in base[1:5]] == pytest.approx([PAPER["table2"][start]["base"][e] for e in envs])
        for env, row in PAPER["table2"][start].items():
            if env == "base":
                continue
            cells = _cells(table, {"alfworld": "ALFWorld", "webshop": "WebShop", "sokoban": "Sokoban",
                                   "sciworld": "SciWorld"}[env])
            for e, cell in zip(envs, cells[1:5]):
                assert _mean(cell) == (pytest.approx(row[e]) if row[e] is not None else None), (start, env, e)
                assert (cell.tag == "ID") == (e == env)


def test_paper_sweep_gives_back_table1_ranking(paper_report):
    table = paper_report.table("ood_rank_score")
    assert table.columns == ["training env", "start=v1", "start=v2", "start=v1+v2"]
    got = {row[0]: row[1:] for row in table.rows}
    t1 = PAPER["table1"]
    assert got == {
        "ALFWorld": [2, t1["alfworld"]["ood_rank_v2"], t1["alfworld"]["ood_rank_v1_v2"]],
        "WebShop": [4, t1["webshop"]["ood_rank_v2"], t1["webshop"]["ood_rank_v1_v2"]],
        "Sokoban": [2, t1["sokoban"]["ood_rank_v2"], t1["sokoban"]["ood_rank_v1_v2"]],
        "SciWorld": [None, 3, None],  # no V1 SciWorld run: '-' like the paper
    }
    # The profile table lines the environment metrics up with those scores, as Table 1 does.
    profile = {row[0]: row for row in paper_report.table("env_profile").rows}
    assert _mean(profile["Sokoban"][2]) == 3114 and _mean(profile["Sokoban"][3]) == pytest.approx(44.0)
    assert profile["Sokoban"][-1] == 7 and profile["SciWorld"][-1] is None and profile["SciWorld"][-2] == 3


def test_paper_sweep_warns_about_single_checkpoint_runs(paper_report):
    assert any("fewer than 4 checkpoint" in w for w in paper_report.warnings)


def test_delta_ood_rows_pair_variants_with_their_baseline(demo_report):
    agg = demo_report.aggregate
    rows = {(r.train_label, r.factor): r for r in agg.delta_rows()}
    assert set(rows) == {("alfworld", "think"), ("sokoban", "think"), ("webshop", "augment"), ("sokoban", "augment")}
    r = rows[("webshop", "augment")]
    assert r.ood_envs == ["alfworld", "sokoban", "sciworld"]
    var = agg.cell(r.choice, "webshop").final
    base = agg.cell(r.baseline, "webshop").final
    expected = sum(var[e].mean - base[e].mean for e in r.ood_envs) / sum(base[e].mean for e in r.ood_envs) * 100
    assert r.delta == pytest.approx(expected)
    assert r.delta > 0 and rows[("alfworld", "think")].delta < 0  # as the fixture was built
    assert dict(r.baseline)["augment"] == "none" and dict(r.choice)["augment"] == "state"
    assert r.delta_per_seed.n == 2


def test_seed_spread_and_last_k_protocol(demo_report):
    agg = demo_report.aggregate
    choice = agg.choices[0]
    cell = agg.cell(choice, "sokoban")
    assert cell.seeds == ["0", "1"]
    per_seed = []
    for run in cell.runs:
        pts = sorted((s, ev["sokoban"]["success_rate"]) for s, ev in run.eval_history if s > 0)[-4:]
        assert [s for s, _ in pts] == [105, 120, 135, 150]
        per_seed.append(sum(v for _, v in pts) / 4 * 100)
    stat = cell.final["sokoban"]
    assert stat.mean == pytest.approx(sum(per_seed) / 2)
    assert stat.std == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2 ** 0.5)
    # K is a setting: K=1 is the last checkpoint only.
    loaded = load_directory(DATA / "sweep")
    last_only = build_report(loaded.runs, "x", Settings(last_k=1), plots=False).aggregate
    run0 = cell.runs[0]
    assert last_only.cell(choice, "sokoban").per_seed["sokoban"]["0"] == pytest.approx(
        run0.eval_history[-1][1]["sokoban"]["success_rate"] * 100)


def test_sequential_forgetting_transfer_and_joint_comparison(demo_report):
    rows = demo_report.aggregate.sequential_rows()
    assert [(r.sequence, r.stage, r.env) for r in rows] == [("sokoban>alfworld", 1, "sokoban"),
                                                             ("sokoban>alfworld", 2, "alfworld")]
    sok, alf = rows
    runs = demo_report.aggregate.cell(sok.choice, "sokoban>alfworld").runs
    forgets = [(r.stages[0]["eval"]["sokoban"]["success_rate"] - r.stages[1]["eval"]["sokoban"]["success_rate"]) * 100
               for r in runs]
    assert sok.forgetting.mean == pytest.approx(sum(forgets) / len(forgets))
    assert sok.forgetting.mean > 5  # the fixture's second stage drops Sokoban to ~24%
    transfers = [(r.stages[0]["eval"]["alfworld"]["success_rate"] - r.start_eval()["alfworld"]["success_rate"]) * 100
                 for r in runs]
    assert alf.transfer.mean == pytest.approx(sum(transfers) / len(transfers))
    assert sok.joint_final is not None and alf.joint_final is not None  # the alfworld+sokoban mixture


def test_failed_runs_are_listed_not_averaged(demo_report):
    agg = demo_report.aggregate
    assert len(agg.failed) == 1 and "JVM" in agg.failed[0].error
    assert all(r.completed for cell in agg.cells.values() for r in cell.runs)
    assert agg.cell(agg.choices[0], "sciworld").seeds == ["0", "1"]  # seed 2 failed
    failed = demo_report.table("failed_runs")
    assert failed.rows[0][-1].startswith("ScienceWorld JVM exited")


def test_duplicate_summaries_count_once(tmp_path):
    src = next((DATA / "sweep").glob("0/summary.json"))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(src, tmp_path / name / "summary.json")
    loaded = load_directory(tmp_path)
    report = build_report(loaded.runs, "dup", plots=False)
    assert len(report.aggregate.completed) == 1
    assert any("1 duplicate summaries (same variant, training env and seed) ignored" in w for w in report.warnings)


def test_bad_summaries_are_reported_with_the_field(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "summary.json").write_text(json.dumps({"status": "done", "train_env": "sokoban"}))
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "summary.json").write_text("{not json")
    loaded = load_directory(tmp_path)
    assert loaded.runs == []
    assert any("'status' is 'done'; valid values: 'completed', 'failed'" in p for p in loaded.problems)
    assert any("not valid JSON" in p for p in loaded.problems)
    with pytest.raises(SummaryError, match="train_env"):
        RunSummary.from_dict({"status": "completed", "train_env": ""}, "s.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_directory(tmp_path / "nope")


def test_write_report_files(tmp_path, demo_report):
    paths = write_report(demo_report, tmp_path)
    html = paths["html"].read_text()
    assert html.count("<table>") == len([t for s in demo_report.sections for t in s.items if hasattr(t, "columns")])
    assert html.count('src="data:image/png;base64,') == len(demo_report.figures) >= 7  # self-contained
    assert "http://" not in html and "https://" not in html
    md = paths["markdown"].read_text()
    assert "| training env | ALFWorld | WebShop | Sokoban | SciWorld |" in md
    assert "**ID " in md
    for fig in demo_report.figures:
        assert (tmp_path / "figures" / f"{fig.key}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "tables" / "results_long.csv") as f:
        rows = list(csv.DictReader(f))
    sok = [r for r in rows if r["choice"] == "augment=none, think=true" and r["train_env"] == "sokoban"
           and r["eval_env"] == "sokoban"]
    assert len(sok) == 1 and sok[0]["role"] == "ID" and sok[0]["n_seeds"] == "2"
    assert 0 < float(sok[0]["success_rate_mean"]) < 100
    with open(tmp_path / "tables" / "ood_rank_score.csv") as f:
        assert next(csv.reader(f))[0] == "training env"


def test_cli_end_to_end(tmp_path):
    """``python -m agentgen.report <dir>``, as a user runs it (fresh interpreters, about 8 s)."""
    sweep = tmp_path / "sweep"
    shutil.copytree(DATA / "sweep", sweep)
    proc = subprocess.run([sys.executable, "-m", "agentgen.report", str(sweep), "--last-k", "2",
                           "--baseline", "sft=warmup"], capture_output=True, text=True, check=False, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "read 21 summaries (20 completed, 1 failed)" in proc.stdout
    out = sweep / "report"
    assert (out / "report.html").stat().st_size > 50_000
    assert "mean over the last 2 checkpoints" in (out / "report.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "agentgen.report", str(sweep), "--baseline", "think"],
                         capture_output=True, text=True, check=False, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and "must look like FACTOR=VALUE" in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "agentgen.report", str(tmp_path / "nothing")],
                             capture_output=True, text=True, check=False, cwd=ROOT, timeout=300)
    assert missing.returncode == 2 and "neither a directory nor a wandb group" in missing.stderr


def _job(train_env: str, seed: int, history: list[tuple[int, dict]]) -> RunSummary:
    return RunSummary.from_dict({
        "status": "completed", "train_env": train_env, "variant": {"think": True, "seed": seed},
        "eval": history[-1][1], "eval_history": [{"step": s, "eval": ev} for s, ev in history]}, f"{train_env}-{seed}")


def test_pass_at_k_metric_and_unknown_metric():
    """pass@k is optional: jobs that log it in their eval blocks get it reported with --metric pass@k."""
    runs = [_job("sokoban", seed, [(0, {"sokoban": {"success_rate": 0.1, "pass@4": 0.3}}),
                                   (15, {"sokoban": {"success_rate": 0.4, "pass@4": 0.7 + 0.1 * seed}})])
            for seed in (0, 1)]
    agg = build_report(runs, "k", Settings(metric="pass@4"), plots=False).aggregate
    stat = agg.cell(runs[0].choice, "sokoban").final["sokoban"]
    assert stat.mean == pytest.approx(75.0) and stat.n == 2  # shown in percent like success
    with pytest.raises(ValueError, match=r"metric 'pass@8' is in no evaluation .* pass@4, success_rate"):
        build_report(runs, "k", Settings(metric="pass@8"), plots=False)
    with pytest.raises(ValueError, match="last_k must be a positive"):
        Settings(last_k=0)
