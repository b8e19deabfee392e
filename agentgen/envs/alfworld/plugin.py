"""ALFWorld's declaration to the env registry (read without importing TextWorld)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentgen.envs.plugin import EnvPlugin
from agentgen.envs.plugin import require as _need


def validate_params(p: dict[str, Any], split: str) -> None:
    """AlfWorldEnv's own parameter rules (building it finds or generates games, which takes minutes)."""
    from agentgen.envs.alfworld.env import TEST_SPLITS
    from agentgen.envs.alfworld.games import DATA_VERSION_DIR, SOURCES, default_data_dir
    from agentgen.envs.alfworld.problem import TASK_TYPES

    source = p.get("source", "auto")
    _need(source in SOURCES, f"env.alfworld.params.source={source!r} is invalid; valid: {', '.join(SOURCES)}.")
    test_split = p.get("test_split", "valid_unseen")
    _need(test_split in TEST_SPLITS,
          f"env.alfworld.params.test_split={test_split!r} is invalid; valid: {', '.join(TEST_SPLITS)}.")
    bad = [t for t in (p.get("task_types") or []) if t not in TASK_TYPES]
    _need(not bad, f"env.alfworld.params.task_types has {', '.join(map(str, bad))}, not an ALFWorld task type; "
          f"valid: {', '.join(TASK_TYPES)}.")
    if p.get("data_dir"):
        _need(Path(str(p["data_dir"])).expanduser().is_dir(), f"env.alfworld.params.data_dir={p['data_dir']} does "
              f"not exist; give the folder holding {DATA_VERSION_DIR}/, or null ($ALFWORLD_DATA, else generated "
              "games).")
    if source == "data":
        root = Path(str(p.get("data_dir") or default_data_dir())).expanduser() / DATA_VERSION_DIR
        _need(root.is_dir(), f"env.alfworld.params.source=data needs the released games, but {root} does not "
              "exist; set env.alfworld.params.data_dir (or $ALFWORLD_DATA), or use source=auto / generated.")


PLUGIN = EnvPlugin(
    name="alfworld",
    title="ALFWorld",
    env="agentgen.envs.alfworld.env:AlfWorldEnv",
    augmenter="agentgen.envs.alfworld.augment:AlfWorldAugmenter",
    validate_params=validate_params,
    eval_by_default=True,
    order=1,
)
