"""The WebShop purchase reward, as in the original (web_agent_site/engine/goal.py).

    reward = r_type * (#goal attributes matched + #goal options matched + [price <= cap])
                    / (#goal attributes + #goal options + 1)

- attribute matched: fuzzy token-set ratio > 85 with one of the product's mined attributes, or the
  attribute text appears in the title, the bullet points or the description (lower-cased);
- option matched (per purchased option): for "size" the colour-normalised value must equal a goal
  option exactly, otherwise a fuzzy token-set ratio > 85, and failing both, the normalised value
  appearing in the title, bullets or description;
- r_type in {1, 0.5, 0.1, 0}: 1 when the product shares the goal's query, 2+ levels of the goal's
  Amazon breadcrumb, or more than 20% of the goal title's nouns; 0.5 when none of these; 0.1 when
  under 10% of the goal title's nouns are shared; 0 when none is.

The original's quirks are kept on purpose (they define the benchmark's numbers): colour
normalisation maps any value containing a colour word to that word, matching purchased options
count against the number of goal options, and a purchased option also matches if its text appears
anywhere in the product's text.

Two tools stand in for the original's: rapidfuzz for thefuzz (same token-set ratio after thefuzz's
"full process": ASCII only, lower case, non-alphanumerics to spaces; rounded to an int as thefuzz
does) and, for the title nouns, a deterministic heuristic (`HeuristicNounTagger`) in place of spaCy's
en_core_web_lg, which cannot be downloaded here; `SpacyNounTagger` uses an installed spaCy model
when the user has one.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from rapidfuzz import fuzz, utils

EXACT_MATCH_OPTS = ("size",)
FUZZY_THRESHOLD = 85
PRICE_RANGE = [10.0 * i for i in range(1, 100)]

# web_agent_site/engine/normalize.py: a value containing one of these words is reduced to the first
# such word in this order ("navy blue" -> "blue", "light brown" -> "brown").
COLOR_SET = (
    "alabaster",
    "apricot",
    "aqua",
    "ash",
    "asphalt",
    "azure",
    "banana",
    "beige",
    "black",
    "blue",
    "blush",
    "bordeaux",
    "bronze",
    "brown",
    "burgundy",
    "camel",
    "camo",
    "caramel",
    "champagne",
    "charcoal",
    "cheetah",
    "chestnut",
    "chocolate",
    "christmas",
    "coffee",
    "cognac",
    "copper",
    "coral",
    "cranberry",
    "cream",
    "crystal",
    "dark",
    "denim",
    "eggplant",
    "elephant",
    "espresso",
    "fuchsia",
    "gold",
    "granite",
    "grape",
    "graphite",
    "grass",
    "gray",
    "green",
    "grey",
    "heather",
    "indigo",
    "ivory",
    "ivy",
    "khaki",
    "lavender",
    "lemon",
    "leopard",
    "light",
    "lilac",
    "lime",
    "magenta",
    "maroon",
    "mauve",
    "merlot",
    "midnight",
    "mint",
    "mocha",
    "multicolor",
    "mushroom",
    "mustard",
    "natural",
    "navy",
    "nude",
    "olive",
    "orange",
    "peach",
    "pewter",
    "pink",
    "plum",
    "purple",
    "rainbow",
    "red",
    "rose",
    "royal",
    "rust",
    "sand",
    "sapphire",
    "seashell",
    "silver",
    "skull",
    "slate",
    "steel",
    "stone",
    "stonewash",
    "sunflower",
    "tan",
    "taupe",
    "teal",
    "tiger",
    "turquoise",
    "violet",
    "walnut",
    "wheat",
    "white",
    "wine",
    "yellow",
)


@functools.lru_cache(maxsize=100_000)
def normalize_color(value: str) -> str:
    """The first colour word contained in ``value``, else ``value`` unchanged (original behaviour)."""
    for color in COLOR_SET:
        if color in value:
            return color
    return value


@functools.lru_cache(maxsize=200_000)
def token_set_ratio(a: str, b: str) -> int:
    """thefuzz.fuzz.token_set_ratio: full-process both strings, then rapidfuzz's ratio, rounded."""
    a = utils.default_process(a.encode("ascii", "ignore").decode())
    b = utils.default_process(b.encode("ascii", "ignore").decode())
    if not a or not b:
        return 0
    return round(fuzz.token_set_ratio(a, b))


