"""ALFWorld's handcoded expert, repaired, seeded, and able to say what it is doing.

alfworld 0.4.2's ``HandCodedTWAgent`` explores the room the way a player would (it knows the room's
receptacles and what it has seen, not where objects are) and follows a list of sub-goals per task type.
Changed here, in our package rather than in site-packages:

* the "move"/"put" defect: its state tracking recognises a put-down by the word "put" in the last
  command, but the grammar now says "move X to Y", so it never notices that it let go of an object and
  two-object tasks loop. A put-down is recognised from "move" as well;
* stale "close X": after opening X it queues "close X" and may suggest it after walking away, where it
  is impossible (alfworld's wrapper then answers "look" and, next, a random command). The queue is
  dropped when it leaves X;
* receptacles sharing one standing spot (stacked drawers, burner pairs): "go to X" is not admissible
  where one already stands, and it used to stall; it now examines X instead, which counts as a visit;
* randomness: it draws with the module-level ``random`` (which object to take when several are in
  sight, a random admissible command when it would repeat itself). Each expert draws from its own
  seeded generator instead, so an episode's expert actions are reproducible;
* thoughts: ``thought()`` states the sub-goal being pursued and why the next command serves it, taken
  from the policy's own state (sub-goal index, places still to search, what it holds).

When the handcoded policy has no admissible suggestion (it gave up, or its step budget is used), the
expert falls back to a plan computed by the engine's planner from the current state.
"""

from __future__ import annotations

import contextvars
import random

import alfworld.agents.expert.handcoded_expert as _hc
import alfworld.agents.expert.handcoded_expert_tw as _hc_tw
from alfworld.agents.expert import HandCodedAgentFailed, HandCodedAgentTimeout, HandCodedTWAgent

# ----------------------------------------------------------------------------- seeded randomness
_CURRENT_RNG: contextvars.ContextVar[random.Random | None] = contextvars.ContextVar("alfworld_expert_rng", default=None)


class _RandomProxy:
    """Stands in for the ``random`` module inside alfworld's expert module: draws from the generator
    of the expert currently acting (context-local, so threads do not mix), else from ``random``."""

    def __getattr__(self, name):
        rng = _CURRENT_RNG.get()
        return getattr(rng if rng is not None else random, name)


if not isinstance(_hc.random, _RandomProxy):
    _hc.random = _RandomProxy()


# ----------------------------------------------------------------------------- the repairs
class _Repaired:
    """State-tracking repairs: "move X to Y" is the put-down the policy looks for; the pending
    "close X" commands (queued when it opens X) are dropped once it walks away from X, where they
    are no longer possible (it used to suggest them anyway, and stall); "examine X" of another
    receptacle at the same spot (drawers stacked in one cabinet, burner pairs) counts as going there,
    since "go to X" is not possible where one already stands (see FixedHandCodedTWAgent.act); and
    the objects to take or use are read from the admissible commands when its own record of what is
    in sight has none (it matches kinds by substring, "pen" in "pencil 1", and then picked from an
    empty list)."""

    _game_state = None

    def update_state_tracking(self, game_state, last_action):
        self._game_state = game_state
        if last_action.startswith("examine "):
            target = last_action[len("examine "):]
            if target in self.receptacles and target != self.curr_recep:
                last_action = "go to " + target
        if last_action.startswith("move "):
            last_action = "put " + last_action[len("move "):]
        elif last_action.startswith("go to "):
            self.action_backlog = []
        return super().update_state_tracking(game_state, last_action)

    def get_next_subgoal(self):
        sub_action, sub_param, objs_of_interest = super().get_next_subgoal()
        if not objs_of_interest and sub_action in ("take", "use") and self._game_state is not None:
            prefix = "take " if sub_action == "take" else "use "
            for command in self._game_state["admissible_commands"]:
                if command.startswith(prefix):
                    obj = command[len(prefix):].split(" from ")[0]
                    if self.object_id_to_cls(obj) == sub_param and obj not in objs_of_interest:
                        objs_of_interest.append(obj)
        return sub_action, sub_param, objs_of_interest


_POLICIES = {
    name: type(name, (_Repaired, getattr(_hc_tw, name)), {})
    for name in dir(_hc_tw)
    if name.endswith("TWPolicy")
}


class FixedHandCodedTWAgent(HandCodedTWAgent):
    """``HandCodedTWAgent`` using the repaired policies; remembers whether its last answer was the
    policy's own choice or a random admissible command (drawn when the policy would repeat itself)."""

    improvised = False

    def act(self, game_state, reward, done, last_action=""):
        action = self.policy.act(game_state, last_action)
        admissible = game_state["admissible_commands"]
        if action.startswith("go to ") and action not in admissible and "examine " + action[6:] in admissible:
            action = "examine " + action[6:]  # a receptacle at the spot where the agent stands
        self.improvised = action == last_action or (last_action == "look" and action not in admissible)
        if self.improvised:  # never "help": it does nothing in the game and our envs do not offer it
            return _hc.random.choice([c for c in admissible if c != "help"])
        return action

    def get_task_policy(self, task_param):
        name = task_param["task_type"].replace("_", " ").title().replace(" ", "") + "TWPolicy"
        if name not in _POLICIES:
            raise ValueError(f"the handcoded expert has no policy for task type {task_param['task_type']!r}")
        return _POLICIES[name]


# ----------------------------------------------------------------------------- the expert
APPLIANCE_VERBS = ("heat", "cool", "clean")


