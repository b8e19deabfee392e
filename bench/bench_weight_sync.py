"""Wall time of one weight sync into the vLLM rollout engine (``VLLMGenerator.sync_weights``: every
parameter of the policy pushed into the engine's model, vLLM's layer-wise reload, prefix cache reset), for
model=tiny and model=smollm2_135m on CPU, with both transports:

- file: buckets written to shared memory (/dev/shm) and read by the engine's worker process (the default
  with one trainer process: vLLM's engine runs in its own process);
- in_process: the engine runs in the trainer's process and takes the tensors by reference (what every
  rank does under torchrun, where vLLM's external_launcher runs the engine in each rank).

Each figure is the median of ``--repeats`` syncs after a real optimiser step changed the weights; the
script checks after the last one that greedy vLLM output equals the HF policy's.

    .venv/bin/python bench/bench_weight_sync.py [--models tiny,smollm2_135m] [--transports file,in_process]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
from omegaconf import OmegaConf


def one(model_name: str, transport: str, repeats: int) -> None:
    from agentgen.models.loader import load_policy
    from agentgen.options import engine_setup
    from agentgen.preflight import compose_job
    from agentgen.rollout.hf import HFGenerator
    from agentgen.rollout.vllm import VLLMGenerator
    from agentgen.trainer.batch import Sample, collate, response_logits, token_logprobs
    from agentgen.trainer.engine import make_engine

    cfg = compose_job([f"model={model_name}", "trainer.lr=1e-3"])
    model, tok, _ = load_policy(cfg.model)
    size_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    params = {"kv_cache_memory_gb": 0.5, "max_model_len": 2048, "in_process": transport == "in_process"}
    gen = VLLMGenerator(model, tok, OmegaConf.create({"name": "vllm", "params": params}))
    engine = make_engine(engine_setup(cfg.trainer, cfg.model.dtype), model)
    gen.attach(engine)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Push the box onto the goal."}],
                                     add_generation_prompt=True, tokenize=True, return_dict=False)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    sample = Sample(prompt, tok.encode("<action>Up</action>", add_special_tokens=False))
    times = []
    try:
        for _ in range(repeats):
            tb = collate([sample], tok.pad_token_id)
            engine.backward(-(token_logprobs(response_logits(engine.model, tb), tb) * tb.response_mask).mean())
            engine.step()
            t0 = time.perf_counter()
            gen.sync_weights()
            times.append(time.perf_counter() - t0)
        same = gen.generate([prompt], 16, 0.0) == HFGenerator(model, tok).generate([prompt], 16, 0.0)
        print(f"   model={model_name:13s} transport={transport:10s}: {size_mb:7.1f} MB of weights, one sync "
              f"{statistics.median(times):6.3f} s (median of {repeats}; min {min(times):.3f} s) = "
              f"{size_mb / statistics.median(times):7.0f} MB/s; greedy output after sync equals HF: {same}",
              flush=True)
    finally:
        gen.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,smollm2_135m")
    ap.add_argument("--transports", default="file,in_process")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "TRANSPORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(args.one[0], args.one[1], args.repeats)
        return
    print(f"CPU threads: torch {torch.get_num_threads()}, machine {os.cpu_count()}; load average "
          f"{os.getloadavg()[0]:.1f} (other work on the machine slows every figure)", flush=True)
    for model_name in args.models.split(","):
        for transport in args.transports.split(","):
            # a fresh process per engine: an in-process vLLM engine changes process-wide torch settings
            subprocess.run([sys.executable, __file__, "--one", model_name, transport, "--repeats",
                            str(args.repeats)], check=True)


if __name__ == "__main__":
    main()
