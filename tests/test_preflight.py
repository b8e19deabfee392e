"""Every value that can be checked before work starts is checked by preflight: one paragraph naming the bad
value (and the valid ones), exit code 2, no traceback, nothing written. Most rows call the preflight entry
point in-process (launch.py runs exactly it before Hydra starts); a handful go through the real launcher."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentgen.config import ConfigError
from agentgen.preflight import preflight

ROOT = Path(__file__).resolve().parent.parent
DIFFICULTY = "difficulty.json"  # written by the fixture below: train/test instances at level "easy" only

# (group the value belongs to, command line, words the paragraph must contain)
BAD = [
    ("seed", ["seed=-1"], ["seed=-1", ">= 0"]),
    ("seed", ["-m", "seed=0,-1"], ["seed=-1"]),
    ("task", ["task=fly"], ["task='fly'", "train"]),
    ("resume", ["resume=maybe"], ["resume='maybe'", "skip_completed"]),
    ("init_from", ["init_from=/nonexistent/job"], ["init_from=/nonexistent/job"]),
    ("stages", ["stages=[{env:chess,steps:5}]"], ["chess", "sokoban"]),
    ("env", ["env=minecraft"], ["env=minecraft", "alfworld"]),
    ("env", ["env.sokoban.params.dim=2"], ["dim 2", ">= 4"]),
    ("env", ["env.sokoban.params.num_boxes=30"], ["num_boxes=30", "1..15"]),
    ("env", ["env.sokoban.params.render=ascii"], ["ascii", "coords"]),
    ("env", ["+env.sokoban.params.walls=3"], ["env.sokoban.params.walls", "num_boxes"]),
    ("env", ["env.sokoban.params.dimm=7"], ["dimm", "did you mean dim"]),
    ("env", ["env.sokoban.difficulty=extreme"], ["extreme", "easy", "hard"]),
    ("env", ["env.sokoban.max_instances=0"], ["env.sokoban.max_instances=0"]),
    ("env", ["env.sokoban.instances=/nonexistent/difficulty.json:easy"], ["/nonexistent/difficulty.json:easy"]),
    ("env", [f"env.sokoban.instances={DIFFICULTY}:medium"], ["medium", "easy"]),
    ("env", ["env=alfworld", "env.alfworld.params.data_dir=/nonexistent/alfworld"], ["/nonexistent/alfworld"]),
    ("env", ["env=alfworld", "env.alfworld.params.test_split=valid_hard"], ["valid_hard", "valid_unseen"]),
    ("env", ["env=alfworld", "env.alfworld.params.task_types=[pick_and_eat]"], ["pick_and_eat", "look_at_obj"]),
    ("env", ["env=sciworld", "env.sciworld.params.tasks=[boilx]"], ["boilx", "boil"]),
    ("env", ["env=webshop", "env.webshop.params.catalog=amazon"], ["amazon", "generated, files"]),
    ("env", ["env=webshop", "env.webshop.params.catalog=files", "env.webshop.params.data_dir=/nonexistent/ws"],
     ["/nonexistent/ws"]),
    ("augment", ["augment.eps=50"], ["augment.eps=50", "augment=custom augment.eps=50"]),
    ("augment", ["augment=ultra"], ["augment=ultra", "medium"]),
    ("sft", ["sft.data_dir=/nonexistent/sft_data"], ["sft.data_dir=/nonexistent/sft_data"]),
    ("sft", ["sft.scheduler=step"], ["sft.scheduler='step'", "cosine"]),
    ("algo", ["algo=ppo2"], ["algo=ppo2", "grpo"]),
    ("model", ["model=llama3_1_8b_instruct", "model.path=/nonexistent/model", "cluster=slurm_8gpu"],
     ["model.path=/nonexistent/model", "hub id"]),
    ("model", ["model=smollm2_135m", "model.gguf_file=missing.gguf"], ["missing.gguf", ".gguf"]),
    ("model", ["model=gpt5"], ["model=gpt5", "tiny"]),
    ("scale", ["scale=laptop"], ["scale=laptop", "tiny", "study"]),
    ("scale", ["model=qwen2_5_7b_instruct", "scale=cpu"], ["scale=cpu", "smollm2_135m"]),
    ("rollout", ["rollout.top_p=1.5"], ["rollout.top_p=1.5", "(0, 1]"]),
    ("rollout", ["rollout=sglang"], ["rollout=sglang", "vllm"]),
    ("trainer", ["trainer.stepz=3"], ["trainer.stepz=3", "did you mean steps"]),
    ("trainer", ["trainer.grad_clip=0"], ["trainer.grad_clip=0"]),
    ("eval", ["+eval.episodes_per_env.chess=3"], ["chess", "webshop"]),
    ("agent", ["agent.history_k=-1"], ["agent.history_k=-1"]),
    ("agent", ["agent.memory=episodic"], ["agent.memory='episodic'", "last_k", "full"]),
    ("logger", ["logger.mode=loud"], ["logger.mode='loud'", "offline"]),
    ("cluster", ["cluster=slurm_gpu"], ["cluster=slurm_gpu", "slurm_8gpu"]),
    ("cluster", ["model=llama3_1_8b_instruct", "cluster=slurm"], ["needs 8 GPU(s)", "cluster=slurm_8gpu"]),
    ("debug", ["debug=fast"], ["debug=fast", "smoke"]),
    ("start", ["start=v3"], ["start=v3", "v1, v2"]),
    ("experiment", ["+experiment=ckpt_v3"], ["ckpt_v3", "ckpt_v1"]),
    ("experiment", ["experiment=ckpt_v1"], ["+experiment=ckpt_v1"]),
    ("sweeps", ["-m", "+sweeps=nonexistent"], ["sweeps=nonexistent", "gen_tax", "the files in sweeps/"]),
    ("sweeps", ["-m", "+sweeps=gen_tx"], ["sweeps=gen_tx", "did you mean gen_tax"]),
    ("sweeps", ["-m", "sweeps=gen_tax"], ["+sweeps=gen_tax"]),
    ("sweeps", ["-m", "+sweep=gen_tax"], ["+sweep=gen_tax", "did you mean sweeps"]),
    ("sweeps", ["+sweeps=gen_tax"], ["+sweeps=gen_tax", "-m"]),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working dir (where Hydra would create outputs/ and multirun/) with a difficulty.json."""
    monkeypatch.chdir(tmp_path)
    levels = {"easy": [1, 2, 3]}
    (tmp_path / DIFFICULTY).write_text(json.dumps({"train": levels, "test": levels}))
    return tmp_path


