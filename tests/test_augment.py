"""State augmentation: settings and presets, the split / prob rules, and, per environment, that only the
agent's input changes (expert actions, rewards, success, admissible actions identical to the plain env
on the same seeds) and that no distractor names a real object or an admissible action."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from agentgen.augment import AugmentSettings, env_factory, parse_settings
from agentgen.augment.seeding import episode_augmented
from agentgen.augment.wrapper import AugmentedEnv
from agentgen.config import CONF_DIR, ConfigError
from agentgen.envs import make
from agentgen.envs.distractor_words import (
    SOKOBAN_OBJECTS,
    SOKOBAN_PLACES,
    SOKOBAN_RESERVED,
    WEBSHOP_AD_CATEGORIES,
    WEBSHOP_AD_DESCRIPTORS,
    WEBSHOP_DECOY_MARK,
    WEBSHOP_TRIVIAL_FEATURES,
)
from agentgen.envs.distractors import insert_at_gaps, sentence_gaps, words

PRESETS = sorted(p.stem for p in (CONF_DIR / "augment").glob("*.yaml"))


def settings(eps, **kw) -> AugmentSettings:
    return parse_settings({"name": "test", "eps": eps, **kw}, default_seed=0)


def env_cfg(name: str, **params):
    node = OmegaConf.load(CONF_DIR / "env" / f"{name}.yaml")
    node.params.update(params)
    return node


# ============================================================================ settings
def test_every_preset_parses_and_the_study_settings_match_papers_md():
    assert {"none", "low", "medium", "high", "v1", "v2", "custom"} <= set(PRESETS)
    for name in PRESETS:
        raw = yaml.safe_load((CONF_DIR / "augment" / f"{name}.yaml").read_text())
        if name == "custom":
            raw["eps"] = 50
        s = parse_settings(raw, default_seed=3)
        assert s.name == name and (s.enabled == (name != "none"))
    v1 = parse_settings(yaml.safe_load((CONF_DIR / "augment" / "v1.yaml").read_text()), 0)
    v2 = parse_settings(yaml.safe_load((CONF_DIR / "augment" / "v2.yaml").read_text()), 0)
    assert (v1.eps_for("alfworld"), v1.eps_for("webshop"), v1.eps_for("sokoban"), v1.prob) == (
        300,
        30,
        80,
        1.0,
    )
    assert (v2.eps_for("alfworld"), v2.eps_for("webshop"), v2.eps_for("sokoban"), v2.prob) == (
        200,
        40,
        80,
        0.5,
    )
    assert v1.eps_for("sciworld") is None and v2.eps_for("sciworld") is None  # the study left SciWorld plain


def test_levels_grow_for_every_env():
    levels = [
        parse_settings(yaml.safe_load((CONF_DIR / "augment" / f"{n}.yaml").read_text()), 0)
        for n in ("low", "medium", "high")
    ]
    for env in ("sokoban", "alfworld", "sciworld", "webshop"):
        eps = [s.eps_for(env) for s in levels]
        assert eps == sorted(eps) and len(set(eps)) == 3, (env, eps)


@pytest.mark.parametrize("eps,lines", [(1, 1), (9, 1), (10, 1), (80, 8), (160, 16)])
def test_sokoban_line_count_formula(eps, lines):
    from agentgen.envs.sokoban.augment import SokobanAugmenter

    assert SokobanAugmenter(eps).amounts() == {"lines": lines}


@pytest.mark.parametrize("eps,sentences", [(11, 0), (12, 1), (200, 16), (300, 25)])
def test_alfworld_sentence_count_formula(eps, sentences):
    from agentgen.envs.alfworld.augment import AlfWorldAugmenter

    assert AlfWorldAugmenter(eps).amounts() == {"sentences": sentences}


@pytest.mark.parametrize(
    "eps,alpha,expected",
    [
        (30, 1.0, {"decoys": 3, "features": 1, "ads": 1}),
        (40, 1.0, {"decoys": 4, "features": 1, "ads": 1}),
        (100, 1.0, {"decoys": 10, "features": 4, "ads": 3}),
        (300, 1.0, {"decoys": 10, "features": 12, "ads": 10}),
        (30, 0.5, {"decoys": 1, "features": 1, "ads": 1}),
        (5, 1.0, {"decoys": 0, "features": 1, "ads": 1}),
    ],
)
def test_webshop_amount_formulas(eps, alpha, expected):
    from agentgen.envs.webshop.augment import WebShopAugmenter

    assert WebShopAugmenter(eps, alpha).amounts() == expected


@pytest.mark.parametrize(
    "raw,needle",
    [
        ({"name": "x", "eps": 10, "prob": 1.5}, "augment.prob=1.5"),
        ({"name": "x", "eps": 10, "apply_to": "test"}, "augment.apply_to='test'"),
        ({"name": "x", "eps": 10, "resample": "never"}, "augment.resample='never'"),
        ({"name": "x", "eps": {"chess": 10}}, "'chess'"),
        ({"name": "x", "eps": -1}, "augment.eps=-1"),
        ({"name": "x", "eps": "lots"}, "augment.eps='lots'"),
        ({"name": "x", "eps": 10, "colour": 1}, "unknown key(s) colour"),
        ({"name": "x"}, "has no eps"),
        ({"name": "custom", "eps": "???"}, "has no eps"),
        ({"name": "x", "eps": 10, "seed": -2}, "augment.seed=-2"),
        ({"name": "x", "eps": 10, "webshop_alpha": 0}, "augment.webshop_alpha=0"),
    ],
)
def test_bad_settings_name_the_value_and_the_valid_ones(raw, needle):
    with pytest.raises(ConfigError) as err:
        parse_settings(raw, default_seed=0)
    assert needle in str(err.value)


def test_hydra_overrides_select_and_replace_eps():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        scalar = compose("config", overrides=["augment=high", "augment.eps=50"])
        one_env = compose(
            "config", overrides=["augment=v2", "augment.eps.sokoban=120", "augment.apply_to=both"]
        )
        custom = compose("config", overrides=["augment=custom", "augment.eps=30", "augment.name=eps30"])
    assert parse_settings(scalar.augment, 0).eps == {
        e: 50.0 for e in ("sokoban", "alfworld", "sciworld", "webshop")
    }
    s = parse_settings(one_env.augment, 0)
    assert s.eps_for("sokoban") == 120 and s.eps_for("alfworld") == 200 and s.apply_to == "both"
    assert parse_settings(custom.augment, 0).name == "eps30"


# ============================================================================ env_factory
def test_env_factory_follows_apply_to_and_eps():
    cfg = env_cfg("sokoban")
    none = env_factory("sokoban", cfg, parse_settings(OmegaConf.create({"name": "none"}), 0), "train")
    assert none.env_class is make("sokoban", "train").__class__ and none.name == "sokoban"
    assert none.kwargs == {
        "max_steps": 15,
        "reward": {"success": 10.0, "failure": 0.0, "invalid": -0.1},
        **OmegaConf.to_container(cfg.params),
    }
    for apply_to, wrapped in (("train", {"train"}), ("eval", {"test"}), ("both", {"train", "test"})):
        aug = parse_settings({"name": "high", "eps": {"sokoban": 80}, "apply_to": apply_to}, default_seed=7)
        for split in ("train", "test"):
            factory = env_factory("sokoban", cfg, aug, split)
            assert (factory.env_class is AugmentedEnv) == (split in wrapped), (apply_to, split)
            if factory.env_class is AugmentedEnv:
                assert factory.kwargs["inner"] == none and factory.base == none
                assert factory.kwargs["augment"] is aug and aug.seed == 7  # the job seed unless augment.seed is set
    # an env the setting does not cover stays plain (v1/v2 leave SciWorld alone); force ignores apply_to
    v1 = parse_settings({"name": "v1", "eps": {"sciworld": None, "sokoban": 0}}, 0)
    assert env_factory("sokoban", cfg, v1, "train") == none
    forced = env_factory("sokoban", cfg, parse_settings({"name": "x", "eps": 80}, 0), "test", force=True)
    assert forced.env_class is AugmentedEnv


def test_the_factory_pickles_and_builds_the_same_env_in_a_worker():
    """The pool's worker processes get the factory itself: classes by reference, settings as the job parsed them."""
    import pickle

    factory = env_factory("sokoban", env_cfg("sokoban"), settings({"sokoban": 80}), "train")
    copy = pickle.loads(pickle.dumps(factory))
    assert copy == factory and copy.kwargs["augment"] == factory.kwargs["augment"]
    assert copy("train").reset(3) == factory("train").reset(3)
    with pytest.raises(TypeError, match="AugmentSettings"):
        AugmentedEnv("train", inner="sokoban", augment=settings(80).as_dict())


