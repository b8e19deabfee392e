"""WebShop as an agentgen TextEnv: the original's text mode over an offline catalog.

An episode is one goal ("i need a long lasting deodorant ... with scent: lavender, and price lower
than 30.00 dollars"). The shopper searches, browses result pages (50 hits, 10 a page), opens
products, selects options and buys; buying ends the episode with the original's score in [0, 1]
(info["webshop_reward"]). Success = score 1.0, which the base class pays +10; other purchases and
running out of steps (15) end as failures (0); an action that is not valid on the current page is
invalid (-0.1) and changes nothing.

Actions, as the original: ``search[<query>]`` on the search page (the only page with a search bar)
and ``click[<element>]`` for a button, product ID or option shown on the page. Admissible actions
list the clickables of the page as ``click[...]`` plus, on the search page, the template
``search[<your query>]`` where the agent writes its own keywords in place of ``<your query>``.

Instances: the goals are shuffled once (seed 233, as the original); the first ``num_test_goals`` (500)
form the test split and the rest train; ``reset(seed)`` takes goal ``seed mod N`` of its split.
"""

from __future__ import annotations

import re
from typing import Any

from agentgen.envs.base import TextEnv
from agentgen.envs.webshop.expert import WebShopExpert
from agentgen.envs.webshop.pages import (
    DONE,
    ITEM,
    RESULTS,
    SEARCH,
    SEP,
    SUB,
    BrowserState,
    Clickable,
    render,
)
from agentgen.envs.webshop.reward import get_reward, is_success, make_noun_tagger
from agentgen.envs.webshop.shop import Shop, ShopConfig, get_shop

SEARCH_TEMPLATE = "search[<your query>]"
_ACTION = re.compile(r"^\s*(\w+)\s*\[(.*)\]\s*$", re.DOTALL)


def parse_action(action: str) -> tuple[str, str | None]:
    """ "search[red shoes]" -> ("search", "red shoes"); anything else -> (text, None)."""
    m = _ACTION.match(action)
    if m is None:
        return action.strip().lower(), None
    return m.group(1).lower(), m.group(2).strip()


