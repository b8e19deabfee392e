"""Sokoban: own reverse-play generator, optimal solver, coordinate / grid renderings (see env.py).

The names below load on first use, so the registry reads ``plugin.py`` without importing the env."""

from __future__ import annotations

from agentgen.envs.plugin import lazy_exports

_EXPORTS = {
    "ACTIONS": "room",
    "GeneratedPuzzle": "generator",
    "GenerationFailed": "generator",
    "Room": "room",
    "SokobanEnv": "env",
    "SolverBudgetExceeded": "solver",
    "State": "room",
    "apply_move": "room",
    "generate_puzzle": "generator",
    "parse_action": "room",
    "parse_grid": "room",
    "solve": "solver",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
