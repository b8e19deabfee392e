"""SciWorldEnv: instance selection and splits (no JVM), then the rules on the real engine (jvm)."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from conftest import require
from omegaconf import OmegaConf

from agentgen.envs import make
from agentgen.envs.sciworld import SciWorldEnv
from agentgen.envs.sciworld.engine import SciWorldEngineError
from agentgen.envs.sciworld.tasks import (
    TASKS,
    InstanceSampler,
    resolve_simplifications,
    resolve_tasks,
    simplification_string,
    task_info,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def java_children() -> list[psutil.Process]:
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "java" in p.name() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


# ---------------------------------------------------------------------- no JVM
def test_task_table_totals_match_the_engine_split_sizes():
    assert len(TASKS) == 30
    assert sum(len(t.variations("train")) for t in TASKS) == 3592
    assert sum(len(t.variations("dev")) for t in TASKS) == 1796
    assert sum(len(t.variations("test")) for t in TASKS) == 1819


def test_task_references_by_name_id_and_index():
    assert [t.name for t in resolve_tasks(["boil", "1-2", 2, "3"])] == [
        "boil",
        "melt",
        "freeze",
        "change-the-state-of-matter-of",
    ]
    assert len(resolve_tasks(None)) == 30
    with pytest.raises(ValueError, match="unknown ScienceWorld task 'bake'.*boil"):
        resolve_tasks(["bake"])
    with pytest.raises(ValueError, match="more than once"):
        resolve_tasks(["boil", "1-1"])
    with pytest.raises(ValueError, match="unknown ScienceWorld task 30"):
        resolve_tasks([30])


def test_simplifications_easy_and_electrical_tasks():
    easy = resolve_simplifications("easy")
    assert set(easy) == {"teleportAction", "selfWateringFlowerPots", "openDoors", "noElectricalAction"}
    assert resolve_simplifications(["openDoors", "openContainers"]) == ("openDoors", "openContainers")
    with pytest.raises(ValueError, match="unknown ScienceWorld simplification 'fast'"):
        resolve_simplifications("easy,fast")
    # like the engine's own "easy", wiring tasks keep their connect actions
    assert "noElectricalAction" in simplification_string(task_info("boil"), easy)
    assert "noElectricalAction" not in simplification_string(task_info("power-component"), easy)


@pytest.mark.parametrize("sampling", ["task_balanced", "uniform"])
def test_sampler_is_deterministic_and_covers_the_split(sampling):
    a = InstanceSampler(TASKS, "train", sampling)
    b = InstanceSampler(TASKS, "train", sampling)
    assert [a.instance(s) for s in range(500)] == [b.instance(s) for s in range(500)]
    assert len(a) == 3592
    every = {a.instance(s) for s in range(len(a) * 2)}
    assert len({(i.task, i.variation) for i in a.instances()}) == 3592
    if sampling == "uniform":  # a bijection on [0, len)
        assert len({a.instance(s) for s in range(len(a))}) == len(a)
    assert every <= set(a.instances())
    for inst in [a.instance(s) for s in (0, 7, 123, 999)]:
        assert a.instance(a.seed_of(inst.task, inst.variation)) == inst


def test_task_balanced_sampling_gives_each_task_the_same_share():
    sampler = InstanceSampler(TASKS, "train", "task_balanced")
    counts: dict[str, int] = {}
    for s in range(300):
        counts[sampler.instance(s).task] = counts.get(sampler.instance(s).task, 0) + 1
    assert set(counts.values()) == {10}
    # the 10 seeds of the largest task reach 10 different variations
    assert len({sampler.instance(s).variation for s in range(26, 300, 30)}) == 10


@pytest.mark.parametrize("sampling", ["task_balanced", "uniform"])
def test_train_and_test_never_share_instances(sampling):
    train = SciWorldEnv("train", sampling=sampling)
    test = SciWorldEnv("test", sampling=sampling)
    dev_test = SciWorldEnv("test", sampling=sampling, variation_split={"test": "dev"})
    tr = set(train.sampler.instances())
    assert len(tr) == 3592
    assert not tr & set(test.sampler.instances())
    assert not tr & set(dev_test.sampler.instances())
    assert not tr & {test.instance_for_seed(s) for s in range(2000)}
    with pytest.raises(ValueError, match="never share instances"):
        SciWorldEnv("test", variation_split={"train": "test", "test": "test"})
    with pytest.raises(ValueError, match="variation 0 of 'boil' is not in the 'test' variations"):
        test.seed_for_instance("boil", 0)


def test_constructor_rejects_bad_values_with_the_valid_ones():
    with pytest.raises(ValueError, match="sampling must be one of"):
        SciWorldEnv(sampling="random")
    with pytest.raises(ValueError, match="engine's splits"):
        SciWorldEnv(variation_split={"test": "validation"})
    with pytest.raises(ValueError, match="split must be one of"):
        SciWorldEnv("dev")


def test_config_file_builds_the_env_without_starting_java():
    path = os.path.join(ROOT, "conf", "env", "sciworld.yaml")
    with open(path) as fh:
        assert fh.readline().strip() == "# @package env.sciworld"
    cfg = OmegaConf.load(path)
    assert (cfg.max_steps, cfg.max_prompt_tokens, cfg.max_response_tokens) == (50, 2048, 1024)
    env = make("sciworld", "train", max_steps=cfg.max_steps, reward=cfg.reward, **cfg.params)
    assert env.max_steps == 50 and env.num_instances == 3592 and env.jvm_pid is None
    text = env.instruction()
    assert "focus on OBJ" in text and "teleport to LOC" in text and "reset task" not in text
    assert env.admissible_actions() is None
    no_teleport = SciWorldEnv(simplifications=["openDoors"], tasks=["boil"])
    assert "teleport" not in no_teleport.instruction()


# ---------------------------------------------------------------------- real engine
@pytest.fixture(scope="module")
def env():
    require("java")
    e = SciWorldEnv(
        "train",
        max_steps=50,
        tasks=[
            "boil",
            "find-non-living-thing",
            "inclined-plane-friction-unnamed-surfaces",
            "chemistry-mix-paint-secondary-color",
        ],
        jvm_heap="640m",
    )
    yield e
    pid = e.jvm_pid
    e.close()
    if pid is not None:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.jvm
def test_reset_is_deterministic_and_shows_task_and_objects(env):
    seed = env.seed_for_instance("boil", 3)
    obs, info = env.reset(seed)
    assert info["task_name"] == "boil" and info["variation"] == 3 and info["score"] == 0
    assert info["task"].startswith("Your task is to boil")
    assert "you see" in obs and "\nObjects you can refer to: " in obs
    assert info["admissible_actions"] is None
    obs2, info2 = env.reset(seed)
    assert (obs2, info2["task"]) == (obs, info["task"])
    cmdline = psutil.Process(env.jvm_pid).cmdline()
    assert "-Xmx640m" in cmdline and "-XX:hashCode=2" in cmdline
    assert "go to LOC" in env.instruction() and "connect OBJ" not in env.instruction()


@pytest.mark.jvm
def test_same_actions_replay_the_same_game(env):
    """Without fixed identity hashes this task lists its paint cups in a different order on most loads."""
    seed = env.seed_for_instance("chemistry-mix-paint-secondary-color", 0)
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed)
        trace = [obs]
        while not env.done:
            obs, reward, _, info = env.step(env.expert_action())
            trace.append((obs, reward, info["score"]))
        runs.append((env.gold_actions(), trace))
    assert runs[0] == runs[1]
    assert runs[0][1][-1][2] == 100


@pytest.mark.jvm
def test_invalid_actions_cost_the_penalty_and_change_nothing(env):
    env.reset(env.seed_for_instance("boil", 0))
    gold = env.gold_actions()
    assert gold[0] == "open door to kitchen"
    for bad in ["dance wildly", "", "x" * 400, "reset task"]:
        obs, reward, done, info = env.step(bad)
        assert info["invalid_action"] and reward == pytest.approx(-0.1) and not done, bad
        assert "Objects you can refer to" in obs
    assert env.expert_action() == gold[0]  # invalid actions do not move the plan
    assert "(4 off-plan actions so far): step 1 of" in env.expert_thought()
    obs, reward, done, info = env.step("  open   door to\nkitchen ")  # normalized whitespace parses
    assert not info["invalid_action"] and reward == 0.0 and info["score"] == 0
    assert env.expert_action() == gold[1]


@pytest.mark.jvm
def test_ambiguity_is_answered_with_a_number(env):
    env.reset(env.seed_for_instance("boil", 0))
    env.step("teleport to kitchen")
    obs, _, _, info = env.step("pick up substance")
    assert obs.startswith("Ambiguous request") and not info["invalid_action"]
    obs, _, _, info = env.step("look around")  # not a number: rejected, the question is dropped
    assert info["invalid_action"]
    obs, _, _, _ = env.step("pick up substance")
    option = next(line.split(":")[0] for line in obs.splitlines() if "soap" in line)
    obs, _, _, info = env.step(option)
    assert "soap" in obs and not info["invalid_action"]


@pytest.mark.jvm
def test_wrong_focus_ends_the_episode_as_failure(env):
    env.reset(env.seed_for_instance("boil", 0))
    obs, reward, done, info = env.step("focus on picture")
    assert done and not info["success"] and not info["truncated"] and reward == 0.0
    assert info["score"] == -100 and "failed" in obs
    with pytest.raises(RuntimeError, match="finished episode"):
        env.step("look around")


@pytest.mark.jvm
def test_expert_solves_and_success_pays_once(env):
    env.reset(env.seed_for_instance("find-non-living-thing", 0))
    assert env.expert_thought().startswith("Following the gold plan: step 1 of")
    total, steps = 0.0, 0
    while not env.done:
        _, reward, _, info = env.step(env.expert_action())
        total += reward
        steps += 1
    assert info["success"] and info["score"] == 100 and total == 10.0
    assert steps <= len(env.gold_actions()) and env.expert_action() is None


@pytest.mark.jvm
def test_our_step_limit_governs(env):
    """This gold path needs 177 steps: the episode is truncated at our 50, not earlier by the engine."""
    env.reset(env.seed_for_instance("inclined-plane-friction-unnamed-surfaces", 0))
    assert len(env.gold_actions()) > 100
    steps = 0
    while not env.done:
        _, reward, _, info = env.step(env.expert_action())
        steps += 1
    assert steps == 50 and info["truncated"] and not info["success"] and reward == 0.0
    assert 0 < info["score"] < 100


@pytest.mark.jvm
def test_a_killed_jvm_is_an_error_and_reset_restarts_it(env):
    env.reset(env.seed_for_instance("find-non-living-thing", 0))
    old = env.jvm_pid
    os.kill(old, signal.SIGKILL)
    psutil.Process(old).wait(timeout=10)
    with pytest.raises(SciWorldEngineError, match="JVM"):
        env.step("look around")
    obs, _ = env.reset(env.seed_for_instance("find-non-living-thing", 0))
    assert env.jvm_pid not in (None, old) and "you see" in obs


@pytest.mark.jvm
def test_no_java_process_outlives_close_gc_or_a_killed_parent():
    require("java")
    before = {p.pid for p in java_children()}
    e = SciWorldEnv(tasks=["find-plant"], gold_path=False)
    e.reset(0)
    pid = e.jvm_pid
    e.close()
    e.close()  # idempotent
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    e = SciWorldEnv(tasks=["find-plant"], gold_path=False)
    e.reset(0)
    pid = e.jvm_pid
    del e
    gc.collect()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    # a Python process killed with SIGKILL takes its JVM along (die-on-broken-pipe)
    script = textwrap.dedent(
        """
        import sys, time
        from agentgen.envs.sciworld import SciWorldEnv
        e = SciWorldEnv(tasks=["find-plant"], gold_path=False)
        e.reset(0)
        print(e.jvm_pid, flush=True)
        time.sleep(120)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        jvm = int(child.stdout.readline())
        assert psutil.pid_exists(jvm)
    finally:
        child.kill()
        child.wait()
    deadline = time.time() + 15
    while (
        psutil.pid_exists(jvm)
        and psutil.Process(jvm).status() != psutil.STATUS_ZOMBIE
        and time.time() < deadline
    ):
        time.sleep(0.2)
    assert not psutil.pid_exists(jvm) or psutil.Process(jvm).status() == psutil.STATUS_ZOMBIE
    assert {p.pid for p in java_children()} <= before