def test_the_table_covers_every_config_group():
    groups = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name != "hydra"} | {"sweeps"}
    assert groups <= {g for g, _, _ in BAD}
    assert len(BAD) >= 25


@pytest.mark.parametrize("group, argv, needles", BAD, ids=[" ".join(a) for _, a, _ in BAD])
def test_preflight_refuses_with_one_paragraph(group, argv, needles, workdir):
    with pytest.raises(ConfigError) as err:
        preflight(argv)
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert sorted(p.name for p in workdir.iterdir()) == [DIFFICULTY]  # nothing written


def test_a_valid_difficulty_file_passes(workdir):
    assert preflight([f"env.sokoban.instances={DIFFICULTY}:easy"])


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["seed=-1"], "seed=-1"),
        (["model=llama3_1_8b_instruct", "model.path=/nonexistent/model", "cluster=slurm_8gpu"], "/nonexistent/model"),
        (["augment.eps=50"], "augment=custom augment.eps=50"),
        (["env.sokoban.params.dim=2"], "dim 2"),
        (["-m", "+sweeps=nonexistent"], "the files in sweeps/"),
        (["-m", "env=sokoban,alfworld", "env.sokoban.params.num_boxes=30", "--plan"], "num_boxes=30"),
    ],
)
def test_the_launcher_exits_2_without_traceback_and_writes_nothing(argv, needle, tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "launch.py"), *argv], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    out = r.stderr + r.stdout
    assert r.returncode == 2, out
    assert "Traceback" not in out and needle in out, out
    assert list(tmp_path.iterdir()) == []  # no outputs/, multirun/, wandb/
