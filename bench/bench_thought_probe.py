"""What a Sokoban checkpoint reads and decides, clause by clause: held-out states along the stepwise expert's
paths, the checkpoint's greedy answer against the expert's thought (``thought=steps``).

    python bench/bench_thought_probe.py <job dir or checkpoint dir> [--states 300]

Prints the share of states where the model's thought gets each clause right (where I am, the box and where it
must go, the next push and its cell, the walk), the share whose action is the expert's, and the share whose
action is optimal (any move that keeps the shortest solution; the expert takes the first in a fixed order).
Perception (the first clause) is what RL broke before: a healthy checkpoint keeps it right in >= 97%.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLAUSES = ("position", "goal", "push", "walk")
_SPLIT = re.compile(r"^(I am at \([^)]*\)\.) (Box .*?\.) (Push \w+ from \([^)]*\)): (.*)\.$")


def clauses(thought: str | None) -> dict[str, str] | None:
    m = _SPLIT.match((thought or "").strip())
    return dict(zip(CLAUSES, m.groups())) if m else None


def checkpoint_path(path: Path) -> Path:
    """A checkpoint dir (config.json inside) or a job dir: its newest checkpoint."""
    if (path / "config.json").exists():
        return path
    found = sorted((path / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    if not found:
        raise SystemExit(f"no checkpoint in {path}")
    return found[-1] / "policy" if (found[-1] / "policy" / "config.json").exists() else found[-1]


def probe(model, tokenizer, states: int = 300, seed0: int = 0, batch: int = 64) -> dict[str, float]:
    """Clause accuracies of ``model`` over ``states`` held-out states (greedy)."""
    from agentgen.agent.parser import parse_response
    from agentgen.agent.prompt import PromptBuilder
    from agentgen.envs import make
    from agentgen.rollout.hf import HFGenerator

    env = make("sokoban", split="test", max_steps=15, render="grid", instruction="short", thought="steps")
    prompts = PromptBuilder(think=True, history_k=0, compact=True)
    items = []  # (prompt ids, expert thought, expert action, optimal actions)
    seed = seed0
    while len(items) < states:
        obs, info = env.reset(seed)
        seed += 1
        done = False
        while not done and len(items) < states:
            thought, action, optimal = env.expert_thought(), env.expert_action(), env.optimal_actions()
            user = prompts.user_message(env.instruction(), info["task"], [], obs, info.get("admissible_actions"))
            ids = tokenizer.apply_chat_template(prompts.messages(user), add_generation_prompt=True, tokenize=True,
                                                return_dict=False)
            items.append((list(ids), thought, action, optimal))
            obs, _, done, info = env.step(action)
    gen = HFGenerator(model, tokenizer, batch_size=batch)
    right = dict.fromkeys((*CLAUSES, "parsed", "action", "optimal"), 0)
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        outs = gen.generate([c[0] for c in chunk], 128, temperature=0.0)
        for (_, thought, action, optimal), out in zip(chunk, outs):
            text = tokenizer.decode(out or [], skip_special_tokens=True)
            parsed = parse_response(text, True)
            got, want = clauses(parsed.thought), clauses(thought)
            right["action"] += parsed.action == action
            right["optimal"] += parsed.action in optimal
            if got and want:
                right["parsed"] += 1
                for k in CLAUSES:
                    right[k] += got[k] == want[k]
    return {k: v / len(items) for k, v in right.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", type=Path, help="a job dir (its newest checkpoint) or a checkpoint dir")
    ap.add_argument("--states", type=int, default=300)
    args = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM

    from agentgen.models.loader import load_tokenizer

    torch.set_num_threads(2)
    src = checkpoint_path(args.path)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    res = probe(model, load_tokenizer(str(src)), args.states)
    print(f"{src}: {args.states} held-out states along the expert's paths, greedy")
    for k, v in res.items():
        print(f"  {k:9s} {v:.3f}")


if __name__ == "__main__":
    main()
