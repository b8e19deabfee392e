"""ScienceWorld as an agentgen TextEnv, on the real JVM engine.

An episode is one (task, variation) of the split's variations (``tasks.InstanceSampler``); the game
is the engine's, only stepped faster (``engine.SciWorldEngine``). Outcome rules:
- success: the engine's score reaches 100 (it then sets done);
- failure: a wrong ``focus on`` (the engine sets the score to -100) or any other engine-side end
  below 100 ends the episode at once (``failed=True``); running out of ``max_steps`` also fails;
- invalid: input the parser rejects ("No known action matches that input.", or "Unknown action..."
  when a numbered ambiguity question gets something other than a valid number), plus the disabled
  "reset task". The state is unchanged and the base class charges the invalid penalty.
The step limit is ours alone: the engine has none once the package's Python wrapper is bypassed.

What the agent reads: ``instruction()`` holds the rules and the action templates of the current task
(``prompt.py``); each observation is the engine's text followed by one line "Objects you can refer
to: ..." (the engine's object names in view, ``show_objects``; left out once the episode is over);
``info["task"]`` is the task description. ``admissible_actions()`` is None (too many to list).

Determinism: ``reset(seed)`` always builds the same (task, variation). With ``deterministic`` on
(default) the whole game is reproducible too: the same actions give the same observations, scores
and gold path, in any JVM. Off, the engine's identity-hash-ordered sets make listing order, device
and animal updates and the gold path vary between loads (``engine.py`` explains both).

The expert follows the engine's gold path (generated at reset when ``gold_path`` is on). It keeps a
cursor on the first gold action not yet taken: the cursor moves on when the agent's action equals it,
so after a harmless detour (an invalid action, an extra look) the expert resumes where the plan left
off. It does not re-plan: after a detour that changes the world (another room, an object moved), or
where the engine's own randomness made the world differ from the gold run (bees in mendelian genetics),
the next gold action may no longer fit; the expert then just moves on to the following one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agentgen.envs.base import SPLITS, RewardSpec, TextEnv
from agentgen.envs.sciworld.engine import (
    DEFAULT_HEAP,
    DEFAULT_JVM_OPTIONS,
    SciWorldEngine,
    SciWorldEngineError,
)
from agentgen.envs.sciworld.prompt import (
    DISABLED_ACTIONS,
    FOCUS_FAILED_NOTE,
    TEMPLATE_HELP,
    build_instruction,
    objects_line,
)
from agentgen.envs.sciworld.tasks import (
    SAMPLING_MODES,
    VARIATION_SPLITS,
    Instance,
    InstanceSampler,
    resolve_simplifications,
    resolve_tasks,
    simplification_string,
    task_info,
)

INVALID_PREFIXES = ("No known action matches that input", "Unknown action.")
MAX_ACTION_CHARS = 300  # longer text is not an action (the parser would only reject it, slowly)


def normalize_action(action: str) -> str:
    """One line, single spaces: LLM output may carry newlines or padding the parser trips over."""
    return " ".join(str(action).split())


class SciWorldEnv(TextEnv):
    """ScienceWorld (30 tasks) on its JVM engine; see the module docstring for the rules.

    Parameters (conf/env/sciworld.yaml ``params``):
    - tasks: None (all 30) or a list of task names ("boil"), paper ids ("1-1") or indices (0-29).
    - variation_split: which engine variation split each of our splits plays, default
      {train: train, test: test}; e.g. {test: dev} validates on dev. Train and test must differ.
    - simplifications: "easy" (default; all but openContainers), a comma string or a list.
    - sampling: "task_balanced" (default) or "uniform" over (task, variation) pairs.
    - gold_path: generate the gold path at reset (needed by the expert; mendelian tasks take seconds).
    - show_objects: append the objects the agent can refer to after each observation.
    - deterministic: run the JVM with identity hashes fixed (reproducible games, ~20% slower).
    - jvm_heap / jvm_options: the JVM's -Xmx and extra options.
    """

    name = "sciworld"

    def __init__(
        self,
        split: str = "train",
        max_steps: int = 50,
        reward: RewardSpec | dict | None = None,
        tasks: Iterable[int | str] | int | str | None = None,
        variation_split: Mapping[str, str] | None = None,
        simplifications: str | Sequence[str] | None = "easy",
        sampling: str = "task_balanced",
        gold_path: bool = True,
        show_objects: bool = True,
        jvm_heap: str = DEFAULT_HEAP,
        jvm_options: Sequence[str] | None = DEFAULT_JVM_OPTIONS,
        deterministic: bool = True,
    ):
        super().__init__(split=split, max_steps=max_steps, reward=reward)
        self.variation_split = self._check_variation_split(variation_split)
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
        self.tasks = resolve_tasks(tasks)
        self.simplifications = resolve_simplifications(simplifications)
        self.sampler = InstanceSampler(self.tasks, self.variation_split[split], sampling)
        self.gold_path = bool(gold_path)
        self.show_objects = bool(show_objects)
        self.jvm_heap = str(jvm_heap)
        self.jvm_options = tuple(jvm_options or ())
        self.deterministic = bool(deterministic)
        self._engine: SciWorldEngine | None = None  # started at the first reset (never before a fork)
        self.instance: Instance | None = None
        self.score = 0
        self._task_text = ""
        self._templates: list[str] | None = None
        self._gold: list[str] = []
        self._cursor = 0
        self._detours = 0

    @staticmethod
    def _check_variation_split(mapping: Mapping[str, str] | None) -> dict[str, str]:
        chosen = {"train": "train", "test": "test"}
        for key, value in dict(mapping or {}).items():
            if key not in SPLITS:
                raise ValueError(f"variation_split keys must be among {SPLITS}, got {key!r}")
            if value not in VARIATION_SPLITS:
                raise ValueError(
                    f"variation_split[{key!r}] must be one of the engine's splits {VARIATION_SPLITS}, got {value!r}"
                )
            chosen[key] = value
        if chosen["train"] == chosen["test"]:
            raise ValueError(
                f"variation_split maps both train and test to the engine's {chosen['train']!r} variations: "
                "the two splits must never share instances; map them to different engine splits"
            )
        return chosen

    # ------------------------------------------------------------------ instances
    @property
    def num_instances(self) -> int:
        return len(self.sampler)

    def instance_for_seed(self, seed: int) -> Instance:
        return self.sampler.instance(seed)

    def seed_for_instance(self, task: int | str, variation: int) -> int:
        """A seed that plays (task, variation) in this split (e.g. to replay a known game)."""
        return self.sampler.seed_of(task, variation)

    # ------------------------------------------------------------------ engine
    def _start_engine(self) -> SciWorldEngine:
        """The JVM, started at the first reset and restarted by a reset after it died."""
        if self._engine is None or not self._engine.alive:
            if self._engine is not None:
                self._engine.close()
            self._engine = SciWorldEngine(
                heap=self.jvm_heap, jvm_options=self.jvm_options, deterministic=self.deterministic
            )
        return self._engine

    @property
    def engine(self) -> SciWorldEngine:
        """The JVM of the current episode; an error if there is none (no reset yet, or it died)."""
        if self._engine is None or not self._engine.alive:
            raise SciWorldEngineError(
                "the ScienceWorld engine is not running: call reset(seed) first (it also restarts a JVM that died)"
            )
        return self._engine

    @property
    def jvm_pid(self) -> int | None:
        return self._engine.pid if self._engine is not None and self._engine.alive else None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self.done = True

    # ------------------------------------------------------------------ protocol
    def _reset(self, seed: int) -> tuple[str, dict[str, Any]]:
        inst = self.sampler.instance(seed)
        engine = self._start_engine()
        engine.load(
            inst.task,
            inst.variation,
            simplification_string(task_info(inst.task), self.simplifications),
            self.gold_path,
        )
        self.instance = inst
        self.score = 0
        self._task_text = engine.task_description()
        self._templates = engine.action_templates()
        self._gold = engine.gold_actions() if self.gold_path else []
        self._cursor = 0
        self._detours = 0
        obs = self._with_objects(engine.look())
        return obs, self._info(task=self._task_text)

    def _step(self, action: str) -> tuple[str, bool, bool, dict[str, Any]]:
        text = normalize_action(action)
        if text.lower() in DISABLED_ACTIONS:
            return self._refuse(f"The action '{text}' is disabled in this environment.")
        if len(text) > MAX_ACTION_CHARS:
            return self._refuse(
                f"No known action matches that input (the input is {len(text)} characters long)."
            )

        result = self.engine.step(text)
        obs = result.observation.strip()
        invalid = obs.startswith(INVALID_PREFIXES)
        self.score = result.score
        solved = result.score >= 100
        failed = not solved and (result.score < 0 or result.completed)
        self._advance_expert(text)

        info = self._info()
        if failed:
            info["failed"] = True
            if result.score < 0:
                obs = f"{obs}\n{FOCUS_FAILED_NOTE}"
        elif not solved and self.steps < self.max_steps:
            obs = self._with_objects(obs)
        return obs, solved, invalid, info

    def _refuse(self, message: str) -> tuple[str, bool, bool, dict[str, Any]]:
        self._detours += 1
        return self._with_objects(message), False, True, self._info()

    def _with_objects(self, obs: str) -> str:
        if not self.show_objects:
            return obs
        return f"{obs.rstrip()}\n{objects_line(self.engine.objects())}"

    def _info(self, **extra: Any) -> dict[str, Any]:
        inst = self.instance
        info: dict[str, Any] = {
            "score": self.score,
            "raw_reward": self.score,
            "task_name": inst.task if inst else None,
            "variation": inst.variation if inst else None,
        }
        info.update(extra)
        return info

    # ------------------------------------------------------------------ expert
    def _advance_expert(self, action: str) -> None:
        """The cursor moves past the gold action once it was taken, even if the engine rejected it (a
        "0" answering an ambiguity question that did not arise in this run): repeating it cannot help."""
        if self._cursor < len(self._gold) and action.lower() == self._gold[self._cursor].lower():
            self._cursor += 1
        else:
            self._detours += 1

    def expert_action(self) -> str | None:
        if self.done or self._cursor >= len(self._gold):
            return None
        return self._gold[self._cursor]

    def expert_thought(self) -> str | None:
        action = self.expert_action()
        if action is None:
            return None
        where = f"step {self._cursor + 1} of {len(self._gold)}"
        if self._detours:
            off = f"{self._detours} off-plan action{'s' if self._detours > 1 else ''} so far"
            return f"Following the gold plan ({off}): {where} is '{action}'."
        return f"Following the gold plan: {where} is '{action}'."

    # ------------------------------------------------------------------ text
    def task_description(self) -> str:
        return self._task_text

    def instruction(self) -> str:
        """Rules and the action templates of the current task (before the first reset: the templates the
        configured simplifications and tasks allow)."""
        templates = self._templates if self._templates is not None else self._configured_templates()
        return build_instruction(templates, self.max_steps, show_objects=self.show_objects)

    def _configured_templates(self) -> list[str]:
        drop = set()
        if "teleportAction" not in self.simplifications:
            drop.add("teleport OBJ")
        if "noElectricalAction" in self.simplifications and not any(t.electrical for t in self.tasks):
            drop |= {"connect OBJ to OBJ", "disconnect OBJ"}
        return [t for t in TEMPLATE_HELP if t not in drop]

    def admissible_actions(self) -> list[str] | None:
        return None  # hundreds to thousands; the prompt lists templates and objects instead

    def valid_actions(self) -> list[str]:
        """The engine's full valid-action list now (slow: 50-1,300 ms; for analysis, not per step)."""
        return self.engine.valid_actions()

    def gold_actions(self) -> list[str]:
        """The gold path of the current episode (empty with gold_path off)."""
        return list(self._gold)
