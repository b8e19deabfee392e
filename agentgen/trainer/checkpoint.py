"""Checkpoints in the job's output dir, written atomically (temp dir + rename) so a job killed mid-save
(Slurm time limit, preemption) always finds the previous complete checkpoint when it resumes.

Layout: ``<out>/checkpoints/<tag>/`` with the model (safetensors) and tokenizer, ``optimizer.pt``,
``rng.pt`` and ``state.json`` (step, eval history, metrics); ``<out>/checkpoints/latest`` names the tag
to resume from. With a training engine (``engine=``) the engine writes the model and its training state
(a DeepSpeed job: every rank writes its shard of ``deepspeed/``, rank 0 the consolidated model); rank 0
alone writes the rest and moves the finished directory into place.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agentgen import dist


def ckpt_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save(out_dir: str | Path, tag: str, model, tokenizer, optimizer, state: dict[str, Any], keep: int = 1,
         engine=None) -> Path:
    """All ranks call this when ``engine`` is given (a collective under DeepSpeed)."""
    root = ckpt_root(out_dir)
    final = root / tag
    tmp = root / f".tmp-{tag}-{dist.broadcast_object(os.getpid())}"  # rank 0's name on every rank
    if dist.is_rank0():
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    dist.barrier()
    if engine is not None:
        # the model (HF-loadable, consolidated); with an optimizer also the training state to resume from
        engine.save(tmp, tokenizer, training_state=optimizer is not None)
    else:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    if not dist.is_rank0():
        dist.barrier()  # rank 0 finishes the checkpoint
        return final
    torch.save(_rng_state(), tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1, default=float))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = root / ".latest.tmp"
    latest_tmp.write_text(tag)
    os.replace(latest_tmp, root / "latest")
    _prune(root, keep, protect={tag, "sft"})
    dist.barrier()
    return final


def _prune(root: Path, keep: int, protect: set[str]) -> None:
    steps = sorted((p for p in root.glob("step_*") if p.is_dir()), key=lambda p: int(p.name.split("_")[1]))
    for p in steps[:-keep] if keep > 0 else []:
        if p.name not in protect:
            shutil.rmtree(p, ignore_errors=True)


def latest(out_dir: str | Path) -> Path | None:
    marker = ckpt_root(out_dir) / "latest"
    if not marker.exists():
        return None
    path = ckpt_root(out_dir) / marker.read_text().strip()
    return path if (path / "state.json").exists() else None


def load_state(path: Path) -> dict[str, Any]:
    return json.loads((path / "state.json").read_text())


def restore_training(path: Path, optimizer) -> None:
    if optimizer is not None and (path / "optimizer.pt").exists():
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    if (path / "rng.pt").exists():
        _set_rng_state(torch.load(path / "rng.pt", weights_only=False))
