"""Room layouts for generated ALFWorld games, read from the AI2-THOR scene files alfworld ships.

alfworld ships, per floor plan, the object types present (``FloorPlanN-objects.json``), the poses from
which each static receptacle can be used (``FloorPlanN-openable.json``) and the reachable floor points
(``FloorPlanN-layout.npy``), but not the game files. This module turns one floor plan into the static
part of a game: receptacles with their ids and locations, and the kinds of objects and lamps that can
be scattered in the room. Receptacle types the scene has but the pose file lacks (stove burners, coffee
machines, toasters, toilets, ...) get a pose at a reachable floor point, as in the released games,
where every static receptacle of the scene is present.
"""

from __future__ import annotations

import functools
import json
import os
import random
from dataclasses import dataclass

import alfworld.gen.constants as C
import numpy as np

LAYOUT_DIR = os.path.join(os.path.dirname(C.__file__), "layouts")

# Scene families (constants.SCENE_TYPE): kitchens 1-30, living rooms 201-230, bedrooms 301-330,
# bathrooms 401-430. ALFRED keeps scenes 1-6 of each family out of training ("unseen" rooms).
TRAIN_SCENES = tuple(C.TRAIN_SCENE_NUMBERS)
UNSEEN_SCENES = tuple(C.TEST_SCENE_NUMBERS)

# Static receptacle types the text game knows (objects can be put in them; movable ones such as bowls
# and mugs are objects in the text game). Sink and Bathtub are used through their basins.
STATIC_RECEPTACLE_TYPES = sorted(
    (set(C.RECEPTACLES) - set(C.MOVABLE_RECEPTACLES)) & set(C.VAL_RECEPTACLE_OBJECTS)
)
BASIN_OF = {"Sink": "SinkBasin", "Bathtub": "BathtubBasin"}

# Objects that can be picked up: anything some receptacle can hold (sliced pieces excluded: slicing
# tasks are not part of ALFWorld's six task types).
PICKUPABLE_TYPES = sorted(
    o for objs in C.VAL_RECEPTACLE_OBJECTS.values() for o in objs if not o.endswith("Sliced")
)
PICKUPABLE_TYPES = sorted(set(PICKUPABLE_TYPES))
LAMP_TYPES = ("DeskLamp", "FloorLamp")
# Furniture a lamp stands on or beside (the text game needs the lamp in a receptacle to "use" it).
LAMP_HOSTS = ("Desk", "SideTable", "Dresser", "Shelf", "CoffeeTable", "DiningTable", "TVStand", "CounterTop")
# How many instances of a synthesised receptacle type a room gets (kitchens have four burners).
SYNTH_COUNT = {"StoveBurner": 4}


def scene_family(scene_num: int) -> str:
    for family, numbers in C.SCENE_TYPE.items():
        if scene_num in numbers:
            return family
    raise ValueError(f"unknown AI2-THOR scene number {scene_num}; valid: 1-30, 201-230, 301-330, 401-430")


def mangle(thor_id: str) -> str:
    """AI2-THOR id -> PDDL constant, the way ALFRED writes its problems ('|' -> '_bar_', ...)."""
    for old, new in (("-", "_minus_"), ("|", "_bar_"), ("+", "_plus_"), (".", "_dot_"), (",", "_comma_")):
        thor_id = thor_id.replace(old, new)
    return thor_id


def thor_number(value: float) -> str:
    """Format a coordinate like AI2-THOR ids do: '+00.68', '-02.20', '00.00'."""
    sign = "+" if value > 0.004 else "-" if value < -0.004 else ""
    return f"{sign}{abs(value):05.2f}"


def location_name(x: float, z: float, rotation: int, horizon: int) -> str:
    """ALFRED's discrete location constant: grid cell (0.25 m), heading (quarter turns), camera tilt."""
    return mangle(f"loc|{round(x / C.AGENT_STEP_SIZE)}|{round(z / C.AGENT_STEP_SIZE)}|"
                  f"{int(rotation) // 90 % 4}|{int(horizon)}")


