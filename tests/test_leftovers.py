"""Nothing left behind (issue 32), on the real processes: a real ``launch.py rollout=vllm`` job SIGKILLed
mid-run leaves none of its processes (EngineCore, its worker, the resource tracker, its watchdog) and none of
its /dev/shm entries (staged weights, vLLM's segments) behind; a job killed together with its watchdog
leaves its weight folder, and the next job's start removes it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from conftest import job_leftovers, job_tmpdir, require, tmpdir_env
from test_generation_timeout import VLLM, _name

from agentgen import reaper

ROOT = Path(__file__).resolve().parent.parent
SHM = Path("/dev/shm")


def _shm() -> set[str]:
    return {p.name for p in SHM.iterdir()} if SHM.is_dir() else set()


def _start_vllm_job(tmp_path: Path, tmpdir: Path) -> tuple[subprocess.Popen, dict[int, psutil.Process], set[str]]:
    """A vLLM job (far more steps than it gets to run), waited for until it has staged weights in /dev/shm
    and its engine processes are up; returns it, every process of it seen, and the /dev/shm entries it made."""
    before = _shm()
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT), **tmpdir_env(tmpdir)}
    log = (tmp_path / "job.log").open("w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *VLLM, "sft=none", "trainer.steps=200",
                             f"hydra.run.dir={tmp_path / 'run'}"], stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=tmp_path)
    log.close()
    job = psutil.Process(proc.pid)
    seen: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        for child in job.children(recursive=True):
            seen.setdefault(child.pid, child)
        staged = [n for n in _shm() - before if n.startswith(reaper.WEIGHTS_PREFIX)]
        if staged and any("Worker" in _name(c) for c in seen.values()):
            break
        time.sleep(0.3)
    assert proc.poll() is None and staged, (tmp_path / "job.log").read_text()[-3000:]
    time.sleep(3)  # mid-run: generating or updating
    for child in job.children(recursive=True):
        seen.setdefault(child.pid, child)
    return proc, seen, _shm() - before


def _alive(procs) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out


def _describe(procs) -> list[tuple[int, str]]:
    """(pid, name and the start of the command line): Python processes are all named "python"."""
    out = []
    for p in procs:
        try:
            out.append((p.pid, f"{_name(p)}: {' '.join(p.cmdline())[:90]}"))
        except psutil.Error:
            out.append((p.pid, _name(p)))
    return out


@pytest.mark.vllm
@pytest.mark.slow
def test_sigkilled_vllm_job_leaves_no_process_and_no_shared_memory(tmp_path):
    """Before agentgen.reaper: EngineCore and its worker kept running (a core busy) and /dev/shm kept the
    weight folder and vLLM's two psm_ segments (about 400 MB), until someone killed and removed them."""
    require("vllm")
    tmpdir = job_tmpdir()
    proc, seen, made = _start_vllm_job(tmp_path, tmpdir)
    try:
        names = _describe(seen.values())
        assert any(p.is_socket() for p in tmpdir.rglob("*")), sorted(tmpdir.rglob("*"))  # vLLM's, in the job's
        # folder (agentgen-rpc-<pid>-...)
        assert any("EngineCore" in n for _, n in names) and any("reaper.py" in n for _, n in names), names
        assert any(n.startswith("psm_") for n in made), made
        os.kill(proc.pid, signal.SIGKILL)  # no handler, no finally, no atexit: the OOM killer's way
        proc.wait()
        _, alive = psutil.wait_procs(list(seen.values()), timeout=15)  # the watchdog's grace is 5 s
        alive = _alive(alive)
        left = made & _shm()
        print(f"killed launcher {proc.pid}; its processes: {names}; /dev/shm it made: {sorted(made)}; "
              f"left after 15 s: processes {_describe(alive)}, /dev/shm {sorted(left)}, "
              f"temp dir {job_leftovers(tmpdir)}")
        assert not alive, f"left running after SIGKILL: {_describe(alive)}"
        assert not left, f"left in /dev/shm after SIGKILL: {sorted(left)}"
        assert not job_leftovers(tmpdir), f"left in the temp dir after SIGKILL: {job_leftovers(tmpdir)}"
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
        for p in _alive([psutil.Process(proc.pid), *seen.values()] if proc.poll() is None else seen.values()):
            p.kill()


