"""WebShop purchase reward: hand-worked cases of the original's formula, including partial matches."""

from __future__ import annotations

import pytest

from agentgen.envs.webshop.reward import (
    HeuristicNounTagger,
    get_reward,
    is_success,
    make_noun_tagger,
    normalize_color,
    option_matches,
    token_set_ratio,
    type_reward,
)

DEODORANT_CATEGORY = "Beauty & Personal Care › Personal Care › Deodorants & Antiperspirants › Deodorants"


def deodorant(**overrides):
    p = {
        "asin": "B000000001",
        "name": "Earth Mama Bright Citrus Deodorant - Long Lasting",
        "Title": "Earth Mama Bright Citrus Deodorant - Long Lasting",
        "BulletPoints": ["PARABEN FREE: made without parabens", "Gentle on skin"],
        "Description": "A gentle formula for every day.",
        "Attributes": ["long lasting", "aluminum free"],
        "query": "deodorant",
        "product_category": DEODORANT_CATEGORY,
        "options": {"scent": ["lavender", "citrus"], "size": ["3 ounce (pack of 1)", "3 ounce (pack of 2)"]},
    }
    p.update(overrides)
    return p


def goal(**overrides):
    g = {
        "asin": "B000000001",
        "name": "Earth Mama Bright Citrus Deodorant - Long Lasting",
        "query": "deodorant",
        "product_category": DEODORANT_CATEGORY,
        "attributes": ["long lasting", "paraben free", "travel size"],
        "goal_options": {"scent": "lavender", "size": "3 ounce (pack of 2)"},
        "price_upper": 30.0,
        "instruction_text": "i need a long lasting, paraben free, travel size deodorant ...",
    }
    g.update(overrides)
    return g


WANTED = {"scent": "lavender", "size": "3 ounce (pack of 2)"}


def test_full_match_scores_one():
    g = goal(attributes=["long lasting", "paraben free"])
    # 2 attributes (one via Attributes, one via the bullets) + 2 options + price = 5 of 5
    reward, info = get_reward(deodorant(), g, price=12.99, options=WANTED)
    assert reward == 1.0 and is_success(reward)
    assert info["r_type"] == 1.0 and info["r_price"] is True and info["r_option"] == 1.0


def test_missing_attribute_is_partial():
    # long lasting (Attributes) and paraben free (bullet text) match, travel size does not:
    # (2 + 2 + 1) / (3 + 2 + 1) = 5/6
    reward, info = get_reward(deodorant(), goal(), price=12.99, options=WANTED)
    assert reward == pytest.approx(5 / 6)
    assert info["attributes_matched"] == {"long lasting": True, "paraben free": True, "travel size": False}
    assert info["r_att"] == pytest.approx(2 / 3)
    assert not is_success(reward)


def test_wrong_size_is_not_matched_exactly():
    # size is exact-match: "3 ounce (pack of 1)" != "3 ounce (pack of 2)" -> (2 + 1 + 1) / 6
    reward, info = get_reward(
        deodorant(), goal(), price=12.99, options={"scent": "lavender", "size": "3 ounce (pack of 1)"}
    )
    assert reward == pytest.approx(4 / 6)
    assert info["options_matched"] == {"scent": True, "size": False}


def test_unselected_options_and_over_budget():
    # no option selected and price above the cap: (2 + 0 + 0) / 6
    reward, info = get_reward(deodorant(), goal(), price=31.0, options={})
    assert reward == pytest.approx(2 / 6)
    assert info["r_price"] is False and info["r_option"] == 0


def test_no_price_cap_counts_price_as_met():
    reward, _ = get_reward(deodorant(), goal(price_upper=1_000_000.0), price=500.0, options=WANTED)
    assert reward == pytest.approx(5 / 6)


def test_different_product_type_scores_zero():
    shampoo = deodorant(
        name="Herbal Shampoo for Dry Hair",
        Title="Herbal Shampoo for Dry Hair",
        query="shampoo",
        product_category="Beauty & Personal Care › Hair Care › Shampoos",
        Attributes=["long lasting"],
    )
    reward, info = get_reward(shampoo, goal(), price=5.0, options={})
    # the goal title's nouns (earth, mama, bright, citrus, deodorant) share none with the shampoo's
    assert info["title_score"] == 0.0 and info["r_type"] == 0.0 and reward == 0.0


