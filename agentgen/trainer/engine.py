"""Training engines: the one interface the trainers use to update the policy, whether it lives in one
process (``trainer.strategy=single``) or is sharded over many by DeepSpeed ZeRO stage 0-3
(``trainer.strategy=deepspeed``, one process per GPU), with optional LoRA adapters (peft) in both.

The trainer loop stays the same for every engine::

    engine = make_engine(setup, model)         # setup: agentgen.options.engine_setup(cfg.trainer, cfg.model.dtype)
    for micro, weight in engine.micro_batches(mini_batch, micro_batch_states):
        loss = ...forward on engine.model...
        engine.backward(loss * weight)          # weight 0: a padding pass (see below)
    grad_norm = engine.step()                   # clip, optimiser (and LR schedule) step, zero grads

Why the engine, not the trainer, splits the batch: under data parallelism every rank must run the same
number of forward/backward passes (ZeRO-3 gathers parameters in forward, ZeRO-2/3 reduce gradients in
backward), yet an RL step's state count is whatever the rollouts produced. ``micro_batches`` gives each
rank its share and pads short ranks with zero-weight passes. ``backward`` expects the loss already
weighted for a *sum over all ranks' micro-batches* (the single-process token-mean weighting) and undoes
DeepSpeed's averaging over ranks, so the update equals the single-process one.

By responsibility: the options and their rules are agentgen/options (``EngineOptions``), the DeepSpeed JSON
agentgen/trainer/deepspeed_json.py, the LoRA adapter agentgen/trainer/lora.py; this module holds the engines,
the weight export they share with the rollout engine, and the factory.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from agentgen import dist
from agentgen.options import STRATEGIES, EngineOptions, EngineSetup, LoraOptions, engine_options
from agentgen.trainer.batch import chunks
from agentgen.trainer.deepspeed_json import (  # noqa: F401 - importable from the engine module too
    MODEL_DTYPE_PRECISION,
    deepspeed_config,
    reference_deepspeed_config,
    resolve_precision,
)
from agentgen.trainer.lora import apply_lora, is_peft
from agentgen.trainer.optim import make_optimizer, make_scheduler

log = logging.getLogger(__name__)

ADAPTER_DIR = "lora_adapter"  # peft adapter inside a checkpoint (resume and vLLM LoRA sync)
STATE_FILE = "engine.json"  # what wrote a checkpoint: strategy, world size, LoRA base


# --------------------------------------------------------------------------- options
parse_options = engine_options  # trainer.params for a strategy: agentgen/options/train_engine.py holds the rules


@dataclass
class _ExportUnit:
    """One tensor of the plain (HF-named, LoRA-merged) model and the parameters it is computed from."""

    name: str
    params: list[torch.nn.Parameter]
    lora_layer: Any = None  # merge: base weight + lora_layer.get_delta_weight("default")

    def tensor(self) -> torch.Tensor:
        base = self.params[0].data
        if self.lora_layer is None:
            return base
        return base + self.lora_layer.get_delta_weight("default").to(base.dtype)


def export_units(module, merge_lora: bool = True) -> list[_ExportUnit]:
    """The plain model's tensors in parameter order: HF names, tied weights once, LoRA layers merged (or,
    with ``merge_lora=False``, the frozen base weights alone)."""
    if not is_peft(module):
        return [_ExportUnit(n, [p]) for n, p in module.named_parameters()]
    from peft.tuners.lora import LoraLayer

    base = module.get_base_model()
    layers = {name: m for name, m in base.named_modules() if isinstance(m, LoraLayer)}
    params = dict(base.named_parameters())
    units = []
    for name, p in params.items():
        if ".lora_" in name:
            continue  # folded into the merged weight below
        if ".base_layer." in name:
            owner, leaf = name.split(".base_layer.")
            layer = layers[owner]
            if merge_lora and leaf == "weight" and "default" in getattr(layer, "lora_A", {}):
                extra = [layer.lora_A["default"].weight, layer.lora_B["default"].weight]
                units.append(_ExportUnit(f"{owner}.weight", [p, *extra], layer))
            else:
                units.append(_ExportUnit(f"{owner}.{leaf}", [p]))
        else:
            units.append(_ExportUnit(name, [p]))
    return units


def _numel(p: torch.nn.Parameter) -> int:
    return int(getattr(p, "ds_numel", p.numel()))


def iter_buckets(units: list[_ExportUnit], bucket_mb: int,
                 gathered=lambda params: contextlib.nullcontext()) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """``units`` materialised in buckets of about ``bucket_mb``, each inside ``gathered(its params)``."""
    limit = bucket_mb * 2**20
    bucket: list[_ExportUnit] = []
    size = 0
    for unit in units:
        bucket.append(unit)
        size += _numel(unit.params[0]) * unit.params[0].element_size()
        if size >= limit:
            yield from _materialise(bucket, gathered)
            bucket, size = [], 0
    if bucket:
        yield from _materialise(bucket, gathered)


def _materialise(bucket: list[_ExportUnit], gathered) -> Iterator[list[tuple[str, torch.Tensor]]]:
    with torch.no_grad(), gathered([p for u in bucket for p in u.params]):
        yield [(u.name, u.tensor()) for u in bucket]


def is_partitioned(module) -> bool:
    """Whether DeepSpeed ZeRO-3 holds only a shard of ``module``'s parameters on this rank."""
    return any(hasattr(p, "ds_id") for p in module.parameters())