def test_prob_picks_a_fixed_fraction_of_episodes_deterministically():
    picks = [episode_augmented(0.5, 11, "train", s) for s in range(2000)]
    assert picks == [episode_augmented(0.5, 11, "train", s) for s in range(2000)]
    assert abs(sum(picks) / 2000 - 0.5) < 0.05  # 4.5 standard deviations
    assert not any(episode_augmented(0.0, 11, "train", s) for s in range(50))
    assert all(episode_augmented(1.0, 11, "train", s) for s in range(50))
    assert picks != [episode_augmented(0.5, 12, "train", s) for s in range(2000)]


def test_sentence_gaps_keep_banners_and_numbers_whole():
    text = (
        "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in a room. It is 1.5 m wide.\n\nYour task is to: go."
    )
    cut = [text[:g] for g in sentence_gaps(text)]
    assert cut == [
        "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in a room.",
        "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in a room. It is 1.5 m wide.",
        text,
    ]
    import random

    out = insert_at_gaps(text, ["You notice X."], random.Random(0))
    assert out.replace(" You notice X.", "", 1) == text


# ============================================================================ invariance, per env
def play_pair(name: str, kwargs: dict, aug: dict, seeds, split: str = "train", check=None, keep=None):
    """Play the expert on the plain env and the augmented one side by side; everything but the
    observation must agree. ``check(env, raw, seen)`` inspects each augmented observation. Returns the
    number of augmented observations; ``keep`` (a list) receives the augmented env, left open."""
    plain = make(name, split, **kwargs)
    wrapped = AugmentedEnv(split, inner=name, inner_kwargs=kwargs, augment=aug)
    n_aug_obs = 0
    try:
        for seed in seeds:
            (o1, i1), (o2, i2) = plain.reset(seed), wrapped.reset(seed)
            assert wrapped.raw_observation == o1
            assert i2.pop("augmented") is wrapped.episode_augmented
            assert i1 == i2
            assert wrapped.task_description() == plain.task_description()
            assert wrapped.instruction() == plain.instruction()
            n_aug_obs += _inspect(o1, o2, wrapped, check)
            done = False
            while not done:
                a1, a2 = plain.expert_action(), wrapped.expert_action()
                assert a1 == a2
                assert plain.expert_thought() == wrapped.expert_thought()
                if a1 is None:
                    break
                (o1, r1, d1, i1), (o2, r2, d2, i2) = plain.step(a1), wrapped.step(a2)
                i2.pop("augmented")
                assert (r1, d1, i1) == (r2, d2, i2)
                assert plain.admissible_actions() == wrapped.admissible_actions()
                assert (wrapped.steps, wrapped.done, wrapped.success) == (
                    plain.steps,
                    plain.done,
                    plain.success,
                )
                n_aug_obs += _inspect(o1, o2, wrapped, check)
                done = d1
    finally:
        plain.close()
        if keep is None:
            wrapped.close()
        else:
            keep.append(wrapped)
    return n_aug_obs


