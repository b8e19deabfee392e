"""Each component's own options, as torch-free dataclasses: the one copy of their types and rules.

Every component that reads a ``params`` block (or a group of keys) declares its options here: the HF decoder
(``rollout=hf``'s ``rollout.params``), the vLLM engine (``rollout=vllm``'s), the training engine with DeepSpeed
and LoRA (``trainer.params``), and the env pool and rollout loop (``rollout.*``). Each dataclass is registered in
Hydra's ConfigStore (``register_schemas``) and extended by its conf file, as the algorithms' are
(``agentgen/algos/registry.py``), so composing a config rejects unknown keys and wrong types; its ``check``
method holds the range and cross-field rules. Preflight calls ``check`` for every job of a sweep (through
``agentgen.config.validate``), and the component reads its options from the same object (``parse``), so a value
that would stop a job on the cluster stops it before it is queued.

This package sits below the components in the layers (it imports nothing of agentgen but ``errors``), so an
env pool, an engine and the config checks can all reach it.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from agentgen.errors import ConfigError
from agentgen.options._rules import need
from agentgen.options.async_rollout import ON_POLICY_ONLY, AsyncOptions
from agentgen.options.env_pool import PoolOptions, RolloutOptions
from agentgen.options.hf_decoder import HF_DECODERS, SEEDS_NEED_LOOP, HFOptions
from agentgen.options.rl_loop import EngineSetup, RLOptions
from agentgen.options.train_engine import (
    DEEPSPEED_ONLY,
    LORA_SYNC,
    OFFLOAD_DEVICES,
    PRECISIONS,
    STRATEGIES,
    ZERO_STAGES,
    EngineOptions,
    LoraOptions,
    SingleEngineOptions,
)
from agentgen.options.vllm_engine import PLACEMENTS, VLLMOptions

T = TypeVar("T")

# conf file -> (config group, schema name, dataclass): conf/<group>/<file>.yaml lists `<schema>@params` in its
# defaults, so its `params` block is typed by the dataclass
PARAMS_SCHEMAS = {
    ("rollout", "hf_params"): HFOptions,
    ("rollout", "vllm_params"): VLLMOptions,
    ("trainer", "engine_params"): SingleEngineOptions,
    ("trainer", "deepspeed_params"): EngineOptions,
}


def register_schemas() -> None:
    """Each component's options dataclass in Hydra's ConfigStore (``<group>/<schema>``); done on import."""
    for (group, name), node in PARAMS_SCHEMAS.items():
        ConfigStore.instance().store(group=group, name=name, node=node, provider="agentgen")


register_schemas()


def plain(node: Any) -> Any:
    """A DictConfig/ListConfig as plain containers (resolved); anything else as it is."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def typed(cls: type[T], raw: Mapping[str, Any] | None, where: str) -> T:
    """``raw`` as a ``cls`` instance: unknown keys and wrong types fail here with one paragraph naming the key
    under ``where`` (e.g. ``rollout.params``), as Hydra's composition does for a composed config."""
    values = dict(plain(raw) or {}) if not isinstance(raw, DictConfig) else plain(raw)
    valid = [f.name for f in fields(cls)]
    for key in values:
        if key not in valid:
            raise ConfigError(f"{where}.{key} is not a setting here; valid: {', '.join(valid)}.")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), values))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", "") or "?"
        value = OmegaConf.select(OmegaConf.create(values), key, default="?") if key != "?" else "?"
        msg = str(getattr(err, "msg", err)).splitlines()[0]
        raise ConfigError(f"{where}.{key}={value!r} has the wrong type: {msg}.") from None


def rollout_options(rollout: Mapping[str, Any]) -> RolloutOptions:
    """The rollout loop's and env pool's options from a ``rollout`` node, checked."""
    keys = {f.name for f in fields(RolloutOptions)}
    opts = typed(RolloutOptions, {k: v for k, v in plain(rollout).items() if k in keys}, "rollout")
    opts.check()
    return opts


def hf_options(params: Mapping[str, Any] | None) -> HFOptions:
    """``rollout.params`` of rollout=hf, checked."""
    opts = typed(HFOptions, params, "rollout.params")
    opts.check()
    return opts


def vllm_options(params: Mapping[str, Any] | None) -> VLLMOptions:
    """``rollout.params`` of rollout=vllm, checked."""
    opts = typed(VLLMOptions, params, "rollout.params")
    opts.check()
    return opts


