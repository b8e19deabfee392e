"""Environment worker pool: many env instances ("slots") stepped in parallel worker processes.

Slow engines (ScienceWorld's JVM at 1-8 steps/s, TextWorld at ~10/s) dominate rollout time, so the
rollout collector keeps one env per slot and steps them in batches. Slots are spread round-robin over
``num_workers`` processes; a batched call sends each worker all of its slots at once, the workers run
concurrently, and each result comes back the moment its env finishes (``step_iter``), so the caller
never waits on one slow env while others are ready. ``num_workers=0`` runs everything in-process
(Sokoban, debugging).

Failures never stop the run:
- a step that runs past ``step_timeout`` (measured from the worker's previous result), or a worker
  that dies, restarts that worker (its envs are re-created lazily); its running episodes end with
  ``done=True`` and ``info["aborted"] = True`` (success False, reward 0) and ``num_aborted`` counts them;
- an env whose ``step`` raises (e.g. its JVM was killed) is closed and re-created inside the worker,
  and that episode is aborted the same way.
Collectors should drop aborted episodes from training batches: they say nothing about the policy.

Each worker is a session (process group) leader, so the group holds its children (JVMs); close(),
restarts and the worker's own watchdog (which fires when the owning process disappears) kill the
whole group. ``close()`` is idempotent, runs at interpreter exit and from ``with EnvPool(...)``.

What a slot holds comes from an ``EnvFactory`` (agentgen/envs/factory.py) the caller builds: the job's are the
plain env or the augmenting wrapper around it. For tests and scripts ``env`` may also be a registry name
(``agentgen.envs.registry``) or an importable ``"module:Class"`` with ``env_kwargs``: a factory is made of it.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import multiprocessing as mp
import operator
import os
import signal
import sys
import threading
import time
import traceback
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait as mp_wait
from typing import Any

from agentgen.envs import SPLITS, TextEnv, env_class, env_names
from agentgen.envs.factory import EnvFactory
from agentgen.options import PoolOptions

log = logging.getLogger(__name__)

# Result statuses of one slot's request.
_OK = "ok"  # payload: the method's return value
_ERROR = "error"  # payload: remote traceback text (an exception outside env.step)
_ABORTED = "aborted"  # payload: traceback; env.step raised, the env was re-created
_LOST = "lost"  # payload: reason; the worker died or timed out and was restarted


class EnvPoolError(RuntimeError):
    """An env method raised in a worker (bad configuration, a bug); carries the remote traceback."""


def as_factory(env: EnvFactory | str, env_kwargs: dict | None = None) -> EnvFactory:
    """``env`` as a factory: a factory as it is (``env_kwargs`` must be None), a name or "module:Class" with
    ``env_kwargs``."""
    if isinstance(env, EnvFactory):
        if env_kwargs:
            raise ValueError("EnvPool: an EnvFactory carries its own keywords; pass env_kwargs=None")
        return env
    return EnvFactory(env, resolve_env_class(env), _plain(dict(env_kwargs or {})))


def resolve_env_class(env_name: str) -> type[TextEnv]:
    """A registry name ("sokoban") or an importable "package.module:ClassName"."""
    if ":" in env_name:
        module_name, _, cls_name = env_name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError) as exc:
            raise ValueError(
                f"EnvPool: cannot load env class {env_name!r} ({exc}); give a registry name "
                f"({', '.join(env_names())}) or an importable 'module:Class'"
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, TextEnv)):
            raise ValueError(f"EnvPool: {env_name!r} is not a TextEnv subclass")
        return cls
    if env_name not in env_names():
        raise ValueError(
            f"EnvPool: unknown environment {env_name!r}; valid: {', '.join(env_names())} or 'module:Class'"
        )
    return env_class(env_name)


def _plain(obj: Any) -> Any:
    """OmegaConf containers -> plain dicts/lists so kwargs pickle cheaply and envs see plain types."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        return obj
    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


