"""Rollouts: generation engines (hf, vllm) and the episode runner that plays them against environments."""

from agentgen.options import hf_options


def make_generator(rollout_cfg, model, tokenizer):
    """The generation engine for ``rollout=`` (hf: the policy itself; vllm: a vLLM engine kept in sync)."""
    if rollout_cfg.name == "hf":
        from agentgen.rollout.hf import HFGenerator

        params = hf_options(rollout_cfg.get("params"))
        return HFGenerator(model, tokenizer, batch_size=rollout_cfg.generation_batch_size,
                           generation_timeout=rollout_cfg.get("generation_timeout"),
                           decode=params.decode, share_prefix=params.share_prefix)
    if rollout_cfg.name == "vllm":
        from agentgen.rollout.vllm import VLLMGenerator

        return VLLMGenerator(model, tokenizer, rollout_cfg)
    raise ValueError(f"rollout={rollout_cfg.name!r} is not an engine; valid: hf, vllm")
