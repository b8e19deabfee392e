"""WebShopEnv: the original's text pages, actions, paging, purchase, step limit, determinism, the
scripted expert's success rate, config file and worker pool."""

from __future__ import annotations

import pickle

import pytest
from omegaconf import OmegaConf

from agentgen.envs import make
from agentgen.envs.pool import EnvPool
from agentgen.envs.webshop import SEARCH_TEMPLATE, WebShopEnv, parse_action
from agentgen.envs.webshop.expert import expert_query

REWARD = {"success": 10.0, "failure": 0.0, "invalid": -0.1}
SEP = " [SEP] "


@pytest.fixture
def env():
    return make("webshop", "test", max_steps=15, reward=REWARD)


def search_to_results(env, seed=0, query=None):
    env.reset(seed)
    query = query or expert_query(env.goal["instruction_text"])
    obs, reward, done, info = env.step(f"search[{query}]")
    assert reward == 0 and not done and not info["invalid_action"]
    return obs, info


def test_search_page_string_and_actions(env):
    obs, info = env.reset(0)
    instr = env.goal["instruction_text"]
    assert obs == f"WebShop [SEP] Instruction: [SEP] {instr} [SEP] Search"
    assert info["admissible_actions"] == [SEARCH_TEMPLATE] == ["search[<your query>]"]
    assert info["task"] == instr == env.task_description()
    assert "search[<your query>]" in env.instruction() and "15 actions" in env.instruction()


def test_results_page_string_and_clickables(env):
    obs, info = search_to_results(env)
    st, products = env.state, env.shop.products
    assert len(st.results) == 50
    expected = [
        "Instruction:",
        env.goal["instruction_text"],
        "Back to Search",
        "Page 1 (Total results: 50)",
        "Next >",
    ]
    for asin in st.results[:10]:
        expected += [asin, products[asin]["Title"], products[asin]["Price"]]
    assert obs == SEP.join(expected)
    assert info["admissible_actions"] == ["click[back to search]", "click[next >]"] + [
        f"click[{a.lower()}]" for a in st.results[:10]
    ]
    assert info["page"] == "results"


def test_paging_through_fifty_results(env):
    search_to_results(env)
    results = env.state.results
    obs, _, _, info = env.step("click[Next >]")
    assert "Page 2 (Total results: 50) [SEP] < Prev [SEP] Next > [SEP] " + results[10] in obs
    assert "click[< prev]" in info["admissible_actions"]
    for _page in (3, 4, 5):
        obs, _, _, info = env.step("click[next >]")
    assert f"Page 5 (Total results: 50) [SEP] < Prev [SEP] {results[40]}" in obs
    assert "click[next >]" not in info["admissible_actions"]
    _, reward, _, info = env.step("click[next >]")  # no page 6
    assert info["invalid_action"] and reward == pytest.approx(-0.1)
    obs, _, _, _ = env.step("click[< prev]")
    assert "Page 4 (Total results: 50)" in obs and results[30] in obs


def test_few_results_have_no_next_page():
    small = make("webshop", "test", max_steps=15, num_products=120, num_test_goals=20)
    for word in ["jojoba", "remy", "catechins", "soundbar", "drawcord", "eyelets", "squeak", "peppery"]:
        small.reset(0)
        obs, _, _, info = small.step(f"search[{word}]")
        total = len(small.state.results)
        if 1 <= total <= 10:
            break
    else:
        pytest.fail("no query with 1-10 results in the small catalog")
    assert f"Page 1 (Total results: {total}) [SEP] {small.state.results[0]}" in obs
    assert "Next >" not in obs and "< Prev" not in obs
    assert info["admissible_actions"] == ["click[back to search]"] + [
        f"click[{a.lower()}]" for a in small.state.results
    ]
    small.reset(0)
    obs, _, _, info = small.step("search[qqqq zzzz]")
    assert obs.endswith("Page 1 (Total results: 0)") and info["admissible_actions"] == [
        "click[back to search]"
    ]