# ----------------------------------------------------------------------------- nouns of titles
class NounTagger(Protocol):
    def nouns(self, text: str) -> tuple[str, ...]: ...


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that are not nouns of a product type: function words, and the adjectives, adverbs and
# marketing words frequent in Amazon titles. spaCy tags these DET/ADP/ADJ/ADV/... and so drops them.
_FUNCTION_WORDS = _words(
    """
a an the and or nor but of for with without to from in into on onto at by as via per than then is
are was were be been being it its this that these those there their our your my his her all any both
each every few more most other some such no not only own same so too very can will just also up down
out off over under again further once here when where why how what which who whom whose while if
because until about against between through during before after above below i me we us you he she
they them one ones
"""
)
_NON_NOUN_WORDS = _words(
    """
new best great good better premium quality high low long short big small large extra super ultra
mini max maxi soft hard light heavy lightweight durable portable comfortable comfy cute perfect
natural organic fresh pure clean free easy quick fast slow smart classic modern vintage casual
elegant simple basic daily everyday original authentic professional pro deluxe luxury luxe
adjustable waterproof breathable wireless cordless rechargeable compatible universal multi stylish
fashionable beautiful pretty sexy warm cool hot cold dry wet thick thin wide narrow full half double
single triple dual upgraded improved latest lasting sensitive gentle strong extra-large x-large xx-large
medium petite plus tall mens womens men's women's unisex kids red blue green black white
yellow pink purple orange grey gray brown beige navy golden silver round square flat open closed non
anti top bottom inner outer ergonomic foldable compact heavy-duty
"""
)


_TOKEN = re.compile(r"[a-z][a-z'\-]*[a-z]|[a-z]")


@functools.lru_cache(maxsize=100_000)
def _heuristic_nouns(text: str) -> tuple[str, ...]:
    out = []
    for tok in _TOKEN.findall(text.lower()):
        tok = tok.strip("'-")
        if len(tok) < 2 or tok in _FUNCTION_WORDS or tok in _NON_NOUN_WORDS or tok.endswith("ly"):
            continue
        out.append(tok)
    return tuple(out)


class HeuristicNounTagger:
    """Approximates spaCy's NOUN/PROPN filter on product titles without a model: word tokens that
    are not function words, common title adjectives/adverbs (-ly), or numbers."""

    def nouns(self, text: str) -> tuple[str, ...]:
        return _heuristic_nouns(text)


class SpacyNounTagger:
    """The original's tagger: tokens spaCy tags NOUN or PROPN (needs an installed spaCy model)."""

    def __init__(self, model: str = "en_core_web_lg"):
        installed = os.path.exists(model) or importlib.util.find_spec(model.replace("-", "_")) is not None
        try:
            if not installed:  # fail fast, without importing spaCy
                raise OSError(f"no package or folder named {model!r}")
            import spacy

            self._nlp = spacy.load(model, disable=["parser", "ner", "lemmatizer"])
            self._cache: dict[str, tuple[str, ...]] = {}
        except (ImportError, OSError) as exc:
            raise ValueError(
                f"noun_tagger 'spacy' needs the spaCy model {model!r} installed locally ({exc}); "
                "use noun_tagger='heuristic' (the default) or install the model"
            ) from exc

    def nouns(self, text: str) -> tuple[str, ...]:
        if text not in self._cache:
            doc = self._nlp(text)
            self._cache[text] = tuple(t.text.lower() for t in doc if t.pos_ in ("PNOUN", "NOUN", "PROPN"))
        return self._cache[text]


def make_noun_tagger(spec: str) -> NounTagger:
    """``heuristic`` or ``spacy`` / ``spacy:<model name>``."""
    if spec == "heuristic":
        return _HEURISTIC
    if spec == "spacy" or spec.startswith("spacy:"):
        return _spacy_tagger(spec.partition(":")[2] or "en_core_web_lg")
    raise ValueError(f"unknown noun_tagger {spec!r}; valid: 'heuristic', 'spacy', 'spacy:<model name>'")


_HEURISTIC = HeuristicNounTagger()


@functools.lru_cache(maxsize=4)
def _spacy_tagger(model: str) -> SpacyNounTagger:
    return SpacyNounTagger(model)


