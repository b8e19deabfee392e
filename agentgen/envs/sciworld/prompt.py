"""What the agent reads in ScienceWorld: the rules, the action templates, and the objects in view.

The full valid-action list (600-9,000 entries) does not fit a prompt, so the agent gets the action
templates once (in ``instruction``) and, after each observation, the names of the objects it can
refer to now (the engine's ``getPossibleObjects``: room contents, inventory, doors, rooms).
The engine's template strings are terse and sometimes not the syntax it parses ("go OBJ" is typed
"go to kitchen"), so each is shown in its usable form with the ScienceWorld README's description.
"""

from __future__ import annotations

from collections.abc import Sequence

# engine template -> (form shown to the agent, what it does). Order = display order.
TEMPLATE_HELP: dict[str, tuple[str, str]] = {
    "look around": ("look around", "describe the current room"),
    "look at OBJ": ("look at OBJ", "describe an object in detail"),
    "look in OBJ": ("look in OBJ", "describe a container's contents"),
    "go OBJ": ("go to LOC", "move to a connected room (its door must be open)"),
    "teleport OBJ": ("teleport to LOC", "move directly to any room"),
    "open OBJ": ("open OBJ", "open a container or door"),
    "close OBJ": ("close OBJ", "close a container or door"),
    "pick up OBJ": ("pick up OBJ", "move an object to your inventory"),
    "put down OBJ": ("put down OBJ", "drop an inventory item"),
    "move OBJ to OBJ": ("move OBJ to OBJ", "move an object into a container"),
    "pour OBJ in OBJ": ("pour OBJ into OBJ", "pour a liquid (or a container's contents) into a container"),
    "dunk OBJ in OBJ": ("dunk OBJ into OBJ", "dunk a container into a liquid"),
    "mix OBJ": ("mix OBJ", "chemically mix the contents of a container"),
    "activate OBJ": ("activate OBJ", "turn a device on"),
    "deactivate OBJ": ("deactivate OBJ", "turn a device off"),
    "use OBJ on OBJ": ("use OBJ on OBJ", "use a tool on something (e.g. a thermometer on a substance)"),
    "connect OBJ to OBJ": ("connect OBJ to OBJ", "connect two electrical terminals"),
    "disconnect OBJ": ("disconnect OBJ", "disconnect an electrical component"),
    "read OBJ": ("read OBJ", "read a book or note"),
    "eat OBJ": ("eat OBJ", "eat a food"),
    "flush OBJ": ("flush OBJ", "flush a toilet"),
    "focus on OBJ": ("focus on OBJ", "declare the object the task is about (see the rules)"),
    "wait": ("wait", "let 10 time steps pass"),
    "wait1": ("wait1", "let 1 time step pass"),
    "inventory": ("inventory", "list what you carry"),
    "task": ("task", "repeat the task description"),
}

# Engine actions the environment refuses: "reset task" would wipe the score and focus mid-episode
# (undoing a failed focus), which no benchmark protocol allows.
DISABLED_ACTIONS = frozenset({"reset task"})


def action_lines(engine_templates: Sequence[str] | None) -> list[str]:
    """One "- form: description" line per template the engine offers (all known ones if None)."""
    known = set(TEMPLATE_HELP) if engine_templates is None else set(engine_templates)
    lines = [f"- {form}: {what}" for key, (form, what) in TEMPLATE_HELP.items() if key in known]
    extra = sorted(t for t in known - set(TEMPLATE_HELP) if t not in DISABLED_ACTIONS)
    lines += [f"- {t}" for t in extra]
    return lines


def build_instruction(
    engine_templates: Sequence[str] | None, max_steps: int, show_objects: bool = True
) -> str:
    names_hint = (
        "(the observation lists the objects you can refer to now)"
        if show_objects
        else "(the action 'objects' lists them)"
    )
    intro = (
        "You are an agent in ScienceWorld, a text simulation of a house (kitchen, bathroom, workshop, "
        "greenhouse, outside, ...) where you carry out elementary-school science tasks."
    )
    how = (
        "Each turn, answer with exactly one action: one of the templates below with OBJ / LOC replaced by "
        f"a name the game knows {names_hint}."
    )
    rules = [
        (
            "- 'focus on OBJ' commits you to an object: focus only on the object the task asks for. "
            "Focusing on a wrong object ends the task as a failure."
        ),
        (
            "- If the game answers 'Ambiguous request' with a numbered list, reply with just the number of "
            "the option you meant."
        ),
        "- An action the game cannot parse changes nothing and costs a small penalty.",
        f"- You have at most {max_steps} actions; the task is solved when the game's score reaches 100.",
    ]
    return "\n".join([intro, how, *action_lines(engine_templates), "Rules:", *rules])


def objects_line(objects: Sequence[str]) -> str:
    return "Objects you can refer to: " + ", ".join(objects) + "."


FOCUS_FAILED_NOTE = "(That was not the object the task is about: the task has failed.)"
