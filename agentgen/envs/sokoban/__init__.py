"""Sokoban: own reverse-play generator, optimal solver, coordinate / grid renderings (see env.py).

The names below load on first use, so the registry reads ``plugin.py`` without importing the env."""

from __future__ import annotations

import importlib

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


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
