"""WebShop catalog: vocabulary invariants, the seeded generator, the loader of the original files
(on a tiny file in their schema written here), goals and splits, search."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from agentgen.envs import make
from agentgen.envs.webshop.catalog import build_catalog, parse_pricing, split_goals
from agentgen.envs.webshop.generator import (
    ATTRIBUTES_FILE,
    PRODUCTS_FILE,
    REVIEWS_FILE,
    generate_catalog,
    write_catalog,
)
from agentgen.envs.webshop.loader import load_raw_files
from agentgen.envs.webshop.reward import get_reward, normalize_color, token_set_ratio
from agentgen.envs.webshop.search import ProductSearch, index_text
from agentgen.envs.webshop.shop import ShopConfig, build_shop, get_shop
from agentgen.envs.webshop.vocab import ATTRIBUTE_BLURBS, EXTRA_BULLETS, FILLERS, PRODUCT_TYPES

DEODORANTS = "Beauty & Personal Care › Personal Care › Deodorants & Antiperspirants › Deodorants"


# ----------------------------------------------------------------------------- vocabulary
@pytest.mark.parametrize("ptype", PRODUCT_TYPES, ids=lambda t: t.query)
def test_attributes_of_a_type_never_match_each_other(ptype):
    for a, b in itertools.permutations(ptype.attributes, 2):
        assert a not in b, f"{a!r} is inside {b!r}"
        assert token_set_ratio(a, b) <= 85, f"{a!r} fuzzy-matches {b!r}"
    for a in ptype.attributes:
        others = [o for o in ptype.attributes if o != a]
        assert not any(o in ATTRIBUTE_BLURBS[a] for o in others), f"blurb of {a!r} names another attribute"


def test_vocabulary_covers_five_categories_and_all_blurbs():
    assert {t.category for t in PRODUCT_TYPES} == {"beauty", "electronics", "fashion", "food", "furniture"}
    assert len({t.query for t in PRODUCT_TYPES}) == len(PRODUCT_TYPES) == 30
    assert all(a in ATTRIBUTE_BLURBS for t in PRODUCT_TYPES for a in t.attributes)
    for cat in FILLERS:
        assert FILLERS[cat] and EXTRA_BULLETS[cat]


# ----------------------------------------------------------------------------- generator
@pytest.fixture(scope="module")
def generated():
    raw = generate_catalog(600, seed=0)
    return raw, build_catalog(raw, "synthetic", seed=0)


def test_generated_products_have_the_original_schema(generated):
    raw, catalog = generated
    keys = {
        "asin",
        "name",
        "full_description",
        "small_description",
        "pricing",
        "customization_options",
        "category",
        "query",
        "product_category",
    }
    assert all(keys <= set(p) for p in raw.products)
    assert len(catalog.products) == 600 and len({p["asin"] for p in catalog.products}) == 600
    for p in catalog.products:
        assert p["asin"].startswith("B0") and len(p["asin"]) == 10
        assert p["Price"].startswith("$") and p["BulletPoints"] and p["Attributes"]
        ins = raw.attributes[p["asin"]]
        assert set(ins["instruction_attributes"]) <= set(ins["attributes"])
        assert all(a in ins["instruction"] for a in ins["instruction_attributes"])


def test_generated_text_names_only_own_attributes_and_no_option_value(generated):
    _, catalog = generated
    pools = {t.query: t.attributes for t in PRODUCT_TYPES}
    for p in catalog.products:
        text = " ".join([p["Title"], p["Description"], *p["BulletPoints"]]).lower()
        for attr in pools[p["query"]]:
            assert (attr in text) == (attr in p["Attributes"]), (p["asin"], attr)
        for name, values in p["options"].items():
            norms = [normalize_color(v) for v in values]
            assert len(set(norms)) == len(norms), (p["asin"], name)
            assert not any(n in text for n in norms), (p["asin"], name)


def test_every_goal_is_reachable_with_score_one(generated):
    _, catalog = generated
    for g in random.Random(0).sample(catalog.goals, 400):
        product = catalog.by_asin[g["asin"]]
        reward, info = get_reward(product, g, catalog.prices[g["asin"]], g["goal_options"])
        assert reward == 1.0, (g["instruction_text"], info)
        assert g["price_upper"] > catalog.prices[g["asin"]]


def test_synthetic_goals_cover_every_option_combination(generated):
    _, catalog = generated
    per_product = {}
    for g in catalog.goals:
        per_product[g["asin"]] = per_product.get(g["asin"], 0) + 1
    for p in catalog.products:
        combos = 1
        for values in p["options"].values():
            combos *= len(values)
        assert per_product[p["asin"]] == combos
    g = next(g for g in catalog.goals if len(g["goal_options"]) == 2)
    names = sorted(g["goal_options"])
    assert f" with {names[0]}: {g['goal_options'][names[0]]}, and {names[1]}: " in g["instruction_text"]
    assert g["instruction_text"].endswith(f", and price lower than {g['price_upper']:.2f} dollars")


def test_generation_is_deterministic_per_seed():
    a, b, c = generate_catalog(90, seed=1), generate_catalog(90, seed=1), generate_catalog(90, seed=2)
    assert a.products == b.products and a.attributes == b.attributes and a.reviews == b.reviews
    assert a.products != c.products
    ga, gb = build_catalog(a, seed=1).goals, build_catalog(b, seed=1).goals
    assert ga == gb


def test_too_few_products_is_rejected():
    with pytest.raises(ValueError, match="num_products"):
        generate_catalog(5)


# ----------------------------------------------------------------------------- splits
def test_default_split_sizes_and_no_shared_instance():
    shop = get_shop(ShopConfig())
    test, train = shop.splits["test"], shop.splits["train"]
    assert len(test) == 500
    assert test == shop.catalog.goals[:500]
    assert len(train) >= len(shop.catalog.goals) - 500 - 50  # only duplicates of test texts dropped
    assert not {g["instruction_text"] for g in test} & {g["instruction_text"] for g in train}
    assert len(shop.catalog.products) == 3000 and len(shop.catalog.goals) > 10_000


def test_split_goals_validates_and_drops_test_duplicates():
    goals = [{"instruction_text": t} for t in ["a", "b", "a", "c", "b", "d"]]
    s = split_goals(goals, 2)
    assert [g["instruction_text"] for g in s["test"]] == ["a", "b"]
    assert [g["instruction_text"] for g in s["train"]] == ["c", "d"]
    with pytest.raises(ValueError, match="num_test_goals"):
        split_goals(goals, 6)


# ----------------------------------------------------------------------------- original files
def write_tiny_original_files(root):
    """A tiny catalog in the original files' schema (items_shuffle, items_ins_v2, items_human_ins,
    reviews), with the edge cases the original loader handles."""

    def opt(*values):
        return [{"value": v, "image": None} for v in values]

    products = [
        {
            "asin": "B000000001",
            "name": "Earth Mama Bright Citrus Deodorant - Long Lasting",
            "full_description": "A gentle formula for every day.",
            "small_description": ["PARABEN FREE: made without parabens", "Safe for sensitive skin"],
            "pricing": "$12.99",
            "customization_options": {
                "Scent": opt("Lavender", "Citrus/Lime"),
                "Size": opt("3 Ounce (Pack of 1)", "3 Ounce (Pack of 2)"),
            },
            "category": "beauty",
            "query": "Deodorant ",
            "product_category": DEODORANTS,
            "images": ["https://example.invalid/1.jpg"],
            "brand": "Earth Mama",
            "list_price": "$15",
        },
        {
            "asin": "B000000002",
            "name": "Native Coconut Deodorant Stick, Aluminum Free",
            "full_description": "Clean ingredients.",
            "small_description": ["ALUMINUM FREE: none at all"],
            "pricing": "$8.49 - $15.99",
            "customization_options": {"Scent": opt("Coconut", "Cucumber")},
            "category": "beauty",
            "query": "deodorant",
            "product_category": DEODORANTS,
            "images": [],
        },
        {
            "asin": "B000000003",
            "name": "Herbal Shampoo for Dry Hair",
            "full_description": "",
            "small_description": "SULFATE FREE: gentle cleansing",
            "pricing": "",
            "customization_options": None,
            "category": "beauty",
            "query": "shampoo",
            "product_category": "Beauty & Personal Care › Hair Care › Shampoos",
            "images": [],
        },
        {
            "asin": "B000000004",
            "name": "Stride Men's Running Shoes - Non Slip Rubber Sole",
            "full_description": "Light and quick.",
            "small_description": ["NON SLIP: grips wet roads"],
            "pricing": "$54.00",
            "customization_options": {"Color": opt("Black", "Navy Blue"), "Size": opt("9", "10")},
            "category": "fashion",
            "query": "men's running shoes",
            "product_category": "Clothing, Shoes & Jewelry › Men › Shoes › Athletic › Running",
            "images": [],
        },
        {"asin": "nan", "name": "broken record", "category": "beauty", "query": "x", "product_category": ""},
        {
            "asin": "B000000001",
            "name": "duplicate",
            "category": "beauty",
            "query": "x",
            "product_category": "",
        },
        {
            "asin": "B0000000055",
            "name": "asin too long",
            "category": "beauty",
            "query": "x",
            "product_category": "",
        },
    ]
    attributes = {
        "B000000001": {
            "attributes": ["long lasting", "paraben free"],
            "instruction": "i need a long lasting deodorant that is paraben free",
            "instruction_attributes": ["long lasting", "paraben free"],
        },
        "B000000002": {
            "attributes": ["aluminum free"],
            "instruction": "find me an aluminum free deodorant",
            "instruction_attributes": ["aluminum free"],
        },
        "B000000004": {
            "attributes": ["non slip", "rubber sole"],
            "instruction": "i want non slip men's running shoes with a rubber sole",
            "instruction_attributes": ["non slip", "rubber sole"],
        },
    }
    human = {
        "B000000001": [
            {
                "asin": "B000000001",
                "instruction": "i need a long lasting deodorant in lavender.",
                "instruction_attributes": ["long lasting"],
                "instruction_options": ["lavender"],
            }
        ],
        "B000000002": [
            {
                "asin": "B000000002",
                "instruction": "no attributes here",
                "instruction_attributes": [],
                "instruction_options": [],
            }
        ],
        "B000000004": [
            {
                "asin": "B000000004",
                "instruction": "i want non slip running shoes, black, size 10",
                "instruction_attributes": ["non slip"],
                "instruction_options": ["black", "10"],
            }
        ],
    }
    reviews = [
        {
            "asin": "B000000001",
            "average_rating": 4.5,
            "reviews": [
                {"title": "Great", "stars": 5, "review": "Works all day."},
                {"title": "Good", "score": 4, "body": "Nice scent."},
            ],
        }
    ]
    files = {
        "items_shuffle_1000.json": products,
        "items_ins_v2_1000.json": attributes,
        "items_human_ins.json": human,
        "reviews.json": reviews,
    }
    for name, data in files.items():
        (root / name).write_text(json.dumps(data))
    return root


def test_loader_processes_the_original_schema(tmp_path):
    raw = load_raw_files(str(write_tiny_original_files(tmp_path)), reviews_file="reviews.json")
    catalog = build_catalog(raw, "synthetic", seed=0)
    assert [p["asin"] for p in catalog.products] == ["B000000001", "B000000002", "B000000003", "B000000004"]
    p1, p2, p3, _p4 = catalog.products
    assert p1["Title"] == p1["name"] and p1["query"] == "deodorant"
    assert p1["options"] == {
        "scent": ["lavender", "citrus | lime"],
        "size": ["3 ounce (pack of 1)", "3 ounce (pack of 2)"],
    }
    assert p1["Price"] == "$12.99" and catalog.prices["B000000001"] == 12.99
    assert p1["Rating"] == 4.5 and [r["score"] for r in p1["Reviews"]] == [5, 4]
    assert p1["Reviews"][0]["body"] == "Works all day." and p1["MainImage"].endswith("1.jpg")
    assert p2["Price"] == "$8.49 to $15.99" and 8.49 <= catalog.prices["B000000002"] <= 15.99
    assert p2["Rating"] == "N.A."
    assert p3["Price"] == "$100.0" and p3["options"] == {} and p3["Attributes"] == ["DUMMY_ATTR"]
    assert p3["BulletPoints"] == ["SULFATE FREE: gentle cleansing"]
    # synthetic goals: 2 x 2 + 2 + 2 x 2 option combinations; the shampoo has no instruction
    assert len(catalog.goals) == 10
    assert {g["asin"] for g in catalog.goals} == {"B000000001", "B000000002", "B000000004"}
    g = next(
        g
        for g in catalog.goals
        if g["asin"] == "B000000001" and g["goal_options"]["scent"] == "citrus | lime"
    )
    assert g["instruction_text"].startswith(
        "i need a long lasting deodorant that is paraben free with scent: citrus | lime, and size: "
    )


def test_loader_human_goals(tmp_path):
    raw = load_raw_files(str(write_tiny_original_files(tmp_path)), human_goals_file="items_human_ins.json")
    catalog = build_catalog(raw, "human", seed=0)
    assert len(catalog.goals) == 2  # the instruction without attributes is skipped
    g = next(g for g in catalog.goals if g["asin"] == "B000000001")
    assert g["goal_options"] == ["lavender"]
    assert g["instruction_text"].startswith(
        "i need a long lasting deodorant in lavender, and price lower than "
    )


def test_loader_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_raw_files(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="products file not found"):
        load_raw_files(str(tmp_path))
    (tmp_path / "items_shuffle_1000.json").write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match="list of products"):
        load_raw_files(str(tmp_path))
    with pytest.raises(ValueError, match="data_dir"):
        ShopConfig(catalog="files")
    with pytest.raises(ValueError, match="catalog must be one of"):
        ShopConfig(catalog="amazon")
    with pytest.raises(ValueError, match="synthetic goals only"):
        ShopConfig(goals="human")
    with pytest.raises(ValueError, match="human_goals_file"):
        ShopConfig(catalog="files", data_dir=str(tmp_path), goals="human")


def test_env_on_the_original_files_expert_buys_at_full_score(tmp_path):
    root = write_tiny_original_files(tmp_path)
    for goals, extra in (("synthetic", {}), ("human", {"human_goals_file": "items_human_ins.json"})):
        n_test = 3 if goals == "synthetic" else 1
        env = make(
            "webshop",
            "test",
            max_steps=15,
            catalog="files",
            data_dir=str(root),
            goals=goals,
            num_test_goals=n_test,
            reviews_file="reviews.json",
            **extra,
        )
        for seed in range(n_test):
            env.reset(seed)
            done, info = False, {}
            while not done:
                _, _, done, info = env.step(env.expert_action())
            assert info["success"] and info["webshop_reward"] == 1.0, env.goal


def test_generated_catalog_round_trips_through_the_original_files(tmp_path):
    raw = generate_catalog(120, seed=5)
    paths = write_catalog(raw, tmp_path)
    assert {p.name for p in paths.values()} == {PRODUCTS_FILE, ATTRIBUTES_FILE, REVIEWS_FILE}
    shop = build_shop(
        ShopConfig(
            catalog="files",
            data_dir=str(tmp_path),
            products_file=PRODUCTS_FILE,
            attributes_file=ATTRIBUTES_FILE,
            reviews_file=REVIEWS_FILE,
            seed=5,
            num_test_goals=50,
        )
    )
    direct = build_catalog(generate_catalog(120, seed=5), seed=5)
    assert shop.catalog.goals == direct.goals
    assert shop.catalog.products == direct.products


def test_parse_pricing():
    assert parse_pricing("$12.99") == ([12.99], "$12.99")
    assert parse_pricing("$1,299.00") == ([1299.0], "$1299.0")
    assert parse_pricing("$8.49 - $15.99") == ([8.49, 15.99], "$8.49 to $15.99")
    assert parse_pricing(None) == ([100.0], "$100.0")


# ----------------------------------------------------------------------------- search
def test_search_indexes_title_description_first_bullet_and_options(tmp_path):
    raw = load_raw_files(str(write_tiny_original_files(tmp_path)))
    catalog = build_catalog(raw, "synthetic", seed=0)
    search = ProductSearch(catalog.products)
    assert "scent: lavender, citrus | lime, and size: 3 ounce" in index_text(catalog.products[0])
    assert search.search("citrus deodorant")[0] == "B000000001"
    assert search.search("lavender") == ["B000000001"]  # found through the options only
    assert search.search("sensitive") == []  # second bullet point is not indexed
    assert search.search("running shoes")[0] == "B000000004"  # stemming: shoes ~ shoe
    assert search.search("zzz qqq") == [] and search.search("") == []
    assert search.search("Deodorants!") == search.search("deodorant")


def test_search_returns_at_most_50_best_first():
    shop = get_shop(ShopConfig())
    hits = shop.search.search("long lasting deodorant")
    assert len(hits) == 50 and len(set(hits)) == 50
    assert all(shop.products[a]["query"] == "deodorant" for a in hits[:10])
    assert shop.search.search("long lasting deodorant") == hits
