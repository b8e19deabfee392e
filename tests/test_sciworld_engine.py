"""SciWorldEngine: fast stepping agrees with the package's own step; the split table is the engine's."""

from __future__ import annotations

import psutil
import pytest
from conftest import require

from agentgen.envs.sciworld.engine import JavaNotFoundError, SciWorldEngine, _check_heap, find_java
from agentgen.envs.sciworld.tasks import TASKS


def test_heap_and_option_validation():
    assert _check_heap("768m") == "768m" and _check_heap("1g") == "1g" and _check_heap("524288k") == "524288k"
    for bad in ["", "lots", "768mb", "-1g", "0m"]:
        with pytest.raises(ValueError, match="jvm_heap must look like"):
            _check_heap(bad)
    with pytest.raises(ValueError, match="not in jvm_options"):
        SciWorldEngine(jvm_options=["-Xmx2g"])


def test_missing_java_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("JAVA_HOME", "/nonexistent")
    assert find_java() is None
    with pytest.raises(JavaNotFoundError, match="needs a Java runtime"):
        SciWorldEngine()


@pytest.fixture(scope="module")
def engine():
    require("java")
    with SciWorldEngine(heap="512m") as e:
        yield e
    assert not e.alive


@pytest.mark.jvm
def test_split_table_is_the_engines(engine):
    """tasks.TASKS (used without a JVM) must equal the engine's own task list and variation splits."""
    assert sorted(engine.task_names()) == sorted(t.name for t in TASKS)
    for t in TASKS:
        train, dev, test = engine.variation_splits(t.name)
        assert engine.max_variations(t.name) == t.n_variations, t.name
        assert (train, dev, test) == (
            list(t.variations("train")),
            list(t.variations("dev")),
            list(t.variations("test")),
        ), t.name


@pytest.mark.jvm
def test_fast_stepping_matches_the_package_step(engine):
    """Same observations, scores and done flags as scienceworld.ScienceWorldEnv.step, which also
    computes the valid-action list every step (the part fast stepping leaves out). Tasks whose games
    do not depend on JVM hash order, as the package's JVM runs without fixed identity hashes."""
    from scienceworld import ScienceWorldEnv

    reference = ScienceWorldEnv("", envStepLimit=100)
    proc = reference._gateway.java_process
    try:
        for task in ["find-non-living-thing", "lifespan-longest-lived"]:
            reference.load(task, 1, "easy", generateGoldPath=True)
            gold = reference.get_gold_action_sequence()
            reference.reset()  # the package's reset also steps "look around" (a free action)
            engine.load(task, 1, "easy", gold_path=False)
            engine.step("look around")
            for action in gold:
                obs, _, done, info = reference.step(action)
                fast = engine.step(action)
                assert (fast.observation, fast.score) == (obs, info["score"]), (task, action)
                assert fast.completed == done or fast.score < 0, (task, action)
                assert len(info["valid"]) > 50  # what the package computed on top
            assert fast.score == 100 and fast.completed
    finally:
        reference.close()
        proc.kill()  # the package leaves its JVM running after close()
        proc.wait(10)
    assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.jvm
def test_load_errors_and_free_actions(engine):
    from agentgen.envs.sciworld.engine import SciWorldEngineError

    with pytest.raises(SciWorldEngineError, match="exceeds the total number of variations"):
        engine.load("boil", 999)
    engine.load("find-animal", 0, "easy")
    moves = engine.num_moves()
    assert "This room is called" in engine.look() and "inventory" in engine.inventory()
    assert engine.num_moves() == moves  # free actions take no game time
    assert "focus on OBJ" in engine.action_templates() and "agent" in engine.objects()
    assert len(engine.valid_actions()) > 100


@pytest.mark.jvm
def test_a_jvm_that_cannot_start_reports_its_own_error():
    require("java")
    from agentgen.envs.sciworld.engine import SciWorldEngineError

    with pytest.raises(
        SciWorldEngineError, match="could not start the ScienceWorld JVM.*Unrecognized VM option"
    ):
        SciWorldEngine(jvm_options=["-XX:+NoSuchOptionAnywhere"])


@pytest.mark.jvm
def test_a_refused_connection_to_a_running_jvm_is_retried_then_reported(engine):
    """The JVM is up but its port refuses (seen once in CI after a restart): the call is repeated with a growing
    wait (tenacity), succeeds once the port answers again, and is reported after four refusals."""
    import socket
    import threading
    import time

    from agentgen.envs.sciworld.engine import SciWorldEngineError

    client = engine._gateway._gateway_client
    params, port = client.gateway_parameters, client.gateway_parameters.port
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    idle = list(client.deque)
    client.deque.clear()  # no pooled connection: the next call connects anew
    params.port = closed
    timer = threading.Timer(0.8, setattr, (params, "port", port))
    timer.start()
    t0 = time.monotonic()
    assert isinstance(engine.look(), str)  # answered once the port came back
    assert time.monotonic() - t0 >= 0.8
    timer.join()
    client.deque.clear()
    params.port = closed
    t0 = time.monotonic()
    try:
        with pytest.raises(SciWorldEngineError, match="failed to look around.*still running"):
            engine.look()
        assert time.monotonic() - t0 >= 0.5 + 1.0 + 1.5  # waited between the four attempts
    finally:
        params.port = port
        client.deque.extend(idle)
    assert engine.alive and engine.look()
