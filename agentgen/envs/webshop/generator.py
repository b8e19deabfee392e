"""A seeded generator of WebShop catalogs in the original files' schema.

Each product is drawn from one product type (vocab.py): a brand, a title naming the type and some of
its attributes, bullet points (one per attribute, "LONG LASTING: ..."), a description, a price or
price range, a subset of the type's option values, reviews, and a synthetic instruction asking for
1-3 of its attributes, like the original's ``items_ins_v2`` ("i need a deodorant that is long lasting
and paraben free"). Goals then add one combination of option values and a price cap, as the
original's synthetic goals do.

Products of one type share attribute and option vocabularies, so every goal has look-alike products
that miss an attribute, an option or the price cap: the agent has to read titles, prices and options.

Two invariants keep the original reward meaningful (it also matches text): a product's text names
only attributes it has, and never contains one of its option values (after colour normalisation),
so choosing the wrong option or product is never rewarded by accident.
"""

from __future__ import annotations

import json
import os
import random
import string
from pathlib import Path
from typing import Any

from agentgen.envs.webshop.catalog import RawCatalog
from agentgen.envs.webshop.reward import normalize_color
from agentgen.envs.webshop.vocab import (
    ATTRIBUTE_BLURBS,
    BRANDS,
    EXTRA_BULLETS,
    FILLERS,
    PRODUCT_TYPES,
    REVIEW_BODIES,
    REVIEW_TITLES,
    ProductType,
)

# File names used when a generated catalog is written out in the original schema.
PRODUCTS_FILE = "items_shuffle_generated.json"
ATTRIBUTES_FILE = "items_ins_v2_generated.json"
REVIEWS_FILE = "reviews_generated.json"

_SINGULAR_TEMPLATES = (
    "i am looking for {art} {pre} {noun}",
    "i need {art} {noun} that is {post}",
    "find me {art} {pre} {noun}",
    "i want to buy {art} {noun} which is {post}",
    "i'm looking for {art} {noun} that is {post}",
    "i would like {art} {pre} {noun}",
    "show me {art} {noun} that is {post}",
)
_PLURAL_TEMPLATES = (
    "i am looking for {pre} {noun}",
    "i need {noun} that are {post}",
    "find me {pre} {noun}",
    "i want to buy {noun} which are {post}",
    "i'm looking for {noun} that are {post}",
    "i would like some {pre} {noun}",
)


def _article(word: str) -> str:
    if word.startswith(("us", "uni")):  # "a usb", "a usda", "a unisex"
        return "a"
    return "an" if word[:1] in "aeiou8" else "a"


def _join_and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _title_case(phrase: str) -> str:
    return " ".join(w if any(c.isdigit() for c in w) else w[:1].upper() + w[1:] for w in phrase.split())


def instruction_for(ptype: ProductType, attributes: list[str], rng: random.Random) -> str:
    """A shopper's request for this type with these attributes, in the original's style."""
    templates = _PLURAL_TEMPLATES if ptype.plural else _SINGULAR_TEMPLATES
    template = rng.choice(templates)
    pre = ", ".join(attributes)
    text = template.format(
        art=_article(pre if "{pre}" in template else ptype.goal_noun),
        pre=pre,
        post=_join_and(attributes),
        noun=ptype.goal_noun,
    )
    return " ".join(text.split())


def _clean(candidates: tuple[str, ...] | list[str], forbidden: list[str]) -> list[str]:
    """The candidates that do not mention any forbidden attribute."""
    return [c for c in candidates if not any(f in c.lower() for f in forbidden)]


class _AsinSource:
    def __init__(self, rng: random.Random):
        self.rng, self.used = rng, set()

    def __call__(self) -> str:
        while True:
            asin = "B0" + "".join(self.rng.choices(string.ascii_uppercase + string.digits, k=8))
            if asin not in self.used:
                self.used.add(asin)
                return asin


def _price_text(ptype: ProductType, rng: random.Random) -> str:
    low, high = ptype.price
    price = int(rng.uniform(low, high)) + rng.choice((0.99, 0.49, 0.95, 0.0))
    if rng.random() < 0.1:  # a price range, as products whose options cost differently
        top = int(price * rng.uniform(1.2, 1.8)) + 0.99
        return f"${price:.2f} - ${top:.2f}"
    return f"${price:.2f}"


def _reviews(asin: str, rng: random.Random) -> dict[str, Any]:
    n = rng.choice((0, 0, 1, 2, 3, 4, 5))
    reviews = []
    for _ in range(n):
        stars = rng.choices((5, 4, 3, 2, 1), weights=(45, 25, 15, 8, 7))[0]
        reviews.append(
            {
                "title": rng.choice(REVIEW_TITLES[stars]),
                "stars": stars,
                "review": rng.choice(REVIEW_BODIES[stars]),
            }
        )
    rating = round(sum(r["stars"] for r in reviews) / n, 1) if n else "N.A."
    return {"asin": asin, "reviews": reviews, "average_rating": rating}


