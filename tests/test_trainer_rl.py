"""The RL trainer's wiring for every algorithm: what reaches the policy and value losses, KL placement,
clip/aggregation settings, epochs and mini-batches, critic warm-up and checkpoint, Tree-GRPO samples and
the token/env-step counts. Rollouts come from a small seeded episode generator (the environment side
is tested with real envs in test_trainer_tree.py and end to end in test_trainer_e2e.py)."""

from __future__ import annotations

import copy
import random
import types

import pytest
import torch
from omegaconf import OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM

import agentgen.algos.base as algo_base
import agentgen.trainer.critic_trainer as critic_mod
from agentgen.algos.advantages import grpo_advantages, rloo_advantages
from agentgen.algos.losses import kl_divergence
from agentgen.algos.stepwise import step_advantages
from agentgen.config import ConfigError, load_algo_file
from agentgen.options import engine_setup, rl_options
from agentgen.rollout.runner import Episode, Turn
from agentgen.trainer import rl_trainer as rl
from agentgen.trainer.batch import collate, response_logits, token_logprobs
from agentgen.trainer.rl_trainer import RLTrainer

TOKENIZER = types.SimpleNamespace(pad_token_id=0)


def tiny_policy(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


class SeededEpisodes:
    """Episodes of 1-3 turns with random token ids; the last turn succeeds (+10) for the given (group,
    index-in-call) pairs (else with probability 0.5), and a turn is invalid (-0.1) with probability 0.3.
    A spec with ``meta["prefix"]`` (a Tree-GRPO continuation) continues after the prefix: only new turns
    are produced. ``calls`` records every call's specs, ``generated`` every generated turn, and
    ``episodes_of(call)`` re-creates a call's episodes exactly."""

    def __init__(self, wins: set[tuple[int, int]] | None = None, seed: int = 0):
        self.wins = wins
        self.seed = seed
        self.calls: list[tuple[list, int]] = []
        self.generated: list[Turn] = []

    def __call__(self, specs, step):
        self.calls.append((specs, step))
        episodes = self.episodes_of(len(self.calls) - 1)
        self.generated.extend(t for e in episodes for t in e.turns)
        return episodes

    def episodes_of(self, call: int) -> list[Episode]:
        specs, step = self.calls[call]
        out = []
        for i, s in enumerate(specs):
            rng = random.Random(f"{self.seed}/{step}/{call}/{i}")
            prefix = s.meta.get("prefix", [])
            n = rng.randint(1, 3)
            win = rng.random() < 0.5 if self.wins is None else (s.group, i) in self.wins
            turns = []
            for k in range(n):
                reward = (10.0 if win else 0.0) if k == n - 1 else (-0.1 if rng.random() < 0.3 else 0.0)
                turns.append(Turn([rng.randint(1, 49) for _ in range(rng.randint(3, 9))],
                                  [rng.randint(1, 49) for _ in range(rng.randint(1, 6))], "text", "Up", reward,
                                  f"obs {len(prefix) + k}", True, reward < 0))
            out.append(Episode(s, "task", turns, success=win, prefix_steps=len(prefix)))
        return out


def assert_same_rows(seen: list[list[float]], expected: list[list[float]], atol: float = 1e-4) -> None:
    """The two lists hold the same rows in any order (each row matched once, within ``atol``)."""
    assert len(seen) == len(expected)
    left = [list(r) for r in seen]
    for row in expected:
        match = next((i for i, r in enumerate(left) if len(r) == len(row) and
                      all(abs(a - b) <= atol for a, b in zip(r, row))), None)
        assert match is not None, f"no seen row matches {row}; unmatched: {left[:5]}"
        left.pop(match)


def make_cfg(name: str, **algo_overrides):
    algo = load_algo_file(name)
    for k, v in algo_overrides.items():
        OmegaConf.update(algo, k, v)
    return OmegaConf.create({
        "algo": algo, "seed": 0, "rollout": {"temperature": 1.0},
        "trainer": {"lr": 1e-3, "weight_decay": 0.0, "prompts_per_step": 2, "mini_batch_states": 256,
                    "micro_batch_states": 4, "grad_clip": 1.0, "max_turns_schedule": None}})


def trainer_options(cfg):
    """The RL trainer's options from a test config (no model section: the single-process engine needs no dtype)."""
    return rl_options(cfg.trainer, cfg.rollout, cfg.seed, engine_setup(cfg.trainer, "float32"))


def make_trainer(name: str, rollout=None, ref: str | None = "copy", **algo_overrides) -> RLTrainer:
    cfg = make_cfg(name, **algo_overrides)
    policy = tiny_policy()
    reference = None
    if ref == "copy":
        reference = copy.deepcopy(policy).requires_grad_(False)
    elif ref == "other":
        reference = tiny_policy(seed=1).requires_grad_(False)
    return RLTrainer(policy, reference, TOKENIZER, cfg.algo, trainer_options(cfg), rollout or SeededEpisodes())


class Spy:
    """Wraps a loss function of the trainer module, recording its arguments (and still computing it)."""

    def __init__(self, fn):
        self.fn = fn
        self.calls: list[tuple[tuple, dict]] = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.fn(*args, **kwargs)


def params(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def token_advantages_seen(spy: Spy) -> list[list[float]]:
    """Per-sample advantages of the response tokens, in the order the policy loss saw them."""
    out = []
    for args, _ in spy.calls:
        _, _, adv, mask = args[:4]
        for row, m in zip(adv, mask):
            out.append([float(a) for a, keep in zip(row, m) if keep > 0])
    return out


# ----------------------------------------------------------------------------- episode-level algorithms
@pytest.mark.parametrize("name", ["grpo", "rloo"])
def test_episode_advantage_reaches_every_token_of_every_step(name, monkeypatch):
    rollout = SeededEpisodes(wins={(0, 0), (0, 2), (1, 5)})  # group 0: 2 of 4 win, group 1: 1 of 4
    trainer = make_trainer(name, rollout, group_size=4)
    spy = Spy(algo_base.policy_loss)
    monkeypatch.setattr(algo_base, "policy_loss", spy)
    metrics = trainer.step(0)
    episodes = rollout.episodes_of(0)  # same seeds -> the same episodes again
    returns = torch.tensor([e.ret for e in episodes])
    groups = torch.tensor([e.spec.group for e in episodes])
    adv = rloo_advantages(returns, groups) if name == "rloo" else grpo_advantages(returns, groups)
    expected = [[float(a)] * len(t.response_ids) for e, a in zip(episodes, adv) for t in e.turns]
    assert_same_rows(token_advantages_seen(spy), expected, atol=1e-5)
    assert metrics["rollout/samples"] == sum(e.steps for e in episodes)
    assert metrics["rollout/success_rate"] == pytest.approx(3 / 8)


def test_groups_with_equal_returns_carry_no_signal():
    rollout = SeededEpisodes(wins=set())
    trainer = make_trainer("grpo", rollout, group_size=2)
    metrics = trainer.step(0)
    # every episode ends 0 or with -0.1 penalties: the diagnostic counts groups with identical returns
    episodes = rollout.episodes_of(0)
    by_group: dict[int, list[float]] = {}
    for e in episodes:
        by_group.setdefault(e.spec.group, []).append(e.ret)
    assert metrics["rollout/zero_adv_groups"] == sum(max(v) == min(v) for v in by_group.values()) / 2


# ----------------------------------------------------------------------------- PPO and its critic
@pytest.mark.parametrize("credit", ["turn", "token"])
def test_ppo_gae_advantages_and_value_targets_reach_the_losses(credit, monkeypatch):
    rollout = SeededEpisodes(wins={(0, 1), (1, 0)})
    trainer = make_trainer("ppo", rollout, group_size=2, credit=credit, kl_coef=0.0, whiten_advantages=False,
                           gamma=0.9, lam=0.8)
    critic_before = copy.deepcopy(trainer.value_model)
    pspy, vspy = Spy(algo_base.policy_loss), Spy(critic_mod.value_loss)
    monkeypatch.setattr(algo_base, "policy_loss", pspy)
    monkeypatch.setattr(critic_mod, "value_loss", vspy)
    trainer.step(0)

    episodes = rollout.episodes_of(0)
    samples = [[rl.turn_sample(t) for t in e.turns] for e in episodes]
    values = critic_before.values([s for ep in samples for s in ep], 4, 0)
    it = iter(values)
    vals = [[next(it) for _ in ep] for ep in samples]
    expected = step_advantages(
        {"name": "ppo", "kl_coef": 0.0, "kl_in": "reward", "gamma": 0.9, "lam": 0.8, "credit": credit,
         "whiten_advantages": False},
        [[t.reward for t in e.turns] for e in episodes], [e.spec.group for e in episodes],
        values=[[float(v[0]) for v in ep] for ep in vals] if credit == "turn" else vals,
        response_lengths=[[len(t.response_ids) for t in e.turns] for e in episodes])
    want_adv, want_ret = [], []
    for e, ep in enumerate(samples):
        for k, s in enumerate(ep):
            a, g = expected.advantages[e][k], expected.returns[e][k]
            n = len(s.response_ids)
            want_adv.append([float(x) for x in (a if credit == "token" else [a] * n)])
            want_ret.append([float(x) for x in (g if credit == "token" else [g])])
    assert_same_rows(token_advantages_seen(pspy), want_adv)
    seen_ret = []
    for args, _ in vspy.calls:  # value_loss(values, old_values, returns, mask)
        for row, m in zip(args[2], args[3]):
            seen_ret.append([float(x) for x, keep in zip(row, m) if keep > 0])
    assert_same_rows(seen_ret, want_ret)


def test_ppo_critic_learns_and_round_trips_through_a_checkpoint(tmp_path):
    trainer = make_trainer("ppo", group_size=2, **{"critic.lr": 1e-2})
    before = params(trainer.value_model.critic)
    metrics = trainer.step(0)
    assert changed(before, trainer.value_model.critic)
    assert {"critic/vf_loss", "critic/vf_clipfrac", "critic/grad_norm", "critic/returns_mean"} <= set(metrics)
    trainer.save_state(tmp_path, step=1)
    assert {p.name for p in (tmp_path / "critic").iterdir()} == {"model.safetensors", "optimizer.pt", "state.json"}

    fresh = make_trainer("ppo", group_size=2)
    assert changed(params(trainer.value_model.critic), fresh.value_model.critic)
    fresh.load_state(tmp_path, step=1)
    assert not changed(params(trainer.value_model.critic), fresh.value_model.critic)
    a, b = trainer.value_model.optimizer.state_dict(), fresh.value_model.optimizer.state_dict()
    assert all(torch.equal(a["state"][i]["exp_avg"], b["state"][i]["exp_avg"]) for i in a["state"])
    # a checkpoint without a critic (written by another algorithm) leaves the critic as it was
    other = make_trainer("ppo", group_size=2)
    untouched = params(other.value_model.critic)
    other.load_state(tmp_path / "nothing-here")
    assert not changed(untouched, other.value_model.critic)


def test_critic_warmup_trains_only_the_critic_first():
    trainer = make_trainer("ppo", group_size=2, **{"critic.warmup_steps": 1})
    policy0, critic0 = params(trainer.model), params(trainer.value_model.critic)
    m0 = trainer.step(0)
    assert not changed(policy0, trainer.model) and changed(critic0, trainer.value_model.critic)
    assert m0["train/actor_updated"] == 0.0 and "train/pg_loss" not in m0
    m1 = trainer.step(1)
    assert changed(policy0, trainer.model) and m1["train/actor_updated"] == 1.0


# ----------------------------------------------------------------------------- KL placement and estimators
def test_reinforce_pp_kl_in_reward_changes_the_advantages(monkeypatch):
    def advantages(ref: str, kl_coef: float, estimator: str = "k1"):
        rollout = SeededEpisodes(wins={(0, 0), (1, 1)})
        trainer = make_trainer("reinforce_pp", rollout, ref=ref, group_size=2, kl_coef=kl_coef,
                               kl_estimator=estimator, credit="token")
        spy = Spy(algo_base.policy_loss)
        monkeypatch.setattr(algo_base, "policy_loss", spy)
        metrics = trainer.step(0)
        return sorted(tuple(round(x, 6) for x in row) for row in token_advantages_seen(spy)), metrics

    base, _ = advantages("other", 0.0)
    same_ref, m_same = advantages("copy", 0.5)  # reference = policy: every per-token KL is 0
    penalised, m_pen = advantages("other", 0.5)
    assert same_ref == base and m_same["rollout/kl_in_reward"] == pytest.approx(0.0, abs=1e-6)
    assert penalised != base and abs(m_pen["rollout/kl_in_reward"]) > 1e-3
    assert "train/kl" in m_pen  # reported, not added to the loss
    k3, m_k3 = advantages("other", 0.5, "k3")
    assert k3 != penalised and m_k3["rollout/kl_in_reward"] > 0  # k3 >= 0, k1 can be negative


def test_grpo_kl_in_reward_subtracts_the_episode_kl_from_its_return(monkeypatch):
    rollout = SeededEpisodes(wins={(0, 0)})
    trainer = make_trainer("grpo", rollout, ref="other", group_size=2, kl_in="reward", kl_coef=0.3)
    spy = Spy(algo_base.policy_loss)
    monkeypatch.setattr(algo_base, "policy_loss", spy)
    trainer.step(0)
    episodes = rollout.episodes_of(0)
    policy, ref = tiny_policy(), tiny_policy(seed=1)  # the weights the scoring pass saw
    returns = []
    torch.set_grad_enabled(False)
    for e in episodes:
        total = e.ret
        for t in e.turns:
            tb = collate([rl.turn_sample(t)], 0)
            lp = token_logprobs(response_logits(policy, tb), tb)
            lr = token_logprobs(response_logits(ref, tb), tb)
            total -= 0.3 * float(kl_divergence(lp, lr, "k3").sum())
        returns.append(total)
    torch.set_grad_enabled(True)
    adv = grpo_advantages(torch.tensor(returns, dtype=torch.float64), torch.tensor([e.spec.group for e in episodes]))
    expected = [[float(a)] * len(t.response_ids) for e, a in zip(episodes, adv) for t in e.turns]
    assert_same_rows(token_advantages_seen(spy), expected, atol=1e-3)


class Penalised(SeededEpisodes):
    """SeededEpisodes whose turns say, as the envs do, which part of their reward is the invalid-action penalty
    (their -0.1), and whose k-th steps share an anchor state."""

    def episodes_of(self, call: int) -> list[Episode]:
        episodes = super().episodes_of(call)
        for e in episodes:
            for t in e.turns:
                t.penalty, t.state_key = (t.reward if t.invalid else 0.0), t.observation
        return episodes


def test_gigpo_invalid_penalty_on_its_own_step_reaches_the_policy_loss(monkeypatch):
    """The trainer hands every turn's penalty to GiGPO: with invalid_penalty=step the advantages are those of the
    penalties charged to their own steps, which differ from the default's (penalties discounted)."""
    from agentgen.algos.gigpo import gigpo_advantages

    seen = {}
    for mode in ("return", "step"):
        rollout = Penalised(wins={(0, 0), (1, 1)})
        trainer = make_trainer("gigpo", rollout, group_size=3, kl_coef=0.0, invalid_penalty=mode)
        spy = Spy(algo_base.policy_loss)
        monkeypatch.setattr(algo_base, "policy_loss", spy)
        trainer.step(0)
        episodes = rollout.episodes_of(0)
        assert any(t.penalty for e in episodes for t in e.turns)  # some steps were invalid
        adv = gigpo_advantages([[t.reward for t in e.turns] for e in episodes], [e.spec.group for e in episodes],
                               [[t.state_key for t in e.turns] for e in episodes], gamma=0.95,
                               penalties=[[t.penalty for t in e.turns] for e in episodes], invalid_penalty=mode)
        expected = [[a] * len(t.response_ids) for e, row in zip(episodes, adv) for t, a in zip(e.turns, row)]
        seen[mode] = token_advantages_seen(spy)
        assert_same_rows(seen[mode], expected, atol=1e-5)
    assert sorted(map(tuple, seen["return"])) != sorted(map(tuple, seen["step"]))


def test_kl_in_loss_and_entropy_bonus_enter_the_loss():
    trainer = make_trainer("grpo", ref="other", group_size=2, kl_coef=0.5, entropy_coef=0.01)
    m = trainer.step(0)
    assert m["train/kl"] > 0
    assert m["train/loss"] == pytest.approx(m["train/pg_loss"] + 0.5 * m["train/kl"] - 0.01 * m["train/entropy"],
                                           rel=1e-4, abs=1e-5)
    no_ref = make_trainer("grpo", ref=None, group_size=2, kl_coef=0.5)  # no reference model: no KL term
    assert "train/kl" not in no_ref.step(0)


# ----------------------------------------------------------------------------- clip, aggregation, epochs
def test_clip_ranges_dual_clip_and_aggregation_reach_the_policy_loss(monkeypatch):
    trainer = make_trainer("rloo", group_size=2, clip_low=0.1, clip_high=0.28, dual_clip=3.0,
                           loss_agg="seq-mean-token-sum")
    spy = Spy(algo_base.policy_loss)
    monkeypatch.setattr(algo_base, "policy_loss", spy)
    trainer.step(0)
    assert spy.calls and all(kw == {"clip_low": 0.1, "clip_high": 0.28, "agg": "seq-mean-token-sum", "dual_clip": 3.0}
                             for _, kw in spy.calls)


def test_epochs_and_mini_batches_set_the_optimizer_steps_and_use_behaviour_logprobs():
    rollout = SeededEpisodes()
    trainer = make_trainer("grpo", rollout, group_size=2, ppo_epochs=3)
    trainer.opts.mini_batch_states = 3
    steps = []
    original = trainer.optimizer.step
    trainer.optimizer.step = lambda *a, **k: (steps.append(1), original(*a, **k))[1]
    m = trainer.step(0)
    n = int(m["rollout/samples"])
    assert len(steps) == 3 * -(-n // 3)
    assert m["train/ratio_max"] > 1.0 + 1e-4  # later mini-batches see the updated policy against the old one


def test_warmup_steps_ramp_rls_learning_rate_over_its_first_optimiser_updates():
    """trainer.warmup_steps reached no engine before (RL's lr was constant whatever it said): now the engine
    phases/rl_phase.py builds rises linearly over that many optimiser updates, then stays at trainer.lr."""
    from agentgen.phases.rl_phase import rl_schedule
    from agentgen.trainer.engine import make_engine

    assert rl_schedule(OmegaConf.create({"warmup_steps": 0})) is None
    rollout = SeededEpisodes()
    cfg = make_cfg("grpo", group_size=2)
    cfg.trainer.mini_batch_states = 3
    cfg.trainer.warmup_steps = 40
    policy = tiny_policy()
    engine = make_engine(engine_setup(cfg.trainer, "float32"), policy, schedule=rl_schedule(cfg.trainer))
    trainer = RLTrainer(policy, None, TOKENIZER, cfg.algo, trainer_options(cfg), rollout, engine=engine)
    updates, lrs = 0, []
    for step in range(3):
        m = trainer.step(step)
        updates += -(-int(m["rollout/samples"]) // 3)
        lrs.append(m["train/lr"])
        assert m["train/lr"] == pytest.approx(1e-3 * min(updates, 40) / 40)
    assert lrs[0] < lrs[1] < lrs[2] <= 1e-3


def test_seq_mean_aggregation_weights_micro_batches_by_sequences():
    from agentgen.trainer.batch import Sample

    mb = [Sample([1], [2, 3, 4]), Sample([1], [5]), Sample([1], [6, 7])]
    assert rl._micro_weight(mb[:1], mb, "token-mean") == pytest.approx(3 / 6)
    assert rl._micro_weight(mb[:1], mb, "seq-mean-token-mean") == pytest.approx(1 / 3)


def test_bad_algo_config_is_one_clear_config_error():
    with pytest.raises(ConfigError, match=r"algo.kl_in='sometimes'.*valid values: loss, reward"):
        make_trainer("grpo", kl_in="sometimes")
    with pytest.raises(ConfigError, match=r"algo.step_advantage='first'"):
        make_trainer("tree_grpo", step_advantage="first")


# ----------------------------------------------------------------------------- Tree-GRPO in the trainer
@pytest.mark.parametrize("mode", ["per_leaf", "sum", "mean"])
def test_tree_grpo_step_builds_M_LN_plus_1_leaves_and_trains_on_their_steps(mode):
    rollout = SeededEpisodes()
    trainer = make_trainer("tree_grpo", rollout, M=3, N=2, L=2, step_advantage=mode)
    m = trainer.step(0)
    assert m["tree/leaves_per_prompt"] == 3 * (2 * 2 + 1) == m["tree/expected_leaves_per_prompt"]
    assert len(rollout.calls) == 1 + 2  # initial chains, then one batched call per expansion round
    assert len(rollout.calls[0][0]) == 2 * 3 and all(len(c) == 2 * 3 * 2 for c, _ in rollout.calls[1:])
    # continuations carry the stored turns of their prefix and only new turns are generated
    for spec in (s for c, _ in rollout.calls[1:] for s in c):
        assert all(t in rollout.generated for t in spec.meta["prefix"])
    generated = sum(len(t.response_ids) for t in rollout.generated)
    assert m["rollout/generated_tokens"] == generated
    assert m["tree/step_nodes_per_prompt"] * 2 == len(rollout.generated)
    n_samples = m["rollout/samples"]
    if mode == "per_leaf":  # every leaf's root-to-leaf path is trained, shared steps once per leaf
        assert n_samples > len(rollout.generated)
    else:
        assert n_samples == len(rollout.generated)
    assert m["rollout/generated_tokens_per_sample"] == pytest.approx(generated / n_samples)
    assert m["rollout/env_steps_per_sample"] == pytest.approx(
        (len(rollout.generated) + m["tree/replayed_env_steps"]) / n_samples)


def test_generated_token_and_env_step_counts_for_chains():
    rollout = SeededEpisodes()
    trainer = make_trainer("grpo", rollout, group_size=3)
    m = trainer.step(0)
    turns = rollout.generated
    assert m["rollout/generated_tokens"] == sum(len(t.response_ids) for t in turns)
    assert m["rollout/trajectories"] == 6 and m["rollout/env_steps"] == len(turns)
    assert m["rollout/generated_tokens_per_trajectory"] == pytest.approx(m["rollout/generated_tokens"] / 6)
    assert m["rollout/env_steps_per_sample"] == 1.0


def test_turn_schedule_is_reported_per_step():
    trainer = make_trainer("grpo", group_size=2)
    trainer.turn_schedule = rl.schedule_from_config({"rounds": [2, 4], "phase": 1})
    assert trainer.step(0)["rollout/turn_limit"] == 2.0
    assert trainer.step(1)["rollout/turn_limit"] == 4.0


# ----------------------------------------------------------------------------- dynamic sampling
class ScriptedWins:
    """One-turn episodes; episode 0 of group g wins (+10) in call c when (c, g) is in ``signal``, so that
    group's returns differ and every other group's are all 0 (no signal)."""

    def __init__(self, signal: set[tuple[int, int]]):
        self.signal = signal
        self.calls: list[list] = []

    def __call__(self, specs, step):
        c = len(self.calls)
        self.calls.append(specs)
        out, seen = [], set()
        for s in specs:
            win = (c, s.group) in self.signal and s.group not in seen
            seen.add(s.group)
            turn = Turn([1, 2, 3], [4, 5, 6 + s.group], "text", "Up", 10.0 if win else 0.0, "obs", True, False)
            out.append(Episode(s, "task", [turn], success=win))
        return out


@pytest.mark.parametrize("rloo", [False, True])
def test_filter_groups_trains_on_signal_groups_and_samples_new_instances_until_it_has_enough(rloo, monkeypatch):
    # prompts_per_step 2: round 0 has one signal group (1), round 1 another (3), so round 2 never runs
    rollout = ScriptedWins({(0, 1), (1, 3), (1, 2)})
    trainer = make_trainer("rloo" if rloo else "grpo", rollout, group_size=2, filter_groups="return",
                           max_sampling_rounds=3)
    spy = Spy(rl.collate)
    monkeypatch.setattr(rl, "collate", spy)
    m = trainer.step(5)
    assert len(rollout.calls) == 2
    seeds = [sorted({s.seed for s in call}) for call in rollout.calls]
    assert seeds == [rl.instance_seeds(5, 2, 0, 0, 3), rl.instance_seeds(5, 2, 0, 1, 3)]
    assert not set(seeds[0]) & set(seeds[1]) and not set(seeds[1]) & set(rl.instance_seeds(6, 2, 0, 0, 3))
    # the update saw groups 1 and 2 only (the first signal groups up to prompts_per_step; group 3 is spare)
    assert {s.response_ids[-1] - 6 for args, _ in spy.calls for s in args[0]} == {1, 2}
    assert m["rollout/samples"] == 4  # 2 groups x 2 episodes x 1 step
    assert m["rollout/sampling_rounds"] == 2 and m["rollout/signal_groups"] == 2
    assert m["rollout/trajectories"] == 8 and m["rollout/success_rate"] == pytest.approx(3 / 8)
    assert m["rollout/zero_adv_groups"] == pytest.approx(1 / 4)


def test_filter_groups_skips_the_update_when_no_round_finds_a_signal():
    rollout = ScriptedWins(set())
    trainer = make_trainer("grpo", rollout, group_size=2, filter_groups="return", max_sampling_rounds=3)
    before = params(trainer.model)
    m = trainer.step(0)
    assert len(rollout.calls) == 3 and m["train/skipped"] == 1.0 and m["rollout/signal_groups"] == 0
    assert m["rollout/trajectories"] == 12 and not changed(before, trainer.model)


def test_without_filter_groups_one_rollout_batch_of_the_step_seeds_is_trained_whole():
    rollout = ScriptedWins(set())
    trainer = make_trainer("grpo", rollout, group_size=2, max_sampling_rounds=3)
    m = trainer.step(4)
    assert len(rollout.calls) == 1 and sorted({s.seed for s in rollout.calls[0]}) == rl.instance_seeds(4, 2, 0)
    assert m["rollout/samples"] == 4 and "rollout/sampling_rounds" not in m


def test_filter_by_success_drops_groups_that_differ_only_by_invalid_action_penalties():
    from agentgen.rollout.runner import EpisodeSpec

    def ep(group: int, rewards: list[float], success: bool) -> Episode:
        turns = [Turn([1], [2], "t", "Up", r, "obs", True, r < 0) for r in rewards]
        return Episode(EpisodeSpec("sokoban", seed=group, group=group), "task", turns, success=success)

    episodes = [ep(0, [0.0, -0.1], False), ep(0, [0.0, 0.0], False),  # penalty only
                ep(1, [0.0, 10.0], True), ep(1, [0.0, 0.0], False),  # success differs
                ep(2, [0.0], False), ep(2, [0.0], False)]  # nothing differs
    assert {e.spec.group for e in rl.signal_groups(episodes, limit=3, by="return")} == {0, 1}
    assert {e.spec.group for e in rl.signal_groups(episodes, limit=3, by="success")} == {1}
    assert {e.spec.group for e in rl.signal_groups(episodes, limit=1, by="return")} == {0}


def test_step_reports_where_its_time_and_tokens_went():
    """The per-phase split bench/bench_rl_step.py reads: each scoring pass timed, the tokens trained on (every
    epoch), and the share of padded positions in the update's micro-batches."""
    rollout = SeededEpisodes()
    trainer = make_trainer("grpo", rollout=rollout, ref="other", group_size=2, kl_coef=0.1, ppo_epochs=2)
    m = trainer.step(0)
    assert m["time/score_old_s"] > 0 and m["time/score_ref_s"] > 0 and "time/score_values_s" not in m
    turns = [t for t in rollout.generated if t.response_ids]
    assert m["tokens/trained"] == 2 * sum(len(t.prompt_ids) + len(t.response_ids) for t in turns)
    assert 0.0 < m["train/padding_frac"] < 1.0  # prompts of 3-9 and answers of 1-6 tokens share micro-batches
    on_policy = make_trainer("grpo", ref=None, group_size=2, kl_coef=0.0).step(0)
    assert "time/score_old_s" not in on_policy and "time/score_ref_s" not in on_policy  # no pass that is not needed


def test_length_sorted_micro_batches_leave_the_update_unchanged():
    """Micro-batches of similar lengths pad less, and the update is the one a single micro-batch would make."""
    sorted_small = make_trainer("grpo", ref=None, group_size=2, kl_coef=0.0)
    whole = make_trainer("grpo", ref=None, group_size=2, kl_coef=0.0)
    whole.opts.micro_batch_states = 256
    m_small, m_whole = sorted_small.step(0), whole.step(0)
    for a, b in zip(sorted_small.model.parameters(), whole.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert m_small["train/padding_frac"] < m_whole["train/padding_frac"]


def test_exact_sampler_logprobs_replace_the_behaviour_scoring_pass():
    """rollout=hf in fp32 without top-p/top-k: the sampler's log-probs are the behaviour log-probs (no pass);
    trainer.behaviour_logprobs=score, or a truncated sampler, scores them."""
    from test_sampler_mismatch import SampledBy

    def run(**trainer_keys):
        trainer = make_trainer("grpo", ref=None, group_size=2, kl_coef=0.0, ppo_epochs=2)
        for k, v in trainer_keys.items():
            setattr(trainer.opts, k, v)
        trainer.sampler_exact = rl._sampler_is_exact(trainer.opts, trainer.model)
        trainer.rollout_fn = SampledBy(trainer.model, 0.0)
        return trainer.step(0)

    assert "time/score_old_s" not in run()
    assert run(behaviour_logprobs="score")["time/score_old_s"] > 0
    assert run(top_p=0.9)["time/score_old_s"] > 0
