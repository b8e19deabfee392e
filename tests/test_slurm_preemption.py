"""agentgen.cluster.preemption: Slurm's warning signals become a request honoured at a step boundary.

In-process tests send real signals to this process (the handlers are put back afterwards); the Slurm test
runs a real submitit job on the test cluster, interrupts it the way submitit simulates a preemption
(SIGTERM then USR2) and checks it checkpoints at a step boundary, is requeued and finishes every step
exactly once."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import require
from slurm_cluster import slurm_cluster as _slurm_cluster  # noqa: F401  (fixture)

from agentgen.cluster import preemption


class FakeSubmititHandler:
    """Stands in for submitit's SignalHandler.checkpoint_and_try_requeue: records calls, exits like it."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, signum, frame) -> None:
        self.calls.append(signum)
        sys.exit(-1)


@pytest.fixture
def handler(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)  # the watchdog's deadline: signal_delay_s - margin_s
    fake = FakeSubmititHandler()
    sig = preemption.preemption_signal()
    before = {s: signal.getsignal(s) for s in (sig, signal.SIGTERM)}
    signal.signal(sig, fake)
    yield fake
    preemption.reset()
    for s, h in before.items():
        signal.signal(s, h)


def _raise(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs in the main thread at the next bytecode boundary


def test_nothing_requested_without_a_signal(handler):
    preemption.install(signal_delay_s=60)
    assert not preemption.requested() and preemption.reason() is None
    assert handler.calls == []


def test_usr2_is_recorded_then_requeued_at_the_boundary(handler):
    preemption.install(signal_delay_s=60)
    _raise(signal.SIGUSR2)
    assert handler.calls == []  # nothing happens inside the signal handler
    assert preemption.requested() and preemption.reason() == "SIGUSR2"
    with pytest.raises(preemption.JobInterrupted, match="stopped on SIGUSR2 at RL step 7 .* to requeue") as err:
        preemption.exit_for_requeue(7)
    assert isinstance(err.value, SystemExit) and not isinstance(err.value, Exception)
    assert handler.calls == []  # the job unwinds (summary, wandb) before anything kills it
    assert preemption.requeue_if_requested()
    assert handler.calls == [signal.SIGUSR2]  # submitit's requeue ran once, after the boundary
    assert preemption.requeue_if_requested() and handler.calls == [signal.SIGUSR2]
    _raise(signal.SIGTERM)  # Slurm's SIGTERM that follows scontrol requeue: ignored
    assert handler.calls == [signal.SIGUSR2]


def test_sigterm_alone_stops_without_requeue(handler):
    preemption.install(signal_delay_s=60)
    _raise(signal.SIGTERM)
    assert preemption.requested() and preemption.reason() == "SIGTERM"
    with pytest.raises(preemption.JobInterrupted, match="not requeued by agentgen"):
        preemption.exit_for_requeue(3)
    assert not preemption.requeue_if_requested()
    assert handler.calls == []


def test_sigterm_then_usr2_is_a_requeue(handler):
    preemption.install(signal_delay_s=60)
    _raise(signal.SIGTERM)
    _raise(signal.SIGUSR2)
    assert preemption.requested() and preemption.reason() == "SIGTERM"
    with pytest.raises(preemption.JobInterrupted, match="to requeue"):
        preemption.exit_for_requeue(1)
    assert preemption.requeue_if_requested() and handler.calls == [signal.SIGUSR2]


def _wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)


def _join_watchdog(timeout: float = 10.0) -> None:
    """Wait until the watchdog thread has ended (once it has, nothing can requeue any more), with a deadline.
    The signal watcher thread starts the watchdog, so first wait for it to be started."""
    deadline = time.monotonic() + timeout
    while (preemption._state.watchdog is None or preemption._state.watchdog.ident is None) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.01)
    thread = preemption._state.watchdog
    assert thread is not None and thread.ident is not None, "USR2 with a submitit handler must start the watchdog"
    thread.join(max(0.0, deadline - time.monotonic()))
    assert not thread.is_alive(), f"the watchdog still runs {timeout:.0f} s after it should have ended"


def test_watchdog_requeues_when_no_boundary_comes(handler):
    preemption.install(signal_delay_s=0.4, margin_s=0.2)  # requeue 0.2 s before the (nominal) end
    _raise(signal.SIGUSR2)
    _wait_for(lambda: handler.calls)
    assert handler.calls == [signal.SIGUSR2] and preemption.was_requeued()  # from the watchdog thread
    assert preemption.requested()  # a late boundary still saves and exits, without a second requeue
    with pytest.raises(preemption.JobInterrupted):
        preemption.exit_for_requeue(2)
    assert preemption.requeue_if_requested()
    assert handler.calls == [signal.SIGUSR2]