def generate_product(ptype: ProductType, asin: str, rng: random.Random) -> tuple[dict, dict, dict]:
    """(raw product, its items_ins_v2 record, its reviews record)."""
    n_attr = rng.randint(3, min(5, len(ptype.attributes)))
    attributes = rng.sample(list(ptype.attributes), n_attr)
    forbidden = [a for a in ptype.attributes if a not in attributes]
    brand = rng.choice(BRANDS[ptype.category])
    descriptor = rng.choice(_clean(ptype.descriptors, forbidden) or [""])
    noun = rng.choice(ptype.title_nouns)
    suffix = rng.choice(_clean(ptype.suffixes, forbidden) or [""]) if ptype.suffixes else ""
    title_attrs = [_title_case(a) for a in rng.sample(attributes, rng.randint(1, 2))]
    title = " ".join(x for x in (brand, descriptor, noun, suffix) if x) + " - " + ", ".join(title_attrs)

    bullets = [f"{a.upper()}: {ATTRIBUTE_BLURBS[a]}" for a in rng.sample(attributes, len(attributes))]
    extra = _clean([b.format(noun=noun.lower()) for b in EXTRA_BULLETS[ptype.category]], forbidden)
    if extra:
        bullets.append(rng.choice(extra))
    fillers = _clean([f.format(noun=noun.lower(), brand=brand) for f in FILLERS[ptype.category]], forbidden)
    first = rng.choice(attributes)
    blurb = ATTRIBUTE_BLURBS[first]
    description = " ".join(
        [f"The {brand} {noun.lower()}: {blurb[0].upper()}{blurb[1:]}."]
        + rng.sample(fillers, min(2, len(fillers)))
    )

    text = " ".join([title, description, *bullets]).lower()
    customization: dict[str, list[dict[str, Any]]] = {}
    for name, values in ptype.options:
        k = rng.randint(2, min(5, len(values)))
        chosen = [v for v in values if v in set(rng.sample(list(values), k))]
        kept, seen_norm = [], set()
        for v in chosen:
            norm = normalize_color(v)
            if norm in text or norm in seen_norm:  # would match through the text / duplicate a value
                continue
            seen_norm.add(norm)
            kept.append(v)
        if kept:
            customization[name] = [{"value": v, "image": None} for v in kept]

    n_goal = rng.choices((1, 2, 3), weights=(3, 5, 2))[0]
    goal_attrs = rng.sample(attributes, min(n_goal, len(attributes)))
    raw = {
        "asin": asin,
        "name": title,
        "full_description": description,
        "small_description": bullets,
        "pricing": _price_text(ptype, rng),
        "customization_options": customization,
        "category": ptype.category,
        "query": ptype.query,
        "product_category": ptype.product_category,
        "images": [],
    }
    ins = {
        "attributes": attributes,
        "instruction": instruction_for(ptype, goal_attrs, rng),
        "instruction_attributes": goal_attrs,
    }
    return raw, ins, _reviews(asin, rng)


def generate_catalog(num_products: int = 3000, seed: int = 0) -> RawCatalog:
    """``num_products`` products spread evenly over the product types, in shuffled order (like
    items_shuffle), deterministic in ``seed``."""
    if num_products < len(PRODUCT_TYPES):
        raise ValueError(
            f"num_products must be >= {len(PRODUCT_TYPES)} (one per product type), got {num_products}"
        )
    rng = random.Random(f"webshop-catalog-{seed}")
    new_asin = _AsinSource(rng)
    products, attributes, reviews = [], {}, []
    for i in range(num_products):
        ptype = PRODUCT_TYPES[i % len(PRODUCT_TYPES)]
        raw, ins, rev = generate_product(ptype, new_asin(), rng)
        products.append(raw)
        attributes[raw["asin"]] = ins
        reviews.append(rev)
    rng.shuffle(products)
    return RawCatalog(products=products, attributes=attributes, reviews=reviews)


def write_catalog(raw: RawCatalog, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write a catalog as the original's data files (atomic per file); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "products": (PRODUCTS_FILE, raw.products),
        "attributes": (ATTRIBUTES_FILE, raw.attributes),
        "reviews": (REVIEWS_FILE, raw.reviews),
    }
    paths = {}
    for key, (name, data) in files.items():
        path = out / name
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
        paths[key] = path
    return paths
