"""Hydra's composition errors as one paragraph naming the bad value and the valid ones (a group option that is not
a file, a key that is not there, a value of the wrong type), with the keys or options that would fit."""

from __future__ import annotations

from functools import lru_cache

from omegaconf import DictConfig, OmegaConf

from agentgen.cli_help import defaults_comments
from agentgen.config.groups import CONF_DIR, _choices, _group_dir, group_options
from agentgen.config.schema import AgentgenConfig
from agentgen.options import need


def _did_you_mean(word: str, candidates: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _override_value(overrides: list[str], key: str) -> str | None:
    return next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), None)


@lru_cache(maxsize=64)
def _keys_at(parent: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    """The keys under ``parent`` of the config these group choices compose (call inside Hydra's initialize)."""
    try:
        from hydra import compose

        node = OmegaConf.select(compose("config", overrides=list(choices)), parent)
        return tuple(sorted(str(k) for k in node.keys())) if isinstance(node, DictConfig) else ()
    except Exception:  # noqa: BLE001 - the listing is best-effort; the paragraph names the key anyway
        return ()


def _unknown_key(key: str, value: str | None, overrides: list[str]) -> str:
    """A key the composed config does not have: the keys it has there, and which group options have it."""
    parent, _, leaf = key.rpartition(".")
    said = f"{key}={value}" if value is not None else key
    choices = tuple(o for o in overrides if _group_dir(o.split("=", 1)[0].lstrip("+"))[0].is_dir())
    keys = list(_keys_at(parent, choices)) if parent else []
    msg = f"{said}: {parent or 'the config'} has no key '{leaf}'"
    msg += f"{_did_you_mean(leaf, keys)}; keys there: {', '.join(keys)}" if keys else ""
    group, _, rest = parent.partition(".")
    if rest == "params" and (CONF_DIR / group).is_dir():  # a typed params block: which options of the group read it
        having = [o for o in group_options(group) if leaf in _params_keys(group, o)]
        if having:
            msg += f". {leaf} is a setting of {' / '.join(f'{group}={o}' for o in having)}"
    top = key.split(".")[0]
    if parent == top and (CONF_DIR / top).is_dir():  # a key that only some options of the group have
        having = [o for o in group_options(top) if leaf in OmegaConf.load(CONF_DIR / top / f"{o}.yaml").keys()]
        chosen = _override_value(overrides, top) or f"{defaults_comments()[0].get(top)} (the default)"
        if having:
            example = "custom" if "custom" in having else having[0]
            msg += (f". {top}={chosen} has no {leaf}; the options with it: {', '.join(having)}, e.g. "
                    f"{top}={example} {said}")
    return msg + "."


@lru_cache(maxsize=None)
def _params_keys(group: str, option: str) -> tuple[str, ...]:
    """The keys of ``<group>.params`` with conf/<group>/<option>.yaml: its params schema's (agentgen/options),
    found through the file's defaults list (``<schema>@params``, possibly inherited) and the file's own."""
    from dataclasses import fields as dc_fields

    from agentgen.options import PARAMS_SCHEMAS

    path = CONF_DIR / group / f"{option}.yaml"
    if not path.is_file():
        return ()
    node = OmegaConf.load(path)
    keys = set((node.get("params") or {}).keys())
    for entry in node.get("defaults") or []:
        name = str(entry).split("@")[0] if isinstance(entry, str) else ""
        if (group, name) in PARAMS_SCHEMAS:
            keys |= {f.name for f in dc_fields(PARAMS_SCHEMAS[(group, name)])}
        elif name and name != "_self_":
            keys |= set(_params_keys(group, name))
    return tuple(sorted(keys))


def check_group_choices(overrides: list[str]) -> None:
    """Every ``group=option`` names a file of the group: Hydra skips a missing option of an optional group
    (``debug=fast`` would run without debug settings)."""
    for o in overrides:
        key, _, value = o.partition("=")
        key = key.lstrip("+")
        if (key.startswith(("~", "hydra")) or not (CONF_DIR / key).is_dir() or not value
                or value.startswith(("[", "null"))):
            continue
        for option in value.split(","):  # a sweep's values are checked one by one
            need((CONF_DIR / key / f"{option}.yaml").is_file() or (key == "env" and option in group_options(key)),
                 f"{key}={option} is not a valid choice for '{key}'{_did_you_mean(option, _choices(key))}; valid "
                 f"choices: {', '.join(_choices(key))} (the files in conf/{key}/).")


def describe_compose_error(exc: BaseException, overrides: list[str]) -> str:
    """Turn a Hydra/OmegaConf composition error into one paragraph naming the bad value and the valid ones."""
    from hydra.errors import MissingConfigException

    text = str(exc).strip()
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    if isinstance(exc, MissingConfigException):
        group = None
        for key in keys:
            if f"'{key}/" in text or f"'{key}'" in text:
                group = key
        if group:
            bad = _override_value(overrides, group)
            named = _group_dir(group)[1]
            return (f"{group}={bad} is not a valid choice for '{group}'{_did_you_mean(bad, _choices(group))}; "
                    f"valid choices: {', '.join(_choices(group))} (the files in {named}).")
        return text.splitlines()[0]
    if "No match in the defaults list" in text:
        key = text.split("'")[1] if "'" in text else "?"
        value = _override_value(overrides, key)
        return (f"{key}={value}: '{key}' is not in the defaults list, so it is added, not overridden: write "
                f"+{key}={value} (choices: {', '.join(_choices(key))}).")
    cause = exc.__cause__ or exc
    first = str(cause).strip().splitlines()
    key = next((ln.split(":", 1)[1].strip() for ln in first if ln.strip().startswith("full_key:")), None)
    msg = first[0] if first else text
    if key and ("not in struct" in msg or " not in '" in msg):
        return _unknown_key(key, _override_value(overrides, key), overrides)
    if key:
        node = AgentgenConfig()
        hint = " Valid values: true, false." if "is not a valid bool" in msg else ""  # also a typed params block's
        try:
            typ = type(OmegaConf.select(OmegaConf.structured(node), key))
            if typ is bool:
                hint = " Valid values: true, false."
        except Exception:  # noqa: BLE001 - the hint is best-effort
            pass
        return f"Bad value for '{key}': {msg}.{hint}"
    return " ".join(ln.strip() for ln in text.splitlines() if ln.strip())
