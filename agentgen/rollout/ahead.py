"""Rollouts ahead of the update (``trainer.max_staleness`` >= 1): a producer thread generates the batches of
steps k+1 .. k+max_staleness while the trainer updates on step k's, instead of each side idling through the
other's half of the step (verl's one_step_off_policy and fully_async, SkyRL's ``max_staleness_steps``, AReaL's
``max_head_offpolicyness``).

Weight versions. Version v = the weights after v updates (a synchronous run generates RL step k with version k).
After step k's update the trainer *publishes* version k+1: it copies its parameters into a staging copy (a
memory copy, under a lock; the trainer then goes on updating its own). The producer *applies* the newest staged
version to its engine at a version boundary, before it starts a batch (with ``trainer.partial_rollouts``: before
every generation call, so an episode that spans a push goes on with the new weights). Every turn records the
version that generated it (``Turn.weight_version``). The batch of step s starts only once version s -
max_staleness is staged, so no turn of it is older than the bound; the trainer checks every turn again before it
trains (``RLTrainer``), so a bug here cannot slip a staler batch through.

Engines:
- ``rollout=hf``: the trainer updates its model in place, so the producer generates with its own copy of the
  policy (a second ``HFGenerator`` on a deep copy), refreshed from the staging copy. Memory: two extra copies of
  the weights (staging + generator); on a GPU, put that copy where the rollout should run.
- ``rollout=vllm``: the engine already runs in its own process(es) (``rollout.params.placement=separate`` puts it on
  its own devices); the producer thread drives it and pushes the staged weights into it (``sync_weights(source)``)
  at the boundary, so the push of version v+1 overlaps the trainer's next update. The engine is this thread's
  alone: evaluation pauses the producer and pushes the trainer's current weights itself.

Thread, not process: torch's kernels release the GIL, so the two sides truly run in parallel; a thread shares
the env pools, the tokenizer and the job's state with no serialisation, and the weight hand-over is a memory copy.
A process would need the weights shipped (or shared memory) and its own env pools for no CPU gained. On CPU the
two sides share the cores: torch's OpenMP thread count is per thread, so the producer takes half of them and the
trainer keeps the rest (``split_threads``), instead of both oversubscribing every core.

Stopping: ``close`` (the RL stage's ``finally``: the stage's end, an exception, ``Terminated`` on SIGTERM, the
requeue exit) stops the producer at its next generation call and joins it; batches in flight or queued are
dropped, never trained on. A requeued job restarts the producer from the checkpoint's weights, so no turn of a
generation from before the checkpoint is trained on.

Metrics per step: ``async/trainer_idle_s`` (the trainer waiting for its batch), ``async/rollout_idle_s`` (the
producer waiting for weights it may use, or for evaluation, before this batch), ``async/staleness_mean`` /
``_max`` (step - weight version over the batch's turns, from the trainer) and ``async/weight_version_min``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from agentgen.episode import Episode, EpisodeSpec

log = logging.getLogger(__name__)

POLL_S = 0.5  # waits wake this often: a signal handler in the main thread (SIGTERM) runs between them


class Stopped(Exception):
    """The producer was told to stop (``RolloutAhead.close``): its batch in flight is dropped."""


@dataclass
class Batch:
    """One step's episodes, the rollout figures of their generation, and the producer's idle seconds before it."""

    step: int
    episodes: list[Episode]
    stats: dict[str, float] = field(default_factory=dict)
    idle_s: float = 0.0


class Staging:
    """The newest published weights: a frozen copy of the policy the trainer copies into after each update, and
    the producer copies out of (or pushes from) at a version boundary. One lock guards both copies."""

    def __init__(self, model, version: int):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.version = version
        self.lock = threading.Lock()

    @torch.no_grad()
    def publish(self, model, version: int) -> None:
        with self.lock:
            copy_weights(model, self.model)
            self.version = version


@torch.no_grad()
def copy_weights(src, dst) -> None:
    """``dst``'s parameters and buffers := ``src``'s (same architecture)."""
    for a, b in zip(dst.state_dict().values(), src.state_dict().values()):
        a.copy_(b)


def split_threads(total: int | None = None) -> tuple[int, int]:
    """(trainer's, producer's) torch threads: the cores split in two, each side at least one."""
    total = total or torch.get_num_threads()
    rollout = max(1, total // 2)
    return max(1, total - rollout), rollout


class VersionedGenerator:
    """The producer's generation engine: applies newly staged weights before a call when the producer allows it
    (every call with partial rollouts, else at batch starts) and stops the producer at a call once told to."""

    def __init__(self, inner, apply: Callable[[Any], None], staging: Staging, stop: threading.Event,
                 partial: bool):
        self.inner = inner
        self.apply = apply  # (staging model) -> the engine holds those weights
        self.staging = staging
        self.stop = stop
        self.partial = partial
        self.weight_version = staging.version
        self.group_size = getattr(inner, "group_size", 1)
        self.pushes = 0

    def refresh(self) -> None:
        """Take the newest staged weights if they are newer than the engine's."""
        if self.staging.version == self.weight_version:
            return
        with self.staging.lock:
            self.apply(self.staging.model)
            self.weight_version = self.staging.version
        self.pushes += 1

    def generate_with_logprobs(self, *args, **kwargs):
        if self.stop.is_set():
            raise Stopped()
        if self.partial:
            self.refresh()
        return self.inner.generate_with_logprobs(*args, **kwargs)

    def generate(self, *args, **kwargs):
        return self.generate_with_logprobs(*args, **kwargs)[0]

    def __getattr__(self, name):  # last_abort_reason, sleep, ... of the engine
        return getattr(self.inner, name)


