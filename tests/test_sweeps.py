"""Sweeps without Slurm: grid expansion, excluded combinations, cluster presets, the dry-run plan, the
sweep files in sweeps/, and the agentgen sweeper in a real local multirun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import in_ci
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from slurm_cluster import REPO
from slurm_cluster import agentgen_plugins_path as _agentgen_plugins_path  # noqa: F401  (the fixture)

from agentgen.cluster.plan import estimate, format_plan, make_plan
from agentgen.cluster.status import format_status, sweep_status
from agentgen.cluster.sweep import SweepError, expand_grid, grid_axes, parse_rules, split_excluded
from agentgen.config import CONF_DIR, validate

SWEEP_FILES = sorted(p for p in (REPO / "sweeps").glob("*.yaml") if not p.name.startswith("_"))


# --------------------------------------------------------------------------- grid and exclusions
def test_grid_is_hydras_product_and_the_command_line_replaces_a_param():
    jobs = expand_grid({"env": "sokoban,alfworld", "seed": "0,1"}, ["seed=5", "think=true,false"])
    # Hydra spells swept booleans True/False (str of the parsed value); they parse back to booleans.
    assert jobs == [
        ["env=sokoban", "seed=5", "think=True"],
        ["env=sokoban", "seed=5", "think=False"],
        ["env=alfworld", "seed=5", "think=True"],
        ["env=alfworld", "seed=5", "think=False"],
    ]
    swept, fixed = grid_axes({"env": "sokoban,alfworld", "seed": "0,1"}, ["seed=5", "think=true,false"])
    assert swept == {"env": ["sokoban", "alfworld"], "think": ["True", "False"]}
    assert fixed == {"seed": "5"}


def test_exclude_rules_compare_values_as_hydra_parses_them():
    jobs = expand_grid(None, ["env=sokoban,alfworld,webshop", "think=true,false", "trainer.lr=1e-6,2e-6"])
    rules = parse_rules(
        [{"think": False, "env": ["alfworld", "webshop"]}, {"trainer.lr": 0.000002, "env": "sokoban"}]
    )
    kept, excluded = split_excluded(jobs, rules)
    assert (
        len(jobs) == 12 and len(excluded) == 2 * 2 + 2
    )  # (alfworld, webshop) x both lr; sokoban x both think
    assert ["env=sokoban", "think=True", "trainer.lr=2e-06"] in [j for j, _ in excluded]
    assert all("think=False" not in j or "env=sokoban" in j for j in kept)
    assert all("trainer.lr=2e-06" not in j or "env=sokoban" not in j for j in kept)
    assert str(rules[0]) == "think=false and env in (alfworld, webshop)"


def test_exclude_rules_match_dict_and_list_values():
    jobs = expand_grid(None, ["sched={rounds:[10,20],phase:5},null", "env=[a,b],c"])
    rules = parse_rules([{"sched": {"phase": 5, "rounds": [10, 20]}, "env": [["a", "b"]]}])
    kept, excluded = split_excluded(jobs, rules)
    assert [j for j, _ in excluded] == [["sched={rounds:[10,20],phase:5}", "env=[a,b]"]]
    assert len(kept) == 3


def test_a_rule_naming_a_key_no_job_sets_is_an_error():
    with pytest.raises(SweepError, match=r"'thinking'.*keys set: env, think"):
        split_excluded(expand_grid(None, ["env=a,b", "think=true,false"]), parse_rules([{"thinking": False}]))
    with pytest.raises(SweepError, match="is not a rule"):
        parse_rules([{}])
    with pytest.raises(SweepError, match="must be a list"):
        parse_rules({"think": False})


# --------------------------------------------------------------------------- cluster presets
@pytest.mark.parametrize(
    "preset,launcher,gpus",
    [
        ("local", "basic", None),
        ("slurm", "agentgen_slurm", 0),
        ("slurm_1gpu", "agentgen_slurm", 1),
        ("slurm_8gpu", "agentgen_slurm", 8),
        ("slurm_multinode", "agentgen_slurm", 8),
    ],
)
def test_cluster_presets_select_the_launcher_and_are_visible_to_the_job(preset, launcher, gpus):
    with initialize_config_dir(config_dir=str(CONF_DIR), job_name="launch", version_base="1.3"):
        cfg = compose("config", overrides=[f"cluster={preset}"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices["hydra/launcher"] == launcher
    assert cfg.cluster.name == preset and cfg.cluster.gpus_per_node == gpus and cfg.cluster.wait is True
    if launcher == "agentgen_slurm":
        hl = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
        assert hl["_target_"] == "hydra_plugins.agentgen_cluster.AgentgenSlurmLauncher"
        assert (hl["gpus_per_node"], hl["nodes"], hl["timeout_min"]) == (
            gpus,
            cfg.cluster.nodes,
            cfg.cluster.timeout_min,
        )
        assert hl["max_num_timeout"] == cfg.cluster.max_requeues > 0  # requeue on time limit / preemption


def test_every_cluster_value_is_overridable_and_reaches_sbatch():
    with initialize_config_dir(config_dir=str(CONF_DIR), job_name="launch", version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "cluster=slurm_8gpu",
                "cluster.partition=gpu",
                "cluster.account=lab",
                "cluster.qos=high",
                "cluster.timeout_min=720",
                "cluster.nodes=2",
                "cluster.array_parallelism=4",
                "cluster.setup=[module load cuda]",
                "+cluster.sbatch.reservation=r1",
            ],
            return_hydra_config=True,
        )
    hl = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (
        hl["partition"],
        hl["account"],
        hl["qos"],
        hl["timeout_min"],
        hl["nodes"],
        hl["array_parallelism"],
    ) == ("gpu", "lab", "high", 720, 2, 4)
    assert hl["setup"] == ["module load cuda"]
    assert hl["additional_parameters"] == {"exclusive": True, "reservation": "r1"}


# --------------------------------------------------------------------------- plan
def test_plan_expands_excludes_and_places_every_job():
    plan = make_plan(["+sweeps=sokoban_difficulty", "debug=smoke"], validate=validate)
    assert not plan.errors
    assert len(plan.jobs) == 9 and len(plan.excluded) == 3
    assert all(
        "env.sokoban.params.min_optimal_len=8" in j and "env.sokoban.params.max_optimal_len=4" in j
        for j, _ in plan.excluded
    )
    windows = {
        (c.env.sokoban.params.min_optimal_len, c.env.sokoban.params.max_optimal_len) for c in plan.configs
    }
    assert windows == {(1, 4), (1, 15), (8, 15)}
    assert plan.sweep_dir == Path("multirun/sokoban_difficulty").absolute()
    names = [p.name for p in plan.output_dirs]
    assert len(set(names)) == 9 and all(p.parent == plan.sweep_dir for p in plan.output_dirs)
    assert all("sweeps" not in n and n.endswith(f"seed={c.seed}") for n, c in zip(names, plan.configs))
    text = format_plan(plan)
    assert "Plan: 9 job(s) (3 excluded)" in text and "All 9 job config(s) composed and validated" in text


def test_plan_estimates_gpu_hours_from_the_model_preset():
    plan = make_plan(["seed=0,1", "model=llama3_1_8b_instruct", "cluster=slurm_8gpu"], validate=validate)
    assert not plan.errors and len(plan.jobs) == 2
    cfg = plan.configs[0]
    hours = cfg.trainer.steps * cfg.model.resources.seconds_per_step / 3600
    assert estimate(cfg).gpus == 8
    assert plan.total_gpu_hours == pytest.approx(2 * 8 * hours)
    assert f"= {2 * 8 * hours:.1f} GPU-hours" in format_plan(plan)


def test_plan_refuses_a_model_that_needs_more_gpus_than_the_cluster_has():
    plan = make_plan(["model=llama3_1_8b_instruct", "cluster=slurm"], validate=validate)
    assert len(plan.errors) == 1 and "needs 8 GPU(s)" in plan.errors[0][1]


def test_plan_command_line_exit_codes():
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentgen.cluster.plan",
            "-m",
            "env=sokoban,webshop",
            "think=true,false",
            "debug=smoke",
            "cluster=slurm",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert ok.returncode == 0, ok.stderr
    assert "Plan: 4 job(s)" in ok.stdout and "Grid (2 x 2 = 4)" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "agentgen.cluster.plan", "model=llama3_1_8b_instruct", "cluster=slurm"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert bad.returncode == 2 and "needs 8 GPU(s)" in bad.stdout


# --------------------------------------------------------------------------- sweep files
def _missing_options(path: Path) -> list[str]:
    """Config-group options a sweep file names that conf/ does not have (yet)."""
    params = OmegaConf.load(path).hydra.sweeper.params
    missing = []
    for key, spec in params.items():
        if not (CONF_DIR / key).is_dir():
            continue
        for value in str(spec).replace("[", "").replace("]", "").split(","):
            if value.strip() and not (CONF_DIR / key / f"{value.strip()}.yaml").exists():
                missing.append(f"conf/{key}/{value.strip()}.yaml")
    return sorted(set(missing))


@pytest.mark.parametrize("path", SWEEP_FILES, ids=[p.stem for p in SWEEP_FILES])
def test_sweep_file_is_documented_and_every_job_composes(path: Path, tmp_path: Path):
    text = path.read_text()
    name = path.stem
    assert text.startswith("# @package _global_\n")
    header = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert any(f"python launch.py -m +sweeps={name} " in ln for ln in header), (
        "header must give the exact command"
    )
    assert any(  # the dry run: launch.py --plan, or the plan module itself
        f"python -m agentgen.cluster.plan -m +sweeps={name}" in ln
        or (f"python launch.py -m +sweeps={name} " in ln and ln.rstrip().endswith("--plan"))
        for ln in header
    ), "header must give the dry-run command"
    assert any(f"python -m agentgen.cluster.status multirun/{name}" in ln for ln in header)
    raw = OmegaConf.load(path)
    assert list(raw.defaults) == ["_common"] and raw.hydra.sweep.dir == f"multirun/{name}"
    missing = _missing_options(path)
    if missing:
        msg = f"{name} names config options that do not exist yet: {', '.join(missing)}"
        if in_ci():
            pytest.fail(msg)
        pytest.xfail(msg)
    extra = []
    if OmegaConf.select(raw, "hydra.sweeper.params.start"):
        for start in ("ckpt_v1", "ckpt_v2"):  # the named starts exist once built (+experiment=ckpt_v1/v2)
            (tmp_path / start).mkdir()
        extra = [f"starts_dir={tmp_path}"]
    plan = make_plan([f"+sweeps={name}", "debug=smoke", *extra], validate=validate)
    assert not plan.errors, plan.errors[:3]
    assert plan.jobs and all(p.parent == plan.sweep_dir for p in plan.output_dirs)
    assert len({str(p) for p in plan.output_dirs}) == len(plan.jobs)  # one dir per job


# --------------------------------------------------------------------------- the sweeper, for real
def test_agentgen_sweeper_drops_excluded_jobs_in_a_local_multirun(
    tmp_path: Path, agentgen_plugins_path: Path
):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(
        textwrap.dedent(f"""\
        defaults:
          - cluster: local
          - override hydra/sweeper: agentgen
          - _self_
        x: 0
        y: a
        hydra:
          searchpath: [file://{REPO / "conf"}]
          sweep: {{dir: {tmp_path / "sweep"}, subdir: '${{hydra.job.num}}'}}
          sweeper:
            params: {{x: '1,2,3', y: 'a,b'}}
            exclude: [{{x: 2}}, {{x: 3, y: b}}]
        """)
    )
    (tmp_path / "app.py").write_text(
        textwrap.dedent("""\
        import hydra
        from hydra.core.hydra_config import HydraConfig
        from agentgen import summary

        @hydra.main(version_base="1.3", config_path="conf", config_name="config")
        def main(cfg):
            summary.write(HydraConfig.get().runtime.output_dir, {"status": "completed", "x": cfg.x, "y": cfg.y})

        if __name__ == "__main__":
            main()
        """)
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(agentgen_plugins_path), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "app.py", "-m"],
        cwd=tmp_path,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = [json.loads((tmp_path / "sweep" / str(i) / "summary.json").read_text()) for i in range(3)]
    assert [(r["x"], r["y"]) for r in ran] == [(1, "a"), (1, "b"), (3, "a")]
    assert not (tmp_path / "sweep" / "3").exists()
    assert "excluded by hydra.sweeper.exclude (x=2)" in proc.stdout + proc.stderr

    states = sweep_status(tmp_path / "sweep")  # a local sweep: found from its job dirs, no manifest
    assert [(s.num, s.state, s.overrides) for s in states] == [
        (0, "completed", ["x=1", "y=a"]),
        (1, "completed", ["x=1", "y=b"]),
        (2, "completed", ["x=3", "y=a"]),
    ]
    assert "3 job(s): 3 completed" in format_status(tmp_path / "sweep", states)


def test_plan_keeps_per_job_columns_aligned_when_a_job_does_not_compose():
    plan = make_plan(["env=sokoban,nosuchenv", "debug=smoke"], validate=validate)
    assert len(plan.jobs) == len(plan.configs) == len(plan.output_dirs) == len(plan.estimates) == 2
    assert plan.configs[0] is not None and plan.configs[1] is None
    assert len(plan.errors) == 1 and "nosuchenv" in plan.errors[0][1]
    assert "1 job config(s) are invalid" in format_plan(plan)


def test_status_tells_an_interrupted_job_from_a_failed_one(tmp_path):
    """A job that stopped after its checkpoint on Slurm's warning (agentgen.cluster.preemption) is
    "interrupted" (resumable: requeued, or re-run the sweep), not "failed"."""
    from agentgen import summary
    from agentgen.cluster.sweep import summary_status

    sweep = tmp_path / "sweep"
    errors = {
        "0": "JobInterrupted: stopped on SIGTERM at RL step 3 after writing a checkpoint; not requeued by agentgen",
        "1": "RuntimeError: CUDA out of memory",
    }
    for name, error in errors.items():
        (sweep / name / ".hydra").mkdir(parents=True)
        (sweep / name / ".hydra" / "overrides.yaml").write_text(f"- seed={name}\n")
        (sweep / name / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    num: {name}\n")
        summary.write(sweep / name, {"status": "failed", "error": error})
    assert summary_status(sweep / "0") == "interrupted" and summary_status(sweep / "1") == "failed"
    states = sweep_status(sweep)
    assert [(s.num, s.state) for s in states] == [(0, "interrupted"), (1, "failed")]
    text = format_status(sweep, states)
    assert "Re-run the sweep's command to resume unfinished jobs" in text
