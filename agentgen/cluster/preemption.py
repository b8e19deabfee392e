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
3. A watchdog covers a step boundary that does not come in time (a step, SFT or the final evaluation longer
   than the signal delay): ``grace_s`` after USR2 it requeues the job without a new checkpoint, so the job
   still comes back (from its last periodic checkpoint) instead of ending as TIMEOUT.

SIGTERM alone (no USR2): checkpoint at the next step boundary and exit *without* requeueing. Slurm requeues
a preempted job itself (PreemptMode=REQUEUE), a cancelled job must stay cancelled, and re-running the sweep
resumes it from the checkpoint. SIGTERM then USR2 (submitit's preemption) is a requeue.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

log = logging.getLogger(__name__)


class JobInterrupted(SystemExit):
    """Ends the job after its checkpoint: a SystemExit, so neither Hydra's ``run_job`` nor submitit's
    ``process_job`` takes it for the job's result (a requeued job has no result yet)."""


@dataclass
class _State:
    installed: bool = False
    requeue_signal: int | None = None  # the preemption signal submitit listens to (USR2)
    submitit_handler: Any = None  # submitit's checkpoint_and_try_requeue, called at the step boundary
    grace_s: float = 0.0
    requested_by: str | None = None  # "USR2" | "SIGTERM" | ... (the first signal that asked)
    requeue: bool = False  # a requeue was asked for (USR2), not only a stop (SIGTERM)
    requested_at: float | None = None
    acknowledged: bool = False  # the loop saw the request: it saves and exits, the watchdog stands down
    requeued: bool = False  # scontrol requeue was done (by the loop or the watchdog)
    lock: threading.Lock = field(default_factory=threading.Lock)
    watchdog: threading.Timer | None = None
    previous: dict[int, Any] = field(default_factory=dict)


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


def install(signal_delay_s: float | None = None, grace_s: float | None = None) -> None:
    """Record Slurm's warning signals instead of acting on them inside the handler (main thread only).

    ``grace_s``: how long after USR2 to wait for a step boundary before the watchdog requeues the job
    without a new checkpoint; default half of ``signal_delay_s`` (the other half is left for writing the
    checkpoint), at least 5 s. 0 disables the watchdog.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("preemption.install() must run in the main thread (Python delivers signals there)")
    reset()
    sig = preemption_signal()
    current = signal.getsignal(sig)
    _state.submitit_handler = current if callable(current) else None
    _state.requeue_signal = sig
    if grace_s is None:
        grace_s = max(5.0, float(signal_delay_s or 0) / 2)
    _state.grace_s = float(grace_s)
    for s in (sig, signal.SIGTERM):
        _state.previous[s] = signal.getsignal(s)
        signal.signal(s, _on_signal)
    _state.installed = True
    log.info(
        "preemption: %s and SIGTERM are handled at the next RL step boundary (watchdog after %.0f s)",
        signal.Signals(sig).name,
        _state.grace_s,
    )


def reset() -> None:
    """Forget any request and put back the handlers ``install`` replaced (tests; a second install)."""
    global _state
    if _state.watchdog is not None:
        _state.watchdog.cancel()
    if threading.current_thread() is threading.main_thread():
        for s, h in _state.previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
    _state = _State()


def _on_signal(signum: int, frame) -> None:
    name = signal.Signals(signum).name
    if _state.requeued or (_state.acknowledged and _state.requeue):
        log.info("preemption: %s ignored, the job is already checkpointing / requeued", name)
        return
    log.warning("preemption: caught %s; the job checkpoints at the next RL step boundary", name)
    if _state.requested_by is None:
        _state.requested_by = name
        _state.requested_at = time.monotonic()
    if signum == _state.requeue_signal and not _state.requeue:
        _state.requeue = True
        if _state.grace_s > 0 and not _state.acknowledged:
            _state.watchdog = threading.Timer(_state.grace_s, _watchdog_requeue)
            _state.watchdog.daemon = True
            _state.watchdog.start()


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
    local = _state.requested_by is not None
    rank, world = _world()
    if world > 1:
        import torch
        import torch.distributed as dist

        flags = torch.tensor([int(local), int(_state.requeue)])
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        local = bool(flags[0])
        if local and _state.requested_by is None:
            _state.requested_by = "another rank"
        _state.requeue = _state.requeue or bool(flags[1])
    if local:
        _state.acknowledged = True
        if _state.watchdog is not None:
            _state.watchdog.cancel()
    return local


def reason() -> str | None:
    """The signal behind the request (e.g. "SIGUSR2"), or None."""
    return _state.requested_by


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
        return True


def _watchdog_requeue() -> None:
    if _state.acknowledged or _state.requeued:
        return
    log.warning(
        "preemption: no RL step boundary within %.0f s of %s: requeueing without a new checkpoint "
        "(the job resumes from its last periodic one)",
        _state.grace_s,
        _state.requested_by,
    )
    try:
        _requeue_once("watchdog")
    except Exception:  # noqa: BLE001 - e.g. submitit refusing (too many timeouts): Slurm ends the job
        log.exception("preemption: the watchdog could not requeue the job")


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
    stand_down()
    if not _state.requeue:
        return False
    rank, _ = _world()
    if rank != 0:
        return True  # rank 0 requeues the whole job
    return _requeue_once(f"{_state.requested_by}")


def stand_down() -> None:
    """Cancel the watchdog: the job is finishing on its own (completed, or unwinding to be requeued)."""
    _state.acknowledged = True
    if _state.watchdog is not None:
        _state.watchdog.cancel()


__all__ = [
    "JobInterrupted",
    "exit_for_requeue",
    "install",
    "preemption_signal",
    "reason",
    "requested",
    "requeue_if_requested",
    "reset",
    "stand_down",
]
