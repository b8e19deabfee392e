"""Sokoban: own reverse-play generator, optimal solver, coordinate / grid renderings (see env.py)."""

from agentgen.envs.sokoban.env import SokobanEnv
from agentgen.envs.sokoban.generator import GeneratedPuzzle, GenerationFailed, generate_puzzle
from agentgen.envs.sokoban.room import ACTIONS, Room, State, apply_move, parse_action, parse_grid
from agentgen.envs.sokoban.solver import SolverBudgetExceeded, solve

__all__ = [
    "ACTIONS",
    "GeneratedPuzzle",
    "GenerationFailed",
    "Room",
    "SokobanEnv",
    "SolverBudgetExceeded",
    "State",
    "apply_move",
    "generate_puzzle",
    "parse_action",
    "parse_grid",
    "solve",
]
