"""WebShop offline: generated (or user-supplied original) catalog, BM25 search, the original's text
pages and purchase reward, and a scripted expert (see env.py)."""

from agentgen.envs.webshop.catalog import Catalog, RawCatalog, build_catalog, split_goals
from agentgen.envs.webshop.env import SEARCH_TEMPLATE, WebShopEnv, parse_action
from agentgen.envs.webshop.generator import generate_catalog, write_catalog
from agentgen.envs.webshop.loader import load_raw_files
from agentgen.envs.webshop.reward import get_reward, normalize_color
from agentgen.envs.webshop.shop import Shop, ShopConfig, get_shop

__all__ = [
    "SEARCH_TEMPLATE",
    "Catalog",
    "RawCatalog",
    "Shop",
    "ShopConfig",
    "WebShopEnv",
    "build_catalog",
    "generate_catalog",
    "get_reward",
    "get_shop",
    "load_raw_files",
    "normalize_color",
    "parse_action",
    "split_goals",
    "write_catalog",
]
