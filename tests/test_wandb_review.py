"""Reviewing a sweep in wandb, on wandb's own offline files (read back with ``wandb leet inspect``, no
server): a real local ``-m ... debug=smoke`` sweep of 2 jobs logs into one group named after its sweep
dir, each run named by the override that varies, its choices at the top of the config and as tags, and
its ``final/`` summary; ``python -m agentgen.report <sweep> --wandb --wandb-dashboard`` puts the tables
and figures into a ``job_type=report`` run of that group and builds a view whose every panel names a
metric the runs really log; ``python -m agentgen.cluster.status`` prints the one ``wandb sync`` command.

The Slurm side (the group and name from inside a submitit job, a requeued job's several folders) is
checked in tests/test_slurm_e2e.py's time-limit test."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from agentgen.report.sources import find_offline_runs, read_offline_run
from agentgen.tracking import dashboard_config, job_choices, short_run_name, sweep_group, swept_keys

ROOT = Path(__file__).resolve().parent.parent
# 2 jobs, 1 RL step each, evaluated before training and at the end on 2 envs, 2 episodes each.
SWEEP_ARGS = ("env=sokoban", "think=true,false", "debug=smoke", "sft=none", "trainer.steps=1",
              "eval.before_training=true", "eval.envs=[sokoban,webshop]", "hydra.sweep.subdir=${hydra.job.num}")
slow = pytest.mark.slow  # the sweep and its report: about 1.5 min on 2 busy cores
CHOICES = ("env", "augment", "sft", "think", "algo", "model", "start", "seed")


def run(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The sweep dir after the sweep and its report (with --wandb and --wandb-dashboard)."""
    tmp = tmp_path_factory.mktemp("review")
    sweep = tmp / "think_ablation"
    run(str(ROOT / "launch.py"), "-m", *SWEEP_ARGS, f"hydra.sweep.dir={sweep}", cwd=tmp)
    report = run("-m", "agentgen.report", str(sweep), "--wandb", "--wandb-dashboard", cwd=tmp)
    assert "group think_ablation" in report.stdout, report.stdout
    return sweep


@pytest.fixture(scope="module")
def job_runs(sweep):
    """job num -> its offline run, read back with wandb's reader."""
    return {int(d.parents[1].name): read_offline_run(d) for d in find_offline_runs(sweep) if "report" not in d.parts}


@pytest.fixture(scope="module")
def report_run(sweep):
    (run_dir,) = find_offline_runs(sweep / "report")
    return read_offline_run(run_dir)


@slow
def test_a_sweep_is_one_group_runs_named_by_their_choice_job_type_is_the_task(job_runs):
    assert sorted(job_runs) == [0, 1]
    assert {r.group for r in job_runs.values()} == {"think_ablation"}
    assert [job_runs[n].name for n in (0, 1)] == ["think=true", "think=false"]  # only think varies
    assert {r.job_type for r in job_runs.values()} == {"train"}
    assert all(r.state == "finished" for r in job_runs.values())


@slow
def test_choices_are_top_level_config_keys_and_tags(job_runs):
    for num, think in ((0, True), (1, False)):
        rec = job_runs[num]
        assert {k: rec.config[k] for k in CHOICES} == {
            "env": "sokoban", "augment": "none", "sft": "none", "think": think, "algo": "grpo", "model": "tiny",
            "start": "base", "seed": 0}
        assert rec.config["env_config"]["sokoban"]["max_steps"] == 15  # the env group's node, kept beside
        assert rec.config["trainer"]["steps"] == 1 and rec.config["train_env"] == "sokoban"
        assert {"env:sokoban", f"think:{str(think).lower()}", "sft:none", "algo:grpo", "seed:0"} <= set(rec.tags)


@slow
def test_run_summary_has_final_in_domain_ood_and_change_from_start(sweep, job_runs):
    for num, rec in job_runs.items():
        s = json.loads((sweep / str(num) / "summary.json").read_text())
        final = {e: m["success_rate"] for e, m in s["eval"].items()}  # 1 step: the last-K mean is the final eval
        start = s["eval_history"][0]
        assert start["step"] == 0 and set(start["eval"]) == {"sokoban"}  # before training: the trained env
        assert rec.summary["final/sokoban/success_rate"] == pytest.approx(final["sokoban"])
        assert rec.summary["final/webshop/success_rate"] == pytest.approx(final["webshop"])
        assert rec.summary["final/in_domain_success"] == pytest.approx(final["sokoban"])
        assert rec.summary["final/ood_mean_success"] == pytest.approx(final["webshop"])
        assert rec.summary["final/sokoban/change_from_start"] == pytest.approx(
            final["sokoban"] - start["eval"]["sokoban"]["success_rate"])
        assert "final/webshop/change_from_start" not in rec.summary  # webshop had no step-0 evaluation


