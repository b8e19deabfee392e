"""The DeepSpeed JSON of a training engine, generated from ``trainer.params`` (agentgen/options: EngineOptions):
nothing is kept by hand, and ``trainer.params.ds_config`` overrides any key. Torch-free, so a plan or a test can
read the JSON a job would use."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from agentgen.options import EngineOptions

MODEL_DTYPE_PRECISION = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}



def resolve_precision(opts: EngineOptions, model_dtype: str) -> str:
    return MODEL_DTYPE_PRECISION[model_dtype] if opts.precision == "auto" else opts.precision


def deepspeed_config(opts: EngineOptions, *, lr: float, weight_decay: float, grad_clip: float, micro_batch: int,
                     world_size: int, precision: str, on_gpu: bool) -> dict[str, Any]:
    """The DeepSpeed JSON for these settings.

    Gradient accumulation is caller-owned (``managed_gradient_accumulation: false``): an RL mini-batch
    has as many micro-batches as its states need, and every ``step()`` is the boundary. AdamW matches the
    single-process optimiser (betas 0.9/0.999, eps 1e-8); torch's implementation on CPU, DeepSpeed's
    fused one on GPUs, its CPU Adam when the optimizer is offloaded."""
    stage = opts.zero_stage
    overlap = opts.overlap_comm if opts.overlap_comm is not None else (on_gpu and stage >= 2)
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": bool(overlap and stage >= 2),
                            "contiguous_gradients": stage >= 2, "reduce_bucket_size": int(opts.reduce_bucket_size)}
    if stage in (1, 2):
        zero["allgather_bucket_size"] = int(opts.reduce_bucket_size)
    if stage == 3:
        zero.update(stage3_prefetch_bucket_size=int(opts.stage3_prefetch_bucket_size),
                    stage3_param_persistence_threshold=int(opts.stage3_param_persistence_threshold),
                    stage3_gather_16bit_weights_on_model_save=True)
    for key, device in (("offload_optimizer", opts.offload_optimizer), ("offload_param", opts.offload_param)):
        if device != "none":
            zero[key] = {"device": device, "pin_memory": on_gpu}
            if device == "nvme":
                zero[key]["nvme_path"] = opts.nvme_path
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": int(micro_batch),
        "gradient_accumulation_steps": 1,
        "train_batch_size": int(micro_batch) * int(world_size),
        "managed_gradient_accumulation": False,
        "gradient_clipping": float(grad_clip),
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW", "params": {
            "lr": float(lr), "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": float(weight_decay),
            "torch_adam": not on_gpu and opts.offload_optimizer == "none"}},
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**12,
        "wall_clock_breakdown": False,
    }
    return _deep_merge(config, opts.ds_config)


def reference_deepspeed_config(train_config: Mapping[str, Any]) -> dict[str, Any]:
    """A frozen model's DeepSpeed JSON (reference policy under ZeRO-3): same sharding and precision, no
    optimizer; parameters offloaded when the policy's are."""
    zero = {k: v for k, v in train_config["zero_optimization"].items() if k != "offload_optimizer"}
    return {"train_micro_batch_size_per_gpu": train_config["train_micro_batch_size_per_gpu"],
            "train_batch_size": train_config["train_batch_size"], "gradient_accumulation_steps": 1,
            "zero_optimization": zero, "bf16": dict(train_config["bf16"]), "fp16": dict(train_config["fp16"]),
            "steps_per_print": 10**12, "wall_clock_breakdown": False}


def _deep_merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out
