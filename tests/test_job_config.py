"""What a job uses is what ``launch.py ... --cfg job`` prints: the env-config step (agentgen/config/envs.py) runs
once per job, its result (every env and split the job builds, with the difficulty's params, the model's
env_params, eval overrides and the caps merged in) is part of the printed config, and the job stores the same
config as <output dir>/config.yaml and reads its envs from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from agentgen.config import ConfigError, env_config, merge_env_config, resolve_env_configs, validate
from agentgen.preflight import compose_job

ROOT = Path(__file__).resolve().parent.parent
# a real job that finishes in seconds, with every layer of the env-config step in play
JOB = ["task=profile", "+profile.policy=random", "+profile.episodes=1", "+profile.tmax=2", "logger=none",
       "env.sokoban.difficulty=easy", "debug=smoke", "+eval.env_overrides.alfworld.max_steps=3",
       "++model.env_params.sokoban.thought_moves=2"]


def _launch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_cfg_job_prints_the_config_the_job_stores_env_params_included(tmp_path):
    printed = _launch(*JOB, "--cfg", "job", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert list(tmp_path.iterdir()) == []  # printing runs nothing
    out = tmp_path / "job"
    ran = _launch(*JOB, f"hydra.run.dir={out}", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    shown, stored = yaml.safe_load(printed.stdout), yaml.safe_load((out / "config.yaml").read_text())
    assert shown == stored
    built = stored["env_configs"]
    assert set(built["sokoban"]) == {"train", "test"} and set(built["alfworld"]) == {"test"}
    sokoban = built["sokoban"]["train"]
    assert sokoban["params"]["num_boxes"] == 1 and sokoban["params"]["max_optimal_len"] == 6  # difficulty=easy
    assert sokoban["params"]["thought_moves"] == 2  # the model's env_params
    assert stored["debug"]["max_steps"] < stored["env"]["sokoban"]["max_steps"]
    assert sokoban["max_steps"] == stored["debug"]["max_steps"]  # debug=smoke's cap
    assert built["alfworld"]["test"]["max_steps"] == 3  # eval.env_overrides
    assert (out / "profile.json").is_file()


def test_the_job_reads_its_envs_from_the_stored_step():
    cfg = compose_job(JOB[:1] + JOB[5:])
    resolved = resolve_env_configs(cfg)
    for name, splits in resolved.env_configs.items():
        for split in splits:
            assert env_config(resolved, name, split == "test") == merge_env_config(cfg, name, split == "test")
    validate(resolved)  # the stored step of this very config passes


def test_a_hand_set_env_config_is_refused():
    resolved = resolve_env_configs(compose_job(["debug=smoke"]))
    resolved.env_configs.sokoban.train.max_steps = 99
    try:
        validate(resolved)
    except ConfigError as err:
        assert "env_configs is written by the job" in str(err) and "\n" not in str(err)
    else:
        raise AssertionError("a hand-set env_configs passed")