def test_watchdog_stays_armed_while_the_checkpoint_is_written(handler):
    preemption.install(signal_delay_s=0.4, margin_s=0.2)
    _raise(signal.SIGUSR2)
    assert preemption.requested()  # the loop saves now ... and takes longer than the job has left
    _wait_for(lambda: handler.calls)
    assert handler.calls == [signal.SIGUSR2]  # requeued anyway: resumes from the previous checkpoint


def test_job_that_requeues_itself_in_time_leaves_the_watchdog_nothing_to_do(handler):
    preemption.install(signal_delay_s=0.6, margin_s=0.2)
    _raise(signal.SIGUSR2)
    assert preemption.requested()
    with pytest.raises(preemption.JobInterrupted):
        preemption.exit_for_requeue(4)
    assert preemption.requeue_if_requested() and handler.calls == [signal.SIGUSR2]
    preemption.stand_down()
    _join_watchdog()
    assert handler.calls == [signal.SIGUSR2]


def test_a_job_that_finishes_stands_the_watchdog_down(handler):
    preemption.install(signal_delay_s=0.4, margin_s=0.2)
    _raise(signal.SIGUSR2)
    preemption.stand_down()  # the job returned on its own before any step boundary
    _join_watchdog()
    assert handler.calls == [] and not preemption.was_requeued()


def test_outside_submitit_the_job_stops_and_says_how_to_resume():
    before = {s: signal.getsignal(s) for s in (signal.SIGUSR2, signal.SIGTERM)}
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    try:
        preemption.install(signal_delay_s=10)
        _raise(signal.SIGUSR2)
        assert preemption.requested()
        with pytest.raises(preemption.JobInterrupted, match="not a submitit job"):
            preemption.exit_for_requeue(5)
    finally:
        preemption.reset()
        for s, h in before.items():
            signal.signal(s, h)


RANKS_SCRIPT = """
import os, signal, sys, time
import torch.distributed as dist
import torch.multiprocessing as mp

def rank_main(rank, store):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    from agentgen.cluster import preemption
    preemption.install(signal_delay_s=600)
    first = preemption.requested()  # nobody was signalled yet
    if rank == 1:
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.1)
    dist.barrier()
    second = preemption.requested()
    with open(f"{store}.rank{rank}", "w") as f:
        f.write(f"rank{rank} {first} {second} {preemption.reason()}")
    preemption.reset()
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(rank_main, args=(sys.argv[1],), nprocs=2)
"""


