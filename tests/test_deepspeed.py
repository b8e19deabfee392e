"""DeepSpeed ZeRO through the real library on CPU (gloo): a 2-process GRPO update under ZeRO-2 and ZeRO-3
gives the single-process result, and a checkpoint saved under ZeRO-3 resumes to the same next step.

The workers are this file run by torchrun (``python -m torch.distributed.run ... tests/test_deepspeed.py
--worker ...``); the single-process reference runs the same function in the pytest process.

Tolerance: the first update's metrics (loss, pg_loss, kl, entropy, grad_norm; micro-batches of one state, so
the per-micro-batch means are the same set on 1 and 2 ranks) and the second update's grad norm agree to 1e-5
relative; after both updates (6 optimiser steps at lr 1e-3) the parameters agree to 1e-5 absolute. The only
difference between the paths is the order of float32 sums (gradient reduction across ranks, micro-batch split).
"""

from __future__ import annotations

import inspect
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

METRICS = ("train/loss", "train/pg_loss", "train/kl", "train/entropy", "train/grad_norm")
# a GRPO update that exercises everything the engine must reproduce: two PPO epochs (old log-probs shared
# across ranks), several mini-batches per epoch (several optimiser steps), the KL term to a reference model
# (a second ZeRO-3 engine), and sample counts that do not divide by the world size (padding passes).
LR = 1e-3
COMMON = ["algo=grpo", "algo.kl_coef=0.05", "algo.ppo_epochs=2", "trainer.mini_batch_states=4", f"trainer.lr={LR}",
          "trainer.micro_batch_states=1", "trainer.grad_clip=1.0", "rollout.temperature=1.0"]
STRATEGIES = {
    "single": [],
    "zero2": ["trainer=deepspeed_zero2"],
    "zero3": ["trainer=deepspeed_zero3", "trainer.params.stage3_param_persistence_threshold=0"],
}


def make_samples(vocab: int, n: int, seed: int):
    from agentgen.trainer.batch import Sample

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = [rng.randrange(4, vocab) for _ in range(rng.randint(6, 30))]
        response = [rng.randrange(4, vocab) for _ in range(rng.randint(2, 12))]
        out.append(Sample(prompt, response, advantage=rng.gauss(0.0, 1.0)))
    return out


def run_updates(overrides: list[str], out_dir: Path, check_resume: bool) -> dict | None:
    """Two GRPO updates (7 then 5 samples, micro-batch 1 then 2); optionally save after the first, resume in a
    fresh engine and redo the second; then one update of a fresh policy with a LoRA adapter (rank 4) and its
    merged weights. Rank 0 returns metrics and writes the final weights."""
    from agentgen.models.loader import load_policy
    from agentgen.options import engine_setup, rl_options
    from agentgen.preflight import compose_job
    from agentgen.trainer.engine import make_engine
    from agentgen.trainer.rl_trainer import RLTrainer

    cfg = compose_job(COMMON + overrides)
    if "engine" not in inspect.signature(RLTrainer).parameters:
        raise RuntimeError("RLTrainer takes no engine= argument: the training-engine wiring of "
                           "agentgen/trainer/rl_trainer.py is not applied")

    def trainer_from(path: str | None):
        model, tok, _ = load_policy(cfg.model, path=path)
        ref, _, _ = load_policy(cfg.model)  # the reference is always the initial policy
        engine = make_engine(engine_setup(cfg.trainer, cfg.model.dtype), model)
        return RLTrainer(model, ref, tok, cfg.algo, rl_options(cfg.trainer, cfg.rollout, cfg.seed, None),
                         rollout_fn=None, engine=engine), tok

    trainer, tok = trainer_from(None)
    vocab = len(tok)
    first, second = make_samples(vocab, 7, seed=1), make_samples(vocab, 5, seed=2)
    result = {"m1": trainer.update(first, step=0)}
    ckpt = out_dir / "ckpt"
    if check_resume:
        trainer.engine.save(ckpt, tokenizer=tok)
    cfg.trainer.micro_batch_states = 2  # for the resumed trainer, built from cfg below
    trainer.opts.micro_batch_states = 2  # this trainer's options were built once, from the cfg of then
    result["m2"] = trainer.update(second, step=1)
    final = trainer.engine.full_state_dict()
    trainer.engine.close()
    if check_resume:
        resumed, _ = trainer_from(str(ckpt))
        resumed.engine.load(ckpt)
        result["m2_resumed"] = resumed.update(make_samples(vocab, 5, seed=2), step=1)
        resumed_final = resumed.engine.full_state_dict()
        resumed.engine.close()
        if final is not None:
            torch.save(resumed_final, out_dir / "resumed.pt")
            result["ckpt_files"] = sorted(p.name for p in ckpt.iterdir())
    cfg.trainer.micro_batch_states = 1
    cfg.trainer.params = {**dict(cfg.trainer.params), "lora": {"rank": 4, "alpha": 8}}
    lora, _ = trainer_from(None)
    result["m_lora"] = lora.update(make_samples(vocab, 7, seed=1), step=0)
    lora_final = lora.engine.full_state_dict()
    lora.engine.close()
    if final is not None:
        torch.save(lora_final, out_dir / "lora.pt")
    if final is None:
        return None
    torch.save(final, out_dir / "final.pt")
    (out_dir / "result.json").write_text(json.dumps(result))
    return result