# ============================================================================ worker side
class _SlotEnvs:
    """The envs of one worker (or of the in-process pool), created lazily per slot."""

    def __init__(self, factory: EnvFactory, split: str):
        self.factory, self.split = factory, split
        self.envs: dict[int, TextEnv] = {}

    def get(self, slot: int) -> TextEnv:
        env = self.envs.get(slot)
        if env is None:
            env = self.factory(self.split)
            self.envs[slot] = env
        return env

    def drop(self, slot: int) -> None:
        env = self.envs.pop(slot, None)
        if env is not None:
            with contextlib.suppress(Exception):  # the engine may already be dead
                env.close()

    def handle(self, op: str, slot: int, arg: Any) -> tuple[str, Any]:
        """Run one request for one slot; never raises."""
        if op == "step":
            try:
                return _OK, self.get(slot).step(arg)
            except Exception:  # noqa: BLE001 - any engine failure aborts just this episode
                self.drop(slot)  # engine state unknown (dead JVM, ...): re-create on next use
                return _ABORTED, traceback.format_exc()
        try:
            if op == "reset":
                return _OK, self.get(slot).reset(arg)
            name, args = arg
            value = getattr(self.get(slot), name)
            if callable(value):
                return _OK, value(*args)
            if args:
                raise TypeError(f"{name!r} is an attribute, not a method; it takes no arguments")
            return _OK, value
        except Exception:  # noqa: BLE001 - reported to the owner with its traceback
            if op == "reset":
                self.drop(slot)
            return _ERROR, traceback.format_exc()

    def close(self) -> None:
        for slot in list(self.envs):
            self.drop(slot)


def _watch_owner(owner_pid: int, parent_pid: int) -> None:
    """Kill this worker's whole process group (with its JVMs) once the owning process is gone."""
    while True:
        time.sleep(0.5)
        owner_gone = os.getppid() != parent_pid
        if not owner_gone:
            try:
                os.kill(owner_pid, 0)
            except ProcessLookupError:
                owner_gone = True
            except PermissionError:
                pass
        if owner_gone:
            os.killpg(0, signal.SIGKILL)


def _worker_main(
    conn, factory: EnvFactory, split: str, sys_path: list[str], owner_pid: int
) -> None:
    try:
        os.setsid()  # own process group: killing it takes the env's child processes too
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the owner handles Ctrl-C and closes us
    sys.path[:0] = [p for p in sys_path if p not in sys.path]
    threading.Thread(target=_watch_owner, args=(owner_pid, os.getppid()), daemon=True).start()
    envs = _SlotEnvs(factory, split)
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "close":
                break
            _, req, op, items = msg
            for slot, arg in items.items():
                status, payload = envs.handle(op, slot, arg)
                try:
                    conn.send((req, slot, status, payload))
                except (BrokenPipeError, OSError):
                    return
                except Exception as exc:  # noqa: BLE001 - unpicklable result
                    conn.send((req, slot, _ERROR, f"result of {op} could not be sent: {exc!r}"))
    finally:
        envs.close()


# ============================================================================ owner side
@dataclass
class _Worker:
    index: int
    slots: list[int]
    process: Any = None
    conn: Any = None

    @property
    def alive(self) -> bool:
        return self.process is not None


_LIVE_POOLS: weakref.WeakSet[EnvPool] = weakref.WeakSet()


@atexit.register
def _close_live_pools() -> None:
    for pool in list(_LIVE_POOLS):
        pool.close()


