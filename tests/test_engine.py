"""The training-engine layer without launching ranks: config validation and the generated DeepSpeed JSON,
how batches are split over ranks (every item once, equal pass counts, zero-weight padding), metric
reduction, the single-process engine against plain AdamW, its checkpoints, and the rank helpers under
submitit (two real tasks). LoRA: tests/test_lora.py; DeepSpeed ranks: tests/test_deepspeed.py."""

from __future__ import annotations

import json
import random

import pytest
import torch

from agentgen import dist
from agentgen.config import ConfigError
from agentgen.options import engine_setup
from agentgen.preflight import compose_job
from agentgen.trainer.engine import (
    EngineOptions,
    LoraOptions,
    SingleEngine,
    deepspeed_config,
    make_engine,
    parse_options,
    reference_deepspeed_config,
    resume_model_path,
)


@pytest.fixture(scope="module")
def tiny():
    from agentgen.models.loader import load_policy

    cfg = compose_job([])
    model, tok, src = load_policy(cfg.model)
    return cfg, model, tok, src


def fresh(tiny):
    from agentgen.models.loader import load_policy

    cfg = tiny[0]
    model, _, _ = load_policy(cfg.model)
    return model


# --------------------------------------------------------------------------- options and JSON
@pytest.mark.parametrize("strategy,params,needles", [
    ("single", {"zero_stage": 2}, ["trainer.params.zero_stage", "trainer.strategy=deepspeed"]),
    ("deepspeed", {"zero_stage": 4}, ["zero_stage=4", "0, 1, 2, 3"]),
    ("deepspeed", {"zero_stag": 2}, ["trainer.params.zero_stag", "zero_stage"]),
    ("deepspeed", {"zero_stage": 2, "offload_param": "cpu"}, ["offload_param=cpu", "stage 3"]),
    ("deepspeed", {"zero_stage": 0, "offload_optimizer": "cpu"}, ["offload_optimizer=cpu", "1, 2, 3"]),
    ("deepspeed", {"offload_optimizer": "nvme"}, ["nvme_path"]),
    ("deepspeed", {"precision": "fp8"}, ["precision='fp8'", "bf16"]),
    ("single", {"lora": {"rank": 8, "sync": "delta"}}, ["lora.sync='delta'", "merged, adapter"]),
    ("single", {"lora": {"rnk": 8}}, ["lora.rnk", "rank"]),
    ("fsdp", {}, ["trainer.strategy='fsdp'", "single, deepspeed"]),
])
def test_bad_engine_settings_name_the_value(strategy, params, needles):
    with pytest.raises(ConfigError) as err:
        parse_options(strategy, params)
    for n in needles:
        assert n in str(err.value), (n, str(err.value))


@pytest.mark.parametrize("preset", ["deepspeed_zero0", "deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero3"])
def test_presets_compose_and_generate_their_json(preset):
    cfg = compose_job([f"trainer={preset}", "model=llama3_1_8b_instruct"])
    stage = int(preset[-1])
    assert cfg.trainer.strategy == "deepspeed" and cfg.trainer.steps == 150  # the default trainer's sizes
    opts = parse_options(cfg.trainer.strategy, cfg.trainer.params)
    js = deepspeed_config(opts, lr=cfg.trainer.lr, weight_decay=0.0, grad_clip=cfg.trainer.grad_clip,
                          micro_batch=cfg.trainer.micro_batch_states, world_size=8, precision="bf16", on_gpu=True)
    assert js["zero_optimization"]["stage"] == stage
    assert js["managed_gradient_accumulation"] is False and js["gradient_accumulation_steps"] == 1
    assert js["train_batch_size"] == cfg.trainer.micro_batch_states * 8
    assert js["bf16"]["enabled"] and not js["fp16"]["enabled"]
    assert js["optimizer"]["params"]["lr"] == 1e-6 and js["optimizer"]["params"]["torch_adam"] is False
    assert js["gradient_clipping"] == 1.0
    assert js["zero_optimization"]["overlap_comm"] == (stage >= 2)  # DeepSpeed refuses overlap below 2 here
    assert ("stage3_gather_16bit_weights_on_model_save" in js["zero_optimization"]) == (stage == 3)
    json.dumps(js)  # plain JSON