def test_ranks_agree_to_stop_when_one_of_them_was_signalled(tmp_path):
    """With torch.distributed every rank must stop at the same step boundary (else the others hang in the
    next collective): ``requested()`` is all-reduced."""
    import subprocess

    script = tmp_path / "ranks.py"
    script.write_text(RANKS_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store")], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [(tmp_path / f"store.rank{rank}").read_text() for rank in (0, 1)]
    assert lines == ["rank0 False True another rank", "rank1 False True SIGUSR2"]


def test_bad_preemption_signal_name_is_named(monkeypatch):
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR9")
    with pytest.raises(ValueError, match="'USR9' names no signal"):
        preemption.preemption_signal()


# ------------------------------------------------------------------------------------------- real Slurm
class CountingJob:
    """A checkpointable submitit job: N steps, each recorded in <dir>/steps.jsonl with the Slurm restart
    count; a checkpoint (the next step) is written only at a step boundary, after ``requested()``."""

    def __init__(self, out: str, steps: int, step_seconds: float, hold_at: int | None = None) -> None:
        self.out, self.steps, self.step_seconds, self.hold_at = out, steps, step_seconds, hold_at

    def __call__(self) -> dict:
        from agentgen.cluster import preemption as pre

        pre.install(signal_delay_s=30)
        out = Path(self.out)
        ckpt = out / "ckpt.json"
        start = json.loads(ckpt.read_text())["next"] if ckpt.exists() else 0
        (out / "ready").write_text(str(start))
        for step in range(start, self.steps):
            time.sleep(self.step_seconds)  # "the update": never interrupted by the signal
            if step == self.hold_at and not pre.requeue_requested():
                # a long update, lasting until USR2 is in: SIGTERM and USR2 come from two scancel calls, and
                # a step boundary between them would make this a stop (SIGTERM alone), not a requeue
                (out / "holding").write_text(str(step))
                deadline = time.monotonic() + 120
                while not pre.requeue_requested() and time.monotonic() < deadline:
                    time.sleep(0.05)
            with (out / "steps.jsonl").open("a") as f:
                f.write(json.dumps({"step": step, "restart": int(os.environ.get("SLURM_RESTART_COUNT", 0))}) + "\n")
            if pre.requested():
                tmp = out / "ckpt.tmp"
                tmp.write_text(json.dumps({"next": step + 1}))
                os.replace(tmp, ckpt)
                try:
                    pre.exit_for_requeue(step + 1)
                except pre.JobInterrupted:
                    pre.requeue_if_requested()  # what agentgen's Slurm launcher does once the job unwound
                    raise
        return {
            "steps": self.steps,
            "restarts": int(os.environ.get("SLURM_RESTART_COUNT", 0)),
            "seconds_left": pre.slurm_seconds_left(),
        }

    def checkpoint(self):
        import submitit

        return submitit.helpers.DelayedSubmission(self)


@pytest.mark.slurm
def test_preempted_submitit_job_checkpoints_requeues_and_loses_no_step(slurm_cluster, tmp_path):
    import cloudpickle
    import submitit

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the node cannot import this test module
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm", slurm_max_num_timeout=2)
    executor.update_parameters(timeout_min=10, cpus_per_task=1, slurm_signal_delay_s=30)
    job = executor.submit(CountingJob(str(tmp_path), steps=12, step_seconds=0.5, hold_at=3))
    deadline = time.monotonic() + 120
    while not (tmp_path / "holding").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (tmp_path / "holding").exists(), job.stderr()  # a few steps in, inside step 3's update
    with slurm_cluster.releasing_requeued_jobs() as released:
        job._interrupt(timeout=False)  # what a preemption looks like to the job: SIGTERM, then USR2
        result = slurm_cluster.result(job)
    assert released == [str(job.job_id)]  # requeued once, by Slurm
    rows = [json.loads(x) for x in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(12)), rows  # every step once: none lost, none repeated
    assert rows[0]["restart"] == 0 and rows[-1]["restart"] == 1 and result["restarts"] == 1
    assert 0 < result["seconds_left"] <= 600  # the job's EndTime, read from squeue (the watchdog's deadline)
    first_run = [r["step"] for r in rows if r["restart"] == 0]
    assert first_run == [0, 1, 2, 3]  # stopped at the boundary after the update both signals came in
    log = job.stderr() or ""
    assert "stopped on SIGTERM at RL step" in log and "for Slurm to requeue the job" in log, log[-3000:]
    assert "Requeued job" in (job.stdout() or "")  # submitit's scontrol requeue


class WatchdogJob:
    """A job whose first run never reaches a step boundary, so the watchdog requeues it; it records its runs
    in the attempts ledger as agentgen.run does (start, and the requeue hook) and returns the counts of the
    runs before the second one."""

    def __init__(self, out: str) -> None:
        self.out = out

    def __call__(self) -> dict:
        from agentgen import attempts
        from agentgen.cluster import preemption as pre

        left = pre.slurm_seconds_left()
        pre.install(signal_delay_s=30, margin_s=left - 3)  # the watchdog's deadline: 3 s after USR2
        before = attempts.start(self.out, None, None)
        pre.on_requeue(lambda why: attempts.requeued(self.out, why))  # what agentgen.run registers
        if int(os.environ.get("SLURM_RESTART_COUNT", 0) or 0) == 0:
            import threading

            (Path(self.out) / "ready").write_text(" ".join(t.name for t in threading.enumerate()))
            for _ in range(3000):  # one long step: no boundary before Slurm kills the requeued run
                time.sleep(0.2)
        attempts.end(self.out, "completed")
        pre.stand_down()
        return before

    def checkpoint(self):
        import submitit

        return submitit.helpers.DelayedSubmission(self)


@pytest.mark.slurm
def test_a_watchdog_requeue_is_counted_as_a_requeue_not_a_failure(slurm_cluster, tmp_path):
    """Before: the requeued run, killed by ``scontrol requeue`` before it could record its end, was counted
    as a crash (failures 1), the count ``cluster.max_failures`` and the status table read."""
    import cloudpickle
    import submitit

    from agentgen import attempts

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm", slurm_max_num_timeout=2)
    executor.update_parameters(timeout_min=10, cpus_per_task=1, slurm_signal_delay_s=30)
    job = executor.submit(WatchdogJob(str(tmp_path)))
    deadline = time.monotonic() + 120
    while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (tmp_path / "ready").exists(), job.stderr()
    with slurm_cluster.releasing_requeued_jobs() as released:
        sent = slurm_cluster.run("scancel", "--signal=USR2", str(job.job_id))  # the time-limit warning, mid-step
        assert sent.returncode == 0, sent.stderr
        before_second = slurm_cluster.result(job, timeout=240)
    assert released == [str(job.job_id)]
    assert "did not requeue itself" in (job.stderr() or "")  # the watchdog did it
    assert before_second == {"attempts": 1, "failures": 0, "preemptions": 0, "requeues": 1}
    rows = attempts.read(tmp_path)
    assert [r["event"] for r in rows] == ["start", "requeue", "start", "end"] and rows[1]["by"] == "watchdog"
    assert attempts.counts(rows) == {"attempts": 2, "failures": 0, "preemptions": 0, "requeues": 1}


@pytest.mark.slurm
def test_sigterm_alone_checkpoints_and_stops_and_resubmitting_resumes(slurm_cluster, tmp_path):
    """Preempted without USR2 (or cancelled): the job checkpoints at its next step boundary and ends without
    requeueing itself and without a result; submitting it again (re-running the sweep) resumes it."""
    import cloudpickle
    import submitit

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(timeout_min=10, cpus_per_task=1)
    job = executor.submit(CountingJob(str(tmp_path), steps=12, step_seconds=0.5))
    deadline = time.monotonic() + 120
    while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (tmp_path / "ready").exists(), job.stderr()
    time.sleep(1.5)
    slurm_cluster.run("scancel", "--signal=TERM", str(job.job_id))
    deadline = time.monotonic() + 60
    while slurm_cluster.run("squeue", "-h", "-j", str(job.job_id)).stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not job.paths.result_pickle.exists()  # no result: the job stopped, it did not finish
    assert "stopped on SIGTERM at RL step" in (job.stderr() or "")
    assert "Requeued job" not in (job.stdout() or "")
    done = json.loads((tmp_path / "ckpt.json").read_text())["next"]
    assert 0 < done < 12

    again = executor.submit(CountingJob(str(tmp_path), steps=12, step_seconds=0.1))
    assert slurm_cluster.result(again)["steps"] == 12
    rows = [json.loads(x) for x in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(12))  # resumed at the checkpoint: none lost or repeated


class ChildrenJob:
    """Starts an env-worker-like forkserver process and a JVM (py4j's gateway, as ScienceWorld's engine
    runs) after ``install()``, waits for Slurm's USR2 and reports whether they survived it."""

    def __init__(self, out: str) -> None:
        self.out = out

    def __call__(self) -> dict:
        import glob
        import multiprocessing as mp
        import subprocess

        from agentgen.cluster import preemption as pre

        pre.install(signal_delay_s=600)
        worker = mp.get_context("forkserver").Process(target=time.sleep, args=(60,))
        worker.start()
        jar = glob.glob(os.path.join(sys.prefix, "share", "py4j", "py4j*.jar"))[0]
        jvm = subprocess.Popen(["java", "-cp", jar, "py4j.GatewayServer", "0"], stdout=subprocess.DEVNULL)
        time.sleep(2)
        (Path(self.out) / "ready").write_text("1")
        deadline = time.monotonic() + 60
        while not pre.requested() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # time to die, had the signal reached them
        alive = {"worker": worker.is_alive(), "jvm": jvm.poll() is None, "reason": pre.reason()}
        worker.kill()
        jvm.kill()
        pre.stand_down()
        return alive


@pytest.mark.slurm
@pytest.mark.jvm
def test_slurms_warning_does_not_kill_env_workers_or_the_jvm(slurm_cluster, tmp_path):
    """Slurm signals every process of the job step, and USR2 kills a child process (the JVM aborts on
    it); install() keeps the signal from children started after it, and the job still gets it."""
    import cloudpickle
    import submitit

    require("java")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(timeout_min=5, cpus_per_task=1)
    job = executor.submit(ChildrenJob(str(tmp_path)))
    deadline = time.monotonic() + 120
    while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (tmp_path / "ready").exists(), job.stderr()
    slurm_cluster.run("scancel", "--signal=USR2", str(job.job_id))  # what the time-limit warning does
    assert slurm_cluster.result(job) == {"worker": True, "jvm": True, "reason": "SIGUSR2"}