class EnvPool:
    """``num_slots`` envs of one kind and split, stepped in parallel worker processes (see module doc)."""

    def __init__(
        self,
        env: EnvFactory | str,
        env_kwargs: dict | None,
        split: str,
        num_slots: int,
        num_workers: int | None = None,
        step_timeout: float = 120.0,
        start_method: str = "forkserver",
    ):
        if split not in SPLITS:
            raise ValueError(f"EnvPool: split must be one of {SPLITS}, got {split!r}")
        if int(num_slots) < 1:
            raise ValueError(f"EnvPool: num_slots must be >= 1, got {num_slots!r}")
        # the pool's rules are PoolOptions' (rollout.num_workers, rollout.step_timeout), which preflight ran too
        PoolOptions(num_workers=0 if num_workers is None else num_workers, step_timeout=step_timeout).check()
        if start_method not in mp.get_all_start_methods():
            raise ValueError(
                f"EnvPool: start_method {start_method!r} unavailable here; "
                f"valid: {', '.join(mp.get_all_start_methods())}"
            )
        self.factory = as_factory(env, env_kwargs)  # fails early on a bad name
        self.env_name = self.factory.name
        self.split = split
        self.num_slots = int(num_slots)
        workers = (os.cpu_count() or 1) if num_workers is None else int(num_workers)
        self.num_workers = min(workers, self.num_slots)
        self.step_timeout = float(step_timeout)
        self.num_aborted = 0  # episodes ended by a hang, a crash or an env exception
        self.num_restarts = 0  # worker processes restarted
        self._running = [False] * self.num_slots  # an episode is in progress
        self._lost: set[int] = set()  # running episode destroyed, not yet reported to the caller
        self._last_obs = [""] * self.num_slots
        self._task = [""] * self.num_slots
        self._busy = False
        self._closed = False
        self._req = 0
        if self.num_workers == 0:
            self._local = _SlotEnvs(self.factory, split)
            self._workers: list[_Worker] = []
            self._slot_worker: list[int] = []
        else:
            self._local = None
            self._ctx = mp.get_context(start_method)
            self._workers = [
                _Worker(w, list(range(w, self.num_slots, self.num_workers))) for w in range(self.num_workers)
            ]
            self._slot_worker = [s % self.num_workers for s in range(self.num_slots)]
            for worker in self._workers:
                self._start(worker)
        _LIVE_POOLS.add(self)

    # ----------------------------------------------------------------- public API
    def reset(self, seeds: dict[int, int]) -> dict[int, tuple[str, dict]]:
        """Start an episode in every given slot; a slot whose worker fails is retried once on a fresh
        worker, then EnvPoolError. Hand-written, not tenacity: the second round re-dispatches only the failed
        slots and keeps the others' results (a partial retry of a batch, with no wait: the worker is new)."""
        seeds = {self._check_slot(s): int(seed) for s, seed in seeds.items()}
        out: dict[int, tuple[str, dict]] = {}
        for _attempt in range(2):
            failed = {}
            for slot, status, payload in self._dispatch("reset", seeds):
                if status == _OK:
                    obs, info = payload
                    self._running[slot] = True
                    self._lost.discard(slot)
                    self._last_obs[slot], self._task[slot] = obs, info.get("task", "")
                    out[slot] = (obs, info)
                elif status == _ERROR:
                    raise EnvPoolError(
                        f"{self.env_name} reset(seed={seeds[slot]}) failed in slot {slot}:\n{payload}"
                    )
                else:
                    failed[slot] = payload
            if not failed:
                return out
            log.warning(
                "EnvPool: reset of slots %s failed (%s); retrying",
                sorted(failed),
                next(iter(failed.values())),
            )
            seeds = {s: seeds[s] for s in failed}
        raise EnvPoolError(f"{self.env_name}: reset failed twice for slots {sorted(seeds)}: {failed}")

    def step(self, actions: dict[int, str]) -> dict[int, tuple[str, float, bool, dict]]:
        """One action per given slot; returns slot -> (obs, reward, done, info) once all are in."""
        return dict(self.step_iter(actions))

    def step_iter(self, actions: dict[int, str]) -> Iterator[tuple[int, tuple[str, float, bool, dict]]]:
        """Like step, but yields (slot, result) as each env finishes. Consume it fully: abandoning it
        early kills the workers still busy and aborts their episodes."""
        actions = {self._check_slot(s): a for s, a in actions.items()}
        for slot in actions:
            if not self._running[slot]:
                raise RuntimeError(f"EnvPool: slot {slot} has no running episode; reset it first")
        for slot in [s for s in actions if s in self._lost]:
            del actions[slot]
            yield (
                slot,
                self._abort(
                    slot, "its worker was restarted (another slot failed or a request was interrupted)"
                ),
            )
        for slot, status, payload in self._dispatch("step", actions):
            if status == _OK:
                obs, reward, done, info = payload
                self._last_obs[slot] = obs
                if done:
                    self._running[slot] = False
                yield slot, (obs, reward, done, info)
            elif status == _ERROR:  # only unpicklable results land here for steps
                yield slot, self._abort(slot, payload)
            else:
                yield slot, self._abort(slot, payload)

    def expert_actions(self, slots: Iterable[int]) -> dict[int, str | None]:
        return self.call(slots, "expert_action")

    def expert_thoughts(self, slots: Iterable[int]) -> dict[int, str | None]:
        return self.call(slots, "expert_thought")

    def call(self, slots: Iterable[int], method_name: str, *args: Any) -> dict[int, Any]:
        """``env.<method_name>(*args)`` in every given slot (or the attribute's value if it is not
        callable). A slot whose worker died or hung gets None; an exception raises EnvPoolError."""
        slots = [self._check_slot(s) for s in slots]
        out: dict[int, Any] = {s: None for s in slots if s in self._lost}
        items = {s: (method_name, args) for s in slots if s not in self._lost}
        for slot, status, payload in self._dispatch("call", items):
            if status == _OK:
                out[slot] = payload
            elif status == _ERROR:
                raise EnvPoolError(f"{self.env_name}.{method_name} failed in slot {slot}:\n{payload}")
            else:  # the worker was restarted: this slot's episode is gone too
                out[slot] = None
                if self._running[slot]:
                    self._lost.add(slot)
        return out

    def close(self) -> None:
        """Close every env and end every worker with its process group. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._local is not None:
            self._local.close()
        for worker in self._workers:
            if worker.alive:
                try:
                    worker.conn.send(("close",))
                except (BrokenPipeError, OSError):
                    pass
        deadline = time.monotonic() + 5.0
        for worker in self._workers:
            if worker.alive:
                worker.process.join(max(0.0, deadline - time.monotonic()))
                self._kill(worker)
        _LIVE_POOLS.discard(self)

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        # try/except, not contextlib.suppress: at interpreter exit module globals may already be None
        try:
            self.close()
        except Exception:
            pass

    @property
    def worker_pids(self) -> list[int | None]:
        """PIDs (= process group ids) of the worker processes; None for one not running."""
        return [w.process.pid if w.alive else None for w in self._workers]

    # ----------------------------------------------------------------- internals
    def _check_slot(self, slot: int) -> int:
        if self._closed:
            raise RuntimeError("EnvPool: the pool is closed")
        try:
            index = operator.index(slot)  # ints, numpy ints; not floats or strings
        except TypeError:
            index = -1
        if not 0 <= index < self.num_slots:
            raise ValueError(f"EnvPool: slot {slot!r} out of range; valid slots are 0..{self.num_slots - 1}")
        return index

    def _abort(self, slot: int, reason: str) -> tuple[str, float, bool, dict]:
        self.num_aborted += 1
        self._running[slot] = False
        self._lost.discard(slot)
        short = reason.strip().splitlines()[-1] if reason.strip() else reason
        log.warning("EnvPool: %s episode in slot %d aborted: %s", self.env_name, slot, short)
        info = {
            "aborted": True,
            "abort_reason": reason,
            "success": False,
            "invalid_action": False,
            "truncated": False,
            "admissible_actions": None,
            "task": self._task[slot],
            "raw_reward": 0.0,
        }
        return self._last_obs[slot], 0.0, True, info

    def _start(self, worker: _Worker) -> None:
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker_main,
            args=(child_conn, self.factory, self.split, list(sys.path), os.getpid()),
            name=f"envpool-{self.env_name}-{worker.index}",
        )
        process.start()
        child_conn.close()  # our copy: the worker's death must show as EOF on parent_conn
        worker.process, worker.conn = process, parent_conn

    def _kill(self, worker: _Worker) -> None:
        """SIGKILL the worker's process group (the worker and e.g. its JVMs) and reap it."""
        if not worker.alive:
            return
        try:
            os.killpg(worker.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5.0)
        worker.conn.close()
        worker.process = worker.conn = None

    def _fail_worker(self, worker: _Worker, pending: set[int]) -> None:
        """Kill a worker that died or hung; its running episodes outside ``pending`` become lost.
        It restarts lazily on its next request."""
        self._kill(worker)
        self.num_restarts += 1
        for slot in worker.slots:
            if self._running[slot] and slot not in pending:
                self._lost.add(slot)

    def _dispatch(self, op: str, items: dict[int, Any]) -> Iterator[tuple[int, str, Any]]:
        """Send each worker its slots' requests; yield (slot, status, payload) as results arrive."""
        if not items:
            return
        if self._busy:
            raise RuntimeError(
                "EnvPool: another request is still in progress (finish iterating step_iter first)"
            )
        self._busy = True
        try:
            if self._local is not None:
                for slot, arg in items.items():
                    yield (slot, *self._local.handle(op, slot, arg))
                return
            yield from self._dispatch_workers(op, items)
        finally:
            self._busy = False

    def _dispatch_workers(self, op: str, items: dict[int, Any]) -> Iterator[tuple[int, str, Any]]:
        self._req += 1
        req = self._req
        by_worker: dict[int, dict[int, Any]] = defaultdict(dict)
        for slot, arg in items.items():
            by_worker[self._slot_worker[slot]][slot] = arg
        pending: dict[int, set[int]] = {}
        progress: dict[int, float] = {}
        failures: list[tuple[int, str]] = []
        for w, work in by_worker.items():
            worker = self._workers[w]
            if not worker.alive:
                self._start(worker)
            try:
                worker.conn.send(("req", req, op, work))
            except (BrokenPipeError, OSError):
                self._fail_worker(worker, set(work))
                failures.extend((slot, f"worker {w} died") for slot in work)
                continue
            pending[w] = set(work)
            progress[w] = time.monotonic()
        try:
            for slot, reason in failures:
                yield slot, _LOST, reason
            while pending:
                deadline = min(progress[w] for w in pending) + self.step_timeout
                waitables = {}
                for w in pending:
                    waitables[self._workers[w].conn] = w
                    waitables[self._workers[w].process.sentinel] = w
                ready = mp_wait(list(waitables), timeout=max(0.0, deadline - time.monotonic()))
                for w in dict.fromkeys(waitables[obj] for obj in ready):
                    if w not in pending:
                        continue
                    worker = self._workers[w]
                    died = False
                    try:
                        while worker.conn.poll():
                            got_req, slot, status, payload = worker.conn.recv()
                            if got_req != req or slot not in pending[w]:
                                continue
                            pending[w].discard(slot)
                            progress[w] = time.monotonic()
                            yield slot, status, payload
                    except (EOFError, OSError):
                        died = True
                    if not died and not worker.process.is_alive():
                        died = True
                    if died:
                        lost = pending.pop(w)
                        code = worker.process.exitcode if worker.process is not None else None
                        self._fail_worker(worker, lost)
                        for slot in lost:
                            yield slot, _LOST, f"worker {w} died (exit code {code})"
                    elif not pending[w]:
                        del pending[w]
                now = time.monotonic()
                for w in [w for w in pending if now - progress[w] > self.step_timeout]:
                    lost = pending.pop(w)
                    self._fail_worker(self._workers[w], lost)
                    for slot in lost:
                        yield slot, _LOST, f"{op} exceeded step_timeout={self.step_timeout:g}s in worker {w}"
        finally:
            # Interrupted (Ctrl-C, abandoned step_iter): workers still busy are out of step with us.
            for w, lost in pending.items():
                if lost:  # marks every running episode of that worker lost
                    self._fail_worker(self._workers[w], set())