# ----------------------------------------------------------------------------- reward parts
@dataclass(frozen=True)
class TypeMatch:
    r_type: float
    query_match: bool
    category_match: bool
    title_score: float


def type_reward(product: dict[str, Any], goal: dict[str, Any], tagger: NounTagger = _HEURISTIC) -> TypeMatch:
    """Whether the purchased product is the same kind of thing as the goal's product."""
    query_match = product["query"] == goal["query"]
    bought_levels = {x.strip() for x in product["product_category"].split("›")}
    goal_levels = {x.strip() for x in goal["product_category"].split("›")}
    category_match = len(bought_levels & goal_levels) >= 2
    bought_nouns = set(tagger.nouns(product["name"]))
    wanted_nouns = tagger.nouns(goal["name"])
    if not wanted_nouns:
        title_score = 0.2
    else:
        title_score = len(bought_nouns & set(wanted_nouns)) / len(wanted_nouns)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return TypeMatch(r_type, query_match, category_match, title_score)


def _product_text(product: dict[str, Any]) -> tuple[str, str, str]:
    return (
        product["Title"].lower(),
        " ".join(product["BulletPoints"]).lower(),
        product["Description"].lower(),
    )


def attribute_matches(product: dict[str, Any], goal_attributes: Iterable[str]) -> list[bool]:
    """Per goal attribute: found among the product's attributes (fuzzy) or in its text."""
    title, bullets, desc = _product_text(product)
    out = []
    for g_attr in goal_attributes:
        matched = any(token_set_ratio(p_attr, g_attr) > FUZZY_THRESHOLD for p_attr in product["Attributes"])
        if not matched:
            matched = g_attr in title or g_attr in bullets or g_attr in desc
        out.append(matched)
    return out


def option_matches(
    product: dict[str, Any], goal_options: Iterable[str], chosen: dict[str, str]
) -> dict[str, bool]:
    """Per purchased option (name -> value): does it match one of the goal's option values."""
    title, bullets, desc = _product_text(product)
    goal_norm = [normalize_color(o) for o in goal_options]
    out = {}
    for name, value in chosen.items():
        value = normalize_color(value)
        if name.lower() in EXACT_MATCH_OPTS:
            matched = value in goal_norm
        else:
            matched = any(token_set_ratio(g, value) > FUZZY_THRESHOLD for g in goal_norm)
        if not matched:
            matched = value in title or value in bullets or value in desc
        out[name] = matched
    return out


def goal_option_values(goal: dict[str, Any]) -> list[str]:
    opts = goal["goal_options"]
    return list(opts.values()) if isinstance(opts, dict) else list(opts)


def get_reward(
    product: dict[str, Any],
    goal: dict[str, Any],
    price: float,
    options: dict[str, str],
    tagger: NounTagger = _HEURISTIC,
) -> tuple[float, dict[str, Any]]:
    """The purchase score in [0, 1] (can exceed 1 only through the original's option counting) and
    its parts, as the original's ``get_reward(..., verbose=True)``."""
    type_match = type_reward(product, goal, tagger)
    goal_options = goal_option_values(goal)
    r_price = price <= goal["price_upper"] if goal["price_upper"] > 0 else None
    attrs = attribute_matches(product, goal["attributes"])
    opts = option_matches(product, goal_options, options)
    n_attr, n_opt = sum(attrs), sum(opts.values())
    denom = len(goal["attributes"]) + len(goal_options) + 1
    reward = (n_attr + n_opt + bool(r_price)) / denom * type_match.r_type
    info: dict[str, Any] = {
        "r_type": type_match.r_type,
        "r_att": n_attr / len(goal["attributes"]) if goal["attributes"] else None,
        "w_att": len(goal["attributes"]) / denom,
        "query_match": type_match.query_match,
        "category_match": type_match.category_match,
        "title_score": type_match.title_score,
        "attributes_matched": dict(zip(goal["attributes"], attrs)),
        "options_matched": opts,
    }
    if goal_options:
        info["r_option"] = n_opt / len(goal_options)
        info["w_option"] = len(goal_options) / denom
    if r_price is not None:
        info["r_price"] = bool(r_price)
        info["w_price"] = 1 / denom
    return reward, info


def is_success(reward: float) -> bool:
    """Success is the full score (reward 1.0), as in the original's success rate."""
    return reward >= 1.0 - 1e-9