@slow
def test_report_run_holds_the_tables_in_the_sweeps_group(sweep, report_run):
    assert report_run.group == "think_ablation" and report_run.job_type == "report"
    tables = sorted(p.stem for p in (sweep / "report" / "tables").glob("*.csv"))
    assert tables, "the report wrote no tables"
    logged = {k.rsplit("._type", 1)[0]: v for row in report_run.history for k, v in row.items() if k.endswith("._type")}
    for key in tables:
        assert logged[f"report/{key}"] == "table-file", key
    assert any(k.startswith("report/success_") for k in logged), sorted(logged)  # the success matrix
    assert "report/delta_ood" in logged  # think=false against the baseline think=true
    figures = sorted(p.stem for p in (sweep / "report" / "figures").glob("*.png"))
    assert any(f.startswith("heatmap_") for f in figures) and any(f.startswith("curves_") for f in figures), figures
    for key in figures:
        assert logged[f"report/figures/{key}"] == "image-file", key
    images = [p for p in (Path(report_run.source) / "files" / "media" / "images").rglob("*.png")]
    assert len(images) == len(figures)


@slow
def test_dashboard_panels_name_metrics_the_runs_log(sweep, job_runs, report_run):
    from agentgen.report import build_report, load_directory
    from agentgen.report.dashboard import dashboard_metrics, sweep_workspace, workspace_spec

    loaded = load_directory(sweep)
    report = build_report(loaded.runs, str(sweep))
    workspace = sweep_workspace(report, "<entity>", "agentgen", "think_ablation")
    named = dashboard_metrics(workspace)
    assert {"eval/sokoban/success_rate", "eval/webshop/success_rate", "trainer/global_step"} <= named.history
    assert {"env", "think"} <= named.config and "final/ood_mean_success" in named.summary
    for rec in job_runs.values():
        history = {k for row in rec.history for k in row}
        assert named.history <= history, named.history - history
        assert named.config <= set(rec.config), named.config - set(rec.config)
        assert named.summary <= set(rec.summary), named.summary - set(rec.summary)
    report_keys = {k.rsplit(".", 1)[0] for k in report_run.summary}
    assert any(k.startswith("report/figures/") for k in named.report)  # the heatmaps and learning curves
    assert named.report and named.report <= report_keys, named.report - report_keys

    spec = json.dumps(workspace_spec(workspace))  # what save() would upload, built with no server
    for name in named.history | named.summary | named.report | {f"{c}.value" for c in named.config}:
        assert json.dumps(name) in spec or name in spec, name
    assert '"name": "group"' in spec and '"value": "think_ablation"' in spec  # the runset is the sweep's group
    written = json.loads((sweep / "report" / "wandb_dashboard.json").read_text())  # the CLI's, offline
    assert [s["name"] for s in written["spec"]["section"]["panelBankConfig"]["sections"]] == [
        "Eval success by training env", "Eval success by thinking", "Run summaries by choice", "Report tables"]


@slow
def test_status_prints_one_sync_command_for_the_sweep(sweep, tmp_path):
    out = run("-m", "agentgen.cluster.status", str(sweep), "--sync-command", cwd=tmp_path).stdout.strip()
    folders = shlex.split(out)[2:]
    assert shlex.split(out)[:2] == ["wandb", "sync"]
    assert [Path(f).parents[1].name for f in folders] == ["0", "1", "report"]
    table = run("-m", "agentgen.cluster.status", str(sweep), cwd=tmp_path).stdout
    assert out in table and "3 offline wandb folder(s)" in table
    dry = subprocess.run([sys.executable, "-m", "wandb", "sync", "--dry-run", *folders], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path, env={**os.environ, "WANDB_SILENT": "true"})
    assert dry.returncode == 0 and "Would sync 3 run(s)" in dry.stdout + dry.stderr, dry.stdout + dry.stderr


# --------------------------------------------------------------------------- naming rules, no runs
def test_sweep_group_is_the_sweep_dirs_name():
    assert sweep_group("multirun/gen_tax") == "gen_tax"
    assert sweep_group("/x/multirun/2026-01-05/12-00-00") == "2026-01-05_12-00-00"  # Hydra's default dirs


def test_run_name_is_the_overrides_that_vary(tmp_path):
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      env: sokoban,alfworld\n      sft: warmup\n      seed: 0,1,2\n"
        "  overrides:\n    task: ['+sweeps=gen_tax', 'think=true,false', 'debug=smoke', 'seed=1,2']\n")
    swept = swept_keys(tmp_path)
    assert sorted(swept) == ["env", "seed", "think"]
    job = ["env=sokoban", "sft=warmup", "+sweeps=gen_tax", "think=False", "debug=smoke", "seed=1"]
    assert short_run_name(job, swept) == "env=sokoban,think=false,seed=1"
    assert short_run_name(["env=sokoban", "debug=smoke", "cluster=slurm", "logger.mode=offline"], []) == "env=sokoban"
    assert swept_keys(tmp_path / "nowhere") == []


def test_stages_and_difficulty_are_choices_too():
    config = {"train_env": "sokoban>alfworld", "variant": {"think": False, "seed": 2},
              "stages": [{"env": "sokoban", "steps": 75}, {"env": "alfworld", "steps": 75}],
              "env": {"sokoban": {"difficulty": "easy"}, "alfworld": {"difficulty": "all"}}, "trainer": {"steps": 150}}
    assert job_choices(config) == {"env": "sokoban>alfworld", "think": False, "seed": 2, "difficulty": "easy",
                                   "stages": "sokoban:75>alfworld:75"}
    flat = dashboard_config(config)
    assert flat["env"] == "sokoban>alfworld" and flat["env_config"] == config["env"]
    assert flat["stages"] == "sokoban:75>alfworld:75" and flat["stages_config"] == config["stages"]
    assert flat["trainer"] == {"steps": 150}
