"""Loads the original WebShop data files when a user has them.

The original's ``setup.sh`` downloads them into ``data/``:
- ``items_shuffle_1000.json`` / ``items_shuffle.json`` (1000 / 1.18M products): a list of raw products
  (asin, name, full_description, small_description, pricing, customization_options, category, query,
  product_category, images, ...);
- ``items_ins_v2_1000.json`` / ``items_ins_v2.json``: asin -> {attributes, instruction,
  instruction_attributes} (synthetic goals);
- ``items_human_ins.json`` (optional): asin -> list of {instruction, instruction_attributes,
  instruction_options} (human goals);
- ``reviews.json`` (optional): list of {asin, reviews: [{title, stars|score, review|body}], average_rating}.

Set ``catalog: files`` and ``data_dir`` (plus the file names for the full set) in conf/env/webshop.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentgen.envs.webshop.catalog import RawCatalog

SMALL_SET = {"products_file": "items_shuffle_1000.json", "attributes_file": "items_ins_v2_1000.json"}
FULL_SET = {"products_file": "items_shuffle.json", "attributes_file": "items_ins_v2.json"}


def _read_json(path: Path, what: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"WebShop {what} file not found: {path}. Put the original data files in data_dir (see "
            "agentgen/envs/webshop/loader.py) or use catalog: generated"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"WebShop {what} file {path} is not valid JSON: {exc}") from None


def _resolve(data_dir: Path, name: str | None) -> Path | None:
    if not name:
        return None
    p = Path(name)
    return p if p.is_absolute() else data_dir / p


def load_raw_files(
    data_dir: str,
    products_file: str = SMALL_SET["products_file"],
    attributes_file: str = SMALL_SET["attributes_file"],
    human_goals_file: str | None = None,
    reviews_file: str | None = None,
) -> RawCatalog:
    """Read the original files (names relative to ``data_dir`` unless absolute). Optional files that
    are named but missing are an error; unnamed ones are skipped."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"WebShop data_dir {str(root)!r} is not a directory")
    products = _read_json(_resolve(root, products_file), "products")
    if not isinstance(products, list):
        raise ValueError(f"WebShop products file {products_file!r} must hold a list of products")  # noqa: TRY004
    missing = [k for k in ("asin", "name") if products and k not in products[0]]
    if missing:
        raise ValueError(
            f"WebShop products file {products_file!r}: records lack {missing} (not the original schema)"
        )
    attributes = _read_json(_resolve(root, attributes_file), "attributes")
    human = _read_json(_resolve(root, human_goals_file), "human goals") if human_goals_file else {}
    reviews = _read_json(_resolve(root, reviews_file), "reviews") if reviews_file else []
    return RawCatalog(products=products, attributes=attributes, reviews=reviews, human_instructions=human)
