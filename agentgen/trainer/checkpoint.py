"""Checkpoints in the job's output dir, written atomically (temp dir + rename) so a job killed mid-save
(Slurm time limit, preemption, SIGKILL) always finds the previous complete checkpoint when it resumes.

Layout: ``<out>/checkpoints/<tag>/`` with the model (safetensors) and tokenizer, ``optimizer.pt``,
``rng.pt`` and ``state.json`` (step, eval history, metrics); ``<out>/checkpoints/latest`` names the tag
to resume from. With a training engine (``engine=``) the engine writes the model and its training state
(a DeepSpeed job: every rank writes its shard of ``deepspeed/``, rank 0 the consolidated model); rank 0
alone writes the rest and moves the finished directory into place.

``manifest.json`` (every file's size and sha256) is written last: a checkpoint without it, or whose files
differ from it (truncated, damaged), is not trusted. ``resume_point`` returns the newest checkpoint that
verifies and names every newer one it passed over and why. A write that fails (a full disk) removes its
partial directory and raises ``CheckpointWriteError``; the previous checkpoints are untouched.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agentgen import dist
from agentgen.secrets import redact

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_HASH_CHUNK = 1 << 22


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (e.g. no space left); the previous ones are intact."""


def ckpt_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save(out_dir: str | Path, tag: str, model, tokenizer, optimizer, state: dict[str, Any], keep: int = 1,
         engine=None, protect: set[str] | None = None) -> Path:
    """All ranks call this when ``engine`` is given (a collective under DeepSpeed). ``protect``: tags
    the pruning of old checkpoints must keep (the last healthy one, see ``agentgen.trainer.health``)."""
    root = ckpt_root(out_dir)
    final = root / tag
    tmp = root / f".tmp-{tag}-{dist.broadcast_object(os.getpid())}"  # rank 0's name on every rank
    try:
        if dist.is_rank0():
            root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        dist.barrier()
        if engine is not None:
            # the model (HF-loadable, consolidated); with an optimizer also the training state to resume from
            try:
                engine.save(tmp, tokenizer, training_state=optimizer is not None)
            except Exception as err:
                _report_part(tmp, f"failed: {type(err).__name__}: {err}")
                raise
            _report_part(tmp, "ok")
        else:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            if optimizer is not None:
                torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if not dist.is_rank0():
            dist.barrier()  # rank 0 finishes the checkpoint
            return final
        if engine is not None:
            _check_parts(tmp)  # every rank's shard is in: else nothing is published
        torch.save(_rng_state(), tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps(redact(state), indent=1, default=float))
        write_manifest(tmp, tag, state.get("step"))  # last: its presence says every file above is complete
    except Exception as err:  # noqa: BLE001 - torch.save and safetensors report a full disk as their own errors
        full = _disk_full(err, root)
        if dist.is_rank0():  # rank 0 owns the directory (another rank's marker must stay for it to read)
            shutil.rmtree(tmp, ignore_errors=True)  # a partial checkpoint only takes the space the job needs
        raise CheckpointWriteError(_write_error(root, tag, err, full)) from err
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    set_latest(out_dir, tag)
    _prune(root, keep, protect={tag, "sft", *(protect or ())})
    dist.barrier()
    return final


PART = ".rank-{}.part"  # a rank's report on its part of a sharded save, in the checkpoint's temp dir
PART_WAIT_S = 120.0


def _report_part(tmp: Path, outcome: str) -> None:
    """Tell rank 0 how this rank's part of the save went ("ok" or "failed: why"), through the (shared)
    checkpoint directory rather than a collective: after a failure mid-save the ranks' collectives no longer
    pair up (a failed rank's next collective can complete the barrier the others wait in)."""
    if dist.world_size() > 1:  # written whole, then renamed: rank 0 never reads a report half-written (empty)
        part = tmp / PART.format(dist.rank())
        staged = part.with_name(part.name + ".tmp")
        staged.write_text(redact(outcome))
        os.replace(staged, part)