def engine_options(strategy: str, params: Mapping[str, Any] | None) -> EngineOptions:
    """``trainer.params`` for ``trainer.strategy``, checked: ZeRO keys only with strategy=deepspeed."""
    need(strategy in STRATEGIES, f"trainer.strategy={strategy!r} is invalid; valid: {', '.join(STRATEGIES)}.")
    raw = dict(plain(params) or {})
    if strategy == "single":
        for key in raw:
            need(key not in DEEPSPEED_ONLY, f"trainer.params.{key} only applies to trainer.strategy=deepspeed (this "
                 "run has trainer.strategy=single); choose trainer=deepspeed_zero<0-3> or drop the key.")
    lora = raw.pop("lora", None)
    opts = typed(EngineOptions, raw, "trainer.params")
    opts.lora = typed(LoraOptions, lora, "trainer.params.lora")
    opts.check()
    return opts


def async_options(trainer: Mapping[str, Any]) -> AsyncOptions:
    """Rollouts ahead of the update (``trainer.max_staleness``, ``trainer.partial_rollouts``), checked."""
    raw = plain(trainer) or {}
    opts = typed(AsyncOptions, {k: raw[k] for k in ("max_staleness", "partial_rollouts") if k in raw}, "trainer")
    opts.check()
    return opts


def engine_setup(trainer: Mapping[str, Any], model_dtype: str) -> EngineSetup:
    """The training engine's settings from the job's ``trainer`` node and ``model.dtype``, checked."""
    strategy = trainer.get("strategy", "single")
    return EngineSetup(strategy=strategy, options=engine_options(strategy, trainer.get("params")),
                       lr=float(trainer.lr), weight_decay=float(trainer.get("weight_decay", 0.0)),
                       grad_clip=float(trainer.grad_clip), micro_batch=int(trainer.micro_batch_states),
                       model_dtype=str(model_dtype))


def rl_options(trainer: Mapping[str, Any], rollout: Mapping[str, Any], seed: int,
               engine: EngineSetup | None) -> RLOptions:
    """The RL trainer's options from the job's ``trainer`` and ``rollout`` nodes and its seed."""
    return RLOptions(seed=int(seed), prompts_per_step=int(trainer.prompts_per_step),
                     mini_batch_states=int(trainer.mini_batch_states),
                     micro_batch_states=int(trainer.micro_batch_states), grad_clip=float(trainer.grad_clip),
                     weight_decay=float(trainer.get("weight_decay", 0.0)), engine=engine,
                     check_sampler_every=int(trainer.get("check_sampler_every", 10) or 0),
                     check_sampler_samples=int(trainer.get("check_sampler_samples", 8)),
                     max_turns_schedule=trainer.get("max_turns_schedule"),
                     behaviour_logprobs=str(trainer.get("behaviour_logprobs", "auto")),
                     sampler=str(rollout.get("name", "hf")), temperature=float(rollout.temperature) or 1.0,
                     top_p=float(rollout.get("top_p", 1.0)), top_k=int(rollout.get("top_k", 0) or 0),
                     ahead=async_options(trainer))


def rollout_params(rollout: Mapping[str, Any]) -> HFOptions | VLLMOptions:
    """The engine options of ``rollout.name``'s engine, checked."""
    name = rollout.get("name")
    if name == "hf":
        return hf_options(rollout.get("params"))
    if name == "vllm":
        return vllm_options(rollout.get("params"))
    raise ConfigError(f"rollout={name!r} is not an engine; valid: hf, vllm.")


def check_components(rollout: Mapping[str, Any], trainer: Mapping[str, Any]) -> None:
    """Every component's options of a job (its ``rollout`` and ``trainer`` nodes), checked as the components will
    read them."""
    rollout_options(rollout)
    rollout_params(rollout)
    engine_options(trainer.get("strategy", "single"), trainer.get("params"))
    async_options(trainer)


__all__ = ["ON_POLICY_ONLY", "AsyncOptions", "async_options",
           "DEEPSPEED_ONLY", "HF_DECODERS", "LORA_SYNC", "OFFLOAD_DEVICES", "PARAMS_SCHEMAS", "PLACEMENTS",
           "PRECISIONS", "SEEDS_NEED_LOOP", "STRATEGIES", "ZERO_STAGES", "EngineOptions", "EngineSetup", "HFOptions",
           "LoraOptions", "PoolOptions", "RLOptions", "RolloutOptions", "SingleEngineOptions", "VLLMOptions",
           "check_components", "engine_options", "engine_setup", "hf_options", "need", "plain", "register_schemas",
           "rl_options", "rollout_options", "rollout_params", "typed", "vllm_options"]
