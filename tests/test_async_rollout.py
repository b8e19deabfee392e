"""Rollouts ahead of the update (issue 31, ``trainer.max_staleness``; agentgen/rollout/ahead.py): the producer never
generates a batch with weights older than the bound and does run ahead up to it, the trainer refuses a stale or
untagged turn and corrects stale ones with its own (proximal) log-probs, jobs the mode cannot serve are refused in
preflight, ``max_staleness=0`` reproduces main's synchronous run exactly, and real jobs run, stop on SIGTERM and
resume without training on a generation from before their checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from test_trainer_rl import TOKENIZER, SeededEpisodes, make_cfg, tiny_policy, trainer_options

from agentgen.config import ConfigError, validate
from agentgen.episode import Episode, EpisodeSpec, Turn
from agentgen.preflight import compose_job
from agentgen.rollout.ahead import RolloutAhead, Staging, VersionedGenerator, split_threads
from agentgen.trainer.rl_trainer import RLTrainer

ROOT = Path(__file__).resolve().parent.parent
BASE = ["debug=smoke", "eval.envs=[sokoban]", "logger=none"]
ASYNC = ["trainer.max_staleness=1", "algo.tis_cap=2.0"]


def command(out: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(ROOT / "launch.py"), *BASE, *overrides, f"hydra.run.dir={out}"]


def job_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}


def step_rows(out: Path) -> dict[int, dict]:
    """metrics.jsonl's rows by step (a resumed job's replayed step: its last row)."""
    rows: dict[int, dict] = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["step"]] = row
    return rows


# ------------------------------------------------------------------------------------------ preflight
REFUSED = [
    (["algo=tree_grpo"], ["trainer.max_staleness=1", "algo=tree_grpo", "tree search", "grpo, rloo"]),
    (["algo=ppo"], ["trainer.max_staleness=1", "algo=ppo", "critic", "trainer.max_staleness=0"]),
    (["algo.filter_groups=success"], ["trainer.max_staleness=1", "algo.max_sampling_rounds=3"]),
    (["algo.tis_cap=null"], ["trainer.max_staleness=1", "needs algo.tis_cap", "decoupled"]),
    (["trainer.max_staleness=-1"], ["trainer.max_staleness=-1", ">= 0"]),
    (["trainer.max_staleness=0", "trainer.partial_rollouts=true"], ["trainer.partial_rollouts", "max_staleness >= 1"]),
    (["trainer.params.lora.rank=4", "trainer.params.lora.sync=adapter"], ["lora.sync='adapter'", "merged"]),
]


@pytest.mark.parametrize("extra, needles", REFUSED, ids=[" ".join(e) for e, _ in REFUSED])
def test_what_cannot_train_on_stale_batches_is_refused_before_the_job(extra, needles):
    cfg = compose_job([*ASYNC, *extra])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    msg = str(err.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)


@pytest.mark.parametrize("algo", ["grpo", "rloo", "gigpo", "gspo", "reinforce_pp"])
def test_chain_algorithms_accept_stale_batches(algo):
    validate(compose_job([*ASYNC, f"algo={algo}", "trainer.partial_rollouts=true"]))
    validate(compose_job([f"algo={algo}"]))  # the default stays synchronous and needs nothing
    assert compose_job([]).trainer.max_staleness == 0


# ------------------------------------------------------------------------------------------ the producer alone
def _spec(step: int) -> list[EpisodeSpec]:
    return [EpisodeSpec(env="", seed=step, group=0)]


def _tagged(version: int | None, spec: EpisodeSpec) -> Episode:
    return Episode(spec, "task", [Turn([1, 2], [3], "t", "Up", 0.0, "o", True, False, weight_version=version)])


@pytest.mark.parametrize("bound", [1, 2])
def test_the_producer_runs_ahead_up_to_the_bound_and_never_past_it(bound):
    model = torch.nn.Linear(3, 3)
    staging = Staging(model, 0)
    held: list[float] = []  # the weight the producer's engine holds (a parameter's first value)
    generator = VersionedGenerator(object(), lambda src: held.append(float(src.weight[0, 0])), staging,
                                   threading.Event(), partial=False)
    generated: list[tuple[int, int, float]] = []  # (step, version tagged, the weights applied at the time)

    def produce(specs, step, gen, stats):
        generated.append((step, gen.weight_version, held[-1] if held else 0.0))
        stats["rollout/x"] = float(step)
        return [_tagged(gen.weight_version, s) for s in specs]

    ahead = RolloutAhead(produce, _spec, generator, staging, 0, 8, bound).start()
    try:
        for step in range(8):
            episodes, stats = ahead.take(step, _spec(step))
            assert stats["rollout/x"] == step and {"async/trainer_idle_s", "async/rollout_idle_s"} <= set(stats)
            assert step - episodes[0].turns[0].weight_version <= bound
            time.sleep(0.15)  # the update, slow: the producer has every chance to run further ahead
            with torch.no_grad():
                model.weight[0, 0] = step + 1  # version v's weights carry v
            ahead.publish(model, step + 1)
    finally:
        ahead.close()
    assert not ahead.thread.is_alive()
    ages = [step - version for step, version, _ in generated]
    assert max(ages) == bound and all(a >= 0 for a in ages), generated  # ahead by exactly the bound, never more
    # the tag is the weights the engine held: version v's weights were applied before any turn tagged v
    assert all(weights == version for _, version, weights in generated if version), generated


def test_close_stops_a_producer_in_the_middle_of_a_batch():
    staging = Staging(torch.nn.Linear(2, 2), 0)

    class SlowEngine:
        def generate_with_logprobs(self, prompts, *args, **kwargs):
            time.sleep(0.05)
            return [[1]] * len(prompts), [[0.0]] * len(prompts)

    generator = VersionedGenerator(SlowEngine(), lambda src: None, staging, threading.Event(), partial=True)
    calls = []

    def produce(specs, step, gen, stats):  # an episode that would never end
        while True:
            gen.generate_with_logprobs([[1]], 4, 1.0)
            calls.append(step)

    ahead = RolloutAhead(produce, _spec, generator, staging, 0, 4, 1).start()
    while not calls:
        time.sleep(0.01)
    t0 = time.monotonic()
    ahead.close(timeout=10)
    assert not ahead.thread.is_alive() and time.monotonic() - t0 < 2


@pytest.mark.parametrize("partial", [True, False])
def test_partial_rollouts_take_new_weights_at_the_next_turn_otherwise_at_the_next_batch(partial):
    model = torch.nn.Linear(2, 2)
    staging = Staging(model, 0)
    applied: list[int] = []

    class Engine:
        def generate_with_logprobs(self, prompts, *args, **kwargs):
            return [[1]] * len(prompts), [[0.0]] * len(prompts)

    generator = VersionedGenerator(Engine(), lambda src: applied.append(staging.version), staging,
                                   threading.Event(), partial)
    generator.generate_with_logprobs([[1]], 4, 1.0)  # a turn on version 0
    staging.publish(model, 1)  # a push while the episode plays
    generator.generate_with_logprobs([[1]], 4, 1.0)  # its next turn
    assert (generator.weight_version, applied) == ((1, [1]) if partial else (0, []))
    generator.refresh()  # the next batch's start
    assert generator.weight_version == 1 and applied == [1]


def test_a_failing_producer_fails_the_step_that_waits_for_it():
    staging = Staging(torch.nn.Linear(2, 2), 0)
    generator = VersionedGenerator(object(), lambda src: None, staging, threading.Event(), partial=False)

    def produce(specs, step, gen, stats):
        raise ValueError("env worker died")

    ahead = RolloutAhead(produce, _spec, generator, staging, 0, 2, 1).start()
    try:
        with pytest.raises(RuntimeError, match="env worker died"):
            ahead.take(0, _spec(0))
    finally:
        ahead.close()


def test_the_cores_are_split_between_the_two_sides():
    assert split_threads(2) == (1, 1) and split_threads(1) == (1, 1) and split_threads(5) == (3, 2)


# ------------------------------------------------------------------------------------------ the trainer's side
class Versioned(SeededEpisodes):
    """SeededEpisodes whose turns carry weight version ``step - age`` and a sampler log-prob of -100 per token."""

    def __init__(self, age: int | None):
        super().__init__()
        self.age = age

    def __call__(self, specs, step):
        episodes = super().__call__(specs, step)
        for e in episodes:
            for t in e.turns:
                t.weight_version = None if self.age is None else step - self.age
                t.sampler_logprobs = [-100.0] * len(t.response_ids)
        return episodes


def stale_trainer(age: int | None, bound: int = 1, **algo) -> RLTrainer:
    cfg = make_cfg("grpo", tis_cap=2.0, **algo)
    cfg.trainer.max_staleness = bound
    return RLTrainer(tiny_policy(), None, TOKENIZER, cfg.algo, trainer_options(cfg), Versioned(age))


def test_the_trainer_refuses_turns_past_the_bound_or_without_a_version():
    metrics = stale_trainer(age=1).step(3)
    assert metrics["async/staleness_max"] == 1.0 and metrics["async/weight_version_min"] == 2.0
    assert stale_trainer(age=2, bound=2).step(3)["async/staleness_mean"] == 2.0
    with pytest.raises(RuntimeError, match="past trainer.max_staleness=1"):
        stale_trainer(age=2).step(3)
    with pytest.raises(RuntimeError, match="no weight version"):
        stale_trainer(age=None).step(3)


def test_stale_turns_are_weighted_by_proximal_over_behaviour_around_the_trainers_own_logprobs():
    """Two epochs (an off-policy update): the clip is around the trainer's recomputed log-probs (the first
    mini-batch's ratio is exactly 1), never the sampler's, which a stale turn's are not; the importance weight
    pi_proximal / pi_behaviour is capped at algo.tis_cap (the sampler said -100: every token at the cap)."""
    trainer = stale_trainer(age=1, ppo_epochs=2)
    assert not trainer.sampler_exact
    metrics = trainer.step(1)
    assert metrics["train/tis_weight_mean"] == pytest.approx(2.0) and metrics["train/tis_capped_frac"] == 1.0
    assert metrics["train/ratio_max"] < 2.0  # around -100 instead, the ratio would be astronomic
    cfg = make_cfg("grpo", tis_cap=2.0)
    with pytest.raises(ConfigError, match="algo.tis_cap"):
        cfg.algo.tis_cap = None
        cfg.trainer.max_staleness = 1
        RLTrainer(tiny_policy(), None, TOKENIZER, cfg.algo, trainer_options(cfg), Versioned(1))


# ------------------------------------------------------------------------------------------ real jobs
@pytest.mark.slow
def test_max_staleness_0_reproduces_mains_synchronous_run_exactly(tmp_path):
    """Issue 31's "0 = today's synchronous loop, exactly". The reference is a recording (tests/data/
    sync_smoke_reference.json, its "about" gives the command and commit); a change that is meant to change what the
    smoke job samples or trains (a sampler fix, a new default) must record it again from the synchronous loop."""
    ref = json.loads((ROOT / "tests" / "data" / "sync_smoke_reference.json").read_text())
    out = tmp_path / "run"
    r = subprocess.run(command(out, "trainer.steps=3", "trainer.max_staleness=0"), cwd=tmp_path,
                       env={**job_env(), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = step_rows(out)
    for step, expected in ref["metrics"].items():
        seen = rows[int(step)]
        assert not [k for k in seen if k.startswith("async/")]  # the synchronous loop, untouched
        for key, value in expected.items():
            assert seen[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (step, key)
    assert json.loads((out / "summary.json").read_text())["eval"] == ref["eval"]
    assert "rollouts ahead" not in (out / "launch.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("bound, partial", [(1, False), (2, True)])
def test_a_job_ahead_of_the_update_keeps_the_bound_and_logs_each_sides_idle_time(tmp_path, bound, partial):
    out = tmp_path / "run"
    r = subprocess.run(command(out, "trainer.steps=5", "eval.every=0", "algo.tis_cap=2.0",
                               f"trainer.max_staleness={bound}", f"trainer.partial_rollouts={str(partial).lower()}"),
                       cwd=tmp_path, env=job_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = step_rows(out)
    assert sorted(rows) == [1, 2, 3, 4, 5]
    for done, row in rows.items():
        step = done - 1
        assert 0 <= row["async/staleness_max"] <= bound and row["async/weight_version_min"] >= step - bound
        assert row["async/staleness_mean"] <= row["async/staleness_max"]
        assert row["async/trainer_idle_s"] >= 0 and row["async/rollout_idle_s"] >= 0
    assert rows[1]["async/staleness_max"] == 0  # the first batch: the stage's starting weights
    assert max(row["async/staleness_max"] for row in rows.values()) >= 1  # it did overlap
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_sigterm_stops_both_sides_and_the_rerun_trains_on_no_turn_from_before_its_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = command(out, "trainer.steps=4", "trainer.save_every=2", "eval.every=0", "trainer.prompts_per_step=4",
                  "algo.group_size=4", *ASYNC)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=job_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    latest = out / "checkpoints" / "latest"
    t0 = time.monotonic()
    # step_2 written: the producer is generating step 3's batch (or 4's) while the trainer works
    while not (latest.exists() and latest.read_text() == "step_2"):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() - t0 < 600, "no step_2 checkpoint"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)  # both sides stop: a producer left running would hold no exit, but
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]  # a hung one would show in the log below
    log = (out / "launch.log").read_text()
    assert "did not stop" not in log and "producer failed" not in log
    assert max(step_rows(out)) < 4
    resumed = int(latest.read_text().split("_")[1])  # the checkpoint the rerun starts from

    r = subprocess.run(cmd, cwd=tmp_path, env=job_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = step_rows(out)
    assert sorted(rows) == [1, 2, 3, 4]
    # its first step trains on a batch of the checkpoint's weights, whatever was in flight when it stopped
    assert rows[resumed + 1]["async/weight_version_min"] == resumed
    assert rows[resumed + 1]["async/staleness_max"] == 0
    assert all(rows[d]["async/staleness_max"] <= 1 for d in rows)
