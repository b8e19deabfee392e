"""Policy models: presets in conf/model/*.yaml, loaded by ``load_policy``."""

from agentgen.models.loader import cache_root, load_policy

__all__ = ["load_policy", "cache_root"]
