"""The ALFWorld text engine: TextWorld's PDDL environment with alfworld's own wrappers.

``AlfredDemangler`` turns PDDL ids into the names players see ("apple 1"), ``AlfredInfos`` records the
game file. We request what one turn needs and nothing that re-plans each step: admissible commands,
``won``, and the facts (the handcoded expert reads who holds what). ``policy_commands`` would run the
planner after every step (tens of seconds in large kitchens), so the expert's fallback plans only
when asked (``replan``).
"""

from __future__ import annotations

import textworld
from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
from textworld.envs import PddlEnv

REQUEST = {"won": True, "admissible_commands": True, "facts": True, "extras": ["gamefile"]}


def open_engine(facts: bool = True) -> textworld.core.Wrapper:
    """A fresh engine (each holds its own copy of fast-downward's library, so several engines in
    one process do not interfere). Call ``load(game_file)`` then ``reset()``."""
    from agentgen.envs.alfworld import speedups

    speedups.install()
    infos = textworld.EnvInfos(**{**REQUEST, "facts": facts})
    return AlfredInfos(AlfredDemangler(PddlEnv(infos), shuffle=False))


def replan(engine: textworld.core.Wrapper) -> list[str]:
    """Commands of a plan from the engine's current state to the goal (fast-downward); [] if none."""
    pddl_env = engine.unwrapped
    return list(pddl_env._pddl_state.replan(pddl_env._entity_infos))


def close_engine(engine: textworld.core.Wrapper | None) -> None:
    """Free the game held by the engine's copy of the planner library. The library itself stays
    loaded: unloading several copies (fast_downward.close_lib) crashes the process at exit."""
    if engine is None:
        return
    pddl_env = engine.unwrapped
    lib = getattr(pddl_env, "downward_lib", None)
    if lib is not None:
        lib.cleanup()
        pddl_env.downward_lib = None
    for name in ("_pddl_state", "_game_data", "state", "prev_state"):
        if hasattr(pddl_env, name):
            setattr(pddl_env, name, None)