def zero3_gathered(params: list[torch.nn.Parameter]):
    """Context in which ZeRO-3-partitioned ``params`` hold their full values (a collective: every rank
    enters it); a no-op for ordinary parameters."""
    if not any(hasattr(p, "ds_id") for p in params):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def iter_plain_buckets(module, bucket_mb: int, merge_lora: bool = True) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Bucketed plain tensors of a model no training engine wraps yet (gathered if ZeRO-3 loaded it sharded)."""
    yield from iter_buckets(export_units(module, merge_lora), bucket_mb, zero3_gathered)


def generation_context(model, engine: TrainEngine | None = None):
    """Context for generating with ``model`` itself (rollout=hf): under ZeRO-3 every rank holds the full
    weights meanwhile (through the engine when one wraps the model); otherwise nothing to do."""
    if engine is not None:
        return engine.rollout_context()
    return zero3_gathered(list(model.parameters()))  # a no-op unless ZeRO-3 loaded the model sharded


# --------------------------------------------------------------------------- engines
class TrainEngine(abc.ABC):
    """What every engine shares: batch sharding across ranks, metric reduction, weight export."""

    strategy = "base"

    def __init__(self, opts: EngineOptions):
        self.opts = opts
        self.rank = dist.rank()
        self.world_size = dist.world_size()
        self.lora = opts.lora
        self.model: torch.nn.Module  # call forward on this
        self.module: torch.nn.Module  # the (peft-wrapped) HF model: generate, save, weight export
        self.optimizer: Any = None
        self.lora_base: str | None = None  # directory the frozen base weights came from (LoRA resume)

    # ---------------------------------------------------------------- ranks
    @property
    def is_rank0(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        dist.barrier()

    # ---------------------------------------------------------------- batches
    def micro_batches(self, items: Sequence[Any], size: int) -> list[tuple[list[Any], float]]:
        """This rank's micro-batches of ``items`` as (micro_batch, weight).

        Rank r takes items r, r+W, r+2W, ... (balanced to within one item). Every rank gets the same
        number of micro-batches; a rank that runs out repeats ``items[0]`` with weight 0.0 so that the
        collectives inside forward/backward stay in step. Callers scale the loss by ``weight`` and skip
        metrics (and anything stored per sample) for weight-0 passes."""
        if size <= 0:
            raise ValueError(f"micro-batch size must be positive, got {size}")
        if not items:
            return []
        mine = list(items[self.rank::self.world_size])
        count = math.ceil(math.ceil(len(items) / self.world_size) / size)
        out = [(c, 1.0) for c in chunks(mine, size)]
        out += [([items[0]], 0.0)] * (count - len(out))
        return out

    def share_extras(self, samples: Sequence[Any], keys: Sequence[str]) -> None:
        """After a pass over ``micro_batches(samples, ...)``, give every rank the per-sample tensors in
        ``sample.extras[key]`` that other ranks computed (old/reference log-probs)."""
        if self.world_size == 1:
            return
        mine = {i: {k: samples[i].extras[k].detach().cpu() for k in keys if k in samples[i].extras}
                for i in range(self.rank, len(samples), self.world_size)}
        for part in dist.all_gather_objects(mine):
            for i, extras in part.items():
                samples[i].extras.update(extras)

    def reduce_metrics(self, sums: Mapping[str, float], counts: int | Mapping[str, int]) -> dict[str, float]:
        """Means over every rank of metrics summed per micro-batch (or per step): ``sums[k] / counts[k]``
        with both summed over ranks; ``counts`` is one number when every key was added equally often."""
        per_key = {k: int(counts if isinstance(counts, int) else counts[k]) for k in sums}
        parts = dist.all_gather_objects((dict(sums), per_key)) if self.world_size > 1 else [(dict(sums), per_key)]
        total: dict[str, float] = {}
        n: dict[str, int] = {}
        for s, c in parts:
            for k, v in s.items():
                total[k] = total.get(k, 0.0) + float(v)
                n[k] = n.get(k, 0) + c[k]
        return {k: v / max(n[k], 1) for k, v in total.items()}

    # ---------------------------------------------------------------- training
    @abc.abstractmethod
    def backward(self, loss: torch.Tensor) -> None:
        ...

    @abc.abstractmethod
    def step(self) -> float:
        """Clip, optimiser step (and LR schedule), zero grads; returns the pre-clip global grad norm. A
        non-finite norm (a NaN/inf loss or gradient) skips the optimiser step: the weights stay as they were."""
        ...

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def wrap_reference(self, ref_model) -> torch.nn.Module | None:
        """The frozen reference policy for the KL term. With LoRA it is the policy with its adapter
        switched off (no second copy of the weights); otherwise ``ref_model`` prepared like the policy."""
        if self.lora.enabled:
            return AdapterDisabledView(self.module)
        if ref_model is None:
            return None
        ref_model.eval().requires_grad_(False)
        return self._prepare_frozen(ref_model)

    def _prepare_frozen(self, model) -> torch.nn.Module:
        return model.to(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    # ---------------------------------------------------------------- weights out
    def _gathered(self, params: list[torch.nn.Parameter]):
        """Context in which ``params`` hold their full values (a no-op unless ZeRO-3)."""
        return contextlib.nullcontext()

    def rollout_context(self):
        """Context for generating with ``self.module`` itself (rollout=hf): full weights on every rank."""
        return contextlib.nullcontext()

    def named_full_params(self, bucket_mb: int | None = None,
                          merge_lora: bool = True) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """The current policy as plain HF-named tensors (LoRA merged), in buckets of about ``bucket_mb``.

        A collective under ZeRO-3: every rank must iterate to the end in step. A bucket's tensors are
        valid until the next bucket is requested (consumers copy them, e.g. vLLM's ``load_weights``)."""
        yield from iter_buckets(export_units(self.module, merge_lora), bucket_mb or self.opts.weight_sync_bucket_mb,
                                self._gathered)

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The merged, HF-named full state dict on rank 0 (copies); None on other ranks."""
        out: dict[str, torch.Tensor] | None = {} if self.is_rank0 else None
        for bucket in self.named_full_params():
            if out is not None:
                out.update((n, t.detach().cpu().clone()) for n, t in bucket)
        return out

    def export_hf(self, path: str | Path, tokenizer=None) -> None:
        """An HF-loadable model (``from_pretrained``) of the current policy in ``path``: consolidated
        across ranks under ZeRO-3, LoRA merged; the adapter itself goes to ``path/lora_adapter``."""
        path = Path(path)
        plain = self.module.get_base_model() if is_peft(self.module) else self.module
        if self.lora.enabled or self._sharded():
            state = self.full_state_dict()
            if self.is_rank0:
                plain.save_pretrained(path, state_dict=state, safe_serialization=True)
        elif self.is_rank0:
            plain.save_pretrained(path, safe_serialization=True)
        if self.lora.enabled:
            self.save_adapter(path / ADAPTER_DIR)
        if self.is_rank0 and tokenizer is not None:
            tokenizer.save_pretrained(path)
        self.barrier()

    def save_adapter(self, path: str | Path) -> None:
        """The peft adapter alone (rank 0 writes; all ranks call under ZeRO-3)."""
        lora_params = [p for n, p in self.module.named_parameters() if ".lora_" in n]
        with self._gathered(lora_params):
            if self.is_rank0:
                self.module.save_pretrained(str(path), safe_serialization=True)

    def _sharded(self) -> bool:
        return False

    # ---------------------------------------------------------------- checkpoints
    def save(self, path: str | Path, tokenizer=None, training_state: bool = True) -> None:
        """Model (HF-loadable, see ``export_hf``) plus, with ``training_state``, everything needed to resume
        training exactly (optimizer, schedule, DeepSpeed's partitioned state). All ranks call it."""
        path = Path(path)
        if self.is_rank0:
            path.mkdir(parents=True, exist_ok=True)
        self.barrier()
        self.export_hf(path, tokenizer)
        if training_state:
            self._save_training_state(path)
        if self.is_rank0:
            (path / STATE_FILE).write_text(json.dumps({"strategy": self.strategy, "world_size": self.world_size,
                                                      "lora": self.lora.enabled, "lora_base": self.lora_base}))
        self.barrier()

    def load(self, path: str | Path) -> None:
        """Restore the training state ``save`` wrote (the model weights come with ``from_pretrained`` of
        ``resume_model_path(path)``, or from the DeepSpeed checkpoint under DeepSpeed)."""
        path = Path(path)
        if self.lora.enabled:
            self._load_adapter(path / ADAPTER_DIR)
        self._load_training_state(path)

    def _load_adapter(self, adapter_dir: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = load_file(str(adapter_dir / "adapter_model.safetensors"))
        with self._gathered([p for n, p in self.module.named_parameters() if ".lora_" in n]):
            set_peft_model_state_dict(self.module, state)

    @abc.abstractmethod
    def _save_training_state(self, path: Path) -> None:
        ...

    @abc.abstractmethod
    def _load_training_state(self, path: Path) -> None:
        ...

    def close(self) -> None:  # noqa: B027 - optional hook: only DeepSpeed has resources to release
        """Release the engine's resources (DeepSpeed's hooks and buffers)."""


class SingleEngine(TrainEngine):
    """One process: torch AdamW (``agentgen.trainer.optim``), norm clipping, optional LR schedule."""

    strategy = "single"

    def __init__(self, model, opts: EngineOptions, *, lr: float, weight_decay: float, grad_clip: float,
                 schedule: tuple[str, int, int] | None = None):
        super().__init__(opts)
        self.module = apply_lora(model, opts.lora) if opts.lora.enabled else model
        self.model = self.module
        self.grad_clip = float(grad_clip)
        self.optimizer = make_optimizer(self.module, lr, weight_decay)
        self.scheduler = make_scheduler(self.optimizer, *schedule) if schedule else None

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float:
        params = [p for p in self.module.parameters() if p.requires_grad]
        norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
        if math.isfinite(norm):
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def _save_training_state(self, path: Path) -> None:
        torch.save(self.optimizer.state_dict(), path / "optimizer.pt")
        if self.scheduler is not None:
            torch.save(self.scheduler.state_dict(), path / "scheduler.pt")

    def _load_training_state(self, path: Path) -> None:
        if (path / "optimizer.pt").exists():
            self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
        if self.scheduler is not None and (path / "scheduler.pt").exists():
            self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))


def _prepare_deepspeed_import() -> None:
    """DeepSpeed picks its accelerator at import: CPU when there is no GPU (tests, laptops)."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def _join_deepspeed() -> None:
    """Our process group (one rank per device; a one-rank group for a single process) and DeepSpeed's
    communication layer on top of it: ZeRO-3's sharded model loading needs it before any engine exists."""
    _prepare_deepspeed_import()
    dist.init(single_group=True)
    import deepspeed
    import torch.distributed as td

    deepspeed.init_distributed(dist_backend=td.get_backend(), auto_mpi_discovery=False, verbose=False)


class DeepSpeedEngine(TrainEngine):
    """DeepSpeed ZeRO stage 0-3 with optional optimizer/parameter offload and bf16/fp16, one process per
    device; the generated JSON is in ``self.config``."""

    strategy = "deepspeed"
    CHECKPOINT_DIR = "deepspeed"  # DeepSpeed's own (sharded) checkpoint inside agentgen's checkpoint dir
    CHECKPOINT_TAG = "state"

    def __init__(self, model, opts: EngineOptions, *, lr: float, weight_decay: float, grad_clip: float,
                 micro_batch: int, precision: str, schedule: tuple[str, int, int] | None = None):
        _join_deepspeed()
        super().__init__(opts)
        import deepspeed

        module = apply_lora(model, opts.lora) if opts.lora.enabled else model
        self.config = deepspeed_config(opts, lr=lr, weight_decay=weight_decay, grad_clip=grad_clip,
                                       micro_batch=micro_batch, world_size=self.world_size, precision=precision,
                                       on_gpu=torch.cuda.is_available())
        scheduler_fn = (lambda opt: make_scheduler(opt, *schedule)) if schedule else None
        trainable = [p for p in module.parameters() if p.requires_grad]
        self.ds, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=module, model_parameters=trainable, config=copy.deepcopy(self.config), lr_scheduler=scheduler_fn)
        self.model = self.ds
        self.module = self.ds.module
        self._frozen: list[Any] = []
        log.info("DeepSpeed ZeRO-%d engine on %d rank(s), precision %s", opts.zero_stage, self.world_size, precision)

    @property
    def zero_stage(self) -> int:
        return int(self.opts.zero_stage)

    def _sharded(self) -> bool:
        return self.zero_stage == 3

    @property
    def device(self) -> torch.device:
        return self.ds.device

    def backward(self, loss: torch.Tensor) -> None:
        # DeepSpeed averages gradients over data-parallel ranks; the loss is weighted for a sum over ranks.
        self.ds.backward(loss * self.world_size, scale_wrt_gas=False)

    def step(self) -> float:
        self.ds.step()  # ZeRO's optimizer skips a step whose global grad norm is not finite (its overflow check)
        norm = self.ds.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    @property
    def lr(self) -> float:
        return float(self.ds.get_lr()[0])

    def _prepare_frozen(self, model) -> torch.nn.Module:
        if self.zero_stage != 3:
            return model.to(self.device)
        import deepspeed

        engine, *_ = deepspeed.initialize(model=model, config=reference_deepspeed_config(self.config))
        engine.eval()
        self._frozen.append(engine)
        return engine

    def _gathered(self, params: list[torch.nn.Parameter]):
        return zero3_gathered(params)

    @contextlib.contextmanager
    def rollout_context(self):
        """ZeRO-3: every rank holds the full weights while it generates with HF ``generate`` (rollout=hf,
        small models), and the ZeRO hooks are lifted so ranks may run different numbers of forwards."""
        if self.zero_stage != 3:
            yield
            return
        import deepspeed

        offload = self.ds.optimizer.parameter_offload
        with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
            offload._remove_module_hooks()
            try:
                yield
            finally:
                offload.setup_zero_stage3_hooks()

    def _save_training_state(self, path: Path) -> None:
        self.ds.save_checkpoint(str(path / self.CHECKPOINT_DIR), tag=self.CHECKPOINT_TAG, save_latest=False)

    def _load_training_state(self, path: Path) -> None:
        ckpt = path / self.CHECKPOINT_DIR
        if not (ckpt / self.CHECKPOINT_TAG).exists():
            raise FileNotFoundError(f"{path} holds no DeepSpeed training state ({ckpt / self.CHECKPOINT_TAG}); "
                                    f"it was not written by trainer.strategy=deepspeed, so it cannot resume one")
        load_path, _ = self.ds.load_checkpoint(str(ckpt), tag=self.CHECKPOINT_TAG, load_optimizer_states=True,
                                               load_lr_scheduler_states=True)
        if load_path is None:
            raise RuntimeError(f"DeepSpeed could not load its checkpoint from {ckpt}")

    def load(self, path: str | Path) -> None:
        # DeepSpeed's checkpoint holds the module (adapter included): no separate adapter load.
        self._load_training_state(Path(path))

    def close(self) -> None:
        for engine in self._frozen:
            engine.destroy()
        self._frozen.clear()
        self.ds.destroy()


