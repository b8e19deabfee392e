"""Checkpoint-and-requeue at a step boundary when Slurm is about to stop a job (time limit, preemption).

Slurm warns a job before it stops it: USR2 ``signal_delay_s`` before the time limit (submitit asks for it
with ``--signal``; the Slurm launcher's ``cluster.signal_delay_s``), SIGTERM when the job is preempted,
cancelled or out of time. submitit's own USR2 handler pickles the job again, ``scontrol requeue``s it and
exits *inside the signal handler*: in the middle of whatever the main thread was doing (a backward pass, an
optimizer step, a checkpoint write), so nothing consistent can be saved there. agentgen cooperates instead:

1. ``install()`` runs in the job process (the Slurm launcher calls it, after submitit set its handlers) and
   puts handlers in place that only *record* the request.
2. The RL loop asks ``requested()`` at every step boundary. When it says yes, the loop writes a checkpoint
   (model, optimizer, RNG, step, eval history) and calls ``exit_for_requeue()``, which ends the job with
   ``JobInterrupted``. Once the job has cleaned up (summary, wandb flushed, env pools closed: ``scontrol
   requeue`` kills the job's processes, so it comes last), the launcher calls ``requeue_if_requested()``,
   which hands over to submitit's handler: the launcher's ``checkpoint()`` resubmits the same job (same
   overrides, same output dir) and ``scontrol requeue`` puts it back in the queue. The requeued job resumes
   from that checkpoint: no step is lost or repeated.
3. A watchdog covers a job that does not get there in time (a step, SFT, the final evaluation or the
   checkpoint write longer than the time left): shortly before the job's end (Slurm's EndTime) it requeues
   the job itself, which then resumes from its last complete checkpoint instead of ending as TIMEOUT
   (checkpoints are written atomically, so a write cut short leaves the previous one). The launcher then
   gives no result for this run (``was_requeued()``): the requeued run gives it.

SIGTERM alone (no USR2): checkpoint at the next step boundary and exit *without* requeueing. Slurm requeues
a preempted job itself (PreemptMode=REQUEUE), a cancelled job must stay cancelled, and re-running the sweep
resumes it from the checkpoint. SIGTERM then USR2 (submitit's preemption) is a requeue.

Outside such a job (``cluster=local``) nothing waits for a step boundary: ``exit_on_sigterm()`` turns SIGTERM
into ``Terminated``, so the job unwinds (summary, env workers, the vLLM engine's processes closed) instead of
dying where it stands and leaving its child processes running.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NoReturn

log = logging.getLogger(__name__)


class JobInterrupted(SystemExit):
    """Ends the job after its checkpoint: a SystemExit, so neither Hydra's ``run_job`` nor submitit's
    ``process_job`` takes it for the job's result (a requeued job has no result yet)."""


class Terminated(SystemExit):
    """SIGTERM in a job without Slurm's handlers (``exit_on_sigterm``): exit code 128 + the signal, once the
    job has unwound."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return (f"stopped by {signal.Signals(self.signum).name} (no checkpoint at this point; re-running resumes "
                "from the last one)")


@dataclass
class _State:
    requeue_signal: int | None = None  # the preemption signal submitit listens to (USR2)
    submitit_handler: Any = None  # submitit's checkpoint_and_try_requeue: pickles the job, scontrol requeue
    signal_delay_s: float = 0.0  # how long before the time limit USR2 is meant to come
    margin_s: float = 0.0  # the watchdog requeues this long before the job's end
    requested_by: str | None = None  # "SIGUSR2" | "SIGTERM" (the first signal that asked)
    requeue: bool = False  # a requeue was asked for (USR2), not only a stop (SIGTERM)
    acknowledged: bool = False  # the loop saw the request: it is saving and will exit
    requeued: bool = False  # scontrol requeue was done (by the job or the watchdog)
    finished: threading.Event = field(default_factory=threading.Event)  # stand_down(): the watchdog ends
    lock: threading.Lock = field(default_factory=threading.Lock)
    watchdog: threading.Thread | None = None
    previous: dict[int, Any] = field(default_factory=dict)  # handlers install() replaced
    previous_mask: set[int] | None = None  # the main thread's signal mask before install()
    watcher: threading.Thread | None = None  # takes the blocked warning signal with sigwait
    on_requeue: list[Callable[[str], None]] = field(default_factory=list)  # after a requeue, given who asked


_state = _State()


def preemption_signal() -> int:
    """The signal submitit treats as "checkpoint and requeue" (USR2 unless SUBMITIT_PREEMPT_SIGNAL says)."""
    name = "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    sig = getattr(signal, name, None)
    if sig is None:
        raise ValueError(
            f"SUBMITIT_PREEMPT_SIGNAL={os.environ['SUBMITIT_PREEMPT_SIGNAL']!r} names no signal; use e.g. USR2 or USR1"
        )
    return sig


def install(signal_delay_s: float | None = None, margin_s: float | None = None) -> None:
    """Record Slurm's warning signals instead of acting on them inside the handler (main thread only).

    ``signal_delay_s``: the launcher's ``cluster.signal_delay_s``, the watchdog's fallback when Slurm
    does not tell the job's end time. ``margin_s``: the watchdog requeues this long before the job's end
    (default a quarter of the delay, 3-15 s), time enough for ``scontrol requeue``.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("preemption.install() must run in the main thread (Python delivers signals there)")
    reset()
    sig = preemption_signal()
    current = signal.getsignal(sig)
    _state.submitit_handler = current if callable(current) else None
    _state.requeue_signal = sig
    _state.signal_delay_s = float(signal_delay_s or 0.0)
    _state.margin_s = float(margin_s) if margin_s is not None else min(15.0, max(3.0, _state.signal_delay_s / 4))
    for s in (sig, signal.SIGTERM):
        _state.previous[s] = signal.getsignal(s)
        signal.signal(s, _on_signal)
    # Slurm sends its warning to every process of the job step, and USR2 kills child processes: env
    # workers, and the ScienceWorld JVM (which aborts on it). Children inherit the signal mask of the thread
    # that starts them, so the warning is blocked in this thread (and in every thread and process started
    # from it from now on) and a watcher thread takes it with sigwait. SIGTERM stays deliverable to
    # children: Slurm means them to end then, and libraries stop their workers with it.
    _state.previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {sig})
    _state.watcher = threading.Thread(target=_watch, args=(sig, _state), name="preemption-signal", daemon=True)
    _state.watcher.start()
    log.info(
        "preemption: %s and SIGTERM are honoured at the next RL step boundary (checkpoint, then requeue)",
        signal.Signals(sig).name,
    )


