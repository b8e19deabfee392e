"""Text renderings of a Sokoban state.

- ``coords`` (default): the coordinate list of the generalization-tax study ("Wall at (0, 0), ...,
  Box at (2, 3), Target at (3, 3), Player at (4, 3)"); the study found the character grid did not work
  for Llama-3.1-8B. A box already on a target says so, which the model would otherwise have to infer.
- ``grid``: the character matrix (# wall, _ floor, O target, X box, √ box on target, P player,
  S player on target), one row per line.
"""

from __future__ import annotations

from agentgen.envs.sokoban.room import (
    BOX,
    BOX_ON_TARGET,
    FLOOR,
    PLAYER,
    PLAYER_ON_TARGET,
    TARGET,
    WALL,
    Room,
    State,
)

RENDER_MODES = ("coords", "grid")


def fmt_cell(cell: tuple[int, int]) -> str:
    return f"({cell[0]}, {cell[1]})"


def render_coords(room: Room, state: State) -> str:
    walls = ", ".join(f"Wall at {fmt_cell(c)}" for c in sorted(room.walls))
    boxes = ", ".join(
        f"Box at {fmt_cell(c)}" + (" (on target)" if c in room.targets else "") for c in sorted(state.boxes)
    )
    targets = ", ".join(f"Target at {fmt_cell(c)}" for c in sorted(room.targets))
    return f"{walls}\n{boxes}\n{targets}\nPlayer at {fmt_cell(state.player)}"


def render_grid(room: Room, state: State) -> str:
    rows = []
    for r in range(room.height):
        row = []
        for c in range(room.width):
            cell = (r, c)
            on_target = cell in room.targets
            if cell in room.walls:
                row.append(WALL)
            elif cell in state.boxes:
                row.append(BOX_ON_TARGET if on_target else BOX)
            elif cell == state.player:
                row.append(PLAYER_ON_TARGET if on_target else PLAYER)
            else:
                row.append(TARGET if on_target else FLOOR)
        rows.append("".join(row))
    return "\n".join(rows)


def render(room: Room, state: State, mode: str) -> str:
    if mode == "coords":
        return render_coords(room, state)
    if mode == "grid":
        return render_grid(room, state)
    raise ValueError(f"unknown Sokoban render mode {mode!r}; valid modes: {', '.join(RENDER_MODES)}")
