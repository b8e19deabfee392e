"""A shop = catalog + search index + goals per split, built once per process and configuration.

The generated catalog (3000 products, ~24k goals) builds in memory in about two seconds, so
no cache directory is needed: each worker process builds its own on first use and reuses it for
every environment it creates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from agentgen.envs.webshop.catalog import Catalog, build_catalog, split_goals
from agentgen.envs.webshop.generator import generate_catalog
from agentgen.envs.webshop.loader import SMALL_SET, load_raw_files
from agentgen.envs.webshop.search import ProductSearch

CATALOG_SOURCES = ("generated", "files")
DEFAULT_GENERATED_PRODUCTS = 3000


@dataclass(frozen=True)
class ShopConfig:
    catalog: str = "generated"  # generated | files
    num_products: int | None = None  # generated: catalog size (None: 3000); files: first N (None: all)
    seed: int = 0  # catalog generation, prices and price caps
    goals: str = "synthetic"  # synthetic | human (human needs human_goals_file)
    num_test_goals: int = 500  # the first N shuffled goals are the test split (papers.md)
    data_dir: str | None = None  # files: where the original data files are
    products_file: str = SMALL_SET["products_file"]
    attributes_file: str = SMALL_SET["attributes_file"]
    human_goals_file: str | None = None
    reviews_file: str | None = None

    def __post_init__(self):
        if self.catalog not in CATALOG_SOURCES:
            raise ValueError(f"webshop catalog must be one of {CATALOG_SOURCES}, got {self.catalog!r}")
        if self.catalog == "files" and not self.data_dir:
            raise ValueError(
                "webshop catalog 'files' needs data_dir (the folder with the original data files)"
            )
        if self.catalog == "generated" and self.goals != "synthetic":
            raise ValueError(f"the generated catalog has synthetic goals only, got goals={self.goals!r}")
        if self.goals == "human" and not self.human_goals_file:
            raise ValueError("webshop goals 'human' needs human_goals_file (e.g. items_human_ins.json)")


@dataclass
class Shop:
    config: ShopConfig
    catalog: Catalog
    search: ProductSearch
    splits: dict[str, list[dict[str, Any]]]

    @property
    def products(self) -> dict[str, dict[str, Any]]:
        return self.catalog.by_asin


def build_shop(config: ShopConfig) -> Shop:
    if config.catalog == "generated":
        raw = generate_catalog(config.num_products or DEFAULT_GENERATED_PRODUCTS, seed=config.seed)
        catalog = build_catalog(raw, "synthetic", seed=config.seed)
    else:
        raw = load_raw_files(
            config.data_dir,
            config.products_file,
            config.attributes_file,
            config.human_goals_file,
            config.reviews_file,
        )
        catalog = build_catalog(raw, config.goals, num_products=config.num_products, seed=config.seed)
    if not catalog.goals:
        raise ValueError(f"webshop: no goals could be built from {config} (products lack instructions?)")
    return Shop(
        config, catalog, ProductSearch(catalog.products), split_goals(catalog.goals, config.num_test_goals)
    )


@functools.lru_cache(maxsize=4)
def get_shop(config: ShopConfig) -> Shop:
    """The shop for this configuration, built on first use in this process."""
    return build_shop(config)
