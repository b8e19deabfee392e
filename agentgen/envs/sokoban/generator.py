"""Sokoban puzzle generator: random-walk room growth, then reverse play from the solved state.

1. Room: carve floor with a random walk of 3x3 masks inside a wall border (the gym-sokoban method,
   ``1.7 * (height + width)`` steps, direction change probability 0.35).
2. Targets: random floor cells; the boxes start on them (the solved state).
3. Reverse play: breadth-first search over reverse moves (walk, or pull the box behind the player)
   starting from *every* solved state (boxes on targets, player on any free cell). Each reverse move
   undoes exactly one forward move, so a state's BFS depth is its optimal solution length in moves.
4. Keep, among states with no box on a target and depth within [min_len, max_len], one with the most
   pulls (pushes its optimal solution needs); ties are broken at random. Rooms with no such state are
   discarded and a new room is grown.

An optional ``accept_layout`` predicate on (room) rejects layouts early; the env uses it to split the
space of layouts between train and test so the two splits can never share an instance.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from agentgen.envs.sokoban.flat import FlatRoom
from agentgen.envs.sokoban.room import Room, State

# 3x3 carving masks of gym-sokoban's room_topology_generation.
_MASKS = (
    ((0, 0, 0), (1, 1, 1), (0, 0, 0)),
    ((0, 1, 0), (0, 1, 0), (0, 1, 0)),
    ((0, 0, 0), (1, 1, 0), (0, 1, 0)),
    ((0, 0, 0), (1, 1, 0), (1, 1, 0)),
    ((0, 0, 0), (0, 1, 1), (0, 1, 0)),
)
_MASK_OFFSETS = tuple(
    tuple((i - 1, j - 1) for i in range(3) for j in range(3) if mask[i][j]) for mask in _MASKS
)
_DIRS = ((-1, 0), (1, 0), (0, -1), (0, 1))
_OPPOSITE = (1, 0, 3, 2)


@dataclass(frozen=True)
class GeneratedPuzzle:
    room: Room
    state: State
    optimal_len: int  # moves of an optimal solution
    pushes: int  # fewest pushes among the optimal solutions
    attempts: int  # rooms grown until this one was accepted


class GenerationFailed(RuntimeError):
    """No acceptable puzzle within the attempt budget (e.g. difficulty bounds impossible for the size)."""


def grow_room(
    rng: random.Random,
    height: int,
    width: int,
    p_change_direction: float = 0.35,
    num_steps: int | None = None,
) -> list[bool]:
    """Floor mask (row-major, True = floor) carved by a random walk; the border stays wall."""
    if num_steps is None:
        num_steps = int(1.7 * (height + width))
    floor = [False] * (height * width)
    r = rng.randint(1, height - 2)
    c = rng.randint(1, width - 2)
    dr, dc = _DIRS[rng.randrange(4)]
    for _ in range(num_steps):
        if rng.random() < p_change_direction:
            dr, dc = _DIRS[rng.randrange(4)]
        r = min(max(r + dr, 1), height - 2)
        c = min(max(c + dc, 1), width - 2)
        for oi, oj in _MASK_OFFSETS[rng.randrange(len(_MASKS))]:
            rr, cc = r + oi, c + oj
            if 1 <= rr <= height - 2 and 1 <= cc <= width - 2:
                floor[rr * width + cc] = True
    return floor


def reverse_search(
    flat: FlatRoom, targets: tuple[int, ...], max_depth: int, max_states: int
) -> dict[tuple[int, tuple[int, ...]], tuple[int, int]]:
    """BFS over reverse moves from every solved state. Returns {(player, boxes): (depth, pulls)} where
    depth is the optimal solution length in moves and pulls the fewest pushes among those solutions."""
    step = flat.step
    boxes0 = tuple(sorted(targets))
    box_set = set(boxes0)
    info: dict[tuple[int, tuple[int, ...]], tuple[int, int]] = {}
    layer = []
    for p in range(flat.size):
        if flat.passable[p] and p not in box_set:
            key = (p, boxes0)
            info[key] = (0, 0)
            layer.append(key)
    depth = 0
    while layer and depth < max_depth and len(info) < max_states:
        depth += 1
        nxt_layer = []
        for key in layer:
            p, bx = key
            pulls = info[key][1]
            for d in range(4):
                q = step[d][p]
                if q < 0 or q in bx:
                    continue
                # walk back to q
                nkey = (q, bx)
                old = info.get(nkey)
                if old is None:
                    info[nkey] = (depth, pulls)
                    nxt_layer.append(nkey)
                elif old[0] == depth and pulls < old[1]:
                    info[nkey] = (depth, pulls)
                # pull the box behind the player onto p
                behind = step[_OPPOSITE[d]][p]
                if behind >= 0 and behind in bx:
                    nbx = tuple(sorted(p if b == behind else b for b in bx)) if len(bx) > 1 else (p,)
                    nkey = (q, nbx)
                    old = info.get(nkey)
                    if old is None:
                        info[nkey] = (depth, pulls + 1)
                        nxt_layer.append(nkey)
                    elif old[0] == depth and pulls + 1 < old[1]:
                        info[nkey] = (depth, pulls + 1)
        layer = nxt_layer
    return info


def generate_puzzle(
    rng: random.Random,
    height: int,
    width: int,
    num_boxes: int = 1,
    min_len: int = 1,
    max_len: int = 15,
    accept_layout: Callable[[Room], bool] | None = None,
    max_attempts: int = 10_000,
    max_states: int = 300_000,
) -> GeneratedPuzzle:
    """Grow rooms until one yields a puzzle with optimal length in [min_len, max_len] (see module doc)."""
    for attempt in range(1, max_attempts + 1):
        floor = grow_room(rng, height, width)
        cells = [i for i, free in enumerate(floor) if free]
        if len(cells) < num_boxes + 1:
            continue
        targets = tuple(rng.sample(cells, num_boxes))
        room = Room(
            height,
            width,
            frozenset(divmod(i, width) for i, free in enumerate(floor) if not free),
            frozenset(divmod(t, width) for t in targets),
        )
        if accept_layout is not None and not accept_layout(room):
            continue
        flat = FlatRoom(height, width, floor, list(targets))
        info = reverse_search(flat, targets, max_len, max_states)
        target_set = flat.targets
        best_pulls, candidates = 0, []
        for key, (depth, pulls) in info.items():
            if depth < min_len or pulls < best_pulls:
                continue
            if any(b in target_set for b in key[1]):
                continue
            if pulls > best_pulls:
                best_pulls, candidates = pulls, []
            candidates.append(key)
        if not candidates:
            continue
        p, bx = candidates[rng.randrange(len(candidates))]
        depth, pulls = info[(p, bx)]
        state = State(divmod(p, width), frozenset(divmod(b, width) for b in bx))
        return GeneratedPuzzle(room, state, depth, pulls, attempt)
    raise GenerationFailed(
        f"no {height}x{width} Sokoban puzzle with {num_boxes} box(es) and optimal length in "
        f"[{min_len}, {max_len}] after {max_attempts} rooms; widen the length bounds or enlarge the room"
    )
