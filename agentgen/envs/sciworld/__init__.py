"""ScienceWorld on its real JVM engine (scienceworld 1.2.3), stepped without the per-step valid-action scan.

- ``env.SciWorldEnv``: the TextEnv (rules, rewards, expert);
- ``engine.SciWorldEngine``: one JVM driven through py4j (heap cap, fast stepping, clean shutdown);
- ``tasks``: the 30 tasks, their variation splits and the seed -> (task, variation) map;
- ``prompt``: the instruction, action templates and the objects line the agent reads.
"""

from agentgen.envs.sciworld.env import SciWorldEnv

__all__ = ["SciWorldEnv"]
