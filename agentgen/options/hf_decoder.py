"""``rollout.params`` of rollout=hf: the decoder of agentgen/rollout/hf.py."""

from __future__ import annotations

from dataclasses import dataclass

from agentgen.options._rules import choice

HF_DECODERS = ("loop", "generate")


@dataclass
class HFOptions:
    decode: str = "loop"  # loop: agentgen's KV-cache loop | generate: transformers' generate
    share_prefix: bool = True  # loop: prefill the head all of a batch's prompts share once, not once per row

    def check(self) -> None:
        choice(self.decode, HF_DECODERS, "rollout.params.decode",
               " (loop: agentgen's KV-cache loop, generate: transformers' generate)")
