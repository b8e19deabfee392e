"""Rollouts: generation engines (hf, vllm) and the episode runner that plays them against environments."""