def _check_parts(tmp: Path) -> None:
    """Rank 0: wait for every rank's report and raise, naming them, if any rank's part failed or never came."""
    world = dist.world_size()
    if world == 1:
        return
    paths = [tmp / PART.format(r) for r in range(world)]
    deadline = time.monotonic() + PART_WAIT_S
    while not all(p.exists() for p in paths) and time.monotonic() < deadline:
        time.sleep(0.1)
    bad = {r: p.read_text() if p.exists() else f"no report within {PART_WAIT_S:.0f} s" for r, p in enumerate(paths)}
    bad = {r: why for r, why in bad.items() if why != "ok"}
    if bad:
        raise RuntimeError("the save did not complete on every rank, so it is not published: "
                           + "; ".join(f"rank {r}: {why}" for r, why in sorted(bad.items())))
    for p in paths:
        p.unlink()


def _disk_full(err: BaseException, root: Path) -> bool:
    """Whether a failed write met a full disk: ENOSPC anywhere in the error's chain or its words in a message
    (torch.save and safetensors raise their own errors), or under 1 MiB left where the checkpoint was written."""
    e: BaseException | None = err
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if os.strerror(errno.ENOSPC) in str(e):  # safetensors: "I/O error: No space left on device (os error 28)"
            return True
        e = e.__cause__ or e.__context__
    try:
        return shutil.disk_usage(root).free < 2**20
    except OSError:
        return False


def _write_error(root: Path, tag: str, err: BaseException, full: bool) -> str:
    previous = resume_point(root.parent, quiet=True).path
    kept = f"the previous checkpoint {previous.name} is intact" if previous else "there is no earlier checkpoint"
    why = "no space left on device" if full else f"{type(err).__name__}: {err}"
    try:
        room = f" ({shutil.disk_usage(root).free / 2**20:.0f} MiB free there after removing the partial files"
        room += f"; a checkpoint takes {_size(previous) / 2**20:.0f} MiB)" if previous else ")"
    except OSError:
        room = ""
    return (f"could not write checkpoint {tag} to {root}: {why}{room}; {kept}. Free space (or lower "
            f"trainer.keep_checkpoints), then re-run the same command: the job resumes from its last complete "
            f"checkpoint.")