@dataclass(frozen=True)
class Receptacle:
    thor_id: str    # e.g. "Sink|-01.90|+00.97|-01.50|SinkBasin"
    rtype: str      # e.g. "SinkBasin"
    location: str   # mangled location constant

    @property
    def pddl_id(self) -> str:
        return mangle(self.thor_id)

    @property
    def position(self) -> tuple[float, float, float]:
        x, y, z = (float(v) for v in self.thor_id.split("|")[1:4])
        return x, y, z


@dataclass(frozen=True)
class Scene:
    number: int
    family: str
    receptacles: tuple[Receptacle, ...]
    object_types: tuple[str, ...]     # pickupable object types present in the room
    lamp_types: tuple[str, ...]       # toggleable lamps present
    reachable: tuple[tuple[float, float], ...]

    @property
    def name(self) -> str:
        return f"FloorPlan{self.number}"

    def receptacle_types(self) -> set[str]:
        return {r.rtype for r in self.receptacles}

    def receptacles_of(self, rtype: str) -> list[Receptacle]:
        return [r for r in self.receptacles if r.rtype == rtype]


def _receptacle_type(thor_id: str) -> str:
    parts = thor_id.split("|")
    return parts[4] if len(parts) > 4 else BASIN_OF.get(parts[0], parts[0])


def _fresh_id(rtype: str, x: float, z: float, rng: random.Random, used: set[str]) -> str:
    """An AI2-THOR-style id near floor point (x, z) not used yet in the room."""
    host = next((h for h, basin in BASIN_OF.items() if basin == rtype), None)
    while True:
        pos = [thor_number(v) for v in (x + rng.uniform(-0.6, 0.6), rng.uniform(0.0, 1.2), z + rng.uniform(-0.6, 0.6))]
        thor_id = "|".join([host, *pos, rtype] if host else [rtype, *pos])
        if thor_id not in used:
            return thor_id


@functools.cache
def load_scene(scene_num: int) -> Scene:
    """Static part of floor plan ``scene_num``; deterministic (synthesised poses use a fixed seed)."""
    family = scene_family(scene_num)
    base = os.path.join(LAYOUT_DIR, f"FloorPlan{scene_num}")
    with open(base + "-objects.json") as f:
        present = set(json.load(f))
    with open(base + "-openable.json") as f:
        poses = json.load(f)
    reachable = tuple((float(x), float(z)) for x, z in np.load(base + "-layout.npy"))

    receptacles = []
    for thor_id in sorted(poses):
        rtype = _receptacle_type(thor_id)
        if rtype not in STATIC_RECEPTACLE_TYPES:
            continue
        x, z, rotation, horizon = poses[thor_id]
        receptacles.append(Receptacle(thor_id, rtype, location_name(x, z, rotation, horizon)))

    # Receptacle types the room has without a recorded pose: place them at reachable points.
    rng = random.Random(scene_num)
    have = {r.rtype for r in receptacles}
    present_types = {BASIN_OF.get(t, t) for t in present}
    used_ids = {r.thor_id for r in receptacles}
    for rtype in sorted(present_types & set(STATIC_RECEPTACLE_TYPES) - have):
        for k in range(SYNTH_COUNT.get(rtype, 1)):
            if k % 2 == 0:  # a new standing point; burners come in pairs sharing one
                x, z = rng.choice(reachable)
                rotation, horizon = rng.choice((0, 90, 180, 270)), 30
            thor_id = _fresh_id(rtype, x, z, rng, used_ids)
            used_ids.add(thor_id)
            receptacles.append(Receptacle(thor_id, rtype, location_name(x, z, rotation, horizon)))

    object_types = tuple(sorted(t for t in present if t in PICKUPABLE_TYPES))
    lamp_types = tuple(t for t in LAMP_TYPES if t in present)
    return Scene(scene_num, family, tuple(receptacles), object_types, lamp_types, reachable)
