"""Runs that survive (issue 19), the fast part: checkpoints with manifests (a truncated file, a missing
manifest, a save killed half-way are passed over by name; a full disk, on a real small tmpfs, fails with a
clear message and leaves the previous checkpoint intact), the output-dir lock (a second launch is refused
with exit code 2 and nothing written; a SIGKILLed holder leaves no stale lock), the attempts ledger and the
health monitor's rules. The end-to-end runs (SIGKILL mid-RL-step, collapse, secrets) are in
tests/test_survival_e2e.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from agentgen import attempts
from agentgen.lock import JobLock, OutputDirBusy, check
from agentgen.trainer import checkpoint as ckpt
from agentgen.trainer.health import HealthMonitor

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny():
    from agentgen.models.loader import load_policy
    from agentgen.preflight import compose_job

    cfg = compose_job([])
    model, tok, _ = load_policy(cfg.model)
    return model, tok


def _save(out: Path, step: int, tiny, keep: int = 2) -> Path:
    model, tok = tiny
    return ckpt.save(out, f"step_{step}", model, tok, None, {"step": step}, keep=keep)


# ------------------------------------------------------------------------------------------ checkpoints
def test_manifest_is_written_last_and_verifies(tmp_path, tiny):
    path = _save(tmp_path, 1, tiny)
    manifest = json.loads((path / ckpt.MANIFEST).read_text())
    files = {p.name for p in path.iterdir()} - {ckpt.MANIFEST}
    assert set(manifest["files"]) == files and manifest["step"] == 1
    assert all(m["size"] > 0 and len(m["sha256"]) == 64 for m in manifest["files"].values())
    assert ckpt.verify(path) is None and ckpt.latest(tmp_path) == path


def test_keep_checkpoints_prunes_to_the_last_n(tmp_path, tiny):
    for step in (1, 2, 3):
        _save(tmp_path, step, tiny, keep=2)
    assert sorted(p.name for p in ckpt.ckpt_root(tmp_path).glob("step_*")) == ["step_2", "step_3"]


def test_corrupt_or_incomplete_checkpoints_are_passed_over_by_name(tmp_path, tiny):
    _save(tmp_path, 1, tiny)
    _save(tmp_path, 2, tiny)
    model_file = ckpt.ckpt_root(tmp_path) / "step_2" / "model.safetensors"
    with model_file.open("r+b") as f:  # truncated, as by a crash during a copy
        f.truncate(model_file.stat().st_size // 2)
    point = ckpt.resume_point(tmp_path)
    assert point.path.name == "step_1"
    assert point.rejected[0]["checkpoint"] == "step_2" and "truncated" in point.rejected[0]["reason"]

    _save(tmp_path, 3, tiny, keep=3)
    (ckpt.ckpt_root(tmp_path) / "step_3" / ckpt.MANIFEST).unlink()  # killed before its manifest
    (ckpt.ckpt_root(tmp_path) / ".tmp-step_4-123").mkdir()  # killed mid-save
    point = ckpt.resume_point(tmp_path)
    assert point.path.name == "step_1"
    reasons = {r["checkpoint"]: r["reason"] for r in point.rejected}
    assert "killed mid-save" in reasons[".tmp-step_4-123"] and "no manifest.json" in reasons["step_3"]
    assert "truncated" in reasons["step_2"]
    ckpt.discard_partial(tmp_path)
    assert not list(ckpt.ckpt_root(tmp_path).glob(".tmp-*"))

    state = ckpt.ckpt_root(tmp_path) / "step_1" / "state.json"
    state.write_text(state.read_text().replace("1", "7"))  # same size, other bytes: damaged
    assert "checksum" in ckpt.verify(state.parent)


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        from conftest import in_ci

        msg = f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {r.stderr.strip()}"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)


def test_full_disk_while_saving_fails_clearly_and_keeps_the_previous_checkpoint(tmp_path, tiny):
    """A real 8 MiB tmpfs: a checkpoint of the tiny model (about 4 MiB without optimizer) fits once, then the
    second save meets ENOSPC."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "6m")
    try:
        first = _save(disk, 1, tiny)
        with pytest.raises(ckpt.CheckpointWriteError) as err:
            _save(disk, 2, tiny)
        msg = str(err.value)
        assert "could not write checkpoint step_2" in msg and "no space left on device" in msg
        assert "the previous checkpoint step_1 is intact" in msg
        assert ckpt.verify(first) is None and ckpt.latest(disk) == first
        assert not list(ckpt.ckpt_root(disk).glob(".tmp-*"))  # the partial save was removed
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# ------------------------------------------------------------------------------------------ lock
HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from agentgen.lock import JobLock
    JobLock({out!r}).acquire()
    print("held", flush=True)
    time.sleep(600)
