"""Sample one ALFWorld task in one room and write it as the game files ALFWorld loads.

A game is the PDDL problem of ALFRED's ``alfred`` domain (objects, the initial facts, the goal of the
task type from ``alfworld.gen.goal_library``), the text grammar with the task sentence filled in, and a
``traj_data.json`` with the task parameters the handcoded expert reads. Sampling follows ALFRED's
task filters (``TaskGameState.get_filter_crit``): the object to clean / heat / cool does not start in
the sink / microwave / fridge and is not to be put there; for two-object tasks no object of the kind
starts in a receptacle of the target kind; the goal never holds at the start.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import alfworld.gen.constants as C
import alfworld.gen.goal_library as glib

from agentgen.envs.alfworld.scenes import (
    LAMP_HOSTS,
    PICKUPABLE_TYPES,
    Receptacle,
    Scene,
    location_name,
    mangle,
    thor_number,
)

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
# Room families each task type is generated in (ALFRED's constants.GOALS_VALID).
TASK_FAMILIES = {t: frozenset(C.GOALS_VALID[t]) for t in TASK_TYPES}
# The appliance a state-change task needs, with the object property it requires.
APPLIANCE = {
    "pick_clean_then_place_in_recep": ("SinkBasin", "Cleanable"),
    "pick_heat_then_place_in_recep": ("Microwave", "Heatable"),
    "pick_cool_then_place_in_recep": ("Fridge", "Coolable"),
}
MAX_INSTANCES = C.MAX_NUM_OF_OBJ_INSTANCES  # 3 copies of a kind at most, as ALFRED's scene setup


class TaskUnavailable(ValueError):
    """The room cannot host the task type (missing appliance, lamp or a fitting object/receptacle)."""


@dataclass
class PlacedObject:
    thor_id: str
    otype: str
    receptacle: Receptacle

    @property
    def pddl_id(self) -> str:
        return mangle(self.thor_id)


@dataclass
class GameSpec:
    """Everything needed to write one game."""

    task_type: str
    scene: Scene
    object_target: str
    parent_target: str = ""   # receptacle kind for placing tasks
    toggle_target: str = ""   # lamp kind for look_at_obj_in_light
    task_sentence: str = ""
    objects: list[PlacedObject] = field(default_factory=list)
    agent_location: str = ""

    @property
    def pddl_params(self) -> dict:
        return {
            "object_target": self.object_target,
            "parent_target": self.parent_target,
            "toggle_target": self.toggle_target,
            "mrecep_target": "",
            "object_sliced": False,
        }

    @property
    def folder_name(self) -> str:
        """ALFRED's task folder name: {task_type}-{object}-{movable receptacle}-{target}-{scene}."""
        target = self.parent_target or self.toggle_target
        return f"{self.task_type}-{self.object_target}-None-{target}-{self.scene.number}"


# ----------------------------------------------------------------------------- sampling
def _holders(scene: Scene, otype: str) -> list[Receptacle]:
    return [r for r in scene.receptacles if otype in C.VAL_RECEPTACLE_OBJECTS[r.rtype]]


