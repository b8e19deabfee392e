"""End-to-end runs through the real launcher: SFT warm-up + GRPO + evaluation with the tiny model
(debug=smoke), summaries, checkpoints, resume, skip-completed, and the wandb offline run read back
with wandb's own reader."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def launch(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], capture_output=True, text=True,
                       timeout=timeout, cwd=cwd)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


# the evaluation after SFT, before RL, on the trained env only (the tiny preset's setting)
BEFORE_TRAINING = ("eval.before_training=true", "eval.before_training_envs=train")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    out = tmp / "run"
    launch("debug=smoke", *BEFORE_TRAINING, "eval.envs=[sokoban,webshop]", f"hydra.run.dir={out}", cwd=tmp)
    return out


def test_smoke_run_writes_complete_summary(smoke_run):
    s = json.loads((smoke_run / "summary.json").read_text())
    assert s["status"] == "completed" and s["error"] is None
    assert s["train_env"] == "sokoban" and s["variant"]["sft"] == "warmup" and s["variant"]["think"] is True
    assert set(s["eval"]) == {"sokoban", "webshop"}
    for m in s["eval"].values():
        assert set(m) >= {"success_rate", "episodes", "avg_steps", "avg_return", "valid_action_ratio"}
        assert 0.0 <= m["success_rate"] <= 1.0 and m["episodes"] == 2
    assert [h["step"] for h in s["eval_history"]] == [0, 1, 2]  # after SFT, every step (smoke), final at 2
    assert set(s["eval_history"][0]["eval"]) == {"sokoban"}  # before RL: the trained env only
    assert set(s["eval_history"][1]["eval"]) == {"sokoban", "webshop"}
    assert s["train"]["steps"] == 2 and "rollout/success_rate" in s["train"]["final"]
    assert s["train"]["sft"]["sft/samples"] > 0
    assert s["config"]["trainer"]["steps"] == 2 and s["wall_seconds"] > 0
    assert (smoke_run / "checkpoints" / "latest").read_text() == "step_2"
    assert (smoke_run / "checkpoints" / "sft" / "model.safetensors").exists()
    records = [json.loads(x) for x in (smoke_run / "sft_data" / "sokoban.jsonl").read_text().splitlines()]
    # the tiny preset's compact prompt: no system message, the state and a one-line answer format
    assert records and [m["role"] for m in records[0]["messages"]] == ["user", "assistant"]
    assert records[0]["messages"][0]["content"].endswith("Answer: <think>...</think><action>...</action>")
    assert records[0]["messages"][-1]["content"].startswith("<think>")


def test_wandb_offline_run_has_eval_metrics(smoke_run):
    from agentgen.report.sources import find_offline_runs, read_offline_run

    runs = find_offline_runs(smoke_run)
    assert len(runs) == 1
    rec = read_offline_run(runs[0])
    keys = {k for row in rec.history for k in row}
    assert {"eval/sokoban/success_rate", "eval/webshop/success_rate", "rollout/success_rate", "train/loss",
            "sft/loss", "trainer/global_step"} <= keys
    assert rec.config["train_env"] == "sokoban"
    assert rec.group is None and rec.name == "run" and rec.job_type == "train"  # a single run: no sweep group
    assert rec.summary["eval/sokoban/success_rate"] == json.loads((smoke_run / "summary.json").read_text())[
        "eval"]["sokoban"]["success_rate"]


def test_completed_job_is_skipped_and_longer_run_resumes(smoke_run, tmp_path):
    """On its own copy of the shared smoke run, so the other tests see the 2-step run in any order."""
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    before = (run / "summary.json").stat().st_mtime
    launch("debug=smoke", *BEFORE_TRAINING, "eval.envs=[sokoban,webshop]", f"hydra.run.dir={run}", cwd=tmp_path)
    assert (run / "summary.json").stat().st_mtime == before  # resume=skip_completed
    r = launch("debug=smoke", *BEFORE_TRAINING, "eval.envs=[sokoban]", "trainer.steps=3", "resume=always",
               f"hydra.run.dir={run}", cwd=tmp_path)
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["train"]["steps"] == 3
    assert [h["step"] for h in s["eval_history"]] == [0, 1, 2, 3]  # history kept from the checkpoint
    output = r.stdout + r.stderr
    assert "resuming from" in output and "step_2" in output
    assert "sft:" not in output  # SFT was not redone


def up_only_model(dst: Path) -> Path:
    """The tiny model rewired to answer "<action>Up</action>" to any prompt (every layer an identity, an
    untied head mapping the last token to the next of those three): a policy whose evaluation is unmistakable
    (every action valid), where the tiny base model's random weights almost never write a valid action."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentgen.models.loader import model_dir
    from agentgen.preflight import compose_job

    src = model_dir(compose_job([]).model)
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, tie_word_embeddings=False)
    opening, up, closing = (tok.convert_tokens_to_ids(t) for t in ("<action>", "Up", "</action>"))
    assert tok.encode("Up", add_special_tokens=False) == [up]
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        emb.zero_()
        emb[:, 2] = 1.0  # any other token -> "<action>"
        emb[opening, 2], emb[opening, 0] = 0.0, 1.0  # "<action>" -> "Up"
        emb[up, 2], emb[up, 1] = 0.0, 1.0  # "Up" -> "</action>" (a stop token)
        head.zero_()
        head[opening, 2], head[up, 0], head[closing, 1] = 5.0, 5.0, 5.0
    model.config.tie_word_embeddings = False
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
    return dst


