"""Optimal Sokoban solver: A* over (player, boxes) states, minimising moves.

The heuristic is the sum over boxes of the fewest pushes that bring each box alone to its nearest
target. Every move pushes at most one box by one cell, so the heuristic is consistent and the first
solved state popped is optimal in moves (the same answer a plain BFS gives, far faster on rooms with
several boxes). Boxes on dead squares (no target reachable by pushing) are pruned.
"""

from __future__ import annotations

from heapq import heappop, heappush

from agentgen.envs.sokoban.flat import UNREACHABLE, FlatRoom
from agentgen.envs.sokoban.room import ACTIONS, Room, State


class SolverBudgetExceeded(RuntimeError):
    """The search expanded more states than allowed without finding a solution or proving none exists."""


def solve(room: Room, state: State, max_expansions: int = 1_000_000) -> list[str] | None:
    """Shortest list of moves that puts every box on a target, [] if already solved, None if no
    solution exists. Raises SolverBudgetExceeded after ``max_expansions`` expanded states."""
    flat = FlatRoom.from_room(room)
    step, dist = flat.step, flat.push_dist
    player = flat.index(state.player)
    boxes = tuple(sorted(flat.index(b) for b in state.boxes))
    h0 = sum(dist[b] for b in boxes)
    if h0 >= UNREACHABLE:
        return None
    start = (player, boxes)
    best_g = {start: 0}
    parent: dict[tuple[int, tuple[int, ...]], tuple[tuple[int, tuple[int, ...]], int] | None] = {start: None}
    # Heap items: (f, -g, tiebreak, h, player, boxes). Deeper nodes first among equal f: fewer expansions.
    heap = [(h0, 0, 0, h0, player, boxes)]
    counter = 0
    expansions = 0
    while heap:
        _, neg_g, _, h, p, bx = heappop(heap)
        g = -neg_g
        key = (p, bx)
        if best_g[key] < g:
            continue  # stale entry
        if h == 0:  # every box sits on a distinct target
            return _reconstruct(parent, key)
        expansions += 1
        if expansions > max_expansions:
            raise SolverBudgetExceeded(
                f"Sokoban solver gave up after {max_expansions} expanded states; raise max_expansions "
                f"or use smaller rooms / fewer boxes"
            )
        g2 = g + 1
        for d in range(4):
            q = step[d][p]
            if q < 0:
                continue
            if q in bx:
                b2 = step[d][q]
                if b2 < 0 or b2 in bx or dist[b2] >= UNREACHABLE:
                    continue
                nbx = tuple(sorted(b2 if b == q else b for b in bx))
                nh = h - dist[q] + dist[b2]
            else:
                nbx, nh = bx, h
            nkey = (q, nbx)
            old = best_g.get(nkey)
            if old is not None and old <= g2:
                continue
            best_g[nkey] = g2
            parent[nkey] = (key, d)
            counter += 1
            heappush(heap, (g2 + nh, -g2, counter, nh, q, nbx))
    return None


def _reconstruct(parent, key) -> list[str]:
    moves = []
    link = parent[key]
    while link is not None:
        key, d = link
        moves.append(ACTIONS[d])
        link = parent[key]
    moves.reverse()
    return moves
