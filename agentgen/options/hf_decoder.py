"""``rollout.params`` of rollout=hf: the decoder of agentgen/rollout/hf.py."""

from __future__ import annotations

from dataclasses import dataclass

from agentgen.options._rules import choice

HF_DECODERS = ("loop", "generate")
SEEDS_NEED_LOOP = (
    "rollout.params.decode=generate cannot seed each row's sampling: transformers' generate draws every row of a "
    "batch from one generator, so a row's tokens depend on the rows beside it and paired evaluation (eval.paired, "
    "each episode's draws fixed by the run's seed and the episode) would not hold. Use rollout.params.decode=loop "
    "(the default), or eval.paired=false for unpaired evaluation.")


@dataclass
class HFOptions:
    decode: str = "loop"  # loop: agentgen's KV-cache loop | generate: transformers' generate
    share_prefix: bool = True  # loop: prefill the head all of a batch's prompts share once, not once per row

    def check(self) -> None:
        choice(self.decode, HF_DECODERS, "rollout.params.decode",
               " (loop: agentgen's KV-cache loop, generate: transformers' generate)")