def exit_on_sigterm() -> Callable[[], None]:
    """Raise ``Terminated`` in the main thread on SIGTERM (once; a repeat while the job unwinds is ignored),
    when nothing else handles SIGTERM: ``install()``'s handler on Slurm stays in place. Returns the function
    that puts the previous handler back."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None
    raised = []

    def handler(signum: int, frame) -> None:
        if raised:
            log.warning("%s again: ignored while the job shuts down", signal.Signals(signum).name)
            return
        raised.append(signum)
        log.warning("caught %s: stopping the job (closing its env workers and engines)", signal.Signals(signum).name)
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return restore


def reset() -> None:
    """Forget any request and put back the handlers and signal mask ``install`` replaced (tests; a second
    install)."""
    global _state
    old, _state = _state, _State()
    old.finished.set()
    if threading.current_thread() is threading.main_thread():
        for s, h in old.previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        if old.previous_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old.previous_mask)
    if old.watcher is not None and old.watcher.is_alive() and old.requeue_signal is not None:
        signal.pthread_kill(old.watcher.ident, old.requeue_signal)  # wakes it: it sees it is stale and ends


def _watch(sig: int, state: _State) -> None:
    """The blocked warning signal, taken synchronously (see ``install``)."""
    while True:
        got = signal.sigwait({sig})
        if state is not _state:
            return
        _on_signal(got, None)


def _on_signal(signum: int, frame) -> None:
    name = signal.Signals(signum).name
    if _state.requeued or (_state.acknowledged and _state.requeue):
        log.info("preemption: %s ignored, the job is already checkpointing / requeued", name)
        return
    log.warning("preemption: caught %s; the job checkpoints at the next RL step boundary", name)
    if _state.requested_by is None:
        _state.requested_by = name
    if signum == _state.requeue_signal and not _state.requeue:
        _state.requeue = True
        if _state.submitit_handler is not None and not _state.finished.is_set():
            _state.watchdog = threading.Thread(target=_watchdog, name="preemption-watchdog", daemon=True)
            _state.watchdog.start()


def slurm_seconds_left() -> float | None:
    """Seconds until this Slurm job's end (its EndTime from squeue), or None outside Slurm / on failure."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job or shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True, text=True, timeout=20, check=False
        ).stdout.strip()
        end = dt.datetime.strptime(out.splitlines()[0].strip(), "%Y-%m-%dT%H:%M:%S")
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    return end.timestamp() - time.time()


def _watchdog() -> None:
    """Requeue the job ``margin_s`` before its end if it has not requeued itself by then (no step boundary
    in time, or a checkpoint write too slow): it then resumes from its last complete checkpoint instead of
    ending as TIMEOUT. USR2 may come well before ``signal_delay_s`` (Slurm checks limits periodically), so
    the deadline is the job's real end time when Slurm tells it."""
    left = slurm_seconds_left()
    if left is None:
        left = _state.signal_delay_s
    wait = max(0.0, left - _state.margin_s)
    if _state.finished.wait(wait) or _state.requeued:
        return
    log.warning(
        "preemption: the job did not requeue itself within %.0f s of %s (no RL step boundary, or a slow "
        "checkpoint): requeueing it now; it resumes from its last complete checkpoint",
        wait,
        _state.requested_by,
    )
    try:
        _requeue_once("watchdog")
    except Exception:  # noqa: BLE001 - e.g. submitit refusing (too many timeouts): Slurm ends the job
        log.exception("preemption: the watchdog could not requeue the job")


