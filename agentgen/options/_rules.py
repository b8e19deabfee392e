"""The rule helpers every options dataclass uses: one paragraph per broken rule, naming key, value and what is
valid."""

from __future__ import annotations

from typing import Any, Sequence

from agentgen.errors import ConfigError


def need(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def choice(value: Any, valid: Sequence[Any], key: str, why: str = "") -> None:
    need(value in valid, f"{key}={value!r} is invalid; valid: {', '.join(map(str, valid))}{why}.")


def at_least(value: Any, low: float, key: str, why: str = "") -> None:
    need(_number(value) and value >= low, f"{key}={value!r} is invalid: it must be a number >= {low:g}{why}.")


def positive(value: Any, key: str, why: str = "") -> None:
    need(_number(value) and value > 0, f"{key}={value!r} is invalid: it must be a positive number{why}.")


def share(value: Any, key: str, why: str = "", *, zero_ok: bool = False) -> None:
    """A fraction in (0, 1] (or [0, 1) with ``zero_ok``, for a dropout-like probability)."""
    ok = _number(value) and ((0 <= value < 1) if zero_ok else (0 < value <= 1))
    span = "[0, 1)" if zero_ok else "(0, 1]"
    need(ok, f"{key}={value!r} is invalid: it must be in {span}{why}.")
