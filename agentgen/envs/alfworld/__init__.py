"""ALFWorld (text household tasks) on its real TextWorld engine, with an offline game generator.

``AlfWorldEnv`` plays the released games when ``$ALFWORLD_DATA/json_2.1.1`` is present, and otherwise
games generated from the room layouts alfworld ships (``generate.py``), cached on first use.
"""

from __future__ import annotations

__all__ = ["AlfWorldEnv"]


def __getattr__(name):  # lazy, so the generator CLI and helpers do not load the env module
    if name == "AlfWorldEnv":
        from agentgen.envs.alfworld.env import AlfWorldEnv

        return AlfWorldEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
