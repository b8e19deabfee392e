"""WebShop distractors (papers.md A section 6), on the page the shopper is looking at:

- results page: k = min(floor(eps/100 * alpha * 10), 10) decoy results in extra slots between the real
  ones, each "<unavailable mark> [SEP] <decoy title> [SEP] <price>", the mark saying it is unsuitable
  and cannot be selected; the decoys are not clickables of the env, so they never appear in the
  admissible actions and clicking one is an invalid action (state unchanged, penalty paid);
- item page: max(1, floor(eps/25)) trivial product features (after the options or after the rating)
  and max(1, floor(eps/30)) ads "[AD] <descriptor> - shop <category> today!" at the page's section
  boundaries (never between an option name and its values);
- search, description / features / reviews and done pages: unchanged (the study names no distractor
  for them).
alpha (``augment.webshop_alpha``) is not printed in the study; 1.0 makes eps 30 / 40 (v1 / v2) give 3 / 4
decoys per results page.
"""

from __future__ import annotations

import math
import random
from typing import Any

from agentgen.envs.distractor_words import (
    WEBSHOP_AD_CATEGORIES,
    WEBSHOP_AD_DESCRIPTORS,
    WEBSHOP_DECOY_MARK,
    WEBSHOP_DECOY_MATERIALS,
    WEBSHOP_DECOY_QUALITIES,
    WEBSHOP_DECOY_THINGS,
    WEBSHOP_DECOY_USES,
    WEBSHOP_TRIVIAL_FEATURES,
)
from agentgen.envs.distractors import Augmenter, Injection

MAX_DECOYS = 10


class WebShopAugmenter(Augmenter):
    env_name = "webshop"

    def __init__(self, eps: float, webshop_alpha: float = 1.0):
        super().__init__(eps, webshop_alpha)
        self._titles: tuple[int, frozenset[str]] | None = None  # (id of the shop's products, titles)

    def amounts(self) -> dict[str, int]:
        # 1e-9 keeps products such as 0.3 * 10 = 3.0000000000000004 / 2.9999999999999996 on the right integer.
        decoys = min(math.floor(self.eps / 100 * self.webshop_alpha * 10 + 1e-9), MAX_DECOYS)
        return {
            "decoys": max(0, decoys),
            "features": max(1, math.floor(self.eps / 25 + 1e-9)),
            "ads": max(1, math.floor(self.eps / 30 + 1e-9)),
        }

    def augment(self, obs: str, env: Any, rng: random.Random) -> Injection:
        from agentgen.envs.webshop.pages import ITEM, RESULTS, SEP

        elements = env.page_elements()
        if SEP.join(elements) != obs:
            raise RuntimeError(
                "webshop augmentation: the env's page_elements() do not make up its observation; the page "
                "structure changed and the augmenter must be updated"
            )
        page = env.state.page
        if page == RESULTS:
            inserts = self._decoys(elements, env, rng)
        elif page == ITEM:
            inserts = self._item_extras(elements, env, rng)
        else:
            return Injection(obs)
        if not inserts:
            return Injection(obs)
        out: list[str] = []
        by_gap: dict[int, list[list[str]]] = {}
        for gap, texts in inserts:
            by_gap.setdefault(gap, []).append(texts)
        for i in range(len(elements) + 1):
            for texts in by_gap.get(i, []):
                out.extend(texts)
            if i < len(elements):
                out.append(elements[i])
        distractors = [t for _, texts in inserts for t in texts]
        return Injection(SEP.join(out), distractors)

    # ------------------------------------------------------------ results page
    def _decoys(self, elements: list[str], env: Any, rng: random.Random) -> list[tuple[int, list[str]]]:
        k = self.amounts()["decoys"]
        if k == 0:
            return []
        asins = env.state.page_asins()
        starts = [elements.index(a) for a in asins]
        gaps = starts + [starts[-1] + 3] if starts else [len(elements)]
        taken = self._catalog_titles(env) | {e.lower() for e in elements}
        out = []
        for _ in range(k):
            title = self._decoy_title(rng, taken)
            taken.add(title.lower())
            out.append((rng.choice(gaps), [WEBSHOP_DECOY_MARK, title, f"${rng.uniform(6, 90):.2f}"]))
        return out

    def _decoy_title(self, rng: random.Random, taken: set[str]) -> str:
        for _ in range(100):
            title = (
                f"{rng.choice(WEBSHOP_DECOY_QUALITIES)} {rng.choice(WEBSHOP_DECOY_MATERIALS)} "
                f"{rng.choice(WEBSHOP_DECOY_THINGS)} for {rng.choice(WEBSHOP_DECOY_USES)}"
            )
            if title.lower() not in taken:
                return title
        raise RuntimeError(
            "webshop augmentation: could not find a decoy title unlike every real product title"
        )

    def _catalog_titles(self, env: Any) -> set[str]:
        products = env.shop.products
        if self._titles is None or self._titles[0] != id(products):
            self._titles = (id(products), frozenset(p["Title"].lower() for p in products.values()))
        return set(self._titles[1])

    # ------------------------------------------------------------ item page
    def _item_extras(self, elements: list[str], env: Any, rng: random.Random) -> list[tuple[int, list[str]]]:
        from agentgen.envs.webshop.pages import BUY_NOW, PREV_PAGE

        product = env.shop.products[env.state.asin]
        try:
            after_nav = elements.index(PREV_PAGE) + 1
            title = elements.index(f"Price: {product['Price']}") - 1
            after_rating = title + 3
            buy = len(elements) - 1
        except ValueError as exc:
            raise RuntimeError(f"webshop augmentation: unexpected item page layout ({exc})") from exc
        if elements[buy] != BUY_NOW or not after_nav <= title < buy:
            raise RuntimeError("webshop augmentation: unexpected item page layout")
        n = self.amounts()
        features = rng.sample(WEBSHOP_TRIVIAL_FEATURES, min(n["features"], len(WEBSHOP_TRIVIAL_FEATURES)))
        out = [(rng.choice((title, after_rating)), [f]) for f in features]
        for _ in range(n["ads"]):
            ad = (
                f"[AD] {rng.choice(WEBSHOP_AD_DESCRIPTORS)} - shop {rng.choice(WEBSHOP_AD_CATEGORIES)} today!"
            )
            out.append((rng.choice((after_nav, title, after_rating, buy)), [ad]))
        return out
