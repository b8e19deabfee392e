"""The stepwise expert: an optimal policy with a fixed tie-break and a thought a small model can follow.

The solver's thought ("Box at (3, 3) must reach target (2, 1). Shortest plan (5 moves) starts: Right") asks a
model for the length and first move of a search in one token; a ~1M-parameter model learns the coordinates
but not the move (held-out success at a random policy's level). Here every clause of the thought is a simple
function of the room and the clauses before it:

    I am at (4, 3). Box (3, 3) to (2, 1): Up 1, Left 2. Push Left from (3, 4): Right, Up.

where I am; where the box is and must go, and how far on each axis; the next push and the cell to push it
from; the player's walk to that cell (its first move is the action; ``here`` when the player stands on it).

Among optimal moves the expert takes the first in ``ACTIONS`` order (Up, Down, Left, Right), so one state
always gets one answer: the solver's A* breaks ties by heap order, which no model can read off the room.
Optimality comes from a distance table over every state reachable from the episode's start (one box in a
6x6 room: at most a few hundred states), built once per puzzle by breadth-first search.
"""

from __future__ import annotations

from collections import deque

from agentgen.envs.sokoban.render import fmt_cell
from agentgen.envs.sokoban.room import ACTIONS, DELTAS, Cell, Room, State, apply_move

MAX_STATES = 200_000  # beyond this (many boxes, large rooms) the table is not built and the solver's plan is used


class DistanceTable:
    """Moves-to-solve of every state reachable from ``start`` (absent: no solution from there)."""

    def __init__(self, room: Room, start: State):
        self.room = room
        succ: dict[State, list[State]] = {}
        frontier = deque([start])
        succ[start] = []
        while frontier:
            s = frontier.popleft()
            nxt = []
            for a in ACTIONS:
                t, moved, _ = apply_move(room, s, a)
                if moved:
                    nxt.append(t)
                    if t not in succ:
                        if len(succ) >= MAX_STATES:
                            raise OverflowError(f"more than {MAX_STATES} reachable states")
                        succ[t] = []
                        frontier.append(t)
            succ[s] = nxt
        preds: dict[State, list[State]] = {s: [] for s in succ}
        for s, ts in succ.items():
            for t in ts:
                preds[t].append(s)
        self.dist: dict[State, int] = {s: 0 for s in succ if s.solved(room)}
        frontier = deque(self.dist)
        while frontier:
            t = frontier.popleft()
            for s in preds[t]:
                if s not in self.dist:
                    self.dist[s] = self.dist[t] + 1
                    frontier.append(s)

    def best_move(self, state: State) -> str | None:
        """The first of ``ACTIONS`` that is an optimal move from ``state``; None when solved or unsolvable."""
        d = self.dist.get(state)
        if not d:
            return None
        for a in ACTIONS:
            t, moved, _ = apply_move(self.room, state, a)
            if moved and self.dist.get(t) == d - 1:
                return a
        return None

    def plan(self, state: State) -> list[str] | None:
        """The expert's whole plan from ``state`` ([] when solved, None when unsolvable)."""
        if state not in self.dist:
            return None
        moves = []
        while (a := self.best_move(state)) is not None:
            moves.append(a)
            state = apply_move(self.room, state, a)[0]
        return moves


def axis_steps(src: tuple[int, int], dst: tuple[int, int]) -> str:
    """How far a box must go on each axis: "Up 1, Left 2" (rows first)."""
    dr, dc = dst[0] - src[0], dst[1] - src[1]
    parts = []
    if dr:
        parts.append(f"{'Down' if dr > 0 else 'Up'} {abs(dr)}")
    if dc:
        parts.append(f"{'Right' if dc > 0 else 'Left'} {abs(dc)}")
    return ", ".join(parts)


def walk_distances(room: Room, state: State) -> dict[Cell, int]:
    """Moves from the player to every cell it can walk to without pushing a box."""
    dist = {state.player: 0}
    frontier = deque([state.player])
    while frontier:
        r, c = frontier.popleft()
        for dr, dc in DELTAS.values():
            n = (r + dr, c + dc)
            if n not in dist and room.is_free_of_walls(n) and n not in state.boxes:
                dist[n] = dist[(r, c)] + 1
                frontier.append(n)
    return dist


def way_back(walk: dict[Cell, int], cell: Cell) -> list[Cell]:
    """The cells from ``cell`` back towards the player, ``cell`` first, the player's neighbour last: at each cell the
    first neighbour in ``ACTIONS`` order that is one move closer to the player."""
    path = [cell]
    while walk[path[-1]] > 1:
        r, c = path[-1]
        path.append(next((r + dr, c + dc) for dr, dc in (DELTAS[a] for a in ACTIONS)
                         if walk.get((r + dr, c + dc)) == walk[path[-1]] - 1))
    return path


def next_push(table: DistanceTable, state: State) -> tuple[str, Cell] | None:
    """The expert's next push, (direction, the cell to push from): the first in ``ACTIONS`` order of the pushes that
    begin an optimal plan (walk there, push once, then solve optimally). One box only."""
    room, d = table.room, table.dist.get(state)
    if not d or len(state.boxes) != 1:
        return None
    (box,) = state.boxes
    walk = walk_distances(room, state)
    for a in ACTIONS:
        dr, dc = DELTAS[a]
        cell, dest = (box[0] - dr, box[1] - dc), (box[0] + dr, box[1] + dc)
        if cell not in walk or not room.is_free_of_walls(dest):
            continue
        after = State(box, frozenset({dest}))
        if after in table.dist and walk[cell] + 1 + table.dist[after] == d:
            return a, cell
    return None


def expert_step(table: DistanceTable, state: State) -> tuple[str, str] | None:
    """(thought, action) of the stepwise expert for one box (see the module docstring); None when it has none."""
    push = next_push(table, state)
    if push is None:
        return None
    direction, cell = push
    (box,) = state.boxes
    target = _destination(table, state)
    where = f"I am at {fmt_cell(state.player)}."
    goal = f"Box {fmt_cell(box)} to {fmt_cell(target)}: {axis_steps(box, target)}."
    if cell == state.player:
        return f"{where} {goal} Push {direction} from {fmt_cell(cell)}: here.", direction
    path = way_back(walk_distances(table.room, state), cell)
    last = path[-1]
    step = (last[0] - state.player[0], last[1] - state.player[1])
    action = next(a for a in ACTIONS if DELTAS[a] == step)
    cells = ", ".join(fmt_cell(c) for c in path)
    return f"{where} {goal} Push {direction} from {fmt_cell(cell)}: back {cells}.", action


def _destination(table: DistanceTable, state: State) -> Cell:
    """Where an optimal plan leaves the (single) box: the target it ends on."""
    plan = table.plan(state) or []
    s = state
    for move in plan:
        s = apply_move(table.room, s, move)[0]
    (end,) = s.boxes
    return end