def test_offload_precision_and_raw_overrides():
    opts = parse_options("deepspeed", {"zero_stage": 3, "offload_optimizer": "cpu", "offload_param": "cpu",
                                       "ds_config": {"zero_optimization": {"round_robin_gradients": True},
                                                     "steps_per_print": 10}})
    js = deepspeed_config(opts, lr=1e-5, weight_decay=0.1, grad_clip=0.5, micro_batch=2, world_size=2,
                          precision="fp16", on_gpu=False)
    z = js["zero_optimization"]
    assert z["offload_optimizer"] == {"device": "cpu", "pin_memory": False}
    assert z["offload_param"]["device"] == "cpu" and z["round_robin_gradients"] is True and z["stage"] == 3
    assert js["steps_per_print"] == 10 and js["fp16"]["enabled"] and js["fp16"]["loss_scale"] == 0
    assert js["optimizer"]["params"]["torch_adam"] is False  # offloaded: DeepSpeed's CPU Adam
    assert js["optimizer"]["params"]["weight_decay"] == 0.1 and js["gradient_clipping"] == 0.5
    ref = reference_deepspeed_config(js)
    assert "optimizer" not in ref and "offload_optimizer" not in ref["zero_optimization"]
    assert ref["zero_optimization"]["offload_param"]["device"] == "cpu"
    cpu = deepspeed_config(parse_options("deepspeed", {"zero_stage": 2}), lr=1e-5, weight_decay=0.0, grad_clip=1.0,
                           micro_batch=2, world_size=2, precision="fp32", on_gpu=False)
    assert cpu["optimizer"]["params"]["torch_adam"] is True and cpu["zero_optimization"]["overlap_comm"] is False


# --------------------------------------------------------------------------- batch split over ranks
class _Ranked(SingleEngine):
    """A single-process engine told it is rank ``rank`` of ``world``: exercises the split logic alone."""

    def __init__(self, rank: int, world: int):  # noqa: D401 - no model needed
        self.rank, self.world_size = rank, world


@pytest.mark.parametrize("n,world,size", [(7, 2, 1), (7, 2, 2), (5, 4, 2), (1, 3, 4), (16, 8, 2), (3, 1, 8)])
def test_micro_batches_cover_every_item_once_with_equal_pass_counts(n, world, size):
    items = list(range(n))
    plans = [_Ranked(r, world).micro_batches(items, size) for r in range(world)]
    assert len({len(p) for p in plans}) == 1  # every rank runs the same number of passes
    real = sorted(i for p in plans for micro, w in p if w for i in micro)
    assert real == items
    for p in plans:
        assert all(len(micro) <= size for micro, _ in p)
        assert all(micro == [items[0]] for micro, w in p if w == 0)  # padding repeats a real item, weight 0


def test_metric_means_and_single_rank_sharing():
    e = _Ranked(0, 1)
    assert e.reduce_metrics({"a": 3.0, "b": 1.0}, {"a": 3, "b": 2}) == {"a": 1.0, "b": 0.5}
    assert e.reduce_metrics({"a": 4.0}, 2) == {"a": 2.0}
    e.share_extras([], ("old",))  # one rank: nothing to exchange


# --------------------------------------------------------------------------- single engine, LoRA
def batch(tok, n=4, seed=0):
    from agentgen.trainer.batch import Sample

    rng = random.Random(seed)
    return [Sample([rng.randrange(4, len(tok)) for _ in range(12)], [rng.randrange(4, len(tok)) for _ in range(5)])
            for _ in range(n)]


def nll_step(engine, tok, samples, micro_size: int = 2) -> float:
    from agentgen.trainer.batch import collate, response_logits, token_logprobs

    total = sum(len(s.response_ids) for s in samples)
    for micro, w in engine.micro_batches(samples, micro_size):
        tb = collate(micro, tok.pad_token_id)
        engine.backward(-(token_logprobs(response_logits(engine.model, tb), tb) * tb.response_mask).sum() / total * w)
    return engine.step()