def test_item_page_options_and_sub_pages(env):
    search_to_results(env)
    asin = env.state.results[0]
    p = env.shop.products[asin]
    obs, _, _, info = env.step(f"click[{asin}]")  # upper-case ID works too
    head = f"Instruction: [SEP] {env.goal['instruction_text']} [SEP] Back to Search [SEP] < Prev"
    option_texts = [t for name, values in p["options"].items() for t in [name, *values]]
    tail = [
        p["Title"],
        f"Price: {p['Price']}",
        f"Rating: {p['Rating']}",
        "Description",
        "Features",
        "Reviews",
        "Buy Now",
    ]
    assert obs == SEP.join([head, *option_texts, *tail])
    assert env.page_elements() == obs.split(SEP) and env.state.page == "item"
    values = [v for vs in p["options"].values() for v in vs]
    assert info["admissible_actions"] == [
        "click[back to search]",
        "click[< prev]",
        "click[description]",
        "click[features]",
        "click[reviews]",
        "click[buy now]",
        *[f"click[{v}]" for v in values],
    ]
    name, first = next(iter(p["options"].items()))
    obs2, _, _, _ = env.step(f"click[{first[-1]}]")
    assert env.state.options == {name: first[-1]} and obs2 == obs  # text mode does not mark the choice
    obs, _, _, info = env.step("click[Features]")
    assert obs == SEP.join([head, *p["BulletPoints"]]) and info["page"] == "item_sub"
    assert info["admissible_actions"] == ["click[back to search]", "click[< prev]"]
    env.step("click[< prev]")
    obs, _, _, _ = env.step("click[description]")
    assert obs == SEP.join([head, p["Description"]])
    env.step("click[< prev]")
    obs, _, _, _ = env.step("click[reviews]")
    review_texts = [t for r in p["Reviews"] for t in (f'"{r["title"]}"', str(r["score"]), r["body"])]
    assert obs == SEP.join([head, *review_texts])
    env.step("click[< prev]")
    assert env.state.page == "item" and env.state.options == {name: first[-1]}  # options kept
    obs, _, _, _ = env.step("click[< prev]")
    assert env.state.page == "results" and obs.startswith("Instruction:")
    obs, _, _, info = env.step("click[back to search]")
    assert obs.startswith("WebShop [SEP] Instruction:") and info["admissible_actions"] == [SEARCH_TEMPLATE]


def test_invalid_actions_change_nothing_and_cost(env):
    obs0, _ = env.reset(1)
    for bad in ["click[search]", "search[]", "buy now", "click[buy now]", "jump[1]", "search"]:
        obs, reward, done, info = env.step(bad)
        assert obs == obs0 and reward == pytest.approx(-0.1) and not done and info["invalid_action"], bad
    _obs1, _ = search_to_results(env, seed=1)
    _, reward, _, info = env.step("search[another query]")  # no search bar on the results page
    assert info["invalid_action"] and env.state.keywords == " ".join(
        expert_query(env.goal["instruction_text"]).lower().split()
    )


def test_parse_action():
    assert parse_action("search[Red Shoes ]") == ("search", "Red Shoes")
    assert parse_action(" Click[ Buy Now ] ") == ("click", "Buy Now")
    assert parse_action("click[a [b] c]") == ("click", "a [b] c")
    assert parse_action("buy now") == ("buy now", None)


def test_buying_the_right_product_succeeds(env):
    env.reset(2)
    total, steps, info = 0.0, 0, {}
    done = False
    while not done:
        _, r, done, info = env.step(env.expert_action())
        total, steps = total + r, steps + 1
    assert info["success"] and info["webshop_reward"] == 1.0 and total == 10.0
    assert info["raw_reward"] == 1.0 and info["webshop_reward_info"]["r_type"] == 1.0
    assert info["admissible_actions"] is None and not info["truncated"]
    assert steps <= 8


def test_buying_a_wrong_product_fails_with_partial_score(env):
    search_to_results(env, seed=3)
    goal = env.goal
    # a product of another kind: page through to one whose query differs, else the last result
    wrong = next((a for a in env.state.results[:10] if env.shop.products[a]["query"] != goal["query"]), None)
    wrong = wrong or env.state.results[9]
    env.step(f"click[{wrong}]")
    obs, reward, done, info = env.step("click[buy now]")  # no options selected
    assert done and not info["success"] and reward == 0.0 and not info["truncated"]
    assert 0.0 <= info["webshop_reward"] < 1.0 and info["purchased_asin"] == wrong
    assert obs.startswith("Thank you for shopping with us! [SEP] Your score (min 0.0, max 1.0) [SEP] ")
    assert env.expert_action() is None


def test_step_limit_truncates(env):
    env.reset(4)
    env.step("search[deodorant]")
    done, n, info = False, 1, {}
    while not done:
        _, _r, done, info = env.step("click[next >]" if n % 2 else "click[< prev]")
        n += 1
    assert n == 15 and info["truncated"] and not info["success"]


