"""One ScienceWorld JVM, driven through py4j without the package's per-step valid-action scan.

``scienceworld.ScienceWorldEnv.step`` asks the engine for every valid action-object combination after
each step (600-9,000 of them, 50-1,300 ms): 1-8 steps/s. The simulation itself is fast, so this class
talks to the engine's ``PythonInterface`` directly: ``step`` then ``getScore`` / ``getCompleted``, and
the valid actions only on request. It also owns the JVM process: the heap is capped (``-Xmx``), the
JVM exits when its stdin pipe breaks (py4j's die-on-broken-pipe, so a killed Python takes it along),
and ``close()`` (also run by a finalizer at garbage collection and interpreter exit) stops it.

Engine facts this relies on (scienceworld 1.2.3):
- ``load(task, variation, simplifications, gold)`` rebuilds the world with ``Random.setSeed(variation)``;
  with ``gold=True`` it first plays the gold agent, then rebuilds, so the state after ``load`` is the
  start state. Score and completion are only updated by ``step`` (after ``load`` they still hold the
  last game's values), so callers must not read them before the first step.
- The package's ``envStepLimit`` lives in its Python wrapper, which this class bypasses: the engine
  itself has no step limit, so the environment's own ``max_steps`` is the only one.
- Reproducibility: ``load`` seeds the engine's RNG with the variation index, but the engine keeps
  objects in hash sets keyed by identity hash codes, which differ from run to run. So the order
  objects are listed in, the order devices and heat transfer are updated (a circuit can close a step
  later, a thermometer read 48 or 49 C), the behaviour of animals, and even the gold path change
  between loads; replaying a gold path can then fail (grow-fruit, mendelian genetics). With
  ``deterministic=True`` (default) HotSpot's ``-XX:hashCode=2`` makes every identity hash equal, so
  sets iterate in insertion order and a (task, variation) plays out identically for the same actions,
  across loads and JVMs. It costs some speed (hash sets degrade to lists; about 20% fewer steps/s
  here, more in the object-heavy mendelian tasks) and needs a HotSpot JVM (OpenJDK).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import weakref
from dataclasses import dataclass
from typing import NoReturn

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_incrementing

log = logging.getLogger(__name__)

DEFAULT_HEAP = "768m"
DEFAULT_JVM_OPTIONS = ("-XX:+UseSerialGC",)  # one GC thread: less memory, fair on small machines
# Every identity hash code = 1, so the engine's hash sets of objects iterate in insertion order.
DETERMINISTIC_OPTIONS = ("-XX:+UnlockExperimentalVMOptions", "-XX:hashCode=2")


class JavaNotFoundError(RuntimeError):
    """No Java runtime: ScienceWorld's engine is a Scala program."""


class SciWorldEngineError(RuntimeError):
    """The engine rejected a request, or its JVM died / stopped answering."""


@dataclass(frozen=True)
class StepResult:
    observation: str
    score: int  # 0-100 (subgoal progress); -100 after a wrong "focus on"
    completed: bool  # the engine's done flag (set at score 100 and by failed goals)


def find_java() -> str | None:
    """The java binary: $JAVA_HOME/bin/java if set, else java on PATH; None if neither exists."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = os.path.join(home, "bin", "java")
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("java")


def _check_heap(heap: str) -> str:
    text = str(heap).strip()
    if not re.fullmatch(r"[1-9][0-9]*[kKmMgG]?", text):
        raise ValueError(f"jvm_heap must look like 768m, 1g or 512000k (a -Xmx size), got {heap!r}")
    return text


def _stop_jvm(gateway, proc: subprocess.Popen, stderr_file, timeout: float = 5.0) -> None:
    """Shut the gateway, close the JVM's stdin (it exits on the broken pipe), kill it if it lingers."""
    try:
        gateway.shutdown()
    except Exception as exc:  # noqa: BLE001 - a dead JVM cannot be shut down politely
        log.debug("py4j gateway shutdown failed (%s); stopping the JVM process directly", exc)
    try:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
    stderr_file.close()