@pytest.mark.vllm
@pytest.mark.slow
def test_weights_of_a_job_killed_with_its_watchdog_are_removed_at_the_next_start(tmp_path):
    require("vllm")
    proc, seen, made = _start_vllm_job(tmp_path, Path(tempfile.gettempdir()))
    try:
        staged = sorted(n for n in made if n.startswith(reaper.WEIGHTS_PREFIX))
        watchdog = [p for p in seen.values() if "reaper.py" in " ".join(p.cmdline())]
        assert len(staged) == 1 and len(watchdog) == 1, (staged, _describe(seen.values()))
        # the whole job at once, its watchdog first (a kill of everything of the job: nothing cleans up)
        for p in [*watchdog, psutil.Process(proc.pid), *seen.values()]:
            try:
                p.kill()
            except psutil.Error:
                pass
        proc.wait()
        psutil.wait_procs(list(seen.values()), timeout=15)
        assert (SHM / staged[0]).is_dir()  # stale: its owner is gone
        left_by_kill = sorted(made & _shm())

        nxt = tmp_path / "next"
        r = subprocess.run([sys.executable, str(ROOT / "launch.py"), "debug=smoke", "eval.envs=[sokoban]",
                            "logger=none", "sft=none", "trainer.steps=1", f"hydra.run.dir={nxt}"], cwd=tmp_path,
                           env={**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}, capture_output=True,
                           text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        assert not (SHM / staged[0]).exists()
        assert f"removed {SHM / staged[0]}" in (nxt / "launch.log").read_text()
        print(f"killed the job and its watchdog; left: {left_by_kill}; after the next job's start: "
              f"{sorted(made & _shm())}")
    finally:
        for p in _alive([psutil.Process(proc.pid), *seen.values()] if proc.poll() is None else seen.values()):
            p.kill()
        for name in made & _shm():  # vLLM's own segments of the killed engine: nobody's to sweep
            path = SHM / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def test_sweep_keeps_folders_of_live_owners_and_others(tmp_path):
    """The start-up sweep (on a plain folder here): a dead owner's folder goes; a live owner's (this process),
    a reused pid's other start time, and a name it did not make stay or go by the same rule."""
    me = os.getpid()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = tmp_path / f"{reaper.WEIGHTS_PREFIX}{me}-{reaper._start_time(me)}-abc"
    reused = tmp_path / f"{reaper.WEIGHTS_PREFIX}{me}-1-abc"  # same pid, another process before it
    gone = tmp_path / f"{reaper.WEIGHTS_PREFIX}{dead.pid}-123-abc"
    sockets = tmp_path / f"{reaper.RPC_PREFIX}{dead.pid}-123-abc"  # vLLM's sockets, a dead job's
    adapter = tmp_path / f"{reaper.LORA_PREFIX}{dead.pid}-123-abc"
    live_sockets = tmp_path / f"{reaper.RPC_PREFIX}{me}-{reaper._start_time(me)}-abc"
    foreign = tmp_path / f"{reaper.WEIGHTS_PREFIX}xyz"
    for p in (live, reused, gone, sockets, adapter, live_sockets, foreign):
        p.mkdir()
    assert sorted(reaper.sweep_stale(tmp_path)) == sorted([reused, gone, sockets, adapter])
    assert live.is_dir() and live_sockets.is_dir() and foreign.is_dir()


def test_sweep_unused_removes_only_files_no_process_holds(tmp_path):
    """The start-up sweep of vLLM's tensor-parallel shared memory (issue 32, item 6), on a plain folder: a
    file another live process has mapped stays, one nobody holds goes, one not matching stays."""
    held, stale, other = tmp_path / "x-tp-[0-1]-cpushm_0", tmp_path / "x-tp-[0-1]-cpushm_1", tmp_path / "other"
    for p in (held, stale, other):
        p.write_bytes(b"\0" * 4096)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import mmap, sys, time\n"
        f"f = open({str(held)!r}, 'r+b'); m = mmap.mmap(f.fileno(), 4096); f.close()\n"
        "print('mapped', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "mapped"
        assert reaper.sweep_unused("*cpushm*", tmp_path) == [stale]
        assert held.exists() and other.exists() and not stale.exists()
    finally:
        holder.kill()
        holder.wait()
    assert reaper.sweep_unused("*cpushm*", tmp_path) == [held]
