"""LoRA adapters through peft for the training engines (``trainer.params.lora``, agentgen/options: LoraOptions)."""

from __future__ import annotations

import torch

from agentgen.options import LoraOptions, plain


def apply_lora(model, lora: LoraOptions):
    """Wrap ``model`` with a peft LoRA adapter named "default"; only the adapter trains."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=int(lora.rank), lora_alpha=float(lora.alpha), lora_dropout=float(lora.dropout),
                        target_modules=plain(lora.target_modules), bias="none", task_type="CAUSAL_LM")
    if getattr(model, "is_gradient_checkpointing", False):
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(lora.init_seed))
        return get_peft_model(model, config)


def is_peft(module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(module, PeftModel)