class WebShopEnv(TextEnv):
    name = "webshop"

    def __init__(
        self,
        split: str = "train",
        max_steps: int = 15,
        reward: Any = None,
        catalog: str = "generated",
        num_products: int | None = None,
        catalog_seed: int = 0,
        goals: str = "synthetic",
        num_test_goals: int = 500,
        data_dir: str | None = None,
        products_file: str = "items_shuffle_1000.json",
        attributes_file: str = "items_ins_v2_1000.json",
        human_goals_file: str | None = None,
        reviews_file: str | None = None,
        show_instruction: bool = True,
        noun_tagger: str = "heuristic",
        min_goal_requirements: int = 0,
        max_goal_requirements: int | None = None,
    ):
        super().__init__(split=split, max_steps=max_steps, reward=reward)
        # Difficulty by the number of things the goal asks for (attributes + options): 1-5 here.
        self.goal_requirements = (int(min_goal_requirements), max_goal_requirements)
        config = ShopConfig(
            catalog=catalog,
            num_products=num_products,
            seed=catalog_seed,
            goals=goals,
            num_test_goals=num_test_goals,
            data_dir=data_dir,
            products_file=products_file,
            attributes_file=attributes_file,
            human_goals_file=human_goals_file,
            reviews_file=reviews_file,
        )
        self.show_instruction = bool(show_instruction)
        self.noun_tagger = noun_tagger
        self._attach(config)
        self.goal: dict[str, Any] | None = None
        self.state = BrowserState()
        self._clickables: dict[str, Clickable] = {}
        self._obs = ""
        self._elements: list[str] = []
        self._plan: tuple[str, str] | None = None
        self._plan_key: tuple | None = None

    def _attach(self, config: ShopConfig) -> None:
        """Connect to this process's shop for ``config`` (built on first use)."""
        self.config = config
        self.shop: Shop = get_shop(config)
        lo, hi = getattr(self, "goal_requirements", (0, None))
        self.goals = [g for g in self.shop.splits[self.split]
                      if lo <= goal_requirements(g) <= (hi if hi is not None else 10**9)]
        if not self.goals:
            raise ValueError(f"no {self.split} goal asks for {lo}..{hi} attributes + options; "
                             f"loosen min_goal_requirements / max_goal_requirements")
        self.tagger = make_noun_tagger(self.noun_tagger)
        self.expert = WebShopExpert(self.shop.products, self.shop.catalog.prices, self.tagger)

    def __getstate__(self) -> dict[str, Any]:
        # Pickled envs (e.g. sent to worker processes) carry their config and episode state, not the
        # shop: the receiving process attaches to its own cached shop.
        state = {k: v for k, v in self.__dict__.items() if k not in ("shop", "goals", "tagger", "expert")}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._attach(state["config"])

    # ------------------------------------------------------------------ TextEnv protocol
    def _reset(self, seed: int) -> tuple[str, dict[str, Any]]:
        self.goal = self.goals[seed % len(self.goals)]
        self.state = BrowserState()
        self._plan_key = None
        return self._render(), {"webshop_reward": 0.0, "raw_reward": 0.0, "page": SEARCH}

    def _step(self, action: str) -> tuple[str, bool, bool, dict[str, Any]]:
        name, arg = parse_action(action)
        info: dict[str, Any] = {"webshop_reward": 0.0, "raw_reward": 0.0}
        st = self.state
        if name == "search" and arg and st.page == SEARCH:
            st.keywords = " ".join(arg.lower().split())
            st.results = self.shop.search.search(st.keywords)
            st.page, st.page_num, st.asin, st.options = RESULTS, 1, None, {}
        elif name == "click" and arg is not None and arg.lower() in self._clickables:
            clicked = self._clickables[arg.lower()]
            if clicked.kind == "buy":
                return self._buy(info)
            self._click(clicked)
        else:
            info["page"] = st.page
            return self._obs, False, True, info
        info["page"] = st.page
        return self._render(), False, False, info

    def admissible_actions(self) -> list[str] | None:
        if self.state.page == DONE:
            return []
        actions = [SEARCH_TEMPLATE] if self.state.page == SEARCH else []
        return actions + [f"click[{key}]" for key in self._clickables]

    def task_description(self) -> str:
        return self.goal["instruction_text"] if self.goal else ""

    def instruction(self) -> str:
        return (
            "You are shopping in WebShop, an online store, for a customer's request. Each observation is the "
            'visible text of the current web page, its elements separated by " [SEP] ". Actions:\n'
            "- search[<your query>]: on the search page, type your own keywords in place of <your query>, "
            "e.g. search[long lasting deodorant for men].\n"
            "- click[<element>]: click a button, a product ID or an option value shown on the page, written as in "
            "the admissible actions, e.g. click[next >], click[b0abc12345], click[large], click[buy now].\n"
            "A search returns up to 50 products, 10 per page ('next >' and '< prev' turn pages). A product page "
            "lists its options (click a value to select it; one value per option), its title, price and rating, "
            "and 'description', 'features' and 'reviews' pages ('< prev' returns). 'back to search' starts a new "
            "search. 'buy now' purchases the product with the selected options and ends the episode: it succeeds "
            "only if the product has every requested attribute and option and costs less than the price limit. "
            f"You have at most {self.max_steps} actions."
        )

    def expert_action(self) -> str | None:
        plan = self._expert_plan()
        return plan[0] if plan else None

    def expert_thought(self) -> str | None:
        plan = self._expert_plan()
        return plan[1] if plan else None

    def page_elements(self) -> list[str]:
        """The visible strings of the current page (the observation is them joined by " [SEP] "), with
        ``self.state.page`` telling which page it is: for observation wrappers such as state
        augmentation, which insert ads or decoy results between elements."""
        return list(self._elements)

    # ------------------------------------------------------------------ internals
    def _expert_plan(self) -> tuple[str, str] | None:
        """The expert's (action, thought) for the current state, computed once per state."""
        if self.goal is None or self.done:
            return None
        key = (self.seed, self.steps)
        if self._plan_key != key:
            self._plan, self._plan_key = self.expert.act(self.state, self.goal), key
        return self._plan

    def _render(self) -> str:
        self._elements, self._clickables = render(
            self.state, self.shop.products, self.goal["instruction_text"], self.show_instruction
        )
        self._obs = SEP.join(self._elements)
        return self._obs

    def _click(self, c: Clickable) -> None:
        st = self.state
        if c.kind == "back":
            self.state = BrowserState()
        elif c.kind == "next":
            st.page_num += 1
        elif c.kind == "prev":
            if st.page == RESULTS:
                st.page_num -= 1
            elif st.page == ITEM:
                st.page, st.asin, st.options = RESULTS, None, {}
            elif st.page == SUB:
                st.page, st.sub_page = ITEM, None
        elif c.kind == "product":
            st.page, st.asin, st.options = ITEM, c.target, {}
        elif c.kind == "option":
            st.options[c.target] = c.value
        elif c.kind == "sub":
            st.page, st.sub_page = SUB, c.target
        else:
            raise AssertionError(f"unhandled clickable {c}")

    def _buy(self, info: dict[str, Any]) -> tuple[str, bool, bool, dict[str, Any]]:
        st = self.state
        product = self.shop.products[st.asin]
        score, parts = get_reward(
            product, self.goal, self.shop.catalog.prices[st.asin], dict(st.options), self.tagger
        )
        st.page, st.score = DONE, score
        solved = is_success(score)
        info.update(
            {
                "webshop_reward": score,
                "raw_reward": score,
                "page": DONE,
                "webshop_reward_info": parts,
                "purchased_asin": st.asin,
                "purchased_options": dict(st.options),
            }
        )
        if not solved:
            info["failed"] = True
        return self._render(), solved, False, info


def goal_requirements(goal: dict[str, Any]) -> int:
    """How many things a goal asks for: its attributes plus its options (the difficulty axis of papers.md B)."""
    return len(goal.get("attributes") or []) + len(goal.get("goal_options") or [])
