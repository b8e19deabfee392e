"""Rollouts: generation engines (hf, vllm) and the episode runner that plays them against environments."""


def make_generator(rollout_cfg, model, tokenizer):
    """The generation engine for ``rollout=`` (hf: the policy itself; vllm: a vLLM engine kept in sync)."""
    if rollout_cfg.name == "hf":
        from agentgen.rollout.hf import HFGenerator

        params = rollout_cfg.get("params") or {}
        return HFGenerator(model, tokenizer, batch_size=rollout_cfg.generation_batch_size,
                           generation_timeout=rollout_cfg.get("generation_timeout"),
                           decode=params.get("decode", "loop"), share_prefix=bool(params.get("share_prefix", True)))
    if rollout_cfg.name == "vllm":
        from agentgen.rollout.vllm import VLLMGenerator

        return VLLMGenerator(model, tokenizer, rollout_cfg)
    raise ValueError(f"rollout={rollout_cfg.name!r} is not an engine; valid: hf, vllm")