def test_half_type_factor_without_query_category_or_title_match():
    body_wash = deodorant(
        name="Citrus Body Wash",
        Title="Citrus Body Wash",
        query="body wash",
        product_category="Beauty & Personal Care › Bath & Body › Body Washes",
        Attributes=[],
        BulletPoints=["Foams well"],
        Description="Cleans.",
    )
    tm = type_reward(body_wash, goal())
    # one category level shared (< 2), query differs, 1 of 5 goal nouns shared (0.2, not > 0.2)
    assert (tm.query_match, tm.category_match, tm.title_score, tm.r_type) == (False, False, 0.2, 0.5)
    reward, _ = get_reward(body_wash, goal(), price=5.0, options={})
    assert reward == pytest.approx(1 / 6 * 0.5)  # only the price matched


def test_low_title_overlap_gives_tenth_even_with_query_match():
    long_name = "Alpha Beta Gamma Delta Epsilon Zeta Theta Iota Kappa Lambda Deodorant"  # 11 nouns
    other = deodorant(name="Omega Deodorant", Title="Omega Deodorant")
    tm = type_reward(other, goal(name=long_name))
    assert tm.query_match and tm.title_score == pytest.approx(1 / 11) and tm.r_type == 0.1


def test_category_match_keeps_full_type_factor():
    other = deodorant(name="Zinc Stick", Title="Zinc Stick", query="antiperspirant")
    tm = type_reward(other, goal())
    assert tm.category_match and not tm.query_match
    # title shares nothing with the goal's nouns: r_type is 0 whatever the category
    assert tm.r_type == 0.0


def test_option_quirks_of_the_original():
    p = deodorant(Title="Lavender Fields Deodorant")
    # colour normalisation: navy blue and royal blue are both "blue"
    assert option_matches(p, ["navy blue"], {"color": "royal blue"}) == {"color": True}
    # size is exact after normalisation
    assert option_matches(p, ["large"], {"size": "x-large"}) == {"size": False}
    # a purchased value found in the product's text matches whatever the goal wanted
    assert option_matches(p, ["citrus"], {"scent": "lavender"}) == {"scent": True}
    # fuzzy match for non-size options: punctuation and case do not matter
    assert option_matches(deodorant(), ["Fresh-Citrus"], {"scent": "fresh citrus"}) == {"scent": True}


def test_human_goal_options_are_a_list():
    g = goal(goal_options=["lavender"], attributes=["long lasting"])
    reward, info = get_reward(deodorant(), g, price=10.0, options={"scent": "lavender"})
    assert reward == 1.0 and info["w_option"] == pytest.approx(1 / 3)


def test_normalize_color_and_fuzzy_ratio():
    assert normalize_color("navy blue") == "blue"
    assert normalize_color("light brown") == "brown"
    assert normalize_color("standard") == "tan"  # the original's substring quirk
    assert normalize_color("queen") == "queen"
    assert token_set_ratio("long-lasting", "Long Lasting") == 100
    assert token_set_ratio("gluten free", "gluten free snack") == 100  # token subset
    assert token_set_ratio("paraben free", "aluminum free") <= 85
    assert token_set_ratio("", "abc") == 0


def test_heuristic_nouns_and_taggers():
    nouns = HeuristicNounTagger().nouns(
        "Earth Mama Bright Citrus Deodorant - Long Lasting, 3 Ounce (Pack of 2)"
    )
    assert nouns == ("earth", "mama", "bright", "citrus", "deodorant", "ounce", "pack")
    assert make_noun_tagger("heuristic") is make_noun_tagger("heuristic")
    with pytest.raises(ValueError, match="noun_tagger"):
        make_noun_tagger("nltk")
    with pytest.raises(ValueError, match="spaCy model"):
        make_noun_tagger("spacy:agentgen_no_such_model")