class AlfWorldExpert:
    """Follows one episode: ``start(state)`` after reset, ``advance(state, command)`` after each
    executed command; ``action()`` and ``thought()`` give its suggestion for the next turn.

    The handcoded policy decides; where it has no admissible suggestion (it gave up, or proposes a
    command that is not possible), the engine's planner plans from the current state, computed only
    when ``action()`` is asked for and followed while the player keeps to it.
    """

    def __init__(self, game_file: str, engine, seed: int = 0, max_steps: int = 200, fallback: bool = True):
        self.engine = engine
        self.fallback = fallback
        self.rng = random.Random(seed)
        self.agent = FixedHandCodedTWAgent(max_steps=max_steps)
        self.agent.reset(game_file)  # reads traj_data.json next to the game file
        self.gave_up = False          # the handcoded policy failed for good this episode
        self.used_planner = False
        self._suggestion: tuple[str, str] | None = None
        self._plan: list[str] | None = None  # planner fallback, computed on demand
        self._admissible: list[str] = []

    @property
    def policy(self):
        return self.agent.policy

    # ------------------------------------------------------------------ protocol
    def start(self, state) -> None:
        self.agent.observe(state["feedback"])
        self._decide(state, last_action="")

    def advance(self, state, last_action: str) -> None:
        """Tell the expert the command just executed (valid ones only) and the resulting state."""
        if self._plan and last_action == self._plan[0]:
            self._plan = self._plan[1:]
        else:
            self._plan = None
        self._decide(state, last_action)

    def action(self) -> str | None:
        if self._suggestion is not None:
            return self._suggestion[0]
        if not self.fallback:
            return None
        if self._plan is None:
            from agentgen.envs.alfworld.engine import replan

            self._plan = replan(self.engine)
            self.used_planner = True
        if self._plan and self._plan[0] in self._admissible:
            return self._plan[0]
        return None

    def thought(self) -> str | None:
        if self._suggestion is not None:
            return self._suggestion[1]
        action = self.action()
        if action is None:
            return None
        left = len(self._plan)
        return (f"My search did not lead to the goal, so I follow a plan to it: "
                f"{left} step{'s' if left != 1 else ''} to go, next '{action}'.")

    # ------------------------------------------------------------------ internals
    def _decide(self, state, last_action: str) -> None:
        self._admissible = list(state["admissible_commands"])
        self._suggestion = None
        if self.gave_up:
            return
        token = _CURRENT_RNG.set(self.rng)
        try:
            action = self.agent.act(state, 0, state["won"], last_action)
        except (HandCodedAgentFailed, HandCodedAgentTimeout, IndexError, KeyError):
            # out of sub-goals or steps, or its bookkeeping broke (e.g. nothing left to choose from)
            self.gave_up = True
            return
        finally:
            _CURRENT_RNG.reset(token)
        if action in self._admissible and action != "help":
            self._suggestion = (action, self._explain(action))

    def _explain(self, action: str) -> str:
        """A short account of the sub-goal behind ``action``, from the policy's own state."""
        p = self.policy
        idx = min(p.subgoal_idx, len(p.subgoals) - 1)
        sub_action, sub_param = p.subgoals[idx]["action"], p.subgoals[idx]["param"]
        step = f"Step {idx + 1} of {len(p.subgoals)} of my plan ({sub_action} {sub_param})"
        if self.agent.improvised:
            return f"{step}: my last move brought no progress, so I try '{action}' to get unstuck."
        holding = p.inventory[0] if p.inventory else "nothing"
        verb = action.split()[0]
        here = p.curr_recep or "the middle of the room"
        origin = p.got_inventory_from_recep

        if p.inventory and not p.is_agent_holding_right_object and origin and action.endswith(origin):
            return f"{step}: I am holding {holding}, which is not what I need, so I return it to {origin}."
        if verb == "go" or (verb == "examine" and action[len("examine "):] in p.receptacles
                            and action[len("examine "):] != here):
            target = action.split(" ", 2)[-1] if verb == "go" else action[len("examine "):]
            if sub_action == "find" and sub_param in p.RECEPTACLES:
                if p.inventory:
                    return f"{step}: I hold {holding}, which goes in a {sub_param}; I take it to {target}."
                return f"{step}: I need a {sub_param}; I go to {target}."
            if sub_action == "find":
                if p.obj_cls_to_receptacle_map.get(sub_param) == target:
                    return f"{step}: I saw a {sub_param} at {target} earlier, so I go there."
                left = len(p.receptacles_to_check)
                return (f"{step}: I have not found a {sub_param} yet; I check {target} next"
                        f" ({left} place{'s' if left != 1 else ''} left to search).")
            if sub_action == "goto" and idx + 1 < len(p.subgoals):
                return f"{step}: I hold {holding}; to {p.subgoals[idx + 1]['action']} it I go to {target}."
            return f"{step}: I go to {target}."
        if verb == "open":
            return f"{step}: {here} is closed; I open it to see inside."
        if verb == "close":
            return f"{step}: I am done with {here}; I close it before moving on."
        if verb == "take":
            return f"{step}: there is a {sub_param} at {here}; I take it."
        if verb == "move":
            return f"{step}: I hold {holding} and I am at {here}, where it must go, so I put it there."
        if verb in APPLIANCE_VERBS:
            return f"{step}: I am at {here} holding {holding}; I {verb} it."
        if verb == "use":
            return f"{step}: I hold {holding} and the {sub_param} is here; I turn it on to look at it in its light."
        if verb == "examine":
            return f"{step}: I look closely at {here} to find the {sub_param}."
        return f"{step}: next I {action}."