def _inspect(raw: str, seen: str, wrapped: AugmentedEnv, check) -> int:
    assert wrapped.raw_observation == raw
    if not wrapped.episode_augmented:
        assert seen == raw and wrapped.last_distractors == []
        return 0
    for d in wrapped.last_distractors:
        assert d in seen
        admissible = wrapped.admissible_actions() or []
        assert all(d.lower() != a.lower() and d.lower() not in a.lower() for a in admissible), d
    if check:
        check(wrapped, raw, seen)
    return 1 if wrapped.last_distractors else 0


SOKOBAN_LINE = re.compile(r"^\((\d+), (\d+)\) shows an? (.+) \((.+); unreachable\)\.$")


def check_sokoban(env: AugmentedEnv, raw: str, seen: str) -> None:
    lines = env.last_distractors
    unreachable = env.unreachable_cells()
    assert len(lines) == min(env.augmenter.amounts()["lines"], len(unreachable))
    assert seen == raw + "\n" + "\n".join(lines)
    cells = []
    for line in lines:
        m = SOKOBAN_LINE.match(line)
        assert m, line
        cells.append((int(m.group(1)), int(m.group(2))))
        assert m.group(3) in SOKOBAN_OBJECTS and m.group(4) in SOKOBAN_PLACES
        assert not words(line) & set(SOKOBAN_RESERVED), line
    assert len(set(cells)) == len(cells) and set(cells) <= unreachable
    assert not set(cells) & env.reachable_cells()