def test_single_engine_matches_plain_adamw(tiny):
    cfg, _, tok, _ = tiny
    a, b = fresh(tiny), fresh(tiny)
    engine = make_engine(engine_setup(cfg.trainer, cfg.model.dtype), a, lr=1e-2, weight_decay=0.0, grad_clip=1.0)
    samples = batch(tok)
    norm = nll_step(engine, tok, samples, micro_size=len(samples))  # one pass: the same float sums
    from agentgen.trainer.batch import collate, response_logits, token_logprobs
    from agentgen.trainer.optim import make_optimizer

    opt = make_optimizer(b, 1e-2, 0.0)
    tb = collate(samples, tok.pad_token_id)
    (-(token_logprobs(response_logits(b, tb), tb) * tb.response_mask).sum() / tb.num_tokens).backward()
    want = torch.nn.utils.clip_grad_norm_(b.parameters(), 1.0)
    opt.step()
    assert norm == pytest.approx(float(want), rel=1e-5)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_single_engine_checkpoint_holds_model_and_optimizer(tiny, tmp_path):
    cfg, _, tok, _ = tiny
    engine = make_engine(engine_setup(cfg.trainer, cfg.model.dtype), fresh(tiny), lr=1e-2, schedule=("cosine", 10, 2))
    nll_step(engine, tok, batch(tok))
    engine.save(tmp_path / "c", tokenizer=tok)
    names = {p.name for p in (tmp_path / "c").iterdir()}
    assert {"model.safetensors", "config.json", "optimizer.pt", "scheduler.pt", "engine.json"} <= names
    assert resume_model_path(tmp_path / "c") == str(tmp_path / "c")
    other = make_engine(engine_setup(cfg.trainer, cfg.model.dtype), fresh(tiny), lr=1e-2, schedule=("cosine", 10, 2))
    other.load(tmp_path / "c")
    assert other.lr == pytest.approx(engine.lr) and other.scheduler.last_epoch == 1
    assert other.optimizer.state_dict()["state"].keys() == engine.optimizer.state_dict()["state"].keys()


def test_model_loading_is_a_no_op_without_zero3(tiny):
    from agentgen.trainer.engine import model_loading

    cfg = compose_job([])
    with model_loading(engine_setup(cfg.trainer, cfg.model.dtype)):
        pass
    assert not dist.is_distributed()


def test_lora_options_defaults():
    opts = EngineOptions()
    assert opts.zero_stage == 3 and opts.lora == LoraOptions() and not opts.lora.enabled


# --------------------------------------------------------------------------- ranks under submitit
def _rank_probe(items):
    from agentgen import dist as d

    info = d.init()
    mine = d.split(items)
    gathered = d.gather_split([x * 10 for x in mine])
    summed = d.all_reduce_sum([1.0, float(info.rank)])
    out = {"rank": info.rank, "world": info.world_size, "launcher": info.launcher, "mine": mine,
           "gathered": gathered, "summed": summed, "from0": d.broadcast_object(f"hello from {info.rank}")}
    d.destroy()
    return out


def test_submitit_tasks_join_one_process_group(tmp_path):
    """Two submitit tasks (the local executor, as Slurm's tasks_per_node=2) get their ranks from
    TorchDistributedEnvironment, split a work list and gather it back in order on both."""
    import sys

    import cloudpickle
    import submitit

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the task process cannot import tests/
    executor = submitit.AutoExecutor(folder=tmp_path / "sub", cluster="local")
    executor.update_parameters(tasks_per_node=2, nodes=1, timeout_min=5, gpus_per_node=0)
    job = executor.submit(_rank_probe, list(range(7)))
    results = sorted(job.results(), key=lambda r: r["rank"])
    assert [r["rank"] for r in results] == [0, 1] and all(r["world"] == 2 for r in results)
    assert all(r["launcher"] == "submitit" for r in results)
    assert results[0]["mine"] == [0, 1, 2, 3] and results[1]["mine"] == [4, 5, 6]
    assert all(r["gathered"] == [x * 10 for x in range(7)] for r in results)
    assert all(r["summed"] == [2.0, 1.0] for r in results)
    assert all(r["from0"] == "hello from 0" for r in results)


def test_single_process_is_rank_zero_of_one():
    info = dist.info()
    assert (info.rank, info.world_size, info.is_rank0) == (0, 1, True)
    assert dist.split([1, 2, 3]) == [1, 2, 3] and dist.gather_split([1, 2]) == [1, 2]
    assert dist.split(list(range(5)), 2, 1) == [3, 4] and dist.split(list(range(5)), 2, 0) == [0, 1, 2]
