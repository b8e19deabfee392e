"""ScienceWorld's declaration to the env registry (read without importing the env or starting a JVM)."""

from agentgen.envs.plugin import EnvPlugin, validate_by_building

PLUGIN = EnvPlugin(
    name="sciworld",
    title="SciWorld",
    env="agentgen.envs.sciworld.env:SciWorldEnv",
    augmenter="agentgen.envs.sciworld.augment:SciWorldAugmenter",
    # cheap to build (the JVM starts on the first reset): the constructor checks every parameter
    validate_params=validate_by_building("agentgen.envs.sciworld.env:SciWorldEnv"),
    eval_by_default=True,
    order=2,
)