def test_sokoban_high_eps_changes_only_the_observation():
    kwargs = {"max_steps": 15, **OmegaConf.to_container(env_cfg("sokoban").params)}
    n = play_pair("sokoban", kwargs, settings({"sokoban": 160}), range(12), check=check_sokoban)
    assert n > 12  # every state of every episode was augmented
    n = play_pair(
        "sokoban",
        {**kwargs, "render": "grid"},
        settings({"sokoban": 160}),
        range(3),
        split="test",
        check=check_sokoban,
    )
    assert n > 3


def test_sokoban_random_actions_and_format_errors_agree_too():
    import random

    kwargs = {"max_steps": 15}
    plain = make("sokoban", "train", **kwargs)
    wrapped = AugmentedEnv("train", inner="sokoban", inner_kwargs=kwargs, augment=settings(80))
    rng = random.Random(0)
    for seed in range(5):
        plain.reset(seed), wrapped.reset(seed)
        done = False
        while not done:
            action = rng.choice(["Up", "Down", "Left", "Right", "jump", None])
            (o1, r1, d1, i1), (o2, r2, d2, i2) = plain.step(action), wrapped.step(action)
            i2.pop("augmented")
            assert (r1, d1, i1) == (r2, d2, i2) and o2.startswith(o1) and wrapped.raw_observation == o1
            done = d1


def test_distractors_are_reproducible_and_follow_the_seed():
    def observations(aug, seeds=range(4)):
        env = AugmentedEnv("train", inner="sokoban", inner_kwargs={"max_steps": 15}, augment=aug)
        out = []
        for s in seeds:
            out.append(env.reset(s)[0])
            for _ in range(3):
                out.append(env.step(env.expert_action() or "Up")[0])
        return out

    base = observations(settings(80, seed=5))
    assert base == observations(settings(80, seed=5))
    assert base != observations(settings(80, seed=6))
    # resample=episode: the same distractors on every observation of an episode
    env = AugmentedEnv(
        "train",
        inner="sokoban",
        inner_kwargs={"max_steps": 15},
        augment=settings(80, seed=5, resample="episode"),
    )
    env.reset(1)
    first = env.last_distractors
    env.step(env.expert_action())
    assert env.last_distractors == first
    env.reset(2)
    assert env.last_distractors != first


def test_prob_half_leaves_unpicked_episodes_untouched():
    kwargs = {"max_steps": 15}
    aug = settings(80, prob=0.5, seed=3)
    plain = make("sokoban", "train", **kwargs)
    wrapped = AugmentedEnv("train", inner="sokoban", inner_kwargs=kwargs, augment=aug)
    flags = []
    for seed in range(40):
        o1, _ = plain.reset(seed)
        o2, info = wrapped.reset(seed)
        flags.append(info["augmented"])
        assert info["augmented"] == episode_augmented(0.5, 3, "train", seed)
        assert (o1 == o2) != info["augmented"]
    assert 8 < sum(flags) < 32


