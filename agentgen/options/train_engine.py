"""``trainer.params``: the training engine of agentgen/trainer/engine.py (single process or DeepSpeed ZeRO), and
its LoRA adapter. ``SingleEngineOptions`` types ``trainer=default``'s params; ``EngineOptions`` (all keys) types
the ``trainer=deepspeed_zero*`` presets' and is what the engines read."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Optional

from agentgen.options._rules import at_least, choice, need, positive, share

STRATEGIES = ("single", "deepspeed")
ZERO_STAGES = (0, 1, 2, 3)
OFFLOAD_DEVICES = ("none", "cpu", "nvme")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LORA_SYNC = ("merged", "adapter")


@dataclass
class LoraOptions:
    rank: int = 0  # 0: LoRA off (full fine-tuning)
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: Any = "all-linear"  # peft's keyword: "all-linear" or a list of module names
    sync: str = "merged"  # rollout engine gets merged weights, or the adapter itself (vLLM LoRA)
    init_seed: int = 0  # the adapter's initialisation: the same on every rank and in every run

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    def check(self) -> None:
        p = "trainer.params.lora"
        at_least(self.rank, 0, f"{p}.rank", " (0: no LoRA)")
        positive(self.alpha, f"{p}.alpha")
        share(self.dropout, f"{p}.dropout", " (a probability)", zero_ok=True)
        choice(self.sync, LORA_SYNC, f"{p}.sync")
        modules = self.target_modules
        need(isinstance(modules, str) and bool(modules) or (
            isinstance(modules, (list, tuple)) and bool(modules) and all(isinstance(m, str) for m in modules)),
            f"{p}.target_modules={modules!r} is invalid; valid: all-linear or a list of module names "
            "(e.g. [q_proj, v_proj]).")
        at_least(self.init_seed, 0, f"{p}.init_seed")


@dataclass
class SingleEngineOptions:
    """The keys every strategy reads."""

    precision: str = "auto"  # auto (from model.dtype) | fp32 | bf16 | fp16
    weight_sync_bucket_mb: int = 512  # weights per push into the rollout engine
    lora: LoraOptions = field(default_factory=LoraOptions)


@dataclass
class EngineOptions(SingleEngineOptions):
    """All of ``trainer.params`` (the ZeRO keys only with strategy=deepspeed)."""

    zero_stage: int = 3
    offload_optimizer: str = "none"  # none | cpu | nvme: optimizer states (and fp32 master) off the GPU
    offload_param: str = "none"  # none | cpu | nvme: ZeRO-3 parameters off the GPU
    nvme_path: Optional[str] = None
    overlap_comm: Optional[bool] = None  # None: on for ZeRO-2/3 on GPUs
    reduce_bucket_size: int = 200_000_000
    stage3_prefetch_bucket_size: int = 50_000_000
    stage3_param_persistence_threshold: int = 100_000
    ds_config: Dict[str, Any] = field(default_factory=dict)  # raw DeepSpeed keys merged over the generated JSON

    def check(self) -> None:
        p = "trainer.params"
        choice(self.zero_stage, ZERO_STAGES, f"{p}.zero_stage")
        choice(self.offload_optimizer, OFFLOAD_DEVICES, f"{p}.offload_optimizer")
        choice(self.offload_param, OFFLOAD_DEVICES, f"{p}.offload_param")
        choice(self.precision, PRECISIONS, f"{p}.precision")
        need(self.offload_param == "none" or self.zero_stage == 3, f"{p}.offload_param={self.offload_param} needs "
             f"ZeRO stage 3 (zero_stage={self.zero_stage}); use trainer=deepspeed_zero3 or offload_param=none.")
        need(self.offload_optimizer == "none" or self.zero_stage != 0, f"{p}.offload_optimizer="
             f"{self.offload_optimizer} needs ZeRO stage 1-3 (zero_stage=0); valid with offload: 1, 2, 3.")
        need("nvme" not in (self.offload_optimizer, self.offload_param) or bool(self.nvme_path),
             f"NVMe offload needs {p}.nvme_path (a fast local disk directory); it is {self.nvme_path!r}.")
        positive(self.weight_sync_bucket_mb, f"{p}.weight_sync_bucket_mb", " (MB per push)")
        for key in ("reduce_bucket_size", "stage3_prefetch_bucket_size"):
            positive(getattr(self, key), f"{p}.{key}", " (elements)")
        at_least(self.stage3_param_persistence_threshold, 0, f"{p}.stage3_param_persistence_threshold")
        self.lora.check()


DEEPSPEED_ONLY = tuple(f.name for f in fields(EngineOptions) if f.name not in
                       {g.name for g in fields(SingleEngineOptions)})
