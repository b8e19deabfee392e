"""The sweep plan composes once per choice of config groups and applies the plain values per job: every job's
config and output dir must still be exactly what Hydra's own compose gives it, and every job is still
validated on its own (a bad value in one job of a grid is caught, and only there)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from agentgen.cluster.plan import make_plan
from agentgen.cluster.plugins import register
from agentgen.cluster.sweep import job_output_dir
from agentgen.config import CONF_DIR, validate


def _hydras_own(overrides: list[str], job: list[str], num: int, sweep_dir: Path) -> tuple[dict, Path]:
    """One job composed the slow, obvious way: Hydra's compose of all of its overrides."""
    register()
    hydra_ovr = [o for o in overrides if o.startswith(("hydra.", "hydra/"))]
    with initialize_config_dir(config_dir=str(CONF_DIR), job_name="launch", version_base="1.3"):
        cfg = compose("config", overrides=hydra_ovr + job, return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.sweep.dir = str(sweep_dir)
        out = job_output_dir(cfg, num)
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=False), out


@pytest.mark.parametrize(
    "overrides",
    [
        # the study's grid: 14 group choices (env x augment x sft, minus the excluded), 6 value variants each
        ["+sweeps=gen_tax", "model=llama3_1_8b_instruct", "cluster=slurm_8gpu"],
        # a sweep dir named after job keys: the output dir needs each job's own values
        ["env=sokoban,alfworld", "seed=0,3", "trainer.steps=7",
         "hydra.sweep.subdir=${hydra.job.num}_${seed}_${trainer.steps}"],
    ],
    ids=["gen_tax", "subdir_reads_job_keys"],
)
def test_every_planned_job_is_what_hydras_compose_gives_it(overrides: list[str]):
    plan = make_plan(overrides, validate=validate)
    assert not plan.errors, plan.errors
    picked = range(0, len(plan.jobs), max(1, len(plan.jobs) // 12))  # a dozen jobs spread over the grid
    for num in picked:
        expected_cfg, expected_dir = _hydras_own(overrides, plan.jobs[num], num, plan.sweep_dir)
        assert OmegaConf.to_container(plan.configs[num], resolve=False) == expected_cfg, plan.jobs[num]
        assert plan.output_dirs[num] == expected_dir
    assert len({str(d) for d in plan.output_dirs}) == len(plan.jobs)


def test_a_bad_value_in_one_job_of_the_grid_is_still_caught_there_only():
    plan = make_plan(["env=sokoban,alfworld", "think=true,false", "trainer.steps=5,-3"], validate=validate)
    bad = [" ".join(job) for job, _ in plan.errors]
    assert len(plan.jobs) == 8 and len(bad) == 4
    assert all("trainer.steps=-3" in job for job in bad)
    assert all("trainer.steps=-3" in msg for _, msg in plan.errors)


def test_a_value_only_some_group_choices_accept_fails_only_in_those_jobs():
    plan = make_plan(["augment=none,custom", "augment.eps=50,60"], validate=validate)
    assert [job[0] for job, _ in plan.errors] == ["augment=none", "augment=none"]
    assert [plan.configs[2].augment.eps, plan.configs[3].augment.eps] == [50, 60]


def test_env_checks_shared_across_a_grid_still_judge_each_jobs_own_env_config():
    plan = make_plan(["env.sokoban.params.dim=6,2", "seed=0,1"], validate=validate)
    assert [" ".join(job) for job, _ in plan.errors] == ["env.sokoban.params.dim=2 seed=0",
                                                        "env.sokoban.params.dim=2 seed=1"]
    assert all("dim 2" in msg for _, msg in plan.errors)
