"""Every component's options (agentgen/options) are checked before a job is queued: the HF decoder, the vLLM
engine, the training engine with DeepSpeed and LoRA, and the env pool and rollout loop. Each bad value below
stops the real launcher, with ``--plan`` (as on a cluster, ``cluster=slurm``) and without it, with exit code 2,
one paragraph naming the key, the value and what is valid, no traceback and nothing written. Before issue 29
the plan passed most of them ("All 1 job config(s) composed and validated"), and the job failed only once
its engine was built on the allocated GPUs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agentgen.config import ConfigError
from agentgen.options import (
    EngineOptions,
    HFOptions,
    LoraOptions,
    PoolOptions,
    RolloutOptions,
    SingleEngineOptions,
    VLLMOptions,
)
from agentgen.preflight import compose_job, preflight

ROOT = Path(__file__).resolve().parent.parent
VLLM = "rollout=vllm"
DS2, DS3 = "trainer=deepspeed_zero2", "trainer=deepspeed_zero3"

# (component, overrides, words the paragraph must contain); "*" marks the 23 values the plan passed before issue 29
# (checked against main at da928c1)
BAD = [
    ("vllm", [VLLM, "rollout.params.placement=elsewhere"], ["placement='elsewhere'", "colocate, separate"]),  # *
    ("vllm", [VLLM, "rollout.params.gpu_memory_utilization=2"], ["gpu_memory_utilization=2", "(0, 1]"]),  # *
    ("vllm", [VLLM, "rollout.params.tensor_parallel_size=0"], ["tensor_parallel_size=0", ">= 1"]),  # *
    ("vllm", [VLLM, "rollout.params.sleep_level=3"], ["sleep_level=3", "0, 1, 2"]),  # *
    ("vllm", [VLLM, "rollout.params.placement=separate"], ["placement=separate", "rollout_devices"]),  # *
    ("vllm", [VLLM, "rollout.params.max_num_seqs=0"], ["max_num_seqs=0", ">= 1"]),  # *
    ("vllm", [VLLM, "rollout.params.kv_cache_memory_gb=-1"], ["kv_cache_memory_gb=-1", "positive"]),  # *
    ("vllm", [VLLM, "rollout.params.max_model_len=0"], ["max_model_len=0", ">= 1"]),  # *
    ("vllm", [VLLM, "rollout.params.dtype=int8"], ["dtype='int8'", "bfloat16"]),  # *
    ("vllm", [VLLM, "rollout.params.in_process=true", "rollout.params.tensor_parallel_size=2"],
     ["in_process=true", "tensor_parallel_size=1"]),  # *
    ("vllm", [VLLM, "rollout.params.tensor_paralel_size=2"], ["tensor_paralel_size", "did you mean tensor_parallel"]),
    ("vllm", [VLLM, "rollout.params.tensor_parallel_size=two"],
     ["'rollout.params.tensor_parallel_size'", "'two'", "Integer"]),  # *
    ("hf", ["rollout.params.decode=beam"], ["decode='beam'", "loop", "generate"]),
    ("hf", ["rollout.params.share_prefix=maybe"], ["'rollout.params.share_prefix'", "'maybe'", "true, false"]),
    ("hf", ["rollout.params.tensor_parallel_size=2"], ["tensor_parallel_size", "decode, share_prefix",
                                                      "rollout=vllm"]),
    ("engine", [DS2, "trainer.params.zero_stage=9"], ["zero_stage=9", "0, 1, 2, 3"]),  # *
    ("engine", ["trainer.params.zero_stage=2"], ["zero_stage", "trainer=deepspeed_zero2"]),
    ("engine", [DS2, "trainer.params.offload_param=cpu"], ["offload_param=cpu", "stage 3"]),  # *
    ("engine", [DS3, "trainer.params.offload_optimizer=nvme"], ["nvme_path"]),  # *
    ("engine", ["trainer.params.precision=fp8"], ["precision='fp8'", "bf16"]),
    ("engine", [DS2, "trainer.params.reduce_bucket_size=0"], ["reduce_bucket_size=0", "positive"]),  # *
    ("engine", ["trainer.params.weight_sync_bucket_mb=0"], ["weight_sync_bucket_mb=0", "positive"]),
    ("engine", ["trainer.params.zero_stag=2"], ["zero_stag", "keys there"]),
    ("engine", ["trainer.strategy=fsdp"], ["trainer.strategy='fsdp'", "single, deepspeed"]),
    ("lora", ["trainer.params.lora.rank=-1"], ["lora.rank=-1", ">= 0"]),  # *
    ("lora", ["trainer.params.lora.dropout=1.5"], ["lora.dropout=1.5", "[0, 1)"]),  # *
    ("lora", ["trainer.params.lora.sync=delta"], ["lora.sync='delta'", "merged, adapter"]),  # *
    ("lora", ["trainer.params.lora.alpha=0"], ["lora.alpha=0", "positive"]),  # *
    ("lora", ["trainer.params.lora.rnk=8"], ["lora.rnk", "did you mean rank"]),
    ("pool", ["rollout.num_workers=-1"], ["rollout.num_workers=-1", ">= 0"]),  # *
    ("pool", ["rollout.step_timeout=-5"], ["rollout.step_timeout=-5", "positive"]),  # *
    ("pool", ["rollout.step_timeout=0"], ["rollout.step_timeout=0", "positive"]),  # *
    ("pool", ["env.sokoban.max_instances=0"], ["env.sokoban.max_instances=0"]),
    ("rollout", ["rollout.generation_batch_size=0"], ["rollout.generation_batch_size=0", ">= 1"]),  # *
    ("rollout", ["rollout.top_k=-1"], ["rollout.top_k=-1", ">= 0"]),
    ("rollout", ["rollout.temperature=-0.5"], ["rollout.temperature=-0.5", ">= 0"]),
    ("rollout", ["rollout.generation_timeout=0"], ["rollout.generation_timeout=0", "null"]),
]
IDS = [" ".join(argv) for _, argv, _ in BAD]


def test_the_table_covers_every_component_with_enough_values():
    assert {c for c, _, _ in BAD} == {"vllm", "hf", "engine", "lora", "pool", "rollout"}
    assert len(BAD) >= 25


@pytest.mark.parametrize("component, argv, needles", BAD, ids=IDS)
def test_preflight_names_the_bad_component_value(component, argv, needles, tmp_path, monkeypatch):
    """The in-process preflight (what launch.py runs before Hydra starts), for every job of a sweep too."""
    monkeypatch.chdir(tmp_path)
    for args in (argv, ["-m", *argv, "seed=0,1"]):
        with pytest.raises(ConfigError) as err:
            preflight([*args, "cluster=slurm"])
        msg = str(err.value)
        assert "\n" not in msg and "Traceback" not in msg, msg
        for needle in needles:
            assert needle in msg, (needle, msg)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("component, argv, needles", BAD, ids=IDS)
def test_the_launcher_refuses_before_queueing_or_writing(component, argv, needles, tmp_path):
    """The real launch.py: with --plan on a Slurm preset (the issue's report), and the same values run for real,
    which must stop before Hydra writes an output dir (cluster=local: a value let through would start here)."""
    for args in ([*argv, "cluster=slurm", "--plan"], [*argv, "cluster=local", "debug=smoke"]):
        r = subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
        out = r.stdout + r.stderr
        assert r.returncode == 2, out
        assert "Traceback" not in out, out
        paragraph = [ln for ln in out.splitlines() if ln.strip()][-1]  # the plan lists the jobs first
        for needle in needles:
            assert needle in paragraph, (needle, out)
        assert "composed and validated" not in out
        assert list(tmp_path.iterdir()) == [], out  # no outputs/, multirun/, wandb/


def test_every_preset_composes_typed_and_passes():
    """The presets' params blocks are typed by the options dataclasses, and their values pass the rules."""
    cases = {(): (HFOptions, SingleEngineOptions), ("rollout=vllm",): (VLLMOptions, SingleEngineOptions)}
    cases.update({(f"trainer=deepspeed_zero{i}",): (HFOptions, EngineOptions) for i in range(4)})
    from omegaconf import OmegaConf

    for overrides, (rollout_type, trainer_type) in cases.items():
        cfg = compose_job(list(overrides))
        assert OmegaConf.get_type(cfg.rollout.params) is rollout_type
        assert OmegaConf.get_type(cfg.trainer.params) is trainer_type
        assert OmegaConf.get_type(cfg.rollout) is RolloutOptions
        assert preflight(list(overrides))


def test_the_components_read_the_same_checked_object():
    """One copy of every rule: the engines and the pool parse their options with the functions preflight runs."""
    from agentgen import options
    from agentgen.envs.pool import EnvPool
    from agentgen.rollout import vllm
    from agentgen.trainer import engine

    assert vllm.parse_options is options.vllm_options and vllm.VLLMOptions is VLLMOptions
    assert engine.parse_options is options.engine_options and engine.LoraOptions is LoraOptions
    cfg = compose_job(["trainer=deepspeed_zero2", "trainer.params.lora.rank=4"])
    opts = engine.parse_options(cfg.trainer.strategy, cfg.trainer.params)
    assert isinstance(opts, EngineOptions) and opts.zero_stage == 2 and opts.lora.rank == 4
    with pytest.raises(ConfigError, match=r"rollout\.num_workers=-1 is invalid"):
        EnvPool("sokoban", {}, split="train", num_slots=1, num_workers=-1)
    with pytest.raises(ConfigError, match=r"rollout\.step_timeout=0 is invalid"):
        PoolOptions(step_timeout=0).check()


def test_the_engine_and_rl_trainer_take_their_options_not_the_job_config():
    """make_engine and RLTrainer receive the typed options the workspace builds once (``engine_setup``,
    ``rl_options``), not ``cfg``: the engine honours the setup's strategy, optimiser and LoRA, and the trainer its
    seed, batch sizes and sampler. Before issue 29 both took the whole job config and read it wherever."""
    from omegaconf import OmegaConf

    from agentgen.models.loader import load_policy
    from agentgen.options import EngineSetup, RLOptions, engine_setup, rl_options
    from agentgen.trainer.engine import make_engine
    from agentgen.trainer.rl_trainer import RLTrainer

    cfg = compose_job(["trainer.lr=0.003", "trainer.micro_batch_states=3", "seed=7", "rollout.top_p=0.9",
                       "+trainer.params.lora={rank: 2, alpha: 4}"])
    setup = engine_setup(cfg.trainer, cfg.model.dtype)
    assert isinstance(setup, EngineSetup) and setup.lr == 0.003 and setup.options.lora.rank == 2
    model, tok, _ = load_policy(cfg.model)
    engine = make_engine(setup, model)
    assert engine.lora.enabled and engine.optimizer.param_groups[0]["lr"] == 0.003
    opts = rl_options(cfg.trainer, cfg.rollout, cfg.seed, setup)
    assert isinstance(opts, RLOptions) and (opts.seed, opts.micro_batch_states, opts.top_p) == (7, 3, 0.9)
    trainer = RLTrainer(engine.model, None, tok, cfg.algo, opts, rollout_fn=None, engine=engine)
    assert not hasattr(trainer, "cfg") and trainer.opts is opts
    assert not trainer.sampler_exact  # top_p < 1: the sampler's log-probs are not the behaviour ones
    bad = OmegaConf.create({**OmegaConf.to_container(cfg.trainer), "params": {"zero_stage": 2}})  # ZeRO, single
    with pytest.raises(ConfigError, match=r"trainer\.params\.zero_stage only applies"):
        engine_setup(bad, cfg.model.dtype)