def torchrun(strategy: str, out_dir: Path, check_resume: bool, nproc: int = 2) -> subprocess.CompletedProcess:
    """torchrun --standalone: its rendezvous store binds port 0 and keeps it (a port picked free beforehand can be
    taken by another process before torchrun binds it)."""
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone",
           __file__, "--worker", strategy, str(out_dir)] + (["--resume"] if check_resume else [])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from agentgen.models.loader import model_dir
    from agentgen.preflight import compose_job

    out = tmp_path_factory.mktemp("single")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like the workers (OMP_NUM_THREADS=1): a shared 2-core machine thrashes otherwise
    try:
        result = run_updates(STRATEGIES["single"], out, check_resume=True)
    finally:
        torch.set_num_threads(threads)
    initial = AutoModelForCausalLM.from_pretrained(model_dir(compose_job([]).model))
    return {"result": result, "final": torch.load(out / "final.pt"), "resumed": torch.load(out / "resumed.pt"),
            "lora": torch.load(out / "lora.pt"),
            "initial": {n: p.detach().clone() for n, p in initial.named_parameters()}}


def assert_same_update(got: dict, want: dict, rel: float = 1e-5, keys=METRICS) -> None:
    for key in keys:
        assert got[key] == pytest.approx(want[key], rel=rel, abs=1e-7), (key, got[key], want[key])


def assert_same_weights(got: dict, want: dict, initial: dict, tol: float = 1e-4, elem: float = 0.1 * LR) -> None:
    """Same parameters: the difference is below ``tol`` of the size of the whole update, and no element is off
    by more than ``elem`` (Adam moves an element with a near-zero gradient by about lr whatever that gradient's
    rounding, so a few elements carry the float32 noise of the sums: measured 3e-5 here, 1 in 60000)."""
    assert got.keys() == want.keys()
    diff = sum(float(((got[k].float() - want[k].float()) ** 2).sum()) for k in want) ** 0.5
    update = sum(float(((want[k].float() - initial[k].float()) ** 2).sum()) for k in want) ** 0.5
    worst = max(float((got[k].float() - want[k].float()).abs().max()) for k in want)
    assert update > 1e-3, "the updates did not move the weights: nothing was compared"
    assert diff <= tol * update, f"weights differ by {diff:.3g}, {diff / update:.3g} of the update ({update:.3g})"
    assert worst <= elem, f"largest weight difference {worst:.3g} > {elem}"


def test_single_process_resume_is_exact(single_process):
    result = single_process["result"]
    lora_moved = max(float((single_process["lora"][k] - single_process["initial"][k]).abs().max())
                     for k in single_process["initial"])
    assert lora_moved > 1e-4  # the LoRA update changed the merged weights
    assert_same_update(result["m2_resumed"], result["m2"], rel=1e-6)
    assert_same_weights(single_process["resumed"], single_process["final"], single_process["initial"],
                        tol=1e-6, elem=1e-7)
    assert {"model.safetensors", "optimizer.pt", "engine.json"} <= set(result["ckpt_files"])


@pytest.fixture(scope="module")
def deepspeed_ops():
    """DeepSpeed's CPU communication op compiles (ninja) into ~/.cache/torch_extensions on first use, one to
    four minutes once: build it here, outside the two racing workers and their timeout."""
    from agentgen.trainer.engine import _prepare_deepspeed_import

    _prepare_deepspeed_import()
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is not None:
        builder.load()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["zero2", "zero3"])
def test_two_process_zero_matches_single_process(strategy, single_process, deepspeed_ops, tmp_path):
    want = single_process["result"]
    proc = torchrun(strategy, tmp_path, check_resume=strategy == "zero3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    got = json.loads((tmp_path / "result.json").read_text())
    assert_same_update(got["m1"], want["m1"])
    # micro-batches of 2 split differently over 1 and 2 ranks: per-micro-batch means differ, the gradient not
    assert_same_update(got["m2"], want["m2"], keys=("train/grad_norm",))
    final = torch.load(tmp_path / "final.pt")
    assert_same_weights(final, single_process["final"], single_process["initial"])
    # LoRA: the adapter's update and the merged weights (gathered from the shards under ZeRO-3) agree too
    assert_same_update(got["m_lora"], want["m_lora"])
    assert_same_weights(torch.load(tmp_path / "lora.pt"), single_process["lora"], single_process["initial"])
    if strategy == "zero3":  # saved under ZeRO-3, resumed in a fresh engine: the same next step
        assert {"deepspeed", "model.safetensors", "engine.json"} <= set(got["ckpt_files"])
        assert_same_update(got["m2_resumed"], got["m2"], rel=1e-6)
        assert_same_weights(torch.load(tmp_path / "resumed.pt"), final, single_process["initial"], tol=1e-6, elem=1e-7)


if __name__ == "__main__" and "--worker" in sys.argv:
    args = sys.argv[sys.argv.index("--worker") + 1:]
    from agentgen import dist

    dist.init()
    run_updates(STRATEGIES[args[0]], Path(args[1]), check_resume="--resume" in args)
    dist.destroy()
