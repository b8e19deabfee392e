"""LoRA through peft as a training-engine option: only the adapter trains, the frozen base never moves,
the reference policy is the policy with its adapter switched off, the exported checkpoint is the merged
model (identical to peft's own merge, loadable by transformers) with the adapter beside it, and a
single-process LoRA run resumes from its base plus the saved adapter. (Under DeepSpeed ZeRO-2/3 on two
ranks: tests/test_deepspeed.py; merged weights pushed into vLLM: tests/test_vllm.py.)"""

from __future__ import annotations

import pytest
import torch
from test_engine import batch, fresh, nll_step

from agentgen.options import engine_setup
from agentgen.preflight import compose_job
from agentgen.trainer.engine import export_units, make_engine, resume_model_path


@pytest.fixture(scope="module")
def tiny():
    from agentgen.models.loader import load_policy

    cfg = compose_job([])
    model, tok, src = load_policy(cfg.model)
    return cfg, model, tok, src


def test_lora_trains_only_the_adapter_and_exports_merged_weights(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    cfg, _, tok, src = tiny
    cfg = compose_job(["+trainer.params.lora={rank: 4, alpha: 8}"])
    model = fresh(tiny)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    engine = make_engine(engine_setup(cfg.trainer, cfg.model.dtype), model, lr=1e-2, lora_base=src)
    trainable = [n for n, p in engine.module.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    samples = batch(tok)
    ids = torch.tensor([samples[0].prompt_ids])
    for _ in range(3):
        nll_step(engine, tok, samples)
    base_params = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
                   for n, p in engine.module.named_parameters() if ".lora_" not in n}
    assert all(torch.equal(base_params[n], before[n]) for n in before)  # the base never moves
    with torch.no_grad():
        policy_logits = engine.model(input_ids=ids).logits
        ref = engine.wrap_reference(None)  # LoRA: the reference is the policy with its adapter off
        ref_logits = ref(input_ids=ids).logits
        base_logits = fresh(tiny)(input_ids=ids).logits
    assert torch.allclose(ref_logits, base_logits, atol=1e-5)
    assert not torch.allclose(policy_logits, base_logits, atol=1e-3)

    # merged export = peft's own merge, HF-loadable; the adapter next to it; resume from the base + adapter
    engine.save(tmp_path / "ckpt", tokenizer=tok)
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.allclose(exported(input_ids=ids).logits, policy_logits, atol=1e-5)
    twin = get_peft_model(fresh(tiny), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    twin.load_state_dict({k: v for k, v in engine.module.state_dict().items()})
    merged = twin.merge_and_unload().state_dict()
    units = {u.name: u.tensor() for u in export_units(engine.module)}
    assert all(torch.allclose(units[n], merged[n], atol=1e-6) for n in units)
    assert {u.name for u in export_units(engine.module, merge_lora=False)} == set(units)
    assert all(torch.equal(u.tensor(), before[u.name]) for u in export_units(engine.module, merge_lora=False))
    assert resume_model_path(tmp_path / "ckpt") == src  # single-process LoRA resumes from the base
    resumed = make_engine(engine_setup(cfg.trainer, cfg.model.dtype), fresh(tiny), lr=1e-2, lora_base=src)
    resumed.load(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.allclose(resumed.model(input_ids=ids).logits, policy_logits, atol=1e-6)
    assert nll_step(resumed, tok, samples) == pytest.approx(nll_step(engine, tok, samples), rel=1e-5)
