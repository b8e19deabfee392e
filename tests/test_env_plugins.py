"""Envs as plugins: agentgen's own envs declare themselves (``agentgen/envs/<env>/plugin.py``), and a third-party
package registers one through the ``agentgen.envs`` entry point group. The proof builds a tiny package at test
time (``toyenv``: a walk-to-the-target env with an expert, a distractor augmenter and its own
``conf/env/toy.yaml``), puts it on the path with a dist-info holding its entry point (importlib.metadata reads
that; no pip), and runs the real launcher on it with no change to agentgen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentgen.augment.wrapper import augmenter_for
from agentgen.config import ConfigError, EvalConfig, group_options
from agentgen.envs import env_names, make, registry
from agentgen.envs.distractors import Augmenter
from agentgen.preflight import preflight
from agentgen.report.schema import env_title

ROOT = Path(__file__).resolve().parent.parent
STUDY_ENVS = ("sokoban", "alfworld", "sciworld", "webshop")

TOY_ENV = '''
import random

from agentgen.envs.base import TextEnv


class ReachEnv(TextEnv):
    """A line of ``size`` cells: walk left or right to the target cell."""

    name = "toy"

    def __init__(self, split="train", max_steps=10, reward=None, size=6):
        super().__init__(split=split, max_steps=max_steps, reward=reward)
        if size < 2:
            raise ValueError(f"size must be >= 2, got {size}")
        self.size, self.pos, self.target = size, 0, 0

    def _obs(self):
        return f"You are at cell {self.pos} of 0-{self.size - 1}. The target is cell {self.target}."

    def _reset(self, seed):
        self.pos, self.target = random.Random(f"{self.split}:{seed}").sample(range(self.size), 2)
        return self._obs(), {}

    def _step(self, action):
        move = action.strip().lower()
        if move not in ("left", "right"):
            return self._obs(), False, True, {}
        self.pos = max(0, self.pos - 1) if move == "left" else min(self.size - 1, self.pos + 1)
        return self._obs(), self.pos == self.target, False, {}

    def admissible_actions(self):
        return ["left", "right"]

    def task_description(self):
        return f"reach cell {self.target}"

    def instruction(self):
        return "Walk along a line of cells to the target cell. Actions: left, right."

    def expert_action(self):
        return "right" if self.target > self.pos else "left"

    def expert_thought(self):
        return f"The target {self.target} is {self.expert_action()} of cell {self.pos}."
'''

TOY_AUGMENT = '''
from agentgen.envs.distractors import Augmenter, Injection


class BirdAugmenter(Augmenter):
    env_name = "toy"

    def amounts(self):
        return {"lines": 1}

    def augment(self, obs, env, rng):
        line = rng.choice(["A bird sings.", "A cloud passes."])
        return Injection(obs + "\\n" + line, [line])
'''

TOY_INIT = '''
from pathlib import Path

from agentgen.envs.plugin import EnvPlugin, validate_by_building

PLUGIN = EnvPlugin(name="toy", title="Toy Walk", env="toyenv.env:ReachEnv", augmenter="toyenv.augment:BirdAugmenter",
                   validate_params=validate_by_building("toyenv.env:ReachEnv"),  # cheap: its constructor checks
                   conf=Path(__file__).parent / "conf" / "env" / "toy.yaml")
PLAIN = EnvPlugin(name="plain", title="Plain", env="toyenv.env:ReachEnv")  # no augmenter, no yaml
'''

TOY_YAML = '''# @package env.toy
name: toy
max_steps: 8
max_prompt_tokens: 512
max_response_tokens: 64
max_instances: 8
params:
  size: 6
'''


def write_dist(site: Path, package: str, files: dict[str, str], entry_points: dict[str, str]) -> Path:
    """A package and its dist-info (METADATA, entry_points.txt) under ``site``, as pip would leave them."""
    for rel, text in files.items():
        path = site / package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    info = site / f"{package}-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[agentgen.envs]\n{lines}")
    return site


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory) -> Path:
    return write_dist(tmp_path_factory.mktemp("site"), "toyenv",
                      {"__init__.py": TOY_INIT, "env.py": TOY_ENV, "augment.py": TOY_AUGMENT,
                       "conf/env/toy.yaml": TOY_YAML},
                      {"toy": "toyenv:PLUGIN", "plain": "toyenv:PLAIN"})


@pytest.fixture
def on_path(monkeypatch):
    """Put a site dir on sys.path for this test and make the registry read the entry points again."""

    def add(site: Path) -> None:
        monkeypatch.syspath_prepend(str(site))
        registry.reload()

    yield add
    registry.reload()


@pytest.fixture
def toy(toy_site, on_path) -> Path:
    on_path(toy_site)
    return toy_site


# ------------------------------------------------------------------------------------------ in-tree plugins
def test_in_tree_envs_declare_themselves():
    assert env_names() == STUDY_ENVS  # the study's order, as every message listed them before
    assert tuple(EvalConfig().envs) == STUDY_ENVS == tuple(registry.default_eval_envs())
    assert [env_title(n) for n in STUDY_ENVS] == ["Sokoban", "ALFWorld", "SciWorld", "WebShop"]
    for name in STUDY_ENVS:
        assert registry.env_conf_file(name) == ROOT / "conf" / "env" / f"{name}.yaml"
        cls = registry.augmenter_class(name)
        assert issubclass(cls, Augmenter) and cls.env_name == name
        assert cls.__module__ == f"agentgen.envs.{name}.augment"
    assert group_options("env") == sorted(STUDY_ENVS)


def test_reading_the_registry_imports_no_env_engine():
    code = ("import sys; from agentgen.envs import registry; registry.plugins(); import agentgen.config; "
            "print(sorted(m for m in ('textworld', 'alfworld', 'scienceworld', 'py4j', 'bm25s', 'numpy', "
            "'agentgen.envs.sokoban.env', 'agentgen.envs.webshop.env') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"


def test_unknown_env_names_the_valid_ones():
    with pytest.raises(KeyError) as err:
        make("minecraft")
    assert str(err.value) == "unknown environment 'minecraft'; valid environments: sokoban, alfworld, sciworld, webshop"
    with pytest.raises(ConfigError, match="env=minecraft is not a valid choice for 'env'; valid choices: alfworld, "
                       "sciworld, sokoban, webshop"):
        preflight(["env=minecraft"])


# ------------------------------------------------------------------------------------------ third-party plugins
def test_entry_point_env_joins_every_listing(toy):
    assert env_names() == (*STUDY_ENVS, "plain", "toy")
    assert registry.env_conf_file("toy") == toy / "toyenv" / "conf" / "env" / "toy.yaml"
    assert registry.conf_search_dirs() == [toy / "toyenv" / "conf"]
    assert group_options("env") == sorted([*STUDY_ENVS, "toy"])  # plain ships no yaml: not an env= choice
    assert env_title("toy") == "Toy Walk" and EvalConfig().envs == list(STUDY_ENVS)
    with pytest.raises(KeyError, match="valid environments: sokoban, alfworld, sciworld, webshop, plain, toy"):
        registry.get("minecraft")
    env = make("toy", split="test", size=5)
    obs, info = env.reset(3)
    assert "The target is cell" in obs and info["admissible_actions"] == ["left", "right"]
    while not env.done:
        obs, reward, done, info = env.step(env.expert_action())
    assert env.success and reward == 10.0


def test_augmenter_lookup(toy):
    aug = augmenter_for("toy", 10)
    assert type(aug).__name__ == "BirdAugmenter" and aug.eps == 10.0
    with pytest.raises(ValueError, match="no state augmentation is defined for environment 'plain'; defined for: "
                       "sokoban, alfworld, sciworld, webshop, toy"):
        augmenter_for("plain", 10)
    from agentgen.augment import parse_settings

    assert set(parse_settings({"name": "x", "eps": 20}).eps) == {*STUDY_ENVS, "toy"}  # a number: envs with one
    with pytest.raises(ConfigError, match=r"augment.eps.plain=20: the plain env defines no state augmentation"):
        parse_settings({"name": "x", "eps": {"plain": 20}})


def test_duplicate_env_name_is_refused(tmp_path, on_path):
    init = 'from agentgen.envs.plugin import EnvPlugin\nPLUGIN = EnvPlugin(name="sokoban", title="S", env="x:Y")\n'
    on_path(write_dist(tmp_path, "dupenv", {"__init__.py": init}, {"sokoban": "dupenv:PLUGIN"}))
    with pytest.raises(ConfigError) as err:
        registry.names()
    assert str(err.value) == (
        "environment 'sokoban' is declared twice: by agentgen.envs.sokoban.plugin (in-tree) and by entry point "
        "sokoban = dupenv:PLUGIN (distribution dupenv 0.1); uninstall one of them or rename its env.")


def test_entry_point_name_must_be_the_env_name(tmp_path, on_path):
    init = 'from agentgen.envs.plugin import EnvPlugin\nPLUGIN = EnvPlugin(name="maze", title="Maze", env="x:Y")\n'
    on_path(write_dist(tmp_path, "mazeenv", {"__init__.py": init}, {"labyrinth": "mazeenv:PLUGIN"}))
    with pytest.raises(ConfigError, match="declares environment 'maze'; the entry point's name must be the env's"):
        registry.names()


def test_third_party_env_config_is_checked_before_a_job(toy):
    cfg = preflight(["env=toy", "eval.envs=[toy]"])
    assert cfg.env.toy.max_steps == 8 and cfg.env.toy.params.size == 6
    with pytest.raises(ConfigError, match=r"env.toy.params: size must be >= 2, got 1\."):
        preflight(["env=toy", "eval.envs=[toy]", "env.toy.params.size=1"])
    with pytest.raises(ConfigError, match="env.toy.params.width is not a parameter of the toy env; valid: size"):
        preflight(["env=toy", "eval.envs=[toy]", "+env.toy.params.width=3"])
    # evaluated but not trained on: its yaml is read from the plugin's conf
    assert list(preflight(["eval.envs=[sokoban,toy]"]).eval.envs) == ["sokoban", "toy"]


def test_launch_trains_and_evaluates_a_third_party_env(toy_site, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(toy_site), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, str(ROOT / "launch.py"), "env=toy", "debug=smoke", "eval.envs=[toy]",
                        "logger=none", f"output_dir={out}"], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["train_env"] == "toy" and set(s["eval"]) == {"toy"}
    assert s["eval"]["toy"]["episodes"] == 2
    records = [json.loads(x) for x in (out / "sft_data" / "toy.jsonl").read_text().splitlines()]
    assert records and "The target is cell" in records[0]["messages"][0]["content"]  # the toy expert's SFT data