@pytest.mark.parametrize("form", ["model_dir", "job_output_dir"])
def test_eval_task_evaluates_the_init_from_weights(form, tmp_path):
    """task=eval init_from=<a model dir, or a job's output dir (its latest checkpoint)>: no SFT, no RL, and
    the evaluated policy is the one init_from names."""
    if form == "model_dir":
        source = up_only_model(tmp_path / "up_only")
    else:
        source = tmp_path / "job"
        from agentgen.trainer.checkpoint import write_manifest

        step = up_only_model(source / "checkpoints" / "step_3")
        (step / "state.json").write_text(json.dumps({"step": 3}))
        write_manifest(step, "step_3", 3)  # what a job's save writes last: the checkpoint is complete
        (source / "checkpoints" / "latest").write_text("step_3")
    out = tmp_path / "eval"
    r = launch("task=eval", "debug=smoke", "think=false", "eval.envs=[sokoban]", f"init_from={source}",
               f"hydra.run.dir={out}", cwd=tmp_path)
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["train"]["steps"] == 0 and s["train"]["sft"] == {}
    assert "sft:" not in r.stdout + r.stderr and [h["step"] for h in s["eval_history"]] == [0]
    assert not list((out / "checkpoints").glob("step_*"))
    sokoban = s["eval"]["sokoban"]
    assert sokoban["episodes"] == 2 and sokoban["valid_action_ratio"] == 1.0, sokoban


@pytest.mark.slow
@pytest.mark.jvm
def test_midtrain_mixes_a_checkpoints_own_trajectories_with_expert_data(tmp_path):
    """sft=midtrain (SciWorld 19 : ALFWorld 3 : WebShop 1) with sft.sources.alfworld=<a model dir>: ALFWorld's
    SFT data are that policy's own episodes (every answer "<action>Up</action>"), the others the experts'."""
    from conftest import require

    require("java")
    source = up_only_model(tmp_path / "up_only")
    out = tmp_path / "mid"
    launch("sft=midtrain", "debug=smoke", "think=false", f"sft.sources.alfworld={source}", "sft.episodes_per_env=4",
           "trainer.steps=1", "eval.envs=[sokoban]", "eval.episodes_per_env={sokoban: 1}", "logger=none",
           f"hydra.run.dir={out}", cwd=tmp_path)
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["variant"]["sft"] == "midtrain"

    def answers(name: str) -> list[str]:
        lines = (out / "sft_data" / name).read_text().splitlines()
        return [json.loads(x)["messages"][-1]["content"] for x in lines]

    assert set(answers("alfworld.nothink.up_only.jsonl")) == {"<action>Up</action>"}
    for expert in ("sciworld.nothink.jsonl", "webshop.nothink.jsonl"):
        assert answers(expert) and "<action>Up</action>" not in answers(expert), expert
    pairs = {e: s["train"]["sft"][f"sft/pairs/{e}"] for e in ("sciworld", "alfworld", "webshop")}
    assert pairs["sciworld"] > pairs["alfworld"] > pairs["webshop"] > 0, pairs


@pytest.mark.slow
def test_sweep_env_by_think_evaluates_every_env(tmp_path):
    """`python launch.py -m env=sokoban,sciworld think=true,false debug=smoke`: four completed summaries,
    each evaluated on every env of eval.envs (default: all four, in-domain and out-of-domain)."""
    launch("-m", "env=sokoban,sciworld", "think=true,false", "debug=smoke", "eval.every=0",
           f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    summaries = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/summary.json"))]
    assert len(summaries) == 4 and all(s["status"] == "completed" for s in summaries)
    assert {(s["train_env"], s["config"]["think"]) for s in summaries} == {
        ("sokoban", True), ("sokoban", False), ("sciworld", True), ("sciworld", False)}
    for s in summaries:
        assert set(s["eval"]) == {"sokoban", "alfworld", "sciworld", "webshop"}


@pytest.mark.slow
def test_alfworld_smoke_on_generated_games(tmp_path):
    """`python launch.py env=alfworld debug=smoke` completes with no data downloaded."""
    out = tmp_path / "alf"
    launch("env=alfworld", "debug=smoke", "eval.envs=[alfworld]", f"hydra.run.dir={out}", cwd=tmp_path)
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["eval"]["alfworld"]["episodes"] == 2
    records = (out / "sft_data" / "alfworld.jsonl").read_text().splitlines()
    user = next(m for m in json.loads(records[0])["messages"] if m["role"] == "user")
    assert records and "\nActions: " in user["content"]  # the tiny preset's compact prompt lists them too
