"""Turn schedule, algorithm registry, conf/algo files and the critic's value head."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from agentgen.algos.critic_model import CausalLMCritic, ValueHead, response_values, state_values
from agentgen.algos.registry import ALGORITHMS, get_algo, validate_algo_config
from agentgen.algos.schedule import (
    SCALING_INTER_PRESETS,
    rollout_turn_limit,
    schedule_from_config,
    turn_limit,
)
from agentgen.config import load_algo_file

CONF = Path(__file__).resolve().parents[1] / "conf" / "algo"


# ------------------------------------------------------------------------------------------- schedule
@pytest.mark.parametrize("step,limit", [(0, 10), (99, 10), (100, 20), (199, 20), (200, 30), (10_000, 30)])
def test_turn_limit_follows_stage_floor_step_over_phase(step, limit):
    assert turn_limit(step, [10, 20, 30], 100) == limit


def test_presets_match_the_agentgym_rl_scripts():
    assert {k: (list(v.rounds), v.phase) for k, v in SCALING_INTER_PRESETS.items()} == {
        "babyai": ([6, 13, 20], 100),
        "sciworld": ([10, 20, 30], 100),
        "textcraft": ([10, 20, 30], 100),
        "searchqa": ([5, 8, 10], 100),
        "webarena": ([8, 12, 15], 80),
    }
    assert SCALING_INTER_PRESETS["webarena"].turn_limit(79) == 8
    assert SCALING_INTER_PRESETS["webarena"].turn_limit(80) == 12


def test_schedule_from_config_forms_and_errors():
    assert schedule_from_config(None) is None
    assert schedule_from_config("babyai").turn_limit(150) == 13
    assert schedule_from_config({"preset": "searchqa"}).turn_limit(0) == 5
    assert schedule_from_config(OmegaConf.create({"rounds": [3, 6], "phase": 10})).turn_limit(10) == 6
    assert rollout_turn_limit(5, None, env_max_steps=50) == 50
    assert rollout_turn_limit(150, schedule_from_config("sciworld"), env_max_steps=50) == 20
    with pytest.raises(ValueError, match="babyai"):
        schedule_from_config("alfworld-fast")
    with pytest.raises(ValueError, match="phase"):
        schedule_from_config({"rounds": [3, 6], "phase": 0})
    with pytest.raises(ValueError, match="rounds"):
        turn_limit(0, [], 10)


# ------------------------------------------------------------------------------------------- registry
def test_every_algo_config_file_is_valid_and_registered():
    files = sorted(p.stem for p in CONF.glob("*.yaml"))
    assert files == sorted(ALGORITHMS)
    for name in files:
        text = (CONF / f"{name}.yaml").read_text()
        assert text.startswith("# @package algo\n")
        assert list(OmegaConf.load(CONF / f"{name}.yaml").defaults) == [f"{name}_schema", "_self_"]
        cfg = load_algo_file(name)
        assert next(iter(cfg.keys())) == "name" and cfg.name == name
        assert validate_algo_config(cfg).name == name


def test_algo_overrides_are_typed_at_compose_time():
    """conf/algo/<name>.yaml extends its dataclass (algo/<name>_schema in the ConfigStore): a wrong type or an
    unknown key fails when Hydra composes, before any check of ours; the values are checked afterwards."""
    from agentgen.config import ConfigError, validate
    from agentgen.preflight import compose_job

    for name in ALGORITHMS:
        assert compose_job([f"algo={name}"]).algo == OmegaConf.merge(
            OmegaConf.structured(ALGORITHMS[name].config), load_algo_file(name))
    with pytest.raises(ConfigError, match=r"'algo.clip_low'.*'abc'.*Float"):
        compose_job(["algo.clip_low=abc"])
    with pytest.raises(ConfigError, match=r"algo has no key 'clip_ratio'.*clip_high, clip_low"):
        compose_job(["algo.clip_ratio=0.2"])
    with pytest.raises(ConfigError, match=r"'algo.M'.*'four'.*Integer"):
        compose_job(["algo=tree_grpo", "algo.M=four"])
    cfg = compose_job(["algo=gigpo", "algo.gamma=1.5"])  # well typed, but out of range: validate says so
    with pytest.raises(ConfigError, match=r"gamma=1.5.*\[0, 1\]"):
        validate(cfg)


def test_study_defaults_in_configs():
    grpo = load_algo_file('grpo')
    assert (grpo.group_size, grpo.kl_coef, grpo.kl_estimator, grpo.kl_in) == (8, 0.01, "k3", "loss")
    assert (grpo.clip_low, grpo.clip_high, grpo.entropy_coef, grpo.ppo_epochs) == (0.2, 0.2, 0.0, 1)
    assert grpo.norm_adv_by_std is True and grpo.loss_agg == "token-mean"
    for name in ("ppo", "rloo", "reinforce_pp"):
        assert load_algo_file(name).kl_coef == 0.001  # AgentGym-RL: KL 1e-3
    tree = load_algo_file('tree_grpo')
    assert (tree.kl_coef, tree.kl_estimator) == (0.001, "k3")  # Tree-GRPO: beta 0.001, K3
    assert tree.M + tree.M * tree.L * tree.N / 2 == grpo.group_size  # same rollout budget as GRPO


def test_registry_dispatch_table():
    assert get_algo("ppo").needs_critic and not get_algo("grpo").needs_critic
    assert get_algo("tree_grpo").uses_tree and get_algo("rloo").uses_groups
    assert get_algo("reinforce_pp").advantage_level == "sequence"
    with pytest.raises(KeyError, match="grpo"):
        get_algo("dpo")


def test_validate_algo_config_names_bad_value_and_valid_ones():
    cfg = OmegaConf.to_container(load_algo_file('grpo'))
    with pytest.raises(ValueError, match=r"kl_in='gradient'.*loss, reward"):
        validate_algo_config({**cfg, "kl_in": "gradient"})
    with pytest.raises(ValueError, match="group_size"):
        validate_algo_config({**cfg, "group_size": 1})
    with pytest.raises(ValueError, match="missing keys"):
        validate_algo_config({k: v for k, v in cfg.items() if k != "clip_high"})
    ppo = OmegaConf.to_container(load_algo_file('ppo'))
    with pytest.raises(ValueError, match="credit"):
        validate_algo_config({**ppo, "credit": "episode"})
    with pytest.raises(ValueError, match=r"step_weight='trajectory'.*step, episode"):
        validate_algo_config({**cfg, "step_weight": "trajectory"})
    tree = OmegaConf.to_container(load_algo_file('tree_grpo'))
    with pytest.raises(ValueError, match="step_advantage"):
        validate_algo_config({**tree, "step_weight": "episode"})
    with pytest.raises(ValueError, match=r"filter_groups='acc'.*null \(off\), success, return"):
        validate_algo_config({**cfg, "filter_groups": "acc"})
    with pytest.raises(ValueError, match=r"max_sampling_rounds=0.*integer >= 1"):
        validate_algo_config({**cfg, "filter_groups": "success", "max_sampling_rounds": 0})
    with pytest.raises(ValueError, match=r"filter_groups=success.*grpo, rloo.*'ppo'"):
        validate_algo_config({**ppo, "filter_groups": "success"})
    with pytest.raises(ValueError, match=r"filter_groups=return.*'tree_grpo'"):
        validate_algo_config({**tree, "filter_groups": "return"})
    validate_algo_config({**cfg, "filter_groups": "success", "max_sampling_rounds": 2})


# --------------------------------------------------------------------------------------------- critic
def test_critic_values_align_to_the_state_before_each_response_token():
    from transformers import AutoModel, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    critic = CausalLMCritic(AutoModel.from_config(config))
    ids = torch.randint(0, 64, (2, 7))
    values = critic(ids, torch.ones_like(ids))
    assert values.shape == (2, 7) and values.dtype == torch.float32
    resp = response_values(values, response_length=3)  # prompt of 4 tokens
    torch.testing.assert_close(resp, values[:, 3:6])
    mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    torch.testing.assert_close(state_values(resp, mask), torch.stack([values[0, 3], values[1, 4]]))
    # the head learns: one regression step lowers the value loss
    head = ValueHead(4)
    h, target = torch.randn(8, 4), torch.randn(8)
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    before = ((head(h) - target) ** 2).mean()
    before.backward()
    opt.step()
    assert ((head(h) - target) ** 2).mean() < before
