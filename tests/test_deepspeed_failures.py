"""Failure paths of DeepSpeed ZeRO-2 on 2 ranks over gloo (issue 32), through the real library:

- a non-finite gradient on one rank only: DeepSpeed's own overflow check skips the optimiser step on every
  rank (the weights stay exactly as they were, and the same on both ranks); the next finite step trains;
- a checkpoint save that fails on one rank only (its shard write fails for real: a file size limit set on
  that rank's process, as a full disk or a quota on its node would): whether the failed rank then carries on
  into its job's next collectives (which complete the barriers the others wait in: before issue 32 rank 0
  then published a checkpoint without rank 1's shard) or leaves, nothing is published, ``latest`` still names
  the previous checkpoint, no partial directory is left, and both ranks raise ``CheckpointWriteError``.

The workers are this file run by torchrun (``--worker <out dir>``), as tests/test_deepspeed.py does.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from pathlib import Path

import pytest
import torch
from test_deepspeed import deepspeed_ops  # noqa: F401  (fixture: DeepSpeed's CPU op, built once)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _checksum(module) -> float:
    return float(sum(p.detach().double().sum() for p in module.parameters()))


def _loss(model, ids: torch.Tensor, factor: float) -> torch.Tensor:
    return model(input_ids=ids).logits.float().mean() * factor


def worker(out: Path) -> None:
    from agentgen import dist
    from agentgen.models.loader import load_policy
    from agentgen.options import engine_setup
    from agentgen.preflight import compose_job
    from agentgen.trainer import checkpoint as ckpt
    from agentgen.trainer.engine import make_engine

    rank = dist.rank()
    cfg = compose_job(["trainer=deepspeed_zero2", "trainer.lr=1e-3", "trainer.grad_clip=1.0"])
    model, tok, _ = load_policy(cfg.model)
    engine = make_engine(engine_setup(cfg.trainer, cfg.model.dtype), model)
    ids = torch.randint(4, len(tok), (2, 12), generator=torch.Generator().manual_seed(rank))
    r: dict = {"rank": rank}

    # ------------------------------------------------ a NaN loss on rank 1 only
    before = {n: p.detach().clone() for n, p in engine.module.named_parameters()}
    engine.backward(_loss(engine.model, ids, float("nan") if rank == 1 else 1.0))
    r["nan_norm"] = engine.step()
    r["nan_max_change"] = max(float((p.detach() - before[n]).abs().max()) for n, p in engine.module.named_parameters())
    r["checksums_after_nan"] = dist.all_gather_objects(_checksum(engine.module))
    engine.backward(_loss(engine.model, ids, 1.0))
    r["finite_norm"] = engine.step()
    r["finite_max_change"] = max(float((p.detach() - before[n]).abs().max())
                                 for n, p in engine.module.named_parameters())
    r["checksums_after_finite"] = dist.all_gather_objects(_checksum(engine.module))

    # ------------------------------------------------ a save that fails on rank 1 only
    run = out / "run"
    ckpt.save(run, "step_1", engine.module, tok, engine.optimizer, {"step": 1}, keep=3, engine=engine)

    def save_failing_on_rank_1(tag: str) -> str | None:
        if rank == 1:  # its node's disk: no file of this process may grow past 64 KiB (its shard is larger)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails (EFBIG) instead of killing it
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.RLIM_INFINITY))
        try:
            ckpt.save(run, tag, engine.module, tok, engine.optimizer, {"step": 2}, keep=3, engine=engine)
            return None
        except Exception as err:  # noqa: BLE001 - recorded for the test to check
            return f"{type(err).__name__}: {err}"
        finally:
            if rank == 1:
                resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    # (a) the failed rank carries on into its job's next collectives: here the two barriers rank 0 still
    # waits in (DeepSpeed's last one and the engine's), which they complete as if rank 1 had saved its part
    r["carry_on_error"] = save_failing_on_rank_1("step_2")
    if rank == 1:
        dist.barrier()
        dist.barrier()
    r["listing_after_carry_on"] = sorted(p.name for p in (run / "checkpoints").iterdir())
    # (b) the failed rank's job ends (its error unwinds it): rank 0's pending collective fails with it
    (out / f"rank{rank}.json").write_text(json.dumps(r))
    r["leave_error"] = save_failing_on_rank_1("step_3")
    (out / f"rank{rank}.json").write_text(json.dumps(r))
    if rank == 1:
        dist.destroy()
        os._exit(0)


def torchrun(out: Path) -> tuple[int | None, str]:
    """Both ranks under torchrun, in a session of their own: if they hang (a collective that never pairs, as
    the old checkpoint code did here) they are killed as a group, not orphaned, within the test's time."""
    import subprocess

    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", __file__,
           "--worker", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=480)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        return None, log
    return proc.returncode, log


@pytest.mark.slow
@pytest.mark.usefixtures("deepspeed_ops")
def test_nonfinite_gradient_on_one_rank_and_a_save_failing_on_one_rank(tmp_path):
    code, log = torchrun(tmp_path)
    ranks = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json"))]
    listing = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert code is not None, f"the ranks hung and were killed after 480 s; checkpoints: {listing}\n{log[-4000:]}"
    assert len(ranks) == 2, log[-8000:]
    r0, r1 = ranks
    print(json.dumps(ranks, indent=1))
    for r in ranks:  # DeepSpeed's overflow check: the step was skipped on both ranks, not only on rank 1
        assert not torch.isfinite(torch.tensor(r["nan_norm"])), r
        assert r["nan_max_change"] == 0.0, r
        assert r["finite_max_change"] > 0 and torch.isfinite(torch.tensor(r["finite_norm"])), r
    assert r0["checksums_after_nan"] == r1["checksums_after_nan"]
    assert r0["checksums_after_finite"] == r1["checksums_after_finite"]

    # (a) rank 1 failed and carried on: rank 0 read its report and published nothing
    assert r1["carry_on_error"].startswith("CheckpointWriteError: could not write checkpoint step_2"), r1
    assert "rank 1: failed: " in r0["carry_on_error"] and "not published" in r0["carry_on_error"], r0
    assert r0["listing_after_carry_on"] == ["latest", "step_1"], r0  # no step_2, no partial directory
    # (b) rank 1 failed and left: rank 0's collective failed, nothing published either
    assert r1["leave_error"].startswith("CheckpointWriteError: could not write checkpoint step_3"), r1
    assert r0["leave_error"].startswith("CheckpointWriteError: could not write checkpoint step_3"), r0
    root = tmp_path / "run" / "checkpoints"
    assert (root / "latest").read_text() == "step_1" and (root / "step_1" / "manifest.json").exists()
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_1"]


if __name__ == "__main__" and "--worker" in sys.argv:
    from agentgen import dist

    dist.init()
    worker(Path(sys.argv[sys.argv.index("--worker") + 1]))
    dist.destroy()
