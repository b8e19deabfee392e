"""WebShop's declaration to the env registry (read without loading a catalog or its search index)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentgen.envs.plugin import EnvPlugin
from agentgen.envs.plugin import require as _need


def validate_params(p: dict[str, Any], split: str) -> None:
    """WebShopEnv's own parameter rules (building it loads or generates the catalog and its search index)."""
    catalog, goals = p.get("catalog", "generated"), p.get("goals", "synthetic")
    _need(catalog in ("generated", "files"), f"env.webshop.params.catalog={catalog!r} is invalid; valid: generated, "
          "files (the original data files in data_dir).")
    _need(goals in ("synthetic", "human"), f"env.webshop.params.goals={goals!r} is invalid; valid: synthetic, human.")
    if catalog == "generated":
        _need(goals == "synthetic", "env.webshop.params.goals=human needs catalog=files (the generated catalog has "
              "synthetic goals only).")
        return
    data_dir = p.get("data_dir")
    _need(bool(data_dir) and Path(str(data_dir)).expanduser().is_dir(), f"env.webshop.params.data_dir={data_dir} "
          "does not exist; catalog=files needs the folder holding the original WebShop data files.")
    keys = ["products_file", "attributes_file"] + (["human_goals_file"] if goals == "human" else [])
    for key in keys:
        _need(bool(p.get(key)) and (Path(str(data_dir)).expanduser() / str(p.get(key))).is_file(),
              f"env.webshop.params.{key}={p.get(key)} is not a file in data_dir={data_dir}; files there: "
              f"{', '.join(sorted(x.name for x in Path(str(data_dir)).expanduser().glob('*.json'))) or 'none'}.")


PLUGIN = EnvPlugin(
    name="webshop",
    title="WebShop",
    env="agentgen.envs.webshop.env:WebShopEnv",
    augmenter="agentgen.envs.webshop.augment:WebShopAugmenter",
    validate_params=validate_params,
    eval_by_default=True,
    order=3,
)
