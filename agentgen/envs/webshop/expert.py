"""A scripted WebShop expert: search with the goal's words, open the best-matching product, select
the requested options, buy.

It judges products with the reward's own criteria (attributes, options, price cap, product type), so
it buys a product scoring 1.0 whenever one is among the search results. It decides from the current
page alone, so it can take over from any state (e.g. after an agent's own actions). Each decision
comes with a thought built from what it computed (which attributes/options matched, the price and
the cap) for SFT data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentgen.envs.webshop.pages import (
    BACK_TO_SEARCH,
    BUY_NOW,
    ITEM,
    NEXT_PAGE,
    PREV_PAGE,
    RESULTS,
    SEARCH,
    SUB,
    BrowserState,
)
from agentgen.envs.webshop.reward import (
    NounTagger,
    get_reward,
    goal_option_values,
    is_success,
    normalize_color,
    option_matches,
)
from agentgen.envs.webshop.search import PRODUCT_WINDOW

PRICE_CLAUSE = ", and price lower than"


@dataclass(frozen=True)
class Candidate:
    asin: str
    rank: int
    score: float  # the purchase reward with the options below
    options: dict[str, str]  # the option values to select: name -> value
    info: dict[str, Any]


def expert_query(instruction: str) -> str:
    """The goal's words: the instruction without its price clause."""
    return instruction.split(PRICE_CLAUSE)[0].strip()


def choose_options(product: dict[str, Any], goal: dict[str, Any]) -> dict[str, str]:
    """For each option of the product, a value the goal asks for (exact value first), if any."""
    wanted = goal_option_values(goal)
    wanted_norm = {normalize_color(w) for w in wanted}
    chosen = {}
    for name, values in product["options"].items():
        exact = [v for v in values if v in wanted or normalize_color(v) in wanted_norm]
        fuzzy = [v for v in values if option_matches(product, wanted, {name: v})[name]]
        # a value matching only through the product's text does not tell which value is wanted
        if exact:
            chosen[name] = exact[0]
        elif fuzzy and len(fuzzy) < len(values):
            chosen[name] = fuzzy[0]
    return chosen


class WebShopExpert:
    def __init__(self, products: dict[str, dict[str, Any]], prices: dict[str, float], tagger: NounTagger):
        self.products, self.prices, self.tagger = products, prices, tagger
        self._memo: dict[str, tuple[float, dict[str, str], dict[str, Any]]] = {}
        self._memo_goal: dict[str, Any] | None = None

    def candidate(self, asin: str, rank: int, goal: dict[str, Any]) -> Candidate:
        if self._memo_goal is not goal:  # judgements depend on the goal only: keep them per episode
            self._memo, self._memo_goal = {}, goal
        if asin not in self._memo:
            product = self.products[asin]
            options = choose_options(product, goal)
            score, info = get_reward(product, goal, self.prices[asin], options, self.tagger)
            self._memo[asin] = (score, options, info)
        score, options, info = self._memo[asin]
        return Candidate(asin, rank, score, options, info)

    def best(self, state: BrowserState, goal: dict[str, Any]) -> Candidate | None:
        cands = [self.candidate(a, i, goal) for i, a in enumerate(state.results)]
        return max(cands, key=lambda c: (round(c.score, 9), -c.rank), default=None)

    # ------------------------------------------------------------------ policy
    def act(self, state: BrowserState, goal: dict[str, Any]) -> tuple[str, str] | None:
        """(action, thought) for the current page, or None when the episode is over."""
        query = expert_query(goal["instruction_text"])
        if state.page == SEARCH:
            return f"search[{query}]", (
                f'I am on the search page, so I search with the words of the instruction: "{query}".'
            )
        if state.page == SUB:
            return (
                f"click[{PREV_PAGE.lower()}]",
                f"I have read the {state.sub_page} page; I go back to the product page.",
            )
        if state.page not in (RESULTS, ITEM):
            return None
        best = self.best(state, goal)
        searched_own_words = " ".join(state.keywords.split()) == " ".join(query.lower().split())
        if best is None or (not is_success(best.score) and not searched_own_words):
            return f"click[{BACK_TO_SEARCH.lower()}]", (
                "No result here meets all the requirements, so I go back to search with the instruction's words."
            )
        if state.page == RESULTS:
            return self._on_results(state, goal, best)
        return self._on_item(state, goal, best)

    def _on_results(self, state: BrowserState, goal: dict[str, Any], best: Candidate) -> tuple[str, str]:
        best_page = best.rank // PRODUCT_WINDOW + 1
        if best_page > state.page_num:
            return f"click[{NEXT_PAGE.lower()}]", (
                f"No product on page {state.page_num} fits the request as well as {best.asin} on page {best_page}, "
                "so I go to the next page."
            )
        if best_page < state.page_num:
            return f"click[{PREV_PAGE.lower()}]", (
                f"The best match, {best.asin}, is on an earlier page (page {best_page}), so I go back a page."
            )
        product = self.products[best.asin]
        return f"click[{best.asin.lower()}]", (
            f"{best.asin} ({product['Title']}, {product['Price']}) {self._judgement(best, goal)}, so I open it."
        )

    def _on_item(self, state: BrowserState, goal: dict[str, Any], best: Candidate) -> tuple[str, str]:
        here = self.candidate(state.asin, -1, goal)
        if round(here.score, 9) < round(best.score, 9):
            return f"click[{PREV_PAGE.lower()}]", (
                f"This product {self._describe(here, goal)}, but it {self._gaps(here, goal)}; "
                f"{best.asin} in the results fits better, so I go back."
            )
        for name, value in here.options.items():
            if state.options.get(name) != value:
                return f"click[{value}]", (
                    f"The instruction asks for {name}: {value} and this product offers it, so I select it."
                )
        return (
            f"click[{BUY_NOW.lower()}]",
            f"This product {self._judgement(here, goal, selected=True)}, so I buy it.",
        )

    def _judgement(self, cand: Candidate, goal: dict[str, Any], selected: bool = False) -> str:
        text = self._describe(cand, goal, selected)
        if is_success(cand.score):
            return f"{text}, as requested"
        return f"{text}, but it {self._gaps(cand, goal)}; it is the closest match I found"

    @staticmethod
    def _describe(cand: Candidate, goal: dict[str, Any], selected: bool = False) -> str:
        """What the product has of what the goal asks for."""
        have = [a for a, ok in cand.info["attributes_matched"].items() if ok]
        parts = []
        if have:
            parts.append("has the requested " + ", ".join(have))
        if cand.options:
            verb = "has" if selected else "offers"
            parts.append(f"{verb} " + ", ".join(f"{k}: {v}" for k, v in cand.options.items()))
        price_ok = cand.info.get("r_price")
        if price_ok is not None:
            cap = goal["price_upper"]
            parts.append(
                f"costs less than {cap:.2f} dollars" if price_ok else f"costs more than {cap:.2f} dollars"
            )
        return " and ".join(parts) if parts else "is a candidate"

    @staticmethod
    def _gaps(cand: Candidate, goal: dict[str, Any]) -> str:
        """What the product lacks, in words."""
        info = cand.info
        gaps = []
        miss = [a for a, ok in info["attributes_matched"].items() if not ok]
        if miss:
            gaps.append("is not " + ", ".join(miss))
        missing_opts = len(goal_option_values(goal)) - sum(info["options_matched"].values())
        if missing_opts > 0:
            gaps.append(f"lacks {missing_opts} requested option(s)")
        if info["r_type"] < 1.0:
            gaps.append("is a different kind of product")
        if info.get("r_price") is False:
            gaps.append("is over budget")
        return " and ".join(gaps) or "falls short"