def discard_partial(out_dir: str | Path) -> None:
    """Remove the directories of saves that never finished (``.tmp-*``: the job died while writing)."""
    for tmp in ckpt_root(out_dir).glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(ckpt_dir: Path, tag: str, step: Any = None) -> None:
    """``manifest.json``: every file's size and sha256, written atomically as the checkpoint's last file."""
    files = {str(p.relative_to(ckpt_dir)): {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(ckpt_dir.rglob("*")) if p.is_file() and p.name != MANIFEST}
    tmp = ckpt_dir / f".{MANIFEST}.tmp"
    with tmp.open("w") as f:
        json.dump({"tag": tag, "step": step, "written": time.time(), "files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, ckpt_dir / MANIFEST)


def verify(ckpt_dir: Path) -> str | None:
    """Why ``ckpt_dir`` cannot be trusted (missing manifest, a file missing, truncated or changed), or None."""
    if not ckpt_dir.is_dir():
        return "missing"
    try:
        manifest = json.loads((ckpt_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return f"no {MANIFEST} (the save did not finish, or it predates manifests)"
    except ValueError:
        return f"{MANIFEST} is unreadable"
    for rel, meta in manifest.get("files", {}).items():
        p = ckpt_dir / rel
        if not p.is_file():
            return f"{rel} is missing"
        size = p.stat().st_size
        if size != meta["size"]:
            return f"{rel} has {size} bytes, the manifest says {meta['size']} (truncated or damaged)"
        if _sha256(p) != meta["sha256"]:
            return f"{rel} does not match its checksum (damaged)"
    return None


@dataclass
class ResumePoint:
    path: Path | None  # the checkpoint to resume from (None: start afresh)
    rejected: list[dict[str, str]] = field(default_factory=list)  # [{checkpoint, reason}] passed over


def _candidates(root: Path) -> list[Path]:
    """Checkpoint dirs, newest first: the one ``latest`` names, then step_N by N descending, then sft."""
    order: list[Path] = []
    marker = root / "latest"
    if marker.exists():
        order.append(root / marker.read_text().strip())
    steps = sorted((p for p in root.glob("step_*") if p.is_dir() and p.name.split("_")[1].isdigit()),
                   key=lambda p: int(p.name.split("_")[1]), reverse=True)
    order += steps + [root / "sft"]
    seen: set[Path] = set()
    return [p for p in order if not (p in seen or seen.add(p))]


def resume_point(out_dir: str | Path, quiet: bool = False) -> ResumePoint:
    """The newest complete checkpoint of a job: ``latest`` when it verifies, else the newest earlier one that
    does; every one passed over (and a save killed half-way, ``.tmp-*``) is reported by name."""
    root = ckpt_root(out_dir)
    found = ResumePoint(None)
    if not root.is_dir():
        return found
    for tmp in sorted(root.glob(".tmp-*")):
        found.rejected.append({"checkpoint": tmp.name, "reason": "a save that never finished (killed mid-save)"})
    for cand in _candidates(root):
        if not cand.exists():
            if cand.name != "sft":
                found.rejected.append({"checkpoint": cand.name, "reason": "named by checkpoints/latest but missing"})
            continue
        why = verify(cand)
        if why is None:
            found.path = cand
            break
        found.rejected.append({"checkpoint": cand.name, "reason": why})
    if not quiet:
        for r in found.rejected:
            log.warning("checkpoint %s is not usable: %s; %s", r["checkpoint"], r["reason"],
                        f"using {found.path.name}" if found.path else "no complete checkpoint is left")
    return found


def set_latest(out_dir: str | Path, tag: str) -> None:
    """Point ``checkpoints/latest`` at ``tag`` (atomically)."""
    root = ckpt_root(out_dir)
    tmp = root / ".latest.tmp"
    tmp.write_text(tag)
    os.replace(tmp, root / "latest")


def _prune(root: Path, keep: int, protect: set[str]) -> None:
    steps = sorted((p for p in root.glob("step_*") if p.is_dir()), key=lambda p: int(p.name.split("_")[1]))
    for p in steps[:-keep] if keep > 0 else []:
        if p.name not in protect:
            shutil.rmtree(p, ignore_errors=True)


def latest(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (see ``resume_point``), or None."""
    return resume_point(out_dir).path


def load_state(path: Path) -> dict[str, Any]:
    return json.loads((path / "state.json").read_text())


def restore_training(path: Path, optimizer) -> None:
    if optimizer is not None and (path / "optimizer.pt").exists():
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    if (path / "rng.pt").exists():
        _set_rng_state(torch.load(path / "rng.pt", weights_only=False))


def resolve(src: Path) -> str:
    """The checkpoint to load from ``src``: a job output dir's newest complete checkpoint, or a model directory."""
    point = resume_point(src, quiet=True)
    if point.path:
        return str(point.path)
    if (src / "config.json").exists():
        return str(src)
    if point.rejected:  # e.g. checkpoints saved before manifests existed: name them and the way around
        why = "; ".join(f"{r['checkpoint']}: {r['reason']}" for r in point.rejected)
        example = ckpt_root(src) / point.rejected[0]["checkpoint"]
        raise FileNotFoundError(f"{src} has no complete checkpoint ({why}); to use one anyway, point init_from "
                                f"at its directory, e.g. init_from={example}")
    raise FileNotFoundError(f"{src} is neither a job output dir with checkpoints nor a model directory")
