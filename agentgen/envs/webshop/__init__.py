"""WebShop offline: generated (or user-supplied original) catalog, BM25 search, the original's text
pages and purchase reward, and a scripted expert (see env.py).

The names below load on first use, so the registry reads ``plugin.py`` without loading the search index."""

from __future__ import annotations

from agentgen.envs.plugin import lazy_exports

_EXPORTS = {
    "SEARCH_TEMPLATE": "env",
    "Catalog": "catalog",
    "RawCatalog": "catalog",
    "Shop": "shop",
    "ShopConfig": "shop",
    "WebShopEnv": "env",
    "build_catalog": "catalog",
    "generate_catalog": "generator",
    "get_reward": "reward",
    "get_shop": "shop",
    "load_raw_files": "loader",
    "normalize_color": "reward",
    "parse_action": "env",
    "split_goals": "catalog",
    "write_catalog": "generator",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
