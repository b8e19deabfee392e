"""wandb, offline and for real: runs written with WANDB_MODE=offline are read back from their .wandb
logs (``wandb leet inspect --json``, no server) into the report, and the report's dashboard tables and
incremental trajectory-sample tables land in a run's log and media files.

The online path (``wandb:<entity>/<project>/<group>`` through ``wandb.Api``) needs network access and
a login, which these machines do not have; it shares the conversion (``summary_from_wandb``) tested here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentgen.report import build_report, load_directory, read_offline_run
from agentgen.report.sources import find_offline_runs, parse_wandb_source

DATA = Path(__file__).parent / "data" / "report"
ROOT = Path(__file__).parent.parent

WRITER = textwrap.dedent("""
    import json, shutil, sys
    from pathlib import Path
    import wandb
    from agentgen.report import TrajectorySampleTable, build_report, load_directory, log_report_tables
    from agentgen.report import log_summary_to_wandb

    tmp, sweep = Path(sys.argv[1]), Path(sys.argv[2])
    wdir = tmp / "runs"
    wdir.mkdir()

    def start(group, config, name):
        run = wandb.init(project="agentgen-test", group=group, config=config, dir=str(wdir), mode="offline",
                         name=name)
        run.define_metric("trainer/global_step")
        run.define_metric("*", step_metric="trainer/global_step")
        return run

    # A: a job that only logs metrics (the report rebuilds its summary from config + history).
    run = start("g1", {"train_env": "sokoban", "train_envs": ["sokoban"],
                       "variant": {"augment": "none", "think": True, "seed": 0}}, "logged-only")
    for step, (sok, alf) in enumerate([(0.10, 0.20), (0.30, 0.18), (0.50, 0.16), (0.60, 0.15)]):
        run.log({"trainer/global_step": step * 15, "eval/sokoban/success_rate": sok,
                 "eval/alfworld/success_rate": alf, "train/loss": 1.0 / (step + 1)})
    run.finish()

    # B: a job that saves its summary.json into the run.
    job = tmp / "jobs" / "b"
    job.mkdir(parents=True)
    shutil.copy(sweep / "0" / "summary.json", job / "summary.json")
    run = start("g1", {"train_env": "alfworld"}, "with-summary")
    log_summary_to_wandb(run, job / "summary.json")
    run.finish()

    # C: another group, must be filtered out.
    run = start("g2", {"train_env": "webshop", "variant": {"seed": 0}}, "other-group")
    run.log({"trainer/global_step": 0, "eval/webshop/success_rate": 0.5})
    run.finish()

    # D: the report's own run: dashboard tables, then trajectory samples as an incremental table.
    loaded = load_directory(sweep)
    report = build_report(loaded.runs, "demo", profiles=loaded.profiles, problems=loaded.problems)
    run = wandb.init(project="agentgen-test", group="reports", dir=str(tmp / "report_run"), mode="offline",
                     name="report")
    log_report_tables(report, run)
    samples = TrajectorySampleTable(run)
    samples.log(15, [{"env": "sokoban", "split": "test", "seed": 3, "success": True, "return": 9.9, "turns": 4,
                      "trajectory": [{"obs": "Player at (1, 1)", "action": "Up"}]}])
    samples.log(30, [{"env": "sokoban", "split": "test", "seed": 4, "success": False, "return": -0.1, "turns": 15},
                     {"env": "alfworld", "split": "test", "seed": 0, "success": True, "return": 10.0, "turns": 9}])
    try:
        samples.log(45, [{"env": "sokoban", "reward": 1.0}])
    except ValueError as err:
        print("REJECTED", err)
    run.finish()
    print(json.dumps({"tables": [t.key for t in report.tables], "figures": [f.key for f in report.figures]}))
