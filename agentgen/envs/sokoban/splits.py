"""Train/test split of the space of Sokoban layouts.

Separate seed streams alone do not keep the splits apart: small rooms repeat, so two seeds of
different splits can draw the same puzzle. Instead every layout (room size, walls, targets) belongs
to exactly one split by a keyed hash, and each split's generator discards layouts of the other. A test
puzzle therefore never shares its room and targets with any train puzzle, whatever the seeds.
"""

from __future__ import annotations

import hashlib

from agentgen.envs.sokoban.room import Room

_KEY = b"agentgen-sokoban-split-v1"


def layout_split(room: Room) -> str:
    """ "train" or "test": the split that owns this room's layout (about half of layouts each)."""
    cells = bytearray(room.height * room.width)
    for r, c in room.walls:
        cells[r * room.width + c] = 1
    for r, c in room.targets:
        cells[r * room.width + c] = 2
    header = room.height.to_bytes(4, "little") + room.width.to_bytes(4, "little")
    digest = hashlib.blake2b(header + bytes(cells), digest_size=1, key=_KEY).digest()
    return "test" if digest[0] & 1 else "train"
