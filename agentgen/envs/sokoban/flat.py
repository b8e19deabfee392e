"""A room compiled to flat cell indices (``row * width + col``) with move tables, for the hot loops of
the solver and the generator: list lookups instead of tuple arithmetic and bounds checks."""

from __future__ import annotations

from collections import deque
from functools import lru_cache

from agentgen.envs.sokoban.room import ACTIONS, DELTAS, Cell, Room

UNREACHABLE = 1 << 30  # distance of a cell from which no target can be reached


class FlatRoom:
    """Move tables of a room: ``step[d][i]`` is the cell one move from ``i`` in direction ``ACTIONS[d]``
    or -1 if that is a wall or outside. ``push_dist[i]`` is the fewest pushes that bring a lone box
    from ``i`` to some target (other boxes ignored), a lower bound used as A* heuristic and to spot
    dead squares (``UNREACHABLE``)."""

    def __init__(self, height: int, width: int, passable: list[bool], targets: list[int]):
        self.height, self.width = height, width
        self.size = height * width
        self.passable = passable
        self.step: list[list[int]] = []
        for action in ACTIONS:
            dr, dc = DELTAS[action]
            table = [-1] * self.size
            for i in range(self.size):
                if not passable[i]:
                    continue
                r, c = divmod(i, width)
                rr, cc = r + dr, c + dc
                if 0 <= rr < height and 0 <= cc < width and passable[rr * width + cc]:
                    table[i] = rr * width + cc
            self.step.append(table)
        self.targets = frozenset(targets)
        self.push_dist = self._push_distances()

    @classmethod
    def from_room(cls, room: Room) -> FlatRoom:
        return _compiled(room)

    def index(self, cell: Cell) -> int:
        return cell[0] * self.width + cell[1]

    def cell(self, index: int) -> Cell:
        return divmod(index, self.width)

    def _push_distances(self) -> list[int]:
        """Reverse BFS of pulls from every target: a box at x can be pushed in direction d when the
        player's cell x - d and the destination x + d are both free of walls."""
        dist = [UNREACHABLE] * self.size
        queue = deque()
        for t in self.targets:
            dist[t] = 0
            queue.append(t)
        opposite = (1, 0, 3, 2)  # Up<->Down, Left<->Right
        while queue:
            y = queue.popleft()
            for d in range(4):
                back = self.step[opposite[d]]
                x = back[y]  # the box came from x, pushed in direction d
                if x < 0 or dist[x] != UNREACHABLE:
                    continue
                if back[x] < 0:  # the player stood at x - d
                    continue
                dist[x] = dist[y] + 1
                queue.append(x)
        return dist


@lru_cache(maxsize=256)
def _compiled(room: Room) -> FlatRoom:
    passable = [(r, c) not in room.walls for r in range(room.height) for c in range(room.width)]
    targets = [r * room.width + c for r, c in room.targets]
    return FlatRoom(room.height, room.width, passable, targets)
