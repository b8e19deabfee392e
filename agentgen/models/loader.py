"""Loads the policy model and tokenizer for a ``model=`` preset, building or converting local models
once into the cache (``$AGENTGEN_CACHE``, default ``~/.cache/agentgen``) under a file lock, so several
jobs starting at once build it only once."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def cache_root() -> Path:
    root = Path(os.environ.get("AGENTGEN_CACHE", Path.home() / ".cache" / "agentgen"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _materialise(name: str, key: str, builder) -> Path:
    """Run ``builder(tmp_dir)`` once and move the result to the cache atomically."""
    target = cache_root() / "models" / f"{name}-{key}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return target
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
        try:
            builder(tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def model_dir(model_cfg: Any) -> str:
    """A local directory (or hub id) that ``from_pretrained`` can load for this preset."""
    src = model_cfg.source
    if src == "tiny":
        from agentgen.models import tiny

        params = dict(model_cfg.params)
        return str(_materialise("tiny", tiny.build_key(params), lambda d: tiny.build(params, d)))
    if src == "gguf":
        from agentgen.models import gguf

        key = f"{model_cfg.gguf_package}-{Path(model_cfg.gguf_file).stem}-{gguf.FORMAT}".replace(".", "_")
        return str(_materialise(model_cfg.name, key,
                                lambda d: gguf.convert(model_cfg.gguf_package, model_cfg.gguf_file, d)))
    if not model_cfg.path:
        raise ValueError(f"model={model_cfg.name} has source=hf but no model.path (a hub id or local directory)")
    return str(model_cfg.path)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if not tok.chat_template:
        raise ValueError(f"the tokenizer at {path} has no chat template; agentgen renders prompts through it")
    return tok


def load_policy(model_cfg: Any, path: str | None = None):
    """Return (model, tokenizer, source_dir). ``path`` overrides the preset (e.g. a checkpoint dir)."""
    import torch
    from transformers import AutoModelForCausalLM

    src = path or model_dir(model_cfg)
    tokenizer = load_tokenizer(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=getattr(torch, DTYPES[model_cfg.dtype]))
    if model_cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model, tokenizer, src
