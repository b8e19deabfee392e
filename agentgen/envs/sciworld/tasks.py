"""ScienceWorld's 30 tasks, their train/dev/test variation ranges, and the seed -> instance map.

The table below is the engine's own split (``getVariationsTrain/Dev/Test`` in scienceworld 1.2.3):
for every task the variations are contiguous, train = [0, train_end), dev = [train_end, dev_end),
test = [dev_end, n). Keeping it here lets an env map seeds to instances (and a scheduler reason about
splits) without starting a JVM; ``tests/test_sciworld_engine.py`` checks it against the engine.
Totals: 3592 train, 1796 dev, 1819 test.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

VARIATION_SPLITS = ("train", "dev", "test")
SAMPLING_MODES = ("task_balanced", "uniform")


@dataclass(frozen=True)
class TaskInfo:
    task_id: str  # the paper's id, e.g. "1-1"
    name: str  # the engine's name, e.g. "boil"
    n_variations: int
    train_end: int
    dev_end: int

    def variations(self, split: str) -> range:
        if split == "train":
            return range(self.train_end)
        if split == "dev":
            return range(self.train_end, self.dev_end)
        if split == "test":
            return range(self.dev_end, self.n_variations)
        raise ValueError(f"variation split must be one of {VARIATION_SPLITS}, got {split!r}")

    @property
    def electrical(self) -> bool:
        """Wiring tasks: the engine never removes `connect` actions for these (their goal needs them)."""
        return "power-component" in self.name or "conductivity" in self.name


# In the paper's order (tasks.json of the scienceworld package); index = position in this tuple.
TASKS: tuple[TaskInfo, ...] = (
    TaskInfo("1-1", "boil", 30, 14, 21),
    TaskInfo("1-2", "melt", 30, 14, 21),
    TaskInfo("1-3", "freeze", 30, 14, 21),
    TaskInfo("1-4", "change-the-state-of-matter-of", 30, 14, 21),
    TaskInfo("2-1", "use-thermometer", 540, 270, 405),
    TaskInfo("2-2", "measure-melting-point-known-substance", 436, 218, 327),
    TaskInfo("2-3", "measure-melting-point-unknown-substance", 300, 150, 225),
    TaskInfo("3-1", "power-component", 20, 10, 15),
    TaskInfo("3-2", "power-component-renewable-vs-nonrenewable-energy", 20, 10, 15),
    TaskInfo("3-3", "test-conductivity", 900, 450, 675),
    TaskInfo("3-4", "test-conductivity-of-unknown-substances", 600, 300, 450),
    TaskInfo("4-1", "find-living-thing", 300, 150, 225),
    TaskInfo("4-2", "find-non-living-thing", 300, 150, 225),
    TaskInfo("4-3", "find-plant", 300, 150, 225),
    TaskInfo("4-4", "find-animal", 300, 150, 225),
    TaskInfo("5-1", "grow-plant", 126, 62, 93),
    TaskInfo("5-2", "grow-fruit", 126, 62, 93),
    TaskInfo("6-1", "chemistry-mix", 32, 16, 24),
    TaskInfo("6-2", "chemistry-mix-paint-secondary-color", 36, 18, 27),
    TaskInfo("6-3", "chemistry-mix-paint-tertiary-color", 36, 18, 27),
    TaskInfo("7-1", "lifespan-longest-lived", 125, 62, 93),
    TaskInfo("7-2", "lifespan-shortest-lived", 125, 62, 93),
    TaskInfo("7-3", "lifespan-longest-lived-then-shortest-lived", 125, 62, 93),
    TaskInfo("8-1", "identify-life-stages-1", 14, 6, 9),
    TaskInfo("8-2", "identify-life-stages-2", 10, 4, 6),
    TaskInfo("9-1", "inclined-plane-determine-angle", 168, 84, 126),
    TaskInfo("9-2", "inclined-plane-friction-named-surfaces", 1386, 692, 1038),
    TaskInfo("9-3", "inclined-plane-friction-unnamed-surfaces", 162, 80, 120),
    TaskInfo("10-1", "mendelian-genetics-known-plant", 120, 60, 90),
    TaskInfo("10-2", "mendelian-genetics-unknown-plant", 480, 240, 360),
)
TASK_NAMES: tuple[str, ...] = tuple(t.name for t in TASKS)
_BY_NAME = {t.name: t for t in TASKS}
_BY_ID = {t.task_id: t for t in TASKS}

SIMPLIFICATIONS = (
    "teleportAction",
    "selfWateringFlowerPots",
    "openContainers",
    "openDoors",
    "noElectricalAction",
)
# The engine's "easy": everything but openContainers (opening containers stays part of the game).
EASY = ("teleportAction", "selfWateringFlowerPots", "openDoors", "noElectricalAction")


def task_info(name: str) -> TaskInfo:
    return _BY_NAME[name]


def resolve_task(ref: int | str) -> TaskInfo:
    """A task by index (0-29, paper order), engine name ("boil") or paper id ("1-1")."""
    if isinstance(ref, bool):
        ref = str(ref)  # never a valid index
    if isinstance(ref, int):
        if 0 <= ref < len(TASKS):
            return TASKS[ref]
    else:
        key = str(ref).strip()
        if key in _BY_NAME:
            return _BY_NAME[key]
        if key in _BY_ID:
            return _BY_ID[key]
        if key.isdigit() and 0 <= int(key) < len(TASKS):
            return TASKS[int(key)]
    raise ValueError(
        f"unknown ScienceWorld task {ref!r}: give an index 0-{len(TASKS) - 1}, a paper id "
        f"({', '.join(t.task_id for t in TASKS[:3])}, ...) or one of the names: {', '.join(TASK_NAMES)}"
    )


def resolve_tasks(refs: Iterable[int | str] | int | str | None) -> tuple[TaskInfo, ...]:
    """The selected tasks in the given order (None = all 30); duplicates are an error."""
    if refs is None:
        return TASKS
    if isinstance(refs, (str, int)):
        refs = [refs]
    chosen = tuple(resolve_task(r) for r in refs)
    if not chosen:
        raise ValueError(
            f"tasks must name at least one ScienceWorld task (or be null for all 30), got {refs!r}"
        )
    names = [t.name for t in chosen]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"tasks lists {', '.join(dupes)} more than once; give each task once")
    return chosen


def resolve_simplifications(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """ "easy", a comma string or a list of simplification names -> the validated names."""
    if spec is None:
        return ()
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    out: list[str] = []
    for item in items:
        if not item:
            continue
        expanded = EASY if item == "easy" else (item,)
        for s in expanded:
            if s not in SIMPLIFICATIONS:
                raise ValueError(
                    f"unknown ScienceWorld simplification {item!r}; valid: easy, {', '.join(SIMPLIFICATIONS)}"
                )
            if s not in out:
                out.append(s)
    return tuple(out)


def simplification_string(task: TaskInfo, simplifications: Sequence[str]) -> str:
    """The engine's simplification string for ``task``: like the engine's own "easy", noElectricalAction
    is dropped for the four wiring tasks, which cannot be solved without `connect`."""
    names = [s for s in simplifications if not (s == "noElectricalAction" and task.electrical)]
    return ",".join(names)


@dataclass(frozen=True)
class Instance:
    task: str
    variation: int


class InstanceSampler:
    """Deterministic seed -> (task, variation) over one variation split of the selected tasks.

    ``task_balanced`` (default): seed s plays task ``s % T`` (T selected tasks) and that task's
    ``s // T``-th variation in a fixed shuffled order, so every task gets the same share of episodes
    although their variation counts range from 10 to 1386. ``uniform``: every (task, variation) pair
    equally often (large tasks dominate). Both cycle through all instances of the split; the shuffle
    (a fixed string-seeded RNG) spreads a small seed range over diverse variations.
    """

    def __init__(self, tasks: Sequence[TaskInfo], variation_split: str, sampling: str = "task_balanced"):
        if variation_split not in VARIATION_SPLITS:
            raise ValueError(f"variation split must be one of {VARIATION_SPLITS}, got {variation_split!r}")
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
        self.tasks = tuple(tasks)
        self.variation_split = variation_split
        self.sampling = sampling
        self._orders: dict[str, list[int]] = {}
        for t in self.tasks:
            order = list(t.variations(variation_split))
            random.Random(f"sciworld:{t.name}:{variation_split}").shuffle(order)
            self._orders[t.name] = order
        self._flat: list[Instance] = []
        self._flat_pos: dict[Instance, int] = {}
        if sampling == "uniform":
            self._flat = [Instance(t.name, v) for t in self.tasks for v in self._orders[t.name]]
            random.Random(
                f"sciworld:uniform:{variation_split}:{','.join(t.name for t in self.tasks)}"
            ).shuffle(self._flat)
            self._flat_pos = {inst: i for i, inst in enumerate(self._flat)}

    def __len__(self) -> int:
        return sum(len(o) for o in self._orders.values())

    def instance(self, seed: int) -> Instance:
        seed = int(seed)
        if self.sampling == "uniform":
            return self._flat[seed % len(self._flat)]
        n_tasks = len(self.tasks)
        task = self.tasks[seed % n_tasks]
        order = self._orders[task.name]
        return Instance(task.name, order[(seed // n_tasks) % len(order)])

    def instances(self) -> list[Instance]:
        """Every instance this sampler can return."""
        return [Instance(name, v) for name, order in self._orders.items() for v in sorted(order)]

    def seed_of(self, task: int | str, variation: int) -> int:
        """The smallest non-negative seed that plays (task, variation); ValueError if not in this split."""
        info = resolve_task(task)
        if info.name not in self._orders:
            raise ValueError(f"task {info.name!r} is not among the selected tasks: {', '.join(self._orders)}")
        order = self._orders[info.name]
        if variation not in order:
            r = info.variations(self.variation_split)
            raise ValueError(
                f"variation {variation} of {info.name!r} is not in the {self.variation_split!r} variations "
                f"({r.start}-{r.stop - 1})"
            )
        if self.sampling == "uniform":
            return self._flat_pos[Instance(info.name, variation)]
        return order.index(variation) * len(self.tasks) + [t.name for t in self.tasks].index(info.name)