class AdapterDisabledView(torch.nn.Module):
    """Forward of a peft model with its adapter off: the frozen base policy, sharing the weights."""

    def __init__(self, peft_model):
        super().__init__()
        self._target = [peft_model]  # a list, so the policy is not registered as a submodule

    def forward(self, *args, **kwargs):
        model = self._target[0]
        with model.disable_adapter():
            return model(*args, **kwargs)

    def parameters(self, recurse: bool = True):
        return self._target[0].parameters(recurse)


# --------------------------------------------------------------------------- factory
def make_engine(setup: EngineSetup, model, *, lr: float | None = None, weight_decay: float | None = None,
                grad_clip: float | None = None, micro_batch: int | None = None,
                schedule: tuple[str, int, int] | None = None, lora_base: str | None = None) -> TrainEngine:
    """The engine for ``setup.strategy`` around ``model``. Optimiser settings default to the RL trainer's
    (``setup``, from ``cfg.trainer``); SFT passes its own and a schedule ``(name, total_steps, warmup_steps)``.
    ``lora_base``: where the base weights were loaded from, recorded for resuming a LoRA run."""
    opts = setup.options
    kwargs = dict(lr=float(setup.lr if lr is None else lr),
                  weight_decay=float(setup.weight_decay if weight_decay is None else weight_decay),
                  grad_clip=float(setup.grad_clip if grad_clip is None else grad_clip), schedule=schedule)
    if setup.strategy == "single":
        engine: TrainEngine = SingleEngine(model, opts, **kwargs)
    else:
        engine = DeepSpeedEngine(model, opts, micro_batch=int(micro_batch or setup.micro_batch),
                                 precision=resolve_precision(opts, setup.model_dtype), **kwargs)
    engine.lora_base = lora_base
    return engine