def test_wrapper_runs_in_env_pool_workers():
    from agentgen.envs.pool import EnvPool

    factory = env_factory(
        "sokoban", env_cfg("sokoban"), parse_settings({"name": "high", "eps": {"sokoban": 80}}, 0), "train"
    )
    plain = make("sokoban", "train", max_steps=15)
    with EnvPool(factory, None, split="train", num_slots=2, num_workers=1) as pool:
        resets = pool.reset({0: 4, 1: 5})
        cells = pool.call([0, 1], "unreachable_cells")  # inner attributes reach through the wrapper
        experts = pool.expert_actions([0, 1])
        for slot, seed in ((0, 4), (1, 5)):
            obs, info = resets[slot]
            raw, _ = plain.reset(seed)
            assert info["augmented"] and obs.startswith(raw + "\n") and len(obs.splitlines()) == 4 + 8
            assert cells[slot] == plain.unreachable_cells()
            assert experts[slot] == plain.expert_action()


# ---------------------------------------------------------------------------- WebShop
@pytest.fixture(scope="module")
def webshop_kwargs():
    return {"max_steps": 15, **OmegaConf.to_container(env_cfg("webshop").params)}


def check_webshop(env: AugmentedEnv, raw: str, seen: str) -> None:
    from agentgen.envs.webshop.pages import ITEM, RESULTS, SEP

    page = env.state.page
    amounts = env.augmenter.amounts()
    products = env.shop.products
    titles = {p["Title"].lower() for p in products.values()}
    asins = {a.lower() for a in products}
    clickables = {a[len("click[") : -1] for a in env.admissible_actions() if a.startswith("click[")}
    parts, raw_parts = seen.split(SEP), raw.split(SEP)
    extra, j = [], 0
    for part in parts:  # the raw page is a subsequence of the seen one; the rest are the distractors
        if j < len(raw_parts) and part == raw_parts[j]:
            j += 1
        else:
            extra.append(part)
    assert j == len(raw_parts) and sorted(extra) == sorted(env.last_distractors)
    for d in env.last_distractors:
        low = d.lower()
        assert low not in clickables and low not in titles and low not in asins
        assert not words(d) & asins
    if page == RESULTS:
        assert seen.count(WEBSHOP_DECOY_MARK) == amounts["decoys"]
        assert len(env.last_distractors) == 3 * amounts["decoys"]
        # decoys sit between whole result triples, never inside one
        for asin in env.state.page_asins():
            i = parts.index(asin)
            assert parts[i + 1] == products[asin]["Title"] and parts[i + 2] == products[asin]["Price"]
    elif page == ITEM:
        feats = [d for d in env.last_distractors if d in WEBSHOP_TRIVIAL_FEATURES]
        ads = [d for d in env.last_distractors if d.startswith("[AD] ")]
        assert (len(feats), len(ads)) == (amounts["features"], amounts["ads"])
        for ad in ads:
            m = re.fullmatch(r"\[AD\] (.+) - shop (.+) today!", ad)
            assert m and m.group(1) in WEBSHOP_AD_DESCRIPTORS and m.group(2) in WEBSHOP_AD_CATEGORIES
        # an option name is still followed by its values
        for name, values in products[env.state.asin]["options"].items():
            i = parts.index(name)
            assert parts[i + 1 : i + 1 + len(values)] == list(values)
    else:
        assert seen == raw


def test_webshop_high_eps_changes_only_the_observation(webshop_kwargs):
    n = play_pair("webshop", webshop_kwargs, settings({"webshop": 100}), range(6), check=check_webshop)
    assert n >= 12  # results and item pages of every episode


def test_webshop_decoys_cannot_be_clicked(webshop_kwargs):
    env = AugmentedEnv(
        "train", inner="webshop", inner_kwargs=webshop_kwargs, augment=settings({"webshop": 40})
    )
    env.reset(2)
    env.step(env.expert_action())  # the search: a results page with decoys
    assert env.state.page == "results" and env.last_distractors
    raw = env.raw_observation
    for text in (WEBSHOP_DECOY_MARK, env.last_distractors[1]):
        assert f"click[{text.lower()}]" not in env.admissible_actions()
        _obs, reward, done, info = env.step(f"click[{text}]")
        assert info["invalid_action"] and reward == pytest.approx(-0.1) and not done
        assert env.raw_observation == raw and env.state.page == "results"


# ---------------------------------------------------------------------------- ScienceWorld (JVM)
def _require_java():
    from conftest import require

    require("java")