class RolloutAhead:
    """The producer thread and the trainer's side of it (see the module docstring).

    ``produce(specs, step, generator, stats)`` plays one step's episodes on ``generator`` and adds its figures to
    ``stats``; ``specs_of(step)`` are the step's episodes to play (the trainer's own, so both sides agree)."""

    def __init__(self, produce: Callable[[list[EpisodeSpec], int, Any, dict], list[Episode]],
                 specs_of: Callable[[int], list[EpisodeSpec]], generator: VersionedGenerator, staging: Staging,
                 start_step: int, end_step: int, max_staleness: int, threads: tuple[int, int] | None = None):
        self.produce, self.specs_of = produce, specs_of
        self.generator, self.staging = generator, staging
        self.start_step, self.end_step = start_step, end_step
        self.max_staleness = max_staleness
        self.threads = threads  # (trainer's, producer's) torch threads; None: leave both as they are
        self._trainer_threads_before = torch.get_num_threads()
        self.stop = generator.stop
        self.cond = threading.Condition()
        self.ready: dict[int, Batch] = {}
        self.error: BaseException | None = None
        self.pauses = 0  # evaluation holds the engine (nested pauses count)
        self.busy = False  # a batch is being generated
        self.thread = threading.Thread(target=self._run, name="rollout-ahead", daemon=True)

    # ---------------------------------------------------------------- the producer
    def start(self) -> RolloutAhead:
        if self.threads:
            torch.set_num_threads(self.threads[0])  # the calling (trainer's) thread's share
        self.thread.start()
        return self

    def _run(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads[1])  # this thread's own OpenMP pool (split_threads)
        try:
            for step in range(self.start_step, self.end_step):
                idle = self._wait_until_allowed(step)
                if idle is None:
                    return
                self.generator.refresh()  # the batch starts on the newest weights it may have
                stats: dict[str, float] = {}
                episodes = self.produce(self.specs_of(step), step, self.generator, stats)
                with self.cond:
                    self.busy = False
                    self.ready[step] = Batch(step, episodes, stats, idle)
                    self.cond.notify_all()
        except Stopped:
            pass
        except BaseException as err:  # noqa: BLE001 - handed to the trainer, which raises it in the main thread
            if not self.stop.is_set():
                log.exception("the rollout producer failed")
                with self.cond:
                    self.error = err
                    self.cond.notify_all()
        finally:
            with self.cond:
                self.busy = False
                self.cond.notify_all()

    def _wait_until_allowed(self, step: int) -> float | None:
        """Seconds waited until step ``step``'s batch may start: its weights staged (version >= step -
        max_staleness) and no pause. None once stopped."""
        t0 = time.perf_counter()
        with self.cond:
            while not self.stop.is_set() and (self.staging.version < step - self.max_staleness or self.pauses):
                self.cond.wait(POLL_S)
            if self.stop.is_set():
                return None
            self.busy = True
        return time.perf_counter() - t0

    # ---------------------------------------------------------------- the trainer's side
    def take(self, step: int, specs: list[EpisodeSpec]) -> tuple[list[Episode], dict[str, float]]:
        """Step ``step``'s episodes (waiting for them) and their figures, ``async/*`` idle seconds included."""
        mine = self.specs_of(step)
        if [(s.seed, s.group) for s in specs] != [(s.seed, s.group) for s in mine]:
            raise RuntimeError(f"RL step {step}: the trainer asked for other episodes than the rollout producer "
                               "generated ahead (only a step's first sampling round can be generated ahead)")
        t0 = time.perf_counter()
        with self.cond:
            while step not in self.ready:
                if self.error is not None:
                    raise RuntimeError(f"the rollout producer failed: {self.error!r}") from self.error
                if not self.thread.is_alive():
                    raise RuntimeError(f"the rollout producer stopped before RL step {step}'s batch")
                self.cond.wait(POLL_S)
            batch = self.ready.pop(step)
        waited = time.perf_counter() - t0
        stats = {**batch.stats, "async/trainer_idle_s": waited, "async/rollout_idle_s": batch.idle_s}
        return batch.episodes, stats

    def publish(self, model, version: int) -> None:
        """The trainer's weights after ``version`` updates: staged for the producer's next boundary."""
        self.staging.publish(model, version)
        with self.cond:
            self.cond.notify_all()

    @contextlib.contextmanager
    def paused(self):
        """No batch generates meanwhile (evaluation uses the engine, or the cores): waits for the one in flight."""
        with self.cond:
            self.pauses += 1
            while self.busy and self.thread.is_alive():
                self.cond.wait(POLL_S)
        try:
            yield
        finally:
            with self.cond:
                self.pauses -= 1
                self.cond.notify_all()

    def close(self, timeout: float = 60.0) -> None:
        """Stop the producer and wait for it; what it generated or was generating is dropped."""
        self.stop.set()
        with self.cond:
            self.cond.notify_all()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)
            if self.thread.is_alive():
                log.warning("the rollout producer did not stop within %.0f s (a generation or env step still "
                            "running); it is left behind as a daemon thread", timeout)
        self.ready.clear()
        if self.threads:
            torch.set_num_threads(self._trainer_threads_before)
