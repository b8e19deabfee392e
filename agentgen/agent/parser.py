"""Reads the model's answer: ``<think>...</think>`` (when thinking is on) then ``<action>...</action>``.

Tolerant of case and whitespace, strict about structure: an answer without exactly the expected tags
yields no action, which the environment counts as an invalid action (penalty, state unchanged).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_THINK_ACTION = re.compile(r"^\s*<think>(.*?)</think>\s*<action>(.*?)</action>\s*$", re.IGNORECASE | re.DOTALL)
_ACTION_ONLY = re.compile(r"^\s*<action>(.*?)</action>\s*$", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"</?\s*(think|action)\s*>", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class ParsedResponse:
    action: str | None  # None: no well-formed action
    thought: str | None
    format_ok: bool


def parse_response(text: str, think: bool) -> ParsedResponse:
    """Extract the action from a model answer. With ``think`` the answer must be a think block followed by
    an action block; without it, an action block alone. Text after ``</action>`` (e.g. an end-of-turn
    token the tokenizer did not strip) is ignored only if it is whitespace."""
    text = text.strip()
    end = text.lower().find("</action>")
    if end >= 0:
        text = text[: end + len("</action>")]
    if think:
        m = _THINK_ACTION.match(text)
        thought, raw = (m.group(1), m.group(2)) if m else (None, None)
    else:
        m = _ACTION_ONLY.match(text)
        thought, raw = (None, m.group(1)) if m else (None, None)
    if raw is None or _TAG.search(raw) or (thought is not None and _TAG.search(thought)):
        return ParsedResponse(action=None, thought=None, format_ok=False)
    action = _SPACE.sub(" ", raw).strip()
    if not action:
        return ParsedResponse(action=None, thought=thought, format_ok=False)
    return ParsedResponse(action=action, thought=thought.strip() if thought else None, format_ok=True)


def format_response(action: str, thought: str | None, think: bool) -> str:
    """The answer the agent should give: used to write SFT targets from expert actions."""
    if think:
        return f"<think>{(thought or '').strip()}</think><action>{action}</action>"
    return f"<action>{action}</action>"