@pytest.mark.jvm
@pytest.mark.slow
def test_sciworld_high_eps_changes_only_the_observation():
    _require_java()
    from agentgen.envs.distractor_words import SCIWORLD_DESCRIPTORS, SCIWORLD_KINDS

    kwargs = {
        "max_steps": 12,
        "tasks": ["boil"],
        **{
            k: v for k, v in OmegaConf.to_container(env_cfg("sciworld").params).items() if k not in ("tasks",)
        },
    }
    seen_objects: set[str] = set()

    def check(env, raw, seen):
        objects = env.engine.objects()
        seen_objects.update(objects)
        object_words = set().union(*(words(o) for o in objects))
        tail = raw[raw.find("\nObjects you can refer to: ") :]
        assert seen.endswith(tail)  # the referable-objects line is the engine's, untouched
        assert len(env.last_distractors) == env.augmenter.amounts()["objects"]
        for d in env.last_distractors:
            m = re.fullmatch(r"(?:You notice )?an? (.+) that looks (.+?)\.?", d)
            assert m and m.group(1) in SCIWORLD_KINDS and m.group(2) in SCIWORLD_DESCRIPTORS, d
            assert not words(d) & object_words - {"a", "an", "that", "looks", "you", "notice"}, (d, objects)
        if "In it, you see:" in raw:
            assert all(f"\t{d}" in seen for d in env.last_distractors)

    kept: list[AugmentedEnv] = []
    n = play_pair("sciworld", kwargs, settings({"sciworld": 400}), [0], check=check, keep=kept)
    assert n >= 10 and seen_objects
    # the engine does not know a distractor: acting on one is an invalid action
    env = kept[0]
    try:
        env.reset(0)
        kind = re.fullmatch(r"(?:You notice )?an? (.+) that looks .+", env.last_distractors[0]).group(1)
        _obs, reward, _done, info = env.step(f"pick up {kind}")
        assert info["invalid_action"] and reward == pytest.approx(-0.1)
        valid_words = words(" | ".join(env.valid_actions()))
        for d in env.last_distractors:  # no valid action mentions any distractor's kind or descriptor
            m = re.fullmatch(r"(?:You notice )?an? (.+) that looks (.+?)\.?", d)
            assert not (words(m.group(1)) | words(m.group(2))) & valid_words, d
    finally:
        env.close()


def test_sciworld_room_text_gets_item_lines():
    """The ScienceWorld augmenter on a recorded observation (no JVM): items go into the room list."""
    import random

    from agentgen.envs.sciworld.augment import SciWorldAugmenter

    raw = (
        "This room is called the hallway. In it, you see: \n\tthe agent\n\ta substance called air\n\ta picture\n"
        "You also see:\n\tA door to the kitchen (that is open)\n"
        "Objects you can refer to: agent, air, door to kitchen, hallway, kitchen, picture."
    )

    class Env:
        def task_description(self):
            return "Your task is to find a(n) living thing."

    out = SciWorldAugmenter(36).augment(raw, Env(), random.Random(1))
    assert len(out.distractors) == 3
    room = out.text.split("In it, you see: \n")[1].split("\nYou also see:")[0].split("\n")
    assert [r for r in room if r.lstrip("\t") not in out.distractors] == [
        "\tthe agent",
        "\ta substance called air",
        "\ta picture",
    ]
    assert out.text.endswith(
        "\nYou also see:\n\tA door to the kitchen (that is open)\n"
        "Objects you can refer to: agent, air, door to kitchen, hallway, kitchen, picture."
    )
    short = SciWorldAugmenter(24).augment(
        "You teleport to the kitchen.\nObjects you can refer to: cup, kitchen.", Env(), random.Random(2)
    )
    assert short.text.startswith("You teleport to the kitchen.\nYou notice ")
    assert short.text.endswith("\nObjects you can refer to: cup, kitchen.") and len(short.distractors) == 2