def resume_model_path(checkpoint: str | Path) -> str:
    """Where to load the model from to resume from ``checkpoint``: the checkpoint itself, or for a
    single-process LoRA run the base the adapter applies to (the checkpoint's weights are merged)."""
    path = Path(checkpoint)
    state_file = path / STATE_FILE
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if state.get("lora") and state.get("strategy") == "single" and state.get("lora_base"):
            return str(state["lora_base"])
    return str(path)


@contextlib.contextmanager
def model_loading(setup: EngineSetup):
    """Wrap ``from_pretrained`` with this: under ZeRO-3 each rank then loads only its parameter shard
    (transformers' ``HfDeepSpeedConfig``), so a model larger than one device's memory can be trained."""
    opts = setup.options
    if setup.strategy != "deepspeed" or opts.zero_stage != 3 or opts.lora.enabled:
        yield
        return
    _join_deepspeed()
    from transformers.integrations.deepspeed import HfDeepSpeedConfig, unset_hf_deepspeed_config

    config = deepspeed_config(opts, lr=setup.lr, weight_decay=setup.weight_decay, grad_clip=setup.grad_clip,
                              micro_batch=setup.micro_batch, world_size=dist.world_size(),
                              precision=resolve_precision(opts, setup.model_dtype), on_gpu=torch.cuda.is_available())
    keep_alive = HfDeepSpeedConfig(config)
    try:
        yield
    finally:
        # transformers' generate() would otherwise sync every token across ranks (synced_gpus).
        unset_hf_deepspeed_config()
        del keep_alive


__all__ = ["EngineOptions", "LoraOptions", "TrainEngine", "SingleEngine", "DeepSpeedEngine", "make_engine",
           "parse_options", "deepspeed_config", "reference_deepspeed_config", "resume_model_path", "model_loading",
           "apply_lora", "export_units", "iter_plain_buckets", "generation_context", "zero3_gathered",
           "is_partitioned", "STRATEGIES"]