def _world() -> tuple[int, int]:
    """(rank, world size) of torch.distributed when it is initialised, else (0, 1)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def requested() -> bool:
    """Whether Slurm asked this job to stop; call it once per RL step boundary. When it returns True the
    caller must write its checkpoint and then call ``exit_for_requeue()``. With torch.distributed every
    rank must call it at the same boundary: the answer is agreed across ranks (all-reduce), so all stop."""
    if _state.requeue_signal is None:
        return False  # not installed (not a Slurm job of agentgen's launcher): nothing to agree on
    local = _state.requested_by is not None
    rank, world = _world()
    if world > 1:
        import torch
        import torch.distributed as dist

        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        flags = torch.tensor([int(local), int(_state.requeue)], device=device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        local = bool(flags[0])
        if local and _state.requested_by is None:
            _state.requested_by = "another rank"
        _state.requeue = _state.requeue or bool(flags[1])
    if local:
        _state.acknowledged = True  # the watchdog stays armed: it still requeues if saving outlasts the job
    return local


def reason() -> str | None:
    """The signal behind the request (e.g. "SIGUSR2"), or None."""
    return _state.requested_by


def requeue_requested() -> bool:
    """Whether the request is a requeue (USR2 arrived), not only a stop (SIGTERM alone)."""
    return _state.requeue


def _requeue_once(why: str) -> bool:
    """Run submitit's handler once: resubmit the job's pickle, ``scontrol requeue``, and return True; False
    when there is nothing to requeue with (no submitit handler: not a submitit job)."""
    with _state.lock:
        if _state.requeued:
            return True
        handler = _state.submitit_handler
        if handler is None:
            return False
        log.info("preemption: requeueing the job (%s)", why)
        try:
            handler(_state.requeue_signal, None)  # checkpoint() -> pickle, scontrol requeue, sys.exit(-1)
        except SystemExit:
            pass  # submitit exits once it has requeued; the caller decides how this process ends
        _state.requeued = True
        for callback in _state.on_requeue:  # quick: Slurm kills the job KillWait after its SIGTERM
            try:
                callback(why)
            except Exception:  # noqa: BLE001 - a record that could not be written must not undo the requeue
                log.exception("preemption: recording the requeue failed")
        return True


def on_requeue(callback: Callable[[str], None]) -> None:
    """Call ``callback(why)`` once the job is requeued ("watchdog", or the signal that asked): the job records
    it (``agentgen.attempts``), since a run the watchdog requeued mid-step is killed before it can say how it
    ended, and would otherwise look like a crash."""
    _state.on_requeue.append(callback)


def exit_for_requeue(step: int | None = None) -> NoReturn:
    """End the job after the caller's checkpoint, with ``JobInterrupted``. The job's own cleanup (summary,
    wandb flush, env pools) runs while the exception unwinds; then the Slurm launcher calls
    ``requeue_if_requested()``, which requeues it on USR2 (on SIGTERM alone it is not requeued: see the
    module doc)."""
    at = f" at RL step {step}" if step is not None else ""
    if not _state.requeue:
        raise JobInterrupted(
            f"stopped on {_state.requested_by}{at} after writing a checkpoint; not requeued by agentgen (Slurm "
            f"requeues preempted jobs itself); re-running the sweep resumes the job from that checkpoint"
        )
    if _state.submitit_handler is None:
        raise JobInterrupted(
            f"stopped on {_state.requested_by}{at} after writing a checkpoint; not a submitit job, so nothing "
            f"requeues it: run it again in the same output dir to resume"
        )
    raise JobInterrupted(
        f"stopped on {_state.requested_by}{at} after writing a checkpoint, for Slurm to requeue the job; "
        f"the requeued job resumes from that checkpoint"
    )


def requeue_if_requested() -> bool:
    """Requeue the job when USR2 asked for it (rank 0 only; once): submitit pickles the job function again
    (the launcher's ``checkpoint()``: same overrides, same output dir) and runs ``scontrol requeue``. Call it
    after the job has unwound. Returns whether the job is requeued. When submitit refuses
    (``cluster.max_requeues`` used up) its ``UncompletedJobError`` propagates: the job fails for good, and
    re-running the sweep resumes it from its checkpoint."""
    if not _state.requeue:
        return False
    rank, _ = _world()
    if rank != 0:
        return True  # rank 0 requeues the whole job
    return _requeue_once(f"{_state.requested_by}")


def stand_down() -> None:
    """End the watchdog: the job function has returned or unwound (after its own requeue, if any)."""
    _state.finished.set()


def was_requeued() -> bool:
    """Whether this job was requeued (by itself or the watchdog): its result then comes from the requeued run."""
    return _state.requeued


__all__ = [
    "JobInterrupted",
    "Terminated",
    "exit_for_requeue",
    "exit_on_sigterm",
    "install",
    "on_requeue",
    "preemption_signal",
    "reason",
    "requested",
    "requeue_if_requested",
    "requeue_requested",
    "reset",
    "slurm_seconds_left",
    "stand_down",
    "was_requeued",
]