def test_alfworld_fresh_ids_never_reuse_a_real_name():
    """The ALFWorld augmenter on a recorded observation: a kind that exists gets an unused id, including
    ids of objects hidden in closed receptacles."""
    import random

    from agentgen.envs.alfworld.augment import AlfWorldAugmenter

    raw = (
        "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly around you, you "
        "see a cabinet 1, a countertop 1, and a sinkbasin 1.\n\nYour task is to: put a clean bowl in cabinet."
    )
    hidden = (
        {f"bowl {i}" for i in (1, 2, 4)} | {f"cup {i}" for i in range(1, 6)} | {"cabinet 1", "countertop 1"}
    )

    class Env:
        def object_names(self):
            return sorted(hidden)

        def admissible_actions(self):
            return ["go to cabinet 1", "go to countertop 1", "go to sinkbasin 1", "inventory", "look"]

    aug = AlfWorldAugmenter(300)
    for seed in range(20):
        out = aug.augment(raw, Env(), random.Random(seed))
        assert len(out.distractors) == 25
        for s in out.distractors:
            m = re.fullmatch(r"You notice a ([a-z]+) (\d+) that looks ([a-z]+)\.", s)
            assert m, s
            assert f"{m.group(1)} {m.group(2)}" not in hidden | {"sinkbasin 1"}
        assert out.text.startswith("-= Welcome to TextWorld, ALFRED! =-\n\n")
        stripped = out.text
        for s in out.distractors:
            stripped = stripped.replace(" " + s, "", 1)
        assert stripped == raw
        names = re.findall(r"You notice a ([a-z]+ \d+)", out.text)
        assert len(names) == len(set(names))  # no two distractors share a name either


def test_eps_amounts_documented_in_presets_match_the_code():
    """The level comments in conf/augment/*.yaml quote the counts each eps gives: keep them true."""
    from agentgen.augment.wrapper import augmenter_for

    doc = (CONF_DIR / "augment" / "high.yaml").read_text()
    for env, key in (("sokoban", "lines"), ("alfworld", "sentences"), ("sciworld", "objects")):
        counts = []
        for level in ("low", "medium", "high"):
            s = parse_settings(yaml.safe_load((CONF_DIR / "augment" / f"{level}.yaml").read_text()), 0)
            counts.append(augmenter_for(env, s.eps_for(env)).amounts()[key])
        assert f"({counts[0]} / {counts[1]} / {counts[2]} {key}" in doc, (env, counts)
    assert Path(CONF_DIR / "augment" / "none.yaml").read_text().strip().endswith("name: none")


# ---------------------------------------------------------------------------- ALFWorld (real engine)
@pytest.fixture(scope="module")
def alfworld_kwargs(tmp_path_factory):
    params = OmegaConf.to_container(env_cfg("alfworld").params)
    params.update(
        source="generated",
        num_generated_games={"train": 3, "test": 1},
        progress=False,
        cache_dir=str(tmp_path_factory.mktemp("alfworld_games")),
    )
    return {"max_steps": 30, **params}


def test_alfworld_high_eps_changes_only_the_observation(alfworld_kwargs):
    from agentgen.envs.alfworld.augment import game_object_counts

    seen_names: dict[int, set[str]] = {}  # per game (seed)
    distractor_names: dict[int, set[str]] = {}
    name = re.compile(r"\b([a-z]+ \d+)\b")

    def check(env, raw, seen):
        assert len(env.last_distractors) == 25
        counts = game_object_counts(env.game_file(env.seed))
        for text in [raw, *env.admissible_actions()]:
            seen_names.setdefault(env.seed, set()).update(name.findall(text))
        for s in env.last_distractors:
            m = re.fullmatch(r"You notice a ([a-z]+) (\d+) that looks ([a-z]+)\.", s)
            assert m, s
            assert int(m.group(2)) > counts.get(m.group(1), 0)  # a fresh id: no real object has it
            distractor_names.setdefault(env.seed, set()).add(f"{m.group(1)} {m.group(2)}")
        stripped = seen
        for s in env.last_distractors:
            stripped = stripped.replace(" " + s, "", 1)
        assert stripped == raw

    n = play_pair("alfworld", alfworld_kwargs, settings({"alfworld": 300}), range(3), check=check)
    assert n >= 10
    assert set(seen_names) == set(distractor_names) == {0, 1, 2}
    for seed, names in seen_names.items():  # never a name the game showed in the whole episode
        assert not distractor_names[seed] & names, (seed, distractor_names[seed] & names)
