"""Sokoban rules on a rectangular room: the static layout (`Room`), the moving parts (`State`) and one move.

Cells are ``(row, col)`` with row 0 at the top, so "Up" decreases the row. Everything outside the
room's rectangle counts as wall, so hand-written rooms need no border.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Cell = tuple[int, int]

ACTIONS: tuple[str, ...] = ("Up", "Down", "Left", "Right")
DELTAS: dict[str, Cell] = {"Up": (-1, 0), "Down": (1, 0), "Left": (0, -1), "Right": (0, 1)}
_ACTION_BY_KEY = {a.lower(): a for a in ACTIONS}

# Character grid symbols (the common research form, e.g. RAGEN / gym-sokoban text mode).
WALL, FLOOR, TARGET, BOX, BOX_ON_TARGET, PLAYER, PLAYER_ON_TARGET = "#", "_", "O", "X", "√", "P", "S"


def parse_action(text: str) -> str | None:
    """Canonical action name for ``text`` (case and surrounding whitespace ignored), else None."""
    if not isinstance(text, str):
        return None
    return _ACTION_BY_KEY.get(text.strip().lower())


@dataclass(frozen=True)
class Room:
    """What never changes during an episode: the size, the walls and the targets."""

    height: int
    width: int
    walls: frozenset[Cell]
    targets: frozenset[Cell]

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def inside(self, cell: Cell) -> bool:
        return 0 <= cell[0] < self.height and 0 <= cell[1] < self.width

    def is_free_of_walls(self, cell: Cell) -> bool:
        return self.inside(cell) and cell not in self.walls

    def floor_cells(self) -> list[Cell]:
        """Every non-wall cell of the rectangle (targets included), row-major."""
        return [(r, c) for r in range(self.height) for c in range(self.width) if (r, c) not in self.walls]

    def connected_floor(self, start: Cell) -> set[Cell]:
        """Non-wall cells connected to ``start``: where the player can ever go, since boxes move."""
        if not self.is_free_of_walls(start):
            return set()
        seen = {start}
        stack = [start]
        while stack:
            r, c = stack.pop()
            for dr, dc in DELTAS.values():
                nxt = (r + dr, c + dc)
                if nxt not in seen and self.is_free_of_walls(nxt):
                    seen.add(nxt)
                    stack.append(nxt)
        return seen


@dataclass(frozen=True)
class State:
    """What moves: the player and the boxes."""

    player: Cell
    boxes: frozenset[Cell] = field(default_factory=frozenset)

    def solved(self, room: Room) -> bool:
        return self.boxes <= room.targets

    def boxes_on_targets(self, room: Room) -> int:
        return len(self.boxes & room.targets)


def apply_move(room: Room, state: State, action: str) -> tuple[State, bool, bool]:
    """Play ``action`` (a canonical name). Returns (new state, player moved, box pushed).

    Walking into a wall, or pushing a box into a wall or another box, leaves the state unchanged:
    a legal move that does nothing, as in the classic game.
    """
    dr, dc = DELTAS[action]
    r, c = state.player
    nxt = (r + dr, c + dc)
    if not room.is_free_of_walls(nxt):
        return state, False, False
    if nxt in state.boxes:
        beyond = (r + 2 * dr, c + 2 * dc)
        if not room.is_free_of_walls(beyond) or beyond in state.boxes:
            return state, False, False
        return State(nxt, (state.boxes - {nxt}) | {beyond}), True, True
    return State(nxt, state.boxes), True, False


def parse_grid(text: str) -> tuple[Room, State]:
    """Build a room and state from the character grid (``#`` wall, ``_`` or space floor, ``O`` target,
    ``X`` box, ``√`` box on target, ``P`` player, ``S`` player on target); for tests and hand-made rooms."""
    rows = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not rows:
        raise ValueError("parse_grid: empty grid")
    width = max(len(row) for row in rows)
    walls, targets, boxes, players = set(), set(), set(), []
    for r, row in enumerate(rows):
        for c, ch in enumerate(row.ljust(width, WALL)):
            cell = (r, c)
            if ch == WALL:
                walls.add(cell)
            elif ch in (TARGET, BOX_ON_TARGET, PLAYER_ON_TARGET):
                targets.add(cell)
            if ch in (BOX, BOX_ON_TARGET):
                boxes.add(cell)
            elif ch in (PLAYER, PLAYER_ON_TARGET):
                players.append(cell)
            elif ch not in (WALL, FLOOR, TARGET, " "):
                raise ValueError(
                    f"parse_grid: unknown symbol {ch!r} at {cell}; valid symbols: "
                    f"{WALL} {FLOOR} {TARGET} {BOX} {BOX_ON_TARGET} {PLAYER} {PLAYER_ON_TARGET} "
                    "(space = floor)"
                )
    if len(players) != 1:
        raise ValueError(f"parse_grid: need exactly one player (P or S), found {len(players)}")
    if len(boxes) != len(targets):
        raise ValueError(f"parse_grid: {len(boxes)} boxes but {len(targets)} targets; they must match")
    room = Room(len(rows), width, frozenset(walls), frozenset(targets))
    return room, State(players[0], frozenset(boxes))
