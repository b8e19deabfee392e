"""Memoised parsing for TextWorld's PDDL text engine (same output, faster steps and resets).

After every command the engine writes out each admissible command and the feedback by deriving
grammar templates, and TextWorld re-parses each template string and each condition string with its
tatsu parser on every use: about 20 ms a command, most of a 0.5-1 s step in a kitchen. The strings
come from a small fixed set (the grammar's rules and action templates), so the parse results are
cached here and handed out as deep copies (the derivation writes into the symbols it gets, and the
copies keep callers from sharing them). Results are identical; only the parsing is skipped.

Loading a game translates its PDDL problem to fast-downward's SAS form twice (plain, and optimised
for the planner), and ``reset`` does both again: 1-3 s of CPU in a kitchen for four identical
translations. Translations are cached per (domain, problem) for the most recent games, so a reset
(and every episode of a group played on the same game) skips them. ``pddl2sas`` also overwrites
``sys.argv`` and module-level options, so calls are serialised and ``sys.argv`` is restored.

Set ``AGENTGEN_ALFWORLD_NO_SPEEDUPS=1`` to run the engine unmodified (for comparisons).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import os
import sys
import threading

_installed = False
# Set while checking generated games, which never call the planner: the planner's optimised
# translation is then replaced by the plain one (valid for the planner too, only slower to search).
_NO_PLANNER = contextvars.ContextVar("alfworld_no_planner", default=False)


@contextlib.contextmanager
def planner_unused():
    """Within this block, engines skip the planner's optimised translation of each game."""
    token = _NO_PLANNER.set(True)
    try:
        yield
    finally:
        _NO_PLANNER.reset(token)


def _memoised(parse):
    @functools.lru_cache(maxsize=8192)
    def cached(args, kwargs):
        return parse(*args, **dict(kwargs))

    @functools.wraps(parse)
    def wrapper(*args, **kwargs):
        return copy.deepcopy(cached(args, tuple(sorted(kwargs.items()))))

    wrapper.cache = cached
    return wrapper


def _cached_translation(pddl2sas, maxsize: int):
    lock = threading.Lock()

    @functools.lru_cache(maxsize=maxsize)
    def cached(domain: str, problem: str, verbose: bool, optimize: bool):
        argv = sys.argv
        try:
            return pddl2sas(domain, problem, verbose=verbose, optimize=optimize)
        finally:
            sys.argv = argv

    @functools.wraps(pddl2sas)
    def wrapper(domain: str, problem: str, verbose: bool = False, optimize: bool = False):
        optimize = bool(optimize) and not _NO_PLANNER.get()
        with lock:  # the translator keeps its settings in module globals
            return cached(domain, problem, bool(verbose), bool(optimize))

    wrapper.cache = cached
    return wrapper


def install(translation_cache_games: int = 16) -> None:
    """Replace the parse helpers of TextWorld's grammar (textgen) and logic modules and fast-downward's
    PDDL->SAS translation with cached versions; idempotent."""
    global _installed
    if _installed or os.environ.get("AGENTGEN_ALFWORLD_NO_SPEEDUPS", "") not in ("", "0"):
        return
    import fast_downward
    from textworld import logic
    from textworld.envs.pddl import textgen

    textgen._parse_and_convert = _memoised(textgen._parse_and_convert)
    logic._parse_and_convert = _memoised(logic._parse_and_convert)
    # two translations (plain, optimised) per game
    fast_downward.pddl2sas = _cached_translation(fast_downward.pddl2sas, 2 * translation_cache_games)
    _installed = True
