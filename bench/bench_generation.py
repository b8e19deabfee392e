"""rollout=hf's decoders side by side on the same prompts: transformers' ``generate`` against agentgen's own loop
(``rollout.params.decode``), with and without the shared prompt head.

    python bench/bench_generation.py --init-from <job dir>            # that job's model and its SFT prompts
    python bench/bench_generation.py --init-from <job dir> --batch 32 --reps 9 --temperature 1.0

The prompts are real: the user messages of the job's expert data (``<job>/sft_data/*.jsonl``: the states an RL
rollout starts from), rendered through the model's chat template, in batches of ``--batch`` as one RL turn
generates them. Every decoder runs every batch with the same seed, interleaved rep by rep (a slow moment of the
machine hits all of them), and the figures are medians over the reps: milliseconds per batch, generated tokens
per second, and the ratio against ``generate``. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentgen.models.loader import load_tokenizer  # noqa: E402
from agentgen.rollout.hf import HFGenerator, shared_prefix_length  # noqa: E402
from agentgen.trainer import checkpoint as ckpt  # noqa: E402

DECODERS = [("generate", {"decode": "generate"}), ("loop, no shared head", {"decode": "loop", "share_prefix": False}),
            ("loop", {"decode": "loop"})]


def job_prompts(job: Path, tokenizer, n: int, seed: int) -> list[list[int]]:
    """``n`` user messages of the job's expert data, shuffled, as chat-templated token ids."""
    records = [json.loads(line) for f in sorted((job / "sft_data").glob("*.jsonl")) for line in f.open()]
    if not records:
        raise SystemExit(f"{job}/sft_data holds no expert records: give a job that ran SFT (--init-from)")
    random.Random(seed).shuffle(records)
    out = []
    for r in records[:n]:
        user = [m for m in r["messages"] if m["role"] != "assistant"][:2]
        ids = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=False)
        out.append(list(ids["input_ids"] if hasattr(ids, "input_ids") else ids))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--init-from", required=True, help="a job dir (its latest checkpoint and sft_data/)")
    ap.add_argument("--batch", type=int, default=32, help="prompts per batch (the default run's 4 x 8 episodes)")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=1.0)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM

    job = Path(args.init_from)
    path = ckpt.resolve(job)
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    prompts = job_prompts(job, tokenizer, args.batch * args.batches, seed=0)
    batches = [prompts[i:i + args.batch] for i in range(0, len(prompts), args.batch)]
    print(f"model {path} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters), torch threads "
          f"{torch.get_num_threads()}; {len(batches)} batches of {args.batch} prompts, median "
          f"{statistics.median(map(len, prompts)):.0f} tokens, shared head median "
          f"{statistics.median(shared_prefix_length(b) for b in batches):.0f} tokens; temperature "
          f"{args.temperature}, at most {args.max_new_tokens} new tokens; {args.reps} reps")
    seconds = {label: [] for label, _ in DECODERS}
    tokens = {label: [] for label, _ in DECODERS}
    generators = {label: HFGenerator(model, tokenizer, batch_size=args.batch, **kw) for label, kw in DECODERS}
    for gen in generators.values():  # warm-up: allocator, first-call paths
        gen.generate(batches[0][:4], 8, args.temperature)
    for rep in range(args.reps):
        for label, gen in generators.items():
            total, made = 0.0, 0
            for b, batch in enumerate(batches):
                torch.manual_seed(1000 * rep + b)
                t0 = time.perf_counter()
                out = gen.generate(batch, args.max_new_tokens, args.temperature)
                total += time.perf_counter() - t0
                made += sum(len(r) for r in out)
            seconds[label].append(total / len(batches))
            tokens[label].append(made / len(batches))
    base = statistics.median(seconds[DECODERS[0][0]])
    print(f"\n{'decoder':<22} {'ms/batch':>9} {'min':>7} {'max':>7} {'tokens':>7} {'tokens/s':>9} {'speed-up':>9}")
    for label, _ in DECODERS:
        med = statistics.median(seconds[label])
        tok = statistics.median(tokens[label])
        print(f"{label:<22} {1000 * med:9.1f} {1000 * min(seconds[label]):7.1f} {1000 * max(seconds[label]):7.1f} "
              f"{tok:7.0f} {tok / med:9.0f} {base / med:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