""")


@pytest.fixture(scope="module")
def offline_runs(tmp_path_factory):
    """Write the runs in a separate interpreter with a private wandb home, like a job would."""
    tmp = tmp_path_factory.mktemp("wandb_offline")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp),
           "WANDB_DATA_DIR": str(tmp / "data"), "WANDB_CACHE_DIR": str(tmp / "cache"),
           "WANDB_CONFIG_DIR": str(tmp / "config"), "WANDB_ARTIFACT_DIR": str(tmp / "artifacts")}
    proc = subprocess.run([sys.executable, "-c", WRITER, str(tmp), str(DATA / "sweep")], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    return tmp, json.loads(lines[-1]), lines


def test_offline_runs_are_read_back_into_the_report(offline_runs):
    tmp, _, _ = offline_runs
    assert len(find_offline_runs(tmp / "runs")) == 3
    loaded = load_directory(tmp / "runs", wandb_group="g1")
    assert loaded.problems == []
    runs = {r.train_env: r for r in loaded.runs}
    assert set(runs) == {"sokoban", "alfworld"}  # g2's webshop run filtered out

    logged = runs["sokoban"]
    assert logged.completed and logged.variant == {"augment": "none", "think": True, "seed": 0}
    assert [s for s, _ in logged.eval_history] == [0, 15, 30, 45]
    assert logged.eval["sokoban"]["success_rate"] == pytest.approx(0.60)
    assert logged.start_eval()["alfworld"]["success_rate"] == pytest.approx(0.20)

    saved = runs["alfworld"]  # the summary.json saved into the run is read verbatim
    original = json.loads((DATA / "sweep" / "0" / "summary.json").read_text())
    assert saved.variant == original["variant"] and len(saved.eval_history) == len(original["eval_history"])

    report = build_report(loaded.runs, "wandb offline", plots=False)
    cell = report.aggregate.cell(logged.choice, "sokoban")
    assert cell.final["sokoban"].mean == pytest.approx((30 + 50 + 60) / 3)  # last K=4 minus step 0: 3 points


def test_offline_record_has_config_group_and_state(offline_runs):
    tmp, _, _ = offline_runs
    records = [read_offline_run(d) for d in find_offline_runs(tmp / "runs")]
    by_group = {r.group: r for r in records if r.group != "g1"}
    other = by_group["g2"]
    assert other.state == "finished" and other.config["train_env"] == "webshop"
    assert other.summary["eval/webshop/success_rate"] == pytest.approx(0.5)


def test_report_tables_and_incremental_samples_are_logged(offline_runs):
    tmp, written, lines = offline_runs
    assert any(line.startswith("REJECTED") and "reward" in line for line in lines)
    (run_dir,) = find_offline_runs(tmp / "report_run")
    record = read_offline_run(run_dir)
    logged = {k.rsplit("._type", 1)[0]: v for row in record.history for k, v in row.items() if k.endswith("._type")}
    for key in written["tables"]:
        assert logged[f"report/{key}"] == "table-file", key
    for key in written["figures"]:
        assert logged[f"report/figures/{key}"] == "image-file", key
    # Each table file holds the report table's numbers.
    summary_path = record.summary["report/ood_rank_score"]["path"] if isinstance(
        record.summary.get("report/ood_rank_score"), dict) else record.summary["report/ood_rank_score.path"]
    table = json.loads((run_dir / "files" / summary_path).read_text())
    assert table["columns"][0] == "training env" and len(table["data"]) == 4
    assert any(k.startswith("report/ood_rank/") for k in record.summary)
    assert any(k.startswith("report/delta_ood/") for k in record.summary)

    # Trajectory samples: two logs, each writing only its own new rows.
    sample_rows = [row for row in record.history if row.get("samples/trajectories._type")]
    assert [r["samples/trajectories._type"] for r in sample_rows] == ["incremental-table-file"] * 2
    assert [r["trainer/global_step"] for r in sample_rows] == [15, 30]
    files = [json.loads((run_dir / "files" / r["samples/trajectories.path"]).read_text()) for r in sample_rows]
    assert [len(f["data"]) for f in files] == [1, 2]
    assert files[0]["columns"] == ["step", "env", "split", "seed", "success", "return", "turns", "trajectory"]
    assert files[0]["data"][0][0] == 15 and json.loads(files[0]["data"][0][-1])[0]["action"] == "Up"
    assert files[1]["data"][1][1] == "alfworld"


def test_wandb_source_syntax():
    assert parse_wandb_source("wandb:me/agentgen/sweep-3") == ("me", "agentgen", "sweep-3")
    assert parse_wandb_source("wandb:agentgen/sweep-3") == (None, "agentgen", "sweep-3")
    with pytest.raises(ValueError, match="wandb:<entity>/<project>/<group>"):
        parse_wandb_source("wandb:only")
