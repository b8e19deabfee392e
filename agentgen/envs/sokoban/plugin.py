"""Sokoban's declaration to the env registry (read without importing the env)."""

from agentgen.envs.plugin import EnvPlugin, validate_by_building

PLUGIN = EnvPlugin(
    name="sokoban",
    title="Sokoban",
    env="agentgen.envs.sokoban.env:SokobanEnv",
    augmenter="agentgen.envs.sokoban.augment:SokobanAugmenter",
    validate_params=validate_by_building("agentgen.envs.sokoban.env:SokobanEnv"),  # cheap: the constructor checks
    eval_by_default=True,
    order=0,
)
