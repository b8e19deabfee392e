"""EnvPool: parallel env workers, results as they arrive, and recovery from hangs, crashes and deaths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import require

from agentgen.envs import make
from agentgen.envs.base import TextEnv
from agentgen.envs.pool import EnvPool, EnvPoolError

REWARD = {"success": 10.0, "failure": 0.0, "invalid": -0.1}
SOKOBAN = {"max_steps": 15, "reward": REWARD, "dim": 6, "num_boxes": 1}


class SlowEnv(TextEnv):
    """Test engine driven by its actions: "sleep:S", "hang", "crash" (raises), "exit" (kills the
    worker), "win", anything else a no-op. With spawn_child it owns a child process, like a JVM, and
    fails once that process is gone."""

    name = "slow"

    def __init__(self, split="train", max_steps=50, reward=None, spawn_child=False, fail_init=False):
        super().__init__(split=split, max_steps=max_steps, reward=reward)
        if fail_init:
            raise ValueError("fail_init requested")
        self.child = subprocess.Popen(["sleep", "300"]) if spawn_child else None

    def _reset(self, seed):
        return f"start {seed}", {"task": "say win"}

    def _step(self, action):
        if self.child is not None and self.child.poll() is not None:
            raise RuntimeError("engine process died")
        kind, _, arg = action.partition(":")
        if kind == "sleep":
            time.sleep(float(arg))
        elif kind == "hang":
            time.sleep(3600)
        elif kind == "crash":
            raise RuntimeError("engine crashed")
        elif kind == "exit":
            os._exit(3)
        return f"did {action}", kind == "win", False, {}

    def expert_action(self):
        return "win"

    def pid(self):
        return os.getpid()

    def child_pid(self):
        return self.child.pid

    def close(self):
        if self.child is not None:
            self.child.kill()
            self.child.wait()


SLOW = f"{__name__}:SlowEnv"


def pid_alive(pid: int) -> bool:
    """Running and not a zombie (a container's PID 1 may not reap orphans promptly)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_dead(pids, timeout=5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(pid_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


# ----------------------------------------------------------------------------- same results as raw envs
def run_expert_episodes(step_fn, expert_fn, obs0):
    trace = {s: [o] for s, (o, _) in obs0.items()}
    live = set(obs0)
    while live:
        actions = expert_fn(sorted(live))
        for slot, (obs, reward, done, info) in step_fn({s: actions[s] for s in live}).items():
            trace[slot].append((obs, reward, done, info["success"]))
            if done:
                live.discard(slot)
    return trace


@pytest.mark.parametrize("num_workers", [0, 2])
def test_pool_matches_raw_sokoban(num_workers):
    seeds = {slot: 100 + slot for slot in range(4)}
    raw = {slot: make("sokoban", "test", **SOKOBAN) for slot in seeds}
    want = run_expert_episodes(
        lambda acts: {s: raw[s].step(a) for s, a in acts.items()},
        lambda slots: {s: raw[s].expert_action() for s in slots},
        {s: raw[s].reset(seed) for s, seed in seeds.items()},
    )
    with EnvPool("sokoban", SOKOBAN, "test", num_slots=4, num_workers=num_workers) as pool:
        obs0 = pool.reset(seeds)
        thoughts = pool.expert_thoughts([0, 1])
        assert thoughts[0].startswith("Box at (")
        ctx = pool.call([3], "augmentation_context")[3]
        assert ctx["height"] == 6 and ctx["unreachable"]
        got = run_expert_episodes(pool.step, pool.expert_actions, obs0)
        assert pool.num_aborted == 0
    assert got == want
    assert all(t[-1][3] for t in got.values())  # every episode solved by the expert


# ----------------------------------------------------------------------------- concurrency
def test_workers_run_concurrently_and_results_stream():
    with EnvPool(SLOW, {}, "train", num_slots=2, num_workers=2, step_timeout=30) as pool:
        pool.reset({0: 0, 1: 1})
        pool.step({0: "noop", 1: "noop"})  # warm the workers
        t0 = time.monotonic()
        order = []
        for slot, (obs, _, done, _) in pool.step_iter({0: "sleep:1.5", 1: "sleep:0.05"}):
            order.append((slot, time.monotonic() - t0))
            assert obs == f"did {'sleep:1.5' if slot == 0 else 'sleep:0.05'}" and not done
        assert [s for s, _ in order] == [1, 0]
        assert order[0][1] < 1.0  # the fast slot did not wait for the slow one
        t0 = time.monotonic()
        pool.step({0: "sleep:1.0", 1: "sleep:1.0"})
        assert time.monotonic() - t0 < 1.8  # in parallel, not 2 s in sequence
        assert pool.step({0: "win", 1: "noop"})[0][1:3] == (10.0, True)


# ----------------------------------------------------------------------------- failures
def test_hanging_step_times_out_and_pool_recovers():
    with EnvPool(SLOW, {}, "train", num_slots=4, num_workers=2, step_timeout=30) as pool:
        pool.reset({s: s for s in range(4)})  # worker start-up under load may take a while
        pool.step_timeout = 1.0
        pids = pool.call(range(4), "pid")
        assert pids[0] == pids[2] != pids[1] == pids[3]  # round-robin spread
        t0 = time.monotonic()
        out = pool.step({0: "hang", 1: "noop", 3: "noop"})
        assert time.monotonic() - t0 < 10.0
        obs, reward, done, info = out[0]
        assert done and info["aborted"] and not info["success"] and reward == 0.0
        assert obs == "start 0" and "step_timeout" in info["abort_reason"]
        assert not out[1][2] and not out[3][2] and "aborted" not in out[1][3]
        assert pool.num_aborted == 1 and pool.num_restarts == 1
        assert not pid_alive(pids[0])
        # slot 2 shared the restarted worker: its episode is gone and says so on its next step
        assert pool.step({2: "noop"})[2][3]["aborted"] and pool.num_aborted == 2
        with pytest.raises(RuntimeError, match="reset it first"):
            pool.step({0: "noop"})
        pool.step_timeout = 30
        pool.reset({0: 7, 2: 8})  # the worker comes back
        assert pool.step({0: "win", 2: "noop"})[0][2]
        assert pool.call([0], "pid")[0] not in pids.values()


def test_worker_death_and_env_exception_abort_only_their_episodes():
    with EnvPool(SLOW, {}, "train", num_slots=2, num_workers=2, step_timeout=30) as pool:
        pool.reset({0: 0, 1: 1})
        out = pool.step({0: "exit", 1: "crash"})
        assert out[0][3]["aborted"] and "died" in out[0][3]["abort_reason"]
        assert out[1][3]["aborted"] and "engine crashed" in out[1][3]["abort_reason"]
        assert pool.num_aborted == 2 and pool.num_restarts == 1  # the crash re-created only the env
        pool.reset({0: 0, 1: 1})
        pid = pool.call([1], "pid")[1]
        os.kill(pid, signal.SIGKILL)  # killed from outside between steps
        out = pool.step({0: "noop", 1: "noop"})
        assert not out[0][2] and out[1][3]["aborted"]
        assert pool.reset({1: 5})[1][0] == "start 5"


def test_killed_child_engine_aborts_episode_and_is_recreated():
    with EnvPool(SLOW, {"spawn_child": True}, "train", num_slots=2, num_workers=1, step_timeout=30) as pool:
        pool.reset({0: 0, 1: 1})
        child = pool.call([0], "child_pid")[0]
        os.kill(child, signal.SIGKILL)
        time.sleep(0.1)
        out = pool.step({0: "noop", 1: "noop"})
        assert out[0][3]["aborted"] and "engine process died" in out[0][3]["abort_reason"]
        assert not out[1][2]
        pool.reset({0: 3})
        assert pool.call([0], "child_pid")[0] != child
        assert not pool.step({0: "noop"})[0][2]


def test_close_kills_workers_and_their_children():
    pool = EnvPool(SLOW, {"spawn_child": True}, "train", num_slots=4, num_workers=2)
    pool.reset({s: s for s in range(4)})
    workers = [p for p in pool.worker_pids if p]
    children = list(pool.call(range(4), "child_pid").values())
    assert len(workers) == 2 and all(pid_alive(p) for p in workers + children)
    pool.close()
    pool.close()  # idempotent
    assert wait_dead(workers + children)
    with pytest.raises(RuntimeError, match="closed"):
        pool.reset({0: 0})


def test_hung_worker_children_die_on_timeout():
    with EnvPool(SLOW, {"spawn_child": True}, "train", num_slots=1, num_workers=1, step_timeout=30) as pool:
        pool.reset({0: 0})
        pool.step_timeout = 0.5
        child = pool.call([0], "child_pid")[0]
        assert pool.step({0: "hang"})[0][3]["aborted"]
        assert wait_dead([child])


def test_workers_die_with_their_owner(tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys
        sys.path[:0] = {sys.path!r}
        from agentgen.envs.pool import EnvPool
        if __name__ == "__main__":  # forkserver/spawn re-import the main module
            pool = EnvPool({SLOW!r}, {{"spawn_child": True}}, "train", num_slots=2, num_workers=2)
            pool.reset({{0: 0, 1: 1}})
            pids = [p for p in pool.worker_pids] + list(pool.call([0, 1], "child_pid").values())
            print(" ".join(map(str, pids)), flush=True)
            os._exit(0)  # no close, no atexit: the watchdogs must clean up
    """)
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 4, out.stderr
    assert wait_dead(pids, timeout=5.0)


def test_abandoned_step_iter_leaves_pool_usable():
    with EnvPool(SLOW, {}, "train", num_slots=2, num_workers=2, step_timeout=30) as pool:
        pool.reset({0: 0, 1: 1})
        it = pool.step_iter({0: "noop", 1: "sleep:2"})
        slot, _ = next(it)
        assert slot == 0
        it.close()  # the caller stopped listening: slot 1's worker is out of step and gets restarted
        out = pool.step({0: "noop", 1: "noop"})
        assert not out[0][2] and out[1][3]["aborted"]
        pool.reset({1: 1})
        assert not pool.step({1: "noop"})[1][2]


def test_ctrl_c_mid_step_leaves_pool_usable():
    import threading

    with EnvPool(SLOW, {}, "train", num_slots=2, num_workers=2, step_timeout=30) as pool:
        pool.reset({0: 0, 1: 1})
        pids = pool.worker_pids
        os.kill(pids[1], signal.SIGINT)  # workers ignore Ctrl-C: their owner decides
        assert not pool.step({1: "noop"})[1][2] and pool.worker_pids == pids
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            pool.step({0: "sleep:5"})
        assert not pid_alive(pids[0])  # the interrupted worker was killed, not left running
        out = pool.step({0: "noop", 1: "noop"})
        assert out[0][3]["aborted"] and not out[1][2]
        pool.reset({0: 0})
        assert not pool.step({0: "noop"})[0][2]


# ----------------------------------------------------------------------------- the real JVM engine
@pytest.mark.jvm
@pytest.mark.slow
def test_sciworld_jvm_killed_or_hung_is_aborted_and_never_outlives_pool():
    """ScienceWorld's JVMs run as children of the workers: a killed JVM aborts only its episode, a
    hung step kills the worker with its JVMs, and close() leaves no JVM behind."""
    require("java")
    kwargs = {"max_steps": 50, "reward": REWARD, "tasks": ["boil"], "gold_path": False, "jvm_heap": "512m"}
    pool = EnvPool("sciworld", kwargs, "train", num_slots=2, num_workers=1, step_timeout=60)
    try:
        pool.reset({0: 0, 1: 1})
        jvms = pool.call([0, 1], "jvm_pid")
        assert all(pid_alive(p) for p in jvms.values()) and jvms[0] != jvms[1]
        os.kill(jvms[0], signal.SIGKILL)
        assert wait_dead([jvms[0]])
        out = pool.step({0: "look around", 1: "look around"})
        assert out[0][3]["aborted"] and not out[1][2] and "aborted" not in out[1][3]
        pool.reset({0: 2})
        assert not pool.step({0: "look around"})[0][2]
        jvms = list(pool.call([0, 1], "jvm_pid").values())
        pool.step_timeout = 0.001  # no engine step is that fast: the worker counts as hung
        out = pool.step({0: "look around", 1: "look around"})
        assert all(r[3]["aborted"] for r in out.values())
        assert wait_dead(jvms)  # killed with the worker's process group
        pool.step_timeout = 60
        pool.reset({0: 0, 1: 1})
        everything = list(pool.call([0, 1], "jvm_pid").values()) + [p for p in pool.worker_pids if p]
    finally:
        pool.close()
    assert wait_dead(everything, timeout=10)


# ----------------------------------------------------------------------------- errors and input checks
def test_errors_surface_with_remote_traceback():
    with EnvPool(SLOW, {"fail_init": True}, "train", num_slots=1, num_workers=1) as pool:
        with pytest.raises(EnvPoolError, match="fail_init requested"):
            pool.reset({0: 0})
    with EnvPool(SLOW, {}, "train", num_slots=1, num_workers=0) as pool:
        pool.reset({0: 0})
        with pytest.raises(EnvPoolError, match="AttributeError"):
            pool.call([0], "no_such_method")
        assert pool.call([0], "max_steps") == {0: 50}  # plain attributes are read
        assert pool.step({0: "crash"})[0][3]["aborted"]  # in-process: same abort semantics
        assert pool.num_aborted == 1


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="unknown environment 'sokobann'"):
        EnvPool("sokobann", {}, "train", num_slots=1, num_workers=0)
    with pytest.raises(ValueError, match="cannot load env class"):
        EnvPool("test_pool_missing_module:Env", {}, "train", num_slots=1, num_workers=0)
    with pytest.raises(ValueError, match="split"):
        EnvPool("sokoban", {}, "dev", num_slots=1, num_workers=0)
    with pytest.raises(ValueError, match="num_workers"):
        EnvPool("sokoban", {}, "train", num_slots=1, num_workers=-1)
    with EnvPool("sokoban", SOKOBAN, "train", num_slots=2, num_workers=0) as pool:
        with pytest.raises(ValueError, match="valid slots are 0..1"):
            pool.reset({2: 0})
        with pytest.raises(RuntimeError, match="reset it first"):
            pool.step({0: "Up"})
    pool = EnvPool("sokoban", SOKOBAN, "train", num_slots=3, num_workers=8)
    assert pool.num_workers == 3  # never more workers than slots
    pool.close()
