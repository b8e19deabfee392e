"""The pages of the shop as the original's text mode shows them.

The original renders HTML templates and, in ``observation_mode="text"``, joins the visible strings
with " [SEP] ". This module builds the same string lists directly:

- search:  WebShop [SEP] Instruction: [SEP] <instruction> [SEP] Search
- results: Instruction: [SEP] <instruction> [SEP] Back to Search [SEP] Page 1 (Total results: 50)
           [SEP] < Prev (page > 1) [SEP] Next > (more results) [SEP] <ASIN> [SEP] <title> [SEP] <price> ...
- item:    Instruction: [SEP] <instruction> [SEP] Back to Search [SEP] < Prev [SEP] <option name>
           [SEP] <value> ... [SEP] <title> [SEP] Price: <price> [SEP] Rating: <rating> [SEP] Description
           [SEP] Features [SEP] Reviews [SEP] Buy Now
- Description / Features / Reviews: Instruction ... [SEP] Back to Search [SEP] < Prev [SEP] <content>
- done:    Thank you for shopping with us! [SEP] Your score (min 0.0, max 1.0) [SEP] <score>

Clickables are keyed by their lower-cased text, as the original's ``text_to_clickable`` (buttons and
product links first, then the option values); the agent writes ``click[<text>]`` in any case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentgen.envs.webshop.search import PRODUCT_WINDOW

SEP = " [SEP] "
BACK_TO_SEARCH = "Back to Search"
PREV_PAGE = "< Prev"
NEXT_PAGE = "Next >"
BUY_NOW = "Buy Now"
SUB_PAGES = ("Description", "Features", "Reviews")

SEARCH, RESULTS, ITEM, SUB, DONE = "search", "results", "item", "item_sub", "done"


@dataclass(frozen=True)
class Clickable:
    kind: str  # back | prev | next | product | sub | buy | option
    target: str = ""  # product asin, sub-page name or option name
    value: str = ""  # option value


@dataclass
class BrowserState:
    """Where the shopper is: the page and what it shows."""

    page: str = SEARCH
    keywords: str = ""
    results: list[str] = field(default_factory=list)  # all hits of the current search (<= 50)
    page_num: int = 1
    asin: str | None = None
    options: dict[str, str] = field(default_factory=dict)  # chosen on the item page: name -> value
    sub_page: str | None = None
    score: float | None = None

    def page_asins(self) -> list[str]:
        return self.results[(self.page_num - 1) * PRODUCT_WINDOW : self.page_num * PRODUCT_WINDOW]

    def has_next(self) -> bool:
        return self.page_num * PRODUCT_WINDOW < len(self.results)


def render(
    state: BrowserState, products: dict[str, dict[str, Any]], instruction: str, show_instruction: bool = True
) -> tuple[list[str], dict[str, Clickable]]:
    """(visible strings, clickables by lower-cased text) of the current page; the observation is
    ``SEP.join(strings)``."""
    head = ["Instruction:", instruction] if show_instruction else []
    clickables: dict[str, Clickable] = {}
    if state.page == SEARCH:
        texts = (["WebShop"] + head if show_instruction else ["WebShop"]) + ["Search"]
    elif state.page == RESULTS:
        texts = head + [BACK_TO_SEARCH, f"Page {state.page_num} (Total results: {len(state.results)})"]
        clickables[BACK_TO_SEARCH.lower()] = Clickable("back")
        if state.page_num > 1:
            texts.append(PREV_PAGE)
            clickables[PREV_PAGE.lower()] = Clickable("prev")
        if state.has_next():
            texts.append(NEXT_PAGE)
            clickables[NEXT_PAGE.lower()] = Clickable("next")
        for asin in state.page_asins():
            p = products[asin]
            texts += [asin, p["Title"], p["Price"]]
            clickables[asin.lower()] = Clickable("product", asin)
    elif state.page == ITEM:
        p = products[state.asin]
        texts = head + [BACK_TO_SEARCH, PREV_PAGE]
        clickables[BACK_TO_SEARCH.lower()] = Clickable("back")
        clickables[PREV_PAGE.lower()] = Clickable("prev")
        option_clicks: dict[str, Clickable] = {}
        for name, values in p["options"].items():
            texts.append(name)
            for v in values:
                texts.append(v)
                option_clicks.setdefault(v.lower(), Clickable("option", name, v))
        texts += [p["Title"], f"Price: {p['Price']}", f"Rating: {p['Rating']}", *SUB_PAGES, BUY_NOW]
        for sub in SUB_PAGES:
            clickables[sub.lower()] = Clickable("sub", sub)
        clickables[BUY_NOW.lower()] = Clickable("buy")
        for key, c in option_clicks.items():
            clickables.setdefault(key, c)
    elif state.page == SUB:
        p = products[state.asin]
        texts = head + [BACK_TO_SEARCH, PREV_PAGE] + sub_page_texts(p, state.sub_page)
        clickables[BACK_TO_SEARCH.lower()] = Clickable("back")
        clickables[PREV_PAGE.lower()] = Clickable("prev")
    elif state.page == DONE:
        texts = ["Thank you for shopping with us!", "Your score (min 0.0, max 1.0)", f"{state.score}"]
    else:
        raise ValueError(f"unknown page {state.page!r}")
    return [t.strip() for t in texts if t and t.strip()], clickables


def sub_page_texts(product: dict[str, Any], sub_page: str | None) -> list[str]:
    if sub_page == "Description":
        return [product["Description"]]
    if sub_page == "Features":
        return list(product["BulletPoints"])
    if sub_page == "Reviews":
        out = []
        for r in product["Reviews"]:
            out += [f'"{r["title"]}"', str(r["score"]), r["body"]]
        return out
    raise ValueError(f"unknown sub page {sub_page!r}; valid: {SUB_PAGES}")
