"""Products and goals in the original's schema, from raw records (generated or the real files).

Raw records are what the original's data files hold (``items_shuffle*.json`` products,
``items_ins_v2*.json`` attributes and synthetic instructions, ``items_human_ins.json`` human
instructions, ``reviews.json``). ``build_catalog`` turns them into the engine's product records the
way the original's ``load_products`` does (Title, Description, BulletPoints, Price, pricing, options,
Attributes, Reviews, Rating), draws a price for each product, builds goals as ``get_synthetic_goals``
or ``get_human_goals`` do, and shuffles them with the original's seed (233).

Randomness is seeded (``seed``): the original draws prices and price caps from Python's unseeded
global generator, so its goals differ per process; here the same seed gives the same goals.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agentgen.envs.webshop.reward import PRICE_RANGE

GOAL_TYPES = ("synthetic", "human")
GOAL_SHUFFLE_SEED = 233  # the original: random.seed(233); random.shuffle(goals)


@dataclass
class RawCatalog:
    """Records in the original files' schema."""

    products: list[dict[str, Any]]  # items_shuffle*.json
    attributes: dict[str, dict[str, Any]]  # items_ins_v2*.json: asin -> attributes, instruction, ...
    reviews: list[dict[str, Any]] = field(default_factory=list)  # reviews.json
    human_instructions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # items_human_ins.json


@dataclass
class Catalog:
    products: list[dict[str, Any]]
    by_asin: dict[str, dict[str, Any]]
    prices: dict[str, float]
    goals: list[dict[str, Any]]  # all goals, in the original's shuffled order


def parse_pricing(pricing: str | None) -> tuple[list[float], str]:
    """ "$12.99" -> ([12.99], "$12.99"); "$10.99 - $15.99" -> ([10.99, 15.99], "$10.99 to $15.99");
    missing -> ([100.0], "$100.0"), as the original."""
    if not pricing:
        return [100.0], "$100.0"
    values = [
        float(Decimal(re.sub(r"[^\d.]", "", p))) for p in pricing.split("$")[1:] if re.sub(r"[^\d.]", "", p)
    ]
    if not values:
        return [100.0], "$100.0"
    if len(values) == 1:
        return values, f"${values[0]}"
    return values[:2], f"${values[0]} to ${values[1]}"


def process_product(
    raw: dict[str, Any], attrs: dict[str, Any] | None, reviews: dict[str, Any] | None
) -> dict[str, Any]:
    """One engine product record from a raw product (the original's load_products loop body)."""
    p = dict(raw)
    p["query"] = str(p.get("query", "")).lower().strip()
    p["product_category"] = p.get("product_category") or ""
    p["Title"] = p["name"]
    p["Description"] = p.get("full_description") or ""
    small = p.get("small_description")
    p["BulletPoints"] = [b for b in (small if isinstance(small, list) else [small]) if b]
    review_list = []
    for r in (reviews or {}).get("reviews", []):
        review_list.append(
            {
                "title": r.get("title", ""),
                "score": r.get("score", r.get("stars", 0)),
                "body": r.get("body", r.get("review", "")),
            }
        )
    p["Reviews"] = review_list
    p["Rating"] = (reviews or {}).get("average_rating", "N.A.")
    p["pricing"], p["Price"] = parse_pricing(p.get("pricing") if isinstance(p.get("pricing"), str) else None)
    options: dict[str, list[str]] = {}
    for name, contents in (p.get("customization_options") or {}).items():
        if contents is None:
            continue
        options[name.lower()] = [c["value"].strip().replace("/", " | ").lower() for c in contents]
    p["options"] = options
    p["Attributes"] = list((attrs or {}).get("attributes") or ["DUMMY_ATTR"])
    p["instruction_text"] = (attrs or {}).get("instruction")
    p["instruction_attributes"] = (attrs or {}).get("instruction_attributes")
    images = p.get("images") or []
    p["MainImage"] = images[0] if images else None
    return p


def draw_prices(products: list[dict[str, Any]], rng: random.Random) -> dict[str, float]:
    """The price a purchase is scored at: the single price, or uniform within a range (original)."""
    prices = {}
    for p in products:
        pricing = p["pricing"]
        prices[p["asin"]] = pricing[0] if len(pricing) == 1 else rng.uniform(*pricing[:2])
    return prices