def task_candidates(task_type: str, scene: Scene) -> list[tuple[str, str]]:
    """(object kind, target kind) pairs the task type can use in this room; target is a receptacle
    kind, or a lamp kind for look_at_obj_in_light."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown ALFWorld task type {task_type!r}; valid: {', '.join(TASK_TYPES)}")
    if scene.family not in TASK_FAMILIES[task_type]:
        return []
    rtypes = scene.receptacle_types()
    if task_type == "look_at_obj_in_light":
        return [(o, lamp) for lamp in scene.lamp_types for o in scene.object_types if _holders(scene, o)]
    appliance, prop = APPLIANCE.get(task_type, (None, None))
    if appliance and appliance not in rtypes:
        return []
    pairs = []
    for o in scene.object_types:
        if prop and o not in C.VAL_ACTION_OBJECTS[prop]:
            continue
        for r in sorted(rtypes):
            if r == appliance or o not in C.VAL_RECEPTACLE_OBJECTS[r]:
                continue
            # the object must be able to start somewhere that is neither the target nor the appliance
            if any(h.rtype not in (r, appliance) for h in _holders(scene, o)):
                pairs.append((o, r))
    return pairs


def _fresh_object_id(otype: str, recep: Receptacle, rng: random.Random, used: set[str]) -> str:
    rx, ry, rz = recep.position
    while True:
        pos = (rx + rng.uniform(-0.3, 0.3), ry + rng.uniform(0.0, 0.2), rz + rng.uniform(-0.3, 0.3))
        thor_id = "|".join([otype, *(thor_number(v) for v in pos)])
        if thor_id not in used:
            used.add(thor_id)
            return thor_id


def sample_game(task_type: str, scene: Scene, rng: random.Random) -> GameSpec:
    """Draw a task of ``task_type`` in ``scene`` and scatter the room's objects; raises
    TaskUnavailable when the room cannot host the task type."""
    candidates = task_candidates(task_type, scene)
    if not candidates:
        raise TaskUnavailable(f"{scene.name} ({scene.family}) cannot host {task_type}")
    obj, target = rng.choice(candidates)
    spec = GameSpec(task_type=task_type, scene=scene, object_target=obj)
    if task_type == "look_at_obj_in_light":
        spec.toggle_target = target
    else:
        spec.parent_target = target

    # Where objects of the target kind must not start: in the target receptacle kind (the goal would
    # hold, or the task be half done) or in the appliance that changes their state.
    forbidden = {spec.parent_target, APPLIANCE.get(task_type, ("",))[0]} - {""}
    used: set[str] = {r.thor_id for r in scene.receptacles}
    for otype in scene.object_types:
        holders = _holders(scene, otype)
        if otype == obj:
            holders = [h for h in holders if h.rtype not in forbidden]
        if not holders:
            continue
        low = 2 if (otype == obj and task_type == "pick_two_obj_and_place") else 1
        for _ in range(rng.randint(low, max(low, MAX_INSTANCES))):
            recep = rng.choice(holders)
            spec.objects.append(PlacedObject(_fresh_object_id(otype, recep, rng, used), otype, recep))
    for lamp in scene.lamp_types:
        hosts = [r for r in scene.receptacles if r.rtype in LAMP_HOSTS]
        if hosts:
            recep = rng.choice(hosts)
            spec.objects.append(PlacedObject(_fresh_object_id(lamp, recep, rng, used), lamp, recep))
    if task_type == "look_at_obj_in_light" and not any(o.otype == spec.toggle_target for o in spec.objects):
        raise TaskUnavailable(f"{scene.name} has no furniture to hold a {spec.toggle_target}")

    # The agent starts in the middle of the room: a floor point that is no receptacle's standing pose.
    taken = {r.location for r in scene.receptacles}
    while True:
        x, z = rng.choice(scene.reachable)
        loc = location_name(x, z, rng.choice((0, 90, 180, 270)), 30)
        if loc not in taken:
            spec.agent_location = loc
            break

    template = rng.choice(glib.gdict[task_type]["templates"])
    spec.task_sentence = template.format(
        obj=obj.lower(), recep=spec.parent_target.lower(), toggle=spec.toggle_target.lower(), mrecep=""
    )
    return spec


# ----------------------------------------------------------------------------- writing
def goal_pddl(spec: GameSpec) -> str:
    """The task type's goal from alfworld's goal library ('#' stands for '-' there, as in ALFRED);
    the text ends with the parenthesis closing the problem."""
    text = glib.gdict[spec.task_type]["pddl"].format(
        obj=spec.object_target, recep=spec.parent_target, toggle=spec.toggle_target, mrecep=""
    )
    return text.replace("#", "-")


def problem_pddl(spec: GameSpec, name: str) -> str:
    """The PDDL problem of ``spec`` in the form of ALFWorld's game files."""
    scene = spec.scene
    objects = spec.objects
    otypes = sorted({o.otype for o in objects} | {spec.object_target})
    rtypes = sorted(scene.receptacle_types() | ({spec.parent_target} - {""}))
    # Types the domain names in its actions must exist as constants even when the room lacks them.
    otypes = sorted(set(otypes) | {"Knife", "ButterKnife"})
    rtypes = sorted(set(rtypes) | {"SinkBasin", "Microwave", "Fridge"})
    locations = sorted({r.location for r in scene.receptacles} | {spec.agent_location})

    decl = ["agent1 - agent"]
    decl += [f"{t}Type - otype" for t in otypes]
    decl += [f"{t}Type - rtype" for t in rtypes]
    decl += [f"{o.pddl_id} - object" for o in objects]
    decl += [f"{r.pddl_id} - receptacle" for r in scene.receptacles]
    decl += [f"{loc} - location" for loc in locations]

    init = [f"(atLocation agent1 {spec.agent_location})"]
    for r in scene.receptacles:
        init.append(f"(receptacleType {r.pddl_id} {r.rtype}Type)")
        init.append(f"(receptacleAtLocation {r.pddl_id} {r.location})")
        if r.rtype in C.OPENABLE_CLASS_SET:
            init.append(f"(openable {r.pddl_id})")
    for rt in rtypes:
        for ot in otypes:
            if rt in C.VAL_RECEPTACLE_OBJECTS and ot in C.VAL_RECEPTACLE_OBJECTS[rt]:
                init.append(f"(canContain {rt}Type {ot}Type)")
    for o in objects:
        pid = o.pddl_id
        init.append(f"(objectType {pid} {o.otype}Type)")
        init.append(f"(inReceptacle {pid} {o.receptacle.pddl_id})")
        init.append(f"(objectAtLocation {pid} {o.receptacle.location})")
        if o.otype in PICKUPABLE_TYPES:
            init.append(f"(pickupable {pid})")
        if o.otype in C.MOVABLE_RECEPTACLES_SET:
            init.append(f"(isReceptacleObject {pid})")
        for prop, fact in (("Cleanable", "cleanable"), ("Heatable", "heatable"), ("Coolable", "coolable"),
                           ("Toggleable", "toggleable"), ("Sliceable", "sliceable")):
            if o.otype in C.VAL_ACTION_OBJECTS[prop]:
                init.append(f"({fact} {pid})")

    nl = "\n        "
    return (
        f"(define (problem {name})\n"
        f"    (:domain alfred)\n"
        f"    (:objects\n        {nl.join(decl)}\n    )\n"
        f"    (:init\n        {nl.join(init)}\n    )\n"
        f"{goal_pddl(spec)}"
    )


def traj_data(spec: GameSpec, task_id: str, seed: int) -> dict:
    """The ``traj_data.json`` fields ALFWorld's loaders and expert read, plus provenance."""
    return {
        "task_id": task_id,
        "task_type": spec.task_type,
        "pddl_params": spec.pddl_params,
        "scene": {"floor_plan": spec.scene.name, "scene_num": spec.scene.number},
        "task_desc": spec.task_sentence,
        "generator": {"name": "agentgen.envs.alfworld.generate", "seed": seed},
    }