def test_reset_is_deterministic_and_splits_are_disjoint():
    a = make("webshop", "train", max_steps=15)
    b = make("webshop", "train", max_steps=15)
    t = make("webshop", "test", max_steps=15)
    assert a.shop is b.shop  # one shop per process and configuration
    for seed in (0, 7, 123456):
        assert a.reset(seed) == b.reset(seed)
        assert a.expert_action() == b.expert_action()
    assert len(t.goals) == 500
    assert t.reset(3)[0] == t.reset(503)[0]  # seed mod split size
    train_texts = {g["instruction_text"] for g in a.goals}
    assert not any(g["instruction_text"] in train_texts for g in t.goals)


def test_trajectories_repeat_exactly(env):
    def run(e, seed):
        out = [e.reset(seed)[0]]
        done = False
        while not done:
            obs, r, done, info = e.step(e.expert_action())
            out.append((obs, r, info["webshop_reward"]))
        return out

    other = make("webshop", "test", max_steps=15, reward=REWARD)
    assert run(env, 11) == run(other, 11)


def test_show_instruction_false_drops_the_instruction_from_pages():
    e = make("webshop", "test", max_steps=15, show_instruction=False)
    obs, info = e.reset(0)
    assert obs == "WebShop [SEP] Search" and info["task"]
    obs, _, _, _ = e.step(f"search[{expert_query(e.goal['instruction_text'])}]")
    assert obs.startswith("Back to Search [SEP] Page 1 (Total results: 50)")


@pytest.mark.parametrize("split", ["test", "train"])
def test_expert_reaches_full_score_on_at_least_90_percent(split):
    e = make("webshop", split, max_steps=15)
    n, wins = 200, 0
    for seed in range(n):
        e.reset(seed)
        done, info = False, {}
        while not done:
            action, thought = e.expert_action(), e.expert_thought()
            assert action in e.admissible_actions() or (
                action.startswith("search[") and e.state.page == "search"
            )
            assert thought
            _, _, done, info = e.step(action)
        wins += info["webshop_reward"] == 1.0
    assert wins / n >= 0.9, wins / n  # measured: 99.6% of the 500 test goals


def test_expert_thoughts_explain_the_choice(env):
    env.reset(5)
    thoughts = []
    while not env.done:
        thoughts.append(env.expert_thought())
        env.step(env.expert_action())
    assert thoughts[0].startswith("I am on the search page")
    assert "as requested" in thoughts[-1] and thoughts[-1].endswith("so I buy it.")
    assert f"less than {env.goal['price_upper']:.2f} dollars" in thoughts[-1]


def test_expert_recovers_from_a_detour(env):
    search_to_results(env, seed=6, query="hdmi cable")
    env.step(f"click[{env.state.results[0]}]")
    env.step("click[reviews]")
    done, info, steps = False, {}, 0
    while not done:
        _, _, done, info = env.step(env.expert_action())
        steps += 1
    assert info["success"] and steps <= 11


def test_config_file_builds_the_env():
    cfg = OmegaConf.load("conf/env/webshop.yaml")
    assert cfg.name == "webshop" and cfg.max_steps == 15
    assert (cfg.max_prompt_tokens, cfg.max_response_tokens) == (4096, 1024)
    assert cfg.params.num_test_goals == 500
    e = make(
        cfg.name,
        "test",
        max_steps=cfg.max_steps,
        reward=OmegaConf.to_container(cfg.reward),
        **OmegaConf.to_container(cfg.params),
    )
    assert isinstance(e, WebShopEnv) and e.reward_spec.success == 10.0
    with open("conf/env/webshop.yaml") as f:
        assert f.readline().strip() == "# @package env.webshop"
    with pytest.raises(TypeError):
        make("webshop", "test", no_such_param=1)


def test_pickled_env_reattaches_to_the_process_shop(env):
    env.reset(8)
    env.step(env.expert_action())
    clone = pickle.loads(pickle.dumps(env))
    assert clone.shop is env.shop and clone.state == env.state and clone.goal == env.goal
    assert clone.expert_action() == env.expert_action()
    assert len(pickle.dumps(env)) < 50_000


def test_runs_in_the_worker_pool():
    with EnvPool("webshop", {"max_steps": 15, "reward": REWARD}, "test", num_slots=2, num_workers=1) as pool:
        first = pool.reset({0: 0, 1: 1})
        assert first[0][0].startswith("WebShop [SEP] Instruction:")
        done = {0: False, 1: False}
        last = {}
        while not all(done.values()):
            live = [s for s in done if not done[s]]
            actions = pool.expert_actions(live)
            for slot, (_obs, _r, d, info) in pool.step(actions).items():
                done[slot], last[slot] = d, info
        assert all(last[s]["webshop_reward"] == 1.0 for s in last)