class SciWorldEngine:
    """A running ScienceWorld JVM. Not thread-safe: one engine per worker."""

    def __init__(
        self,
        heap: str = DEFAULT_HEAP,
        jvm_options: tuple[str, ...] | list[str] = DEFAULT_JVM_OPTIONS,
        deterministic: bool = True,
    ):
        from py4j.java_gateway import GatewayParameters, JavaGateway, launch_gateway
        from scienceworld.constants import BASEPATH, JAR_PATH

        self.heap = _check_heap(heap)
        self.jvm_options = tuple(str(o) for o in jvm_options or ())
        if any(o.startswith("-Xmx") for o in self.jvm_options):
            raise ValueError(f"set the heap with jvm_heap, not in jvm_options: {list(self.jvm_options)}")
        java = find_java()
        if java is None:
            raise JavaNotFoundError(
                "ScienceWorld needs a Java runtime (8 or newer) and none was found: no $JAVA_HOME/bin/java "
                "and no `java` on PATH. Install one (e.g. `apt-get install default-jre-headless`) or set JAVA_HOME."
            )
        # The JVM's stderr goes to an anonymous temp file (it writes little): its tail explains a JVM
        # that fails to start (bad option, no memory) or dies later.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the JVM; closed by _stop_jvm
        self.deterministic = bool(deterministic)
        opts = [f"-Xmx{self.heap}", *self.jvm_options, *(DETERMINISTIC_OPTIONS if self.deterministic else ())]
        try:
            port, proc = launch_gateway(
                classpath=JAR_PATH,
                javaopts=opts,
                java_path=java,
                die_on_exit=True,
                cwd=BASEPATH,
                return_proc=True,
                redirect_stderr=self._stderr,
            )
        except (ValueError, OSError) as exc:  # ValueError: the JVM died before printing its port
            output = self._stderr_tail() or "(none)"
            self._stderr.close()
            raise SciWorldEngineError(
                f"could not start the ScienceWorld JVM ({java} {' '.join(opts)}): {exc}. JVM output: {output}"
            ) from exc
        self._proc = proc
        self._gateway = JavaGateway(
            gateway_parameters=GatewayParameters(auto_field=True, port=port), java_process=proc
        )
        self._finalizer = weakref.finalize(self, _stop_jvm, self._gateway, proc, self._stderr)
        try:
            self._server = self._gateway.jvm.scienceworld.runtime.pythonapi.PythonInterface()
        except Exception as exc:
            self.close()
            raise SciWorldEngineError(
                f"the ScienceWorld JVM started but its interface did not load: {exc}"
            ) from exc
        self._dead = False
        log.debug("ScienceWorld JVM pid %d on port %d (%s)", proc.pid, port, " ".join(opts))

    # ------------------------------------------------------------------ lifecycle
    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return not self._dead and self._finalizer.alive and self._proc.poll() is None

    def close(self) -> None:
        """Stop the JVM (idempotent)."""
        self._dead = True
        self._finalizer()

    def memory_rss(self) -> int:
        """Resident memory of the JVM process in bytes."""
        import psutil

        return psutil.Process(self._proc.pid).memory_info().rss

    def _stderr_tail(self, lines: int = 5) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read()[-4000:].decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())

    def _call(self, what: str, method: str, *args):
        """Run one py4j call of the server's ``method``; a dead or broken JVM becomes a SciWorldEngineError naming
        the likely cause. The method is looked up inside the guard: py4j asks the JVM on a method's first use."""
        from py4j.protocol import Py4JError

        if not self.alive:
            raise SciWorldEngineError(
                f"the ScienceWorld JVM is not running (closed or died) and cannot {what}"
            )
        def refused(exc: BaseException) -> bool:
            # a refused connection to a running JVM sent nothing, so the call is safe to repeat (seen once in
            # CI right after a restart); any other error, or a JVM that is gone, is reported at once
            return (isinstance(exc, Py4JError) and "error occurred while trying to connect" in str(exc)
                    and self._proc.poll() is None)

        try:
            for attempt in Retrying(retry=retry_if_exception(refused), stop=stop_after_attempt(4),
                                    wait=wait_incrementing(start=0.5, increment=0.5), reraise=True):
                with attempt:
                    return getattr(self._server, method)(*args)
        except Py4JError as exc:
            self._raise_engine_error(what, exc)

    def _raise_engine_error(self, what: str, exc: Exception) -> NoReturn:
        running = self._proc.poll() is None
        if not running:
            self._dead = True
        raise SciWorldEngineError(
            f"ScienceWorld engine failed to {what} (JVM pid {self._proc.pid} "
            f"{'still running' if running else 'exited with code ' + str(self._proc.returncode)}; "
            f"heap cap -Xmx{self.heap}: raise jvm_heap if it ran out of memory): {exc}. "
            f"JVM output: {self._stderr_tail() or '(none)'}"
        ) from exc

    # ------------------------------------------------------------------ game
    def load(self, task: str, variation: int, simplifications: str = "", gold_path: bool = False) -> None:
        """Build (task, variation) at its start state; ``gold_path`` also computes the gold actions."""
        err = self._call(
            f"load {task} #{variation}", "load", task, int(variation), simplifications, gold_path
        )
        if err:
            raise SciWorldEngineError(
                f"ScienceWorld could not load task {task!r} variation {variation}: {err}"
            )

    def step(self, action: str) -> StepResult:
        obs = self._call(f"step {action!r}", "step", action)
        score = self._call("read the score", "getScore")
        completed = self._call("read completion", "getCompleted")
        return StepResult(observation=str(obs), score=round(100 * float(score)), completed=bool(completed))

    def look(self) -> str:
        """The room description; a free action (no game time passes)."""
        return str(self._call("look around", "freeActionLook"))

    def inventory(self) -> str:
        return str(self._call("list the inventory", "freeActionInventory"))

    def task_description(self) -> str:
        return str(self._call("read the task", "getTaskDescription"))

    def action_templates(self) -> list[str]:
        """The engine's action templates for the loaded task ("open OBJ", "go OBJ", ...)."""
        return [str(a) for a in self._call("list action templates", "getPossibleActions")]

    def objects(self) -> list[str]:
        """Names the parser accepts for what the agent can see now (room, inventory, doors, ...)."""
        return [str(o) for o in self._call("list objects", "getPossibleObjects")]

    def valid_actions(self) -> list[str]:
        """Every valid action-object combination now. Slow (50-1,300 ms): for analysis, not per step."""
        return [
            str(a) for a in self._call("list valid actions", "getValidActionObjectCombinations")
        ]

    def gold_actions(self) -> list[str]:
        """The gold action sequence of the last ``load(..., gold_path=True)``."""
        return [str(a) for a in self._call("read the gold path", "getGoldActionSequence")]

    def num_moves(self) -> int:
        """Game-time moves so far (free actions such as look around do not count)."""
        return int(self._call("read the move count", "getNumMoves"))

    def goal_progress(self) -> str:
        """The engine's subgoal table (for debugging)."""
        return str(self._call("read goal progress", "getGoalProgressStr"))

    def task_names(self) -> list[str]:
        return [str(t) for t in self._call("list tasks", "getTaskNames")]

    def variation_splits(self, task: str) -> tuple[list[int], list[int], list[int]]:
        """(train, dev, test) variation indices of ``task``, as the engine defines them (loads the task)."""
        self.load(task, 0, "", False)
        return tuple(  # type: ignore[return-value]
            [int(v) for v in self._call("list variations", method)]
            for method in ("getVariationsTrain", "getVariationsDev", "getVariationsTest")
        )

    def max_variations(self, task: str) -> int:
        return int(self._call("count variations", "getTaskMaxVariations", task))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