""")


def test_second_launch_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT), out=str(out))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(p.name for p in out.iterdir())
        r = subprocess.run([sys.executable, str(ROOT / "launch.py"), "debug=smoke", "logger=none",
                            f"hydra.run.dir={out}"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 2, r.stderr[-2000:]
        assert f"pid {holder.pid} on host" in r.stderr and "agentgen: error: output dir" in r.stderr
        assert sorted(p.name for p in out.iterdir()) == before  # nothing written: no .hydra, no log
        with pytest.raises(OutputDirBusy):
            JobLock(out).acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    check(out)  # the kernel dropped the dead holder's lock
    with JobLock(out):
        pass


def test_lock_names_the_slurm_job(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    with JobLock(tmp_path):
        with pytest.raises(OutputDirBusy, match=r"Slurm job 4242 \(pid \d+ on host .*scancel 4242"):
            check(tmp_path)


# ------------------------------------------------------------------------------------------ attempts
def test_attempts_count_crashes_failures_preemptions_and_requeues_apart(tmp_path):
    zero = {"attempts": 0, "failures": 0, "preemptions": 0, "requeues": 0}
    assert attempts.start(tmp_path, None, None) == zero
    # killed: no end recorded
    assert attempts.start(tmp_path, "step_2", 2)["failures"] == 1
    attempts.end(tmp_path, "interrupted")
    attempts.start(tmp_path, "step_3", 3)
    attempts.end(tmp_path, "failed")
    attempts.start(tmp_path, "step_3", 3)
    attempts.requeued(tmp_path, "watchdog")  # requeued mid-step, then killed by scontrol requeue: no end row
    assert attempts.counts(attempts.read(tmp_path)) == {"attempts": 4, "failures": 2, "preemptions": 1,
                                                         "requeues": 1}
    assert attempts.start(tmp_path, "step_3", 3) == {"attempts": 4, "failures": 2, "preemptions": 1, "requeues": 1}


# ------------------------------------------------------------------------------------------ health
def _health(**kw):
    base = {"enabled": True, "patience": 3, "min_format_ratio": 0.05, "min_valid_ratio": 0.05,
            "max_capped_ratio": 0.95, "max_kl": 5.0}
    return OmegaConf.create({**base, **kw})


def test_health_rules_need_patience_and_arm_once_met():
    mon = HealthMonitor(_health())
    never_learnt = {"rollout/format_ratio": 0.0, "rollout/invalid_ratio": 1.0, "rollout/capped_ratio": 1.0,
                    "train/kl": 0.0}
    assert all(mon.observe(s, never_learnt) is None for s in range(1, 6))  # a fresh model has not collapsed
    healthy = {"rollout/format_ratio": 0.9, "rollout/invalid_ratio": 0.2, "rollout/capped_ratio": 0.1,
               "train/kl": 0.1}
    assert mon.observe(6, healthy) is None
    assert mon.observe(7, never_learnt) is None and mon.observe(8, never_learnt) is None
    reason = mon.observe(9, never_learnt)
    assert reason.startswith("format-valid answers 0 (< trainer.health.min_format_ratio=0.05) for 3 consecutive")
    assert mon.trusted_step(9) == 5  # rollouts of step 7 came from the policy after step 6, itself from step 5's


def test_health_kl_bound_and_nonfinite_updates():
    mon = HealthMonitor(_health(patience=2))
    assert mon.observe(1, {"train/kl": 9.0}) is None
    assert "KL to the reference policy 9" in mon.observe(2, {"train/kl": 9.0})
    mon = HealthMonitor(_health(patience=2))
    skipped = {"train/updates": 2.0, "train/nonfinite_skipped": 2.0}
    assert mon.observe(1, {"train/updates": 2.0, "train/nonfinite_skipped": 1.0}) is None
    assert mon.observe(2, skipped) is None
    assert "non-finite" in mon.observe(3, skipped) and mon.nonfinite_total == 5.0
    restored = HealthMonitor(_health(patience=2), mon.state())
    assert restored.nonfinite_total == 5.0 and restored.streak == mon.streak


def test_single_engine_skips_a_nonfinite_update(tiny):
    import math

    import torch

    from agentgen.options import engine_setup
    from agentgen.preflight import compose_job
    from agentgen.trainer.engine import make_engine

    model, _ = tiny
    cfg = compose_job([])
    engine = make_engine(engine_setup(cfg.trainer, cfg.model.dtype), model, lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = sum(p.sum() for p in model.parameters()) * torch.tensor(float("nan"))
    engine.backward(loss)
    assert not math.isfinite(engine.step())
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())


# ------------------------------------------------------------------------------------------ secrets
def test_a_literal_secret_on_the_command_line_travels_as_a_reference_to_its_variable():
    from agentgen.preflight import compose_job
    from agentgen.secrets import env_references

    env = {"CLOUD_SECRET": "s3cr3t-cloud-value-xyz", "HOME": "/root", "MY_TOKEN": "short"[:3]}
    args = ["-m", "logger=wandb", "logger.tags=[s3cr3t-cloud-value-xyz]", "+x.y=a-s3cr3t-cloud-value-xyz-b",
            "hydra.job.config.override_dirname.exclude_keys=[seed]"]
    got = env_references(args, env)
    assert got == ["-m", "logger=wandb", "logger.tags=[${oc.env:CLOUD_SECRET}]", "+x.y=a-${oc.env:CLOUD_SECRET}-b",
                   "hydra.job.config.override_dirname.exclude_keys=[seed,logger.tags,x.y]"]
    assert env_references(["env=sokoban"], env) == ["env=sokoban"]
    os.environ["CLOUD_SECRET"] = env["CLOUD_SECRET"]
    try:  # the job resolves the reference to the value
        cfg = compose_job(["logger=wandb", got[2]])
        assert list(cfg.logger.tags) == [env["CLOUD_SECRET"]]
    finally:
        del os.environ["CLOUD_SECRET"]


MASKED_WRITER = textwrap.dedent("""
    import os, subprocess, sys
    sys.path.insert(0, {root!r})
    from agentgen import secrets
    secrets.mask_std_streams()
    print("python print:", os.environ["DB_PASSWORD"], flush=True)
    os.write(2, ("raw fd 2: " + os.environ["DB_PASSWORD"] + "\\n").encode())
    subprocess.run(["sh", "-c", 'echo "child: $DB_PASSWORD"; printf "split: hunter2-"; sleep 0.1; echo "but-longer"'])
    os.kill(os.getpid(), 9)  # killed: what the masker got so far still reaches the file
""")


def test_masked_std_streams_hide_secrets_from_every_writer_even_when_killed(tmp_path):
    """Python's print, a raw write to fd 2, a child process, a value written in two pieces: none reaches the
    files behind stdout and stderr (a Slurm job's .submitit logs), and the rest of the text does."""
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.run([sys.executable, "-c", MASKED_WRITER.format(root=str(ROOT))], stdout=o, stderr=e,
                              env={**os.environ, "DB_PASSWORD": "hunter2-but-longer"}, timeout=60)
    assert proc.returncode == -9
    lines = ("python print: ***", "raw fd 2: ***", "child: ***", "split: ***")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the maskers drain what they got after the kill
        text = out.read_text() + err.read_text()
        if all(line in text for line in lines):
            break
        time.sleep(0.1)
    assert "hunter2" not in text, text
    for line in lines:
        assert line in text, text