def _price_cap(price: float, rng: random.Random) -> tuple[float, str]:
    """A cap drawn from the next four multiples of $10 above the price: the larger of two (original)."""
    candidates = [p for p in PRICE_RANGE if p > price][:4]
    if len(candidates) < 2:
        return 1_000_000.0, ""
    _, upper = sorted(rng.sample(candidates, 2))
    return upper, f", and price lower than {upper:.2f} dollars"


def synthetic_goals(
    products: list[dict[str, Any]], prices: dict[str, float], rng: random.Random
) -> list[dict[str, Any]]:
    """One goal per product and combination of its option values (the original's get_synthetic_goals)."""
    goals = []
    count_attr: dict[str, int] = defaultdict(int)
    for p in products:
        if not p.get("instruction_text") or not p.get("instruction_attributes"):
            continue
        cap, price_text = _price_cap(prices[p["asin"]], rng)
        names = sorted(p["options"])
        for combo in itertools.product(*(p["options"][n] for n in names)):
            goal_options = dict(zip(names, combo))
            option_text = ", and ".join(f"{k}: {v}" for k, v in goal_options.items())
            option_text = f" with {option_text}" if option_text else ""
            goals.append(
                {
                    "asin": p["asin"],
                    "category": p["category"],
                    "query": p["query"],
                    "name": p["Title"],
                    "product_category": p["product_category"],
                    "instruction_text": f"{p['instruction_text']}{option_text}{price_text}",
                    "attributes": list(p["instruction_attributes"]),
                    "price_upper": cap,
                    "goal_options": goal_options,
                }
            )
            for a in p["instruction_attributes"]:
                count_attr[a] += 1
    for g in goals:
        g["weight"] = sum(1.0 / count_attr[a] for a in g["attributes"]) / len(g["attributes"])
    return goals


def human_goals(
    products: list[dict[str, Any]],
    prices: dict[str, float],
    human_instructions: dict[str, list[dict[str, Any]]],
    rng: random.Random,
) -> list[dict[str, Any]]:
    """One goal per human-written instruction (the original's get_human_goals)."""
    goals = []
    for p in products:
        for ins in human_instructions.get(p["asin"], []):
            if not ins.get("instruction_attributes"):
                continue
            cap, price_text = _price_cap(prices[p["asin"]], rng)
            goals.append(
                {
                    "asin": p["asin"],
                    "category": p["category"],
                    "query": p["query"],
                    "name": p["name"],
                    "product_category": p["product_category"],
                    "instruction_text": ins["instruction"].strip(".") + price_text,
                    "attributes": list(ins["instruction_attributes"]),
                    "price_upper": cap,
                    "goal_options": list(ins.get("instruction_options") or []),
                    "weight": 1,
                }
            )
    return goals


def build_catalog(
    raw: RawCatalog, goal_type: str = "synthetic", num_products: int | None = None, seed: int = 0
) -> Catalog:
    """Engine products, prices and shuffled goals from raw records."""
    if goal_type not in GOAL_TYPES:
        raise ValueError(f"goals must be one of {GOAL_TYPES}, got {goal_type!r}")
    reviews = {r["asin"]: r for r in raw.reviews}
    records = raw.products[:num_products] if num_products is not None else raw.products
    products, seen = [], set()
    for r in records:
        asin = str(r.get("asin"))
        if asin == "nan" or len(asin) > 10 or asin in seen:  # the original's filter
            continue
        seen.add(asin)
        products.append(process_product(r, raw.attributes.get(asin), reviews.get(asin)))
    rng = random.Random(seed)
    prices = draw_prices(products, rng)
    if goal_type == "synthetic":
        goals = synthetic_goals(products, prices, rng)
    else:
        goals = human_goals(products, prices, raw.human_instructions, rng)
    random.Random(GOAL_SHUFFLE_SEED).shuffle(goals)
    return Catalog(products, {p["asin"]: p for p in products}, prices, goals)


def split_goals(goals: list[dict[str, Any]], num_test: int) -> dict[str, list[dict[str, Any]]]:
    """The first ``num_test`` goals are the test split, the rest train (papers.md: 500). A train goal
    whose instruction text equals a test goal's is dropped, so the splits share no instance."""
    if num_test < 1 or num_test >= len(goals):
        raise ValueError(
            f"num_test_goals must be in [1, {len(goals) - 1}] for {len(goals)} goals, got {num_test}"
        )
    test = goals[:num_test]
    test_texts = {g["instruction_text"] for g in test}
    train = [g for g in goals[num_test:] if g["instruction_text"] not in test_texts]
    return {"test": test, "train": train}
