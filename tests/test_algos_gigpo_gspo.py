"""GiGPO's step-level advantages and GSPO's sequence-level loss, checked against values worked out by hand,
and their wiring: anchor states from the envs (augmentation does not change them) and the trainer calling the
algorithm's own loss."""

from __future__ import annotations

import math

import pytest
import torch

from agentgen.algos.gigpo import discounted_returns, gigpo_advantages, step_groups
from agentgen.algos.gspo import GSPO, gspo_policy_loss
from agentgen.algos.registry import validate_algo_config
from agentgen.algos.stepwise import step_advantages
from agentgen.augment import parse_settings
from agentgen.augment.wrapper import AugmentedEnv
from agentgen.config import load_algo_file
from agentgen.envs import make

# One group of three episodes. Anchor states: all start in "a"; e0 and e2 both reach "b"; e1 goes to "c".
# e0 wins at its second step, e1 and e2 fail.
REWARDS = [[0.0, 10.0], [0.0, 0.0], [0.0, 0.0]]
KEYS = [["a", "b"], ["a", "c"], ["a", "b"]]
GROUPS = [0, 0, 0]
S3 = math.sqrt(3)  # hand-worked: the three returns 10, 0, 0 have mean 10/3 and unbiased std 10/sqrt(3)


def close(seen, expected, tol=1e-5):
    assert len(seen) == len(expected)
    for s, e in zip(seen, expected):
        assert s == pytest.approx(e, abs=tol), (seen, expected)


def test_discounted_returns_by_hand():
    assert discounted_returns([[0.0, 10.0], [1.0, 1.0, 1.0]], 0.5) == [[5.0, 10.0], [1.75, 1.5, 1.0]]


def test_gigpo_mean_std_norm_by_hand():
    # A_episode: (R - 10/3) / (10/sqrt(3)) = [2/sqrt(3), -1/sqrt(3), -1/sqrt(3)]
    # step group a: G = [5, 0, 0] (gamma 0.5) -> the same normalised values [2/sqrt(3), -1/sqrt(3), -1/sqrt(3)]
    # step group b: G = [10 (e0), 0 (e2)] -> mean 5, std sqrt(50) -> [+1/sqrt(2), -1/sqrt(2)]
    # step group c: only e1's second step -> singleton: 0
    adv = gigpo_advantages(REWARDS, GROUPS, KEYS, gamma=0.5, omega=1.0, mode="mean_std_norm")
    r2 = 1 / math.sqrt(2)
    close(adv[0], [4 / S3, 2 / S3 + r2])
    close(adv[1], [-2 / S3, -1 / S3])
    close(adv[2], [-2 / S3, -1 / S3 - r2])


def test_gigpo_mean_norm_and_omega_by_hand():
    # A_episode = R - mean = [20/3, -10/3, -10/3]; group a: [5, 0, 0] - 5/3; group b: [10, 0] - 5; c: 0
    adv = gigpo_advantages(REWARDS, GROUPS, KEYS, gamma=0.5, omega=0.5, mode="mean_norm")
    close(adv[0], [20 / 3 + 0.5 * 10 / 3, 20 / 3 + 0.5 * 5])
    close(adv[1], [-10 / 3 + 0.5 * -5 / 3, -10 / 3])
    close(adv[2], [-10 / 3 + 0.5 * -5 / 3, -10 / 3 + 0.5 * -5])


def test_gigpo_step_groups_stay_inside_their_episode_group():
    # A second instance (group 1) visits a state with the same key "a": it must not join group 0's step group.
    rewards = REWARDS + [[10.0], [0.0]]
    keys = KEYS + [["a"], ["a"]]
    groups = GROUPS + [1, 1]
    adv = gigpo_advantages(rewards, groups, keys, gamma=0.5)
    alone = gigpo_advantages(REWARDS, GROUPS, KEYS, gamma=0.5)
    for e in range(3):
        close(adv[e], alone[e])
    # group 1: episode term +-1/sqrt(2) (returns 10, 0); its step group a: the same values again
    close(adv[3], [2 / math.sqrt(2)])
    close(adv[4], [-2 / math.sqrt(2)])
    ids = step_groups(keys, groups)
    assert ids[0][0] == ids[1][0] == ids[2][0] != ids[3][0] == ids[4][0]


def test_gigpo_with_no_shared_state_is_grpo():
    # every state seen once (keys None or all distinct): every step group is a singleton, step advantage 0
    keys = [["x", "y"], ["z", "w"], [None, None]]
    adv = gigpo_advantages(REWARDS, GROUPS, keys, gamma=0.5)
    close([a for row in adv for a in row], [2 / S3, 2 / S3, -1 / S3, -1 / S3, -1 / S3, -1 / S3])


def test_gigpo_similarity_threshold_merges_near_identical_text_states():
    keys = [["You see a red key on the table."], ["You see a red key on the table!"], ["A dark corridor."]]
    rewards = [[10.0], [0.0], [0.0]]
    exact = step_groups(keys, [0, 0, 0], similarity_thresh=1.0)
    similar = step_groups(keys, [0, 0, 0], similarity_thresh=0.9)
    assert len({r[0] for r in exact}) == 3
    assert similar[0][0] == similar[1][0] != similar[2][0]
    # merged: the two similar steps compare their returns (10 vs 0) -> +-1/sqrt(2) on top of the episode term
    merged = gigpo_advantages(rewards, [0, 0, 0], keys, similarity_thresh=0.9)
    close([merged[0][0], merged[1][0], merged[2][0]],
          [2 / S3 + 1 / math.sqrt(2), -1 / S3 - 1 / math.sqrt(2), -1 / S3])


def test_gigpo_through_step_advantages_with_kl_in_reward_and_episode_weight():
    algo = {"name": "gigpo", "gamma": 0.5, "omega": 1.0, "mode": "mean_norm", "similarity_thresh": 1.0,
            "kl_in": "reward", "kl_coef": 0.5, "step_weight": "episode"}
    kl = [[torch.tensor([1.0, 1.0]), torch.tensor([0.0])], [torch.tensor([0.0]), torch.tensor([0.0])],
          [torch.tensor([0.0]), torch.tensor([0.0])]]
    out = step_advantages(algo, REWARDS, GROUPS, kl=kl, state_keys=KEYS)
    # e0's first step pays 0.5 * 2 = 1: rewards [[-1, 10], [0, 0], [0, 0]] -> returns 9, 0, 0 (mean 3)
    # group a: G = [-1 + 5, 0, 0] = [4, 0, 0] (mean 4/3); group b: [10, 0] (mean 5); all episodes have 2 steps
    expected = gigpo_advantages([[-1.0, 10.0], [0.0, 0.0], [0.0, 0.0]], GROUPS, KEYS, gamma=0.5, mode="mean_norm")
    close([a for row in out.advantages for a in row], [a for row in expected for a in row])
    close(expected[0], [6 + 8 / 3, 6 + 5])
    assert out.metrics["gigpo/shared_step_frac"] == pytest.approx(5 / 6)  # a (3 steps) + b (2) of 6 steps


def test_gigpo_config_checks():
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(load_algo_file("gigpo"))
    assert (cfg["gamma"], cfg["omega"], cfg["mode"], cfg["similarity_thresh"]) == (0.95, 1.0, "mean_std_norm", 1.0)
    with pytest.raises(ValueError, match=r"algo.mode='zscore'.*mean_std_norm, mean_norm"):
        validate_algo_config({**cfg, "mode": "zscore"})
    with pytest.raises(ValueError, match=r"similarity_thresh=0.0"):
        validate_algo_config({**cfg, "similarity_thresh": 0.0})
    with pytest.raises(ValueError, match=r"algo.omgea is not a key of algorithm 'gigpo'"):
        validate_algo_config({**cfg, "omgea": 2.0})
    with pytest.raises(ValueError, match=r"algo.gamma=.*wrong type"):
        validate_algo_config({**cfg, "gamma": "high"})


# ------------------------------------------------------------------------------------ anchor states
def test_sokoban_state_key_ignores_augmentation_and_invalid_moves_keep_it():
    aug = parse_settings({"name": "test", "eps": 80}, default_seed=0)
    plain = make("sokoban", "train", max_steps=15)
    wrapped = AugmentedEnv("train", inner="sokoban", inner_kwargs={"max_steps": 15}, augment=aug)
    (o1, i1), (o2, i2) = plain.reset(3), wrapped.reset(3)
    assert o1 != o2  # distractors were added to what the agent sees ...
    assert i1["state_key"] == i2["state_key"] == (plain.state.player, tuple(sorted(plain.state.boxes)))
    _, _, _, info = wrapped.step("jump")  # ... an invalid action leaves the state (and its key) as it was
    assert info["invalid_action"] and info["state_key"] == i2["state_key"]
    _, _, _, moved = wrapped.step(wrapped.expert_action())
    assert moved["state_key"] != i2["state_key"]


def test_text_envs_key_is_their_own_observation():
    env = make("webshop", "train", max_steps=5)
    obs, info = env.reset(0)
    assert info["state_key"] == obs


# ------------------------------------------------------------------------------------------------- GSPO
def test_gspo_loss_clips_whole_sequences_by_hand():
    # row 0: token log-ratios 0.1, 0.1 -> s = e^0.1 > 1 + 4e-4 with A = +1: clipped at 1.0004 (no gradient)
    # row 1: one token, ratio 1, A = -1: loss +1, d loss / d logp = -A * s / |y| / n_rows = 0.5
    lp = torch.tensor([[-1.0, -2.0], [0.0, -0.5]], requires_grad=True)
    old = torch.tensor([[-1.1, -2.1], [0.0, -0.5]])
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    adv = torch.tensor([1.0, -1.0])
    loss, m = gspo_policy_loss(lp, old, adv, mask, 3e-4, 4e-4)
    assert float(loss) == pytest.approx((-1.0004 + 1.0) / 2, abs=1e-6)
    loss.backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[0.0, 0.0], [0.0, 0.5]]))
    assert m["clipfrac"] == pytest.approx(0.5) and m["ratio_max"] == pytest.approx(math.exp(0.1), abs=1e-5)


def test_gspo_ratio_is_per_sequence_not_per_token():
    # token ratios e^0.2 and e^-0.2 (PPO would clip the first at 1.2): their geometric mean is 1, nothing clips,
    # and each token's gradient is -A * s / |y| = -1 * 1 / 2 (one row)
    lp = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    old = torch.tensor([[-1.2, -0.8]])
    loss, m = gspo_policy_loss(lp, old, torch.tensor([1.0]), torch.ones(1, 2), 3e-4, 4e-4)
    assert float(loss) == pytest.approx(-1.0, abs=1e-6) and m["clipfrac"] == 0.0
    loss.backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[-0.5, -0.5]]))


def test_gspo_equals_grpo_seq_mean_when_on_policy():
    from agentgen.algos.losses import policy_loss

    torch.manual_seed(0)
    lp = torch.randn(3, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.float)
    adv = torch.tensor([0.5, -1.0, 2.0])
    a = lp.clone().requires_grad_(True)
    b = lp.clone().requires_grad_(True)
    la, _ = gspo_policy_loss(a, lp, adv, mask)
    lb, _ = policy_loss(b, lp, adv, mask, agg="seq-mean-token-mean")
    la.backward(), lb.backward()
    torch.testing.assert_close(la, lb)
    torch.testing.assert_close(a.grad, b.grad)


def test_the_trainer_calls_gspo_loss_with_its_clip_range(monkeypatch):
    from tests.test_trainer_rl import make_trainer

    seen = []
    original = GSPO.policy_loss

    def spy(self, lp, old, adv, mask, algo, agg):
        seen.append((float(algo["clip_low"]), float(algo["clip_high"]), agg))
        return original(self, lp, old, adv, mask, algo, agg)

    monkeypatch.setattr(GSPO, "policy_loss", spy)
    trainer = make_trainer("gspo")
    trainer.opts.mini_batch_states = 4  # several mini-batches: the ratio leaves 1 after the first
    metrics = trainer.step(0)
    assert seen and set(seen) == {(3e-4, 4e-4, "seq-mean-token-mean")}
    assert metrics["train/ratio_max"] >= 1.0 and "train/clipfrac" in metrics


def test_gspo_with_tis_weights_each_token_its_own_term():
    """TIS weights vary within a row: token t's gradient is -A * w_t * s / |y| (verl applies each token's weight to
    its own term). The row's mean weight (the old collapse) gives the same loss value, -A * mean(w) * s, but a
    gradient of -A * mean(w) * s / |y| on every token."""
    lp = torch.tensor([[-1.0, -2.0, -0.5, 0.0]], requires_grad=True)
    old = lp.detach().clone()  # on-policy: s = 1, nothing clips
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = torch.tensor([[0.5, 1.0, 2.0, 1.0]])  # the trainer's tis_weights: 1 off the response
    a = 2.0
    loss, m = gspo_policy_loss(lp, old, a * w, mask, 3e-4, 4e-4)
    assert float(loss) == pytest.approx(-a * (0.5 + 1.0 + 2.0) / 3, abs=1e-6) and m["clipfrac"] == 0.0
    loss.backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[-a * 0.5 / 3, -a * 1.0 / 3, -a * 2.0 / 3, 0.0]]))
    # a negative advantage clips on its own side whatever the weights: s = e^0.01 > 1 + 4e-4 stays unclipped
    lp2 = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss2, m2 = gspo_policy_loss(lp2, lp2.detach() - 0.01, -1.0 * torch.tensor([[0.5, 2.0]]), torch.ones(1, 2))
    assert m2["clipfrac"] == 0.0
    loss2.backward()
    s = math.exp(0.01)
    torch.testing.assert_close(lp2.grad, torch.tensor([[0.5 * s / 2, 2.0 * s / 2]]))


def test_gspo_defaults_are_the_papers_and_other_aggregations_are_refused():
    """The paper's objective: no KL term, each response counted once. token-mean is not GSPO: a clear error."""
    from omegaconf import OmegaConf

    from agentgen.algos.gspo import GSPOConfig

    cfg = OmegaConf.to_container(load_algo_file("gspo"))
    assert cfg["kl_coef"] == GSPOConfig.kl_coef == 0.0
    assert (cfg["clip_low"], cfg["clip_high"], cfg["loss_agg"]) == (3e-4, 4e-4, "seq-mean-token-mean")
    validate_algo_config(cfg)
    validate_algo_config({**cfg, "kl_coef": 0.01})  # a KL term stays available
    for agg in ("token-mean", "seq-mean-token-sum"):
        with pytest.raises(ValueError, match=rf"algo.loss_agg='{agg}' is invalid for 'gspo'.*seq-mean-token-mean"):
            validate_algo_config({**cfg, "loss_agg": agg})


# ------------------------------------------------------------------ GiGPO: the paper's defaults, verl-agent's options
ONE_AND_THREE = [[1.0], [0.0, 0.0, 0.0]]  # one group: a 1-step win and a 3-step failure
DISTINCT = [["w0"], ["f0", "f1", "f2"]]  # no shared state: every step group a singleton


def test_gigpo_episode_statistics_over_episodes_or_over_step_rows():
    # per episode (paper): returns 1, 0 -> mean 0.5, unbiased std 0.7071 -> +-0.7071
    paper = gigpo_advantages(ONE_AND_THREE, [0, 0], DISTINCT, gamma=1.0)
    close(paper[0], [1 / math.sqrt(2)])
    close(paper[1], [-1 / math.sqrt(2)] * 3)
    # per step row (verl-agent): rows 1, 0, 0, 0 -> mean 0.25, unbiased std 0.5 -> +1.5 and -0.5
    rows = gigpo_advantages(ONE_AND_THREE, [0, 0], DISTINCT, gamma=1.0, episode_stats="step")
    close(rows[0], [1.5])
    close(rows[1], [-0.5] * 3)
    mean_only = gigpo_advantages(ONE_AND_THREE, [0, 0], DISTINCT, gamma=1.0, mode="mean_norm", episode_stats="step")
    close(mean_only[0], [0.75])
    close(mean_only[1], [-0.25] * 3)


def test_gigpo_groups_of_one_get_zero_or_their_raw_return():
    # a group of one episode, rewards 0 then 2 (gamma 0.5: G = [1, 2]), its two states seen once each
    rewards, keys = [[0.0, 2.0]], [["s0", "s1"]]
    close(gigpo_advantages(rewards, [7], keys, gamma=0.5)[0], [0.0, 0.0])  # no baseline anywhere
    # verl-agent: mean 0, std 1 on both levels -> episode 2 (/(1 + 1e-6)), steps 1 and 2
    close(gigpo_advantages(rewards, [7], keys, gamma=0.5, singletons="raw")[0], [2 + 1, 2 + 2], tol=1e-4)
    # only the singletons change: in REWARDS' group, step group c (e1's second step, G = 0) stays 0 either way,
    # and the shared groups are untouched
    close(sum(gigpo_advantages(REWARDS, GROUPS, KEYS, gamma=0.5, singletons="raw"), []),
          sum(gigpo_advantages(REWARDS, GROUPS, KEYS, gamma=0.5), []))


def test_gigpo_similarity_autojunk_is_verl_agents_choice():
    room = "You are in the kitchen. On the counter: a mug, a knife, an apple. " * 4  # 264 characters
    near = room.replace("apple", "pear", 1)  # ratio 0.987 as the texts are; 0.751 with difflib's autojunk
    keys = [[room], [near]]
    assert len(set(sum(step_groups(keys, [0, 0], 0.9), []))) == 1
    assert len(set(sum(step_groups(keys, [0, 0], 0.9, autojunk=True), []))) == 2


def test_gigpo_options_are_checked_and_reach_the_trainer():
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(load_algo_file("gigpo"))
    assert (cfg["episode_stats"], cfg["singletons"], cfg["similarity_autojunk"]) == ("episode", "zero", False)
    with pytest.raises(ValueError, match=r"algo.episode_stats='steps' is invalid for 'gigpo'.*episode, step"):
        validate_algo_config({**cfg, "episode_stats": "steps"})
    with pytest.raises(ValueError, match=r"algo.singletons='none' is invalid.*zero, raw"):
        validate_algo_config({**cfg, "singletons": "none"})
    algo = {**cfg, "gamma": 1.0, "episode_stats": "step", "kl_coef": 0.0}
    out = step_advantages(algo, ONE_AND_THREE, [0, 0], state_keys=DISTINCT)
    close(sum(out.advantages, []), [1.5, -0.5, -0.5, -0.5])


# ------------------------------------------------------- GiGPO: the invalid-action penalty, discounted or that step's
# One group, gamma 0.5, mean_norm, omega 1. e0: a valid move (0), an invalid one (penalty -1), the win (+4); e1:
# three valid moves and a failure (0, 0, 0). Step k of both episodes acted in the same state ("a", "b", "c").
PEN_REWARDS = [[0.0, -1.0, 4.0], [0.0, 0.0, 0.0]]  # the env's reward: the penalty included
PEN = [[0.0, -1.0, 0.0], [0.0, 0.0, 0.0]]  # the part of it that is the invalid-action penalty
PEN_KEYS = [["a", "b", "c"], ["a", "b", "c"]]


def test_gigpo_invalid_penalty_discounted_in_the_return_by_default():
    # return (the paper: the penalty is a step reward like any other). Episode: R = [3, 0] -> [+1.5, -1.5].
    # Steps: G(e0) = [0 + 0.5 * 1, -1 + 0.5 * 4, 4] = [0.5, 1, 4], G(e1) = 0 -> a: +-0.25, b: +-0.5, c: +-2.
    adv = gigpo_advantages(PEN_REWARDS, [0, 0], PEN_KEYS, gamma=0.5, mode="mean_norm")
    close(adv[0], [1.75, 2.0, 3.5])
    close(adv[1], [-1.75, -2.0, -3.5])
    same = gigpo_advantages(PEN_REWARDS, [0, 0], PEN_KEYS, gamma=0.5, mode="mean_norm", penalties=PEN,
                            invalid_penalty="return")
    close(sum(same, []), sum(adv, []))


def test_gigpo_invalid_penalty_on_its_own_step_only_as_verl_agent():
    # step (verl-agent's apply_invalid_action_penalty): the returns are the task rewards' ([0, 0, 4] and 0), and the
    # penalty is added to the invalid step's own row on both levels, never discounted into earlier steps.
    # Episode level, statistics over episodes: task returns [4, 0], mean 2; e0's rows score [4, 4 - 1, 4]
    # -> [2, 1, 2]; e1's rows 0 -> [-2, -2, -2].
    # Step level: task G(e0) = [1, 2, 4], the penalty on step 1 only -> [1, 1, 4]; G(e1) = 0
    # -> a: +-0.5, b: +-0.5, c: +-2.
    adv = gigpo_advantages(PEN_REWARDS, [0, 0], PEN_KEYS, gamma=0.5, mode="mean_norm", penalties=PEN,
                           invalid_penalty="step")
    close(adv[0], [2.5, 1.5, 4.0])
    close(adv[1], [-2.5, -2.5, -4.0])
    # with verl-agent's row statistics too: rows [4, 3, 4, 0, 0, 0], mean 11/6 -> e0 [13/6, 7/6, 13/6], e1 -11/6
    rows = gigpo_advantages(PEN_REWARDS, [0, 0], PEN_KEYS, gamma=0.5, mode="mean_norm", penalties=PEN,
                            invalid_penalty="step", episode_stats="step")
    close(rows[0], [13 / 6 + 0.5, 7 / 6 + 0.5, 13 / 6 + 2])
    close(rows[1], [-11 / 6 - 0.5, -11 / 6 - 0.5, -11 / 6 - 2])
    # mean_std_norm, statistics over episodes: task returns [4, 0] have mean 2 and std 2 * sqrt(2); e0's invalid
    # row scores 3 -> (3 - 2) / (2 * sqrt(2)); its step group b compares 1 with 0 -> +-1 / sqrt(2)
    std = gigpo_advantages(PEN_REWARDS, [0, 0], PEN_KEYS, gamma=0.5, penalties=PEN, invalid_penalty="step")
    assert std[0][1] == pytest.approx(1 / (2 * math.sqrt(2)) + 1 / math.sqrt(2), abs=1e-5)


@pytest.fixture
def pool_sokoban():
    from agentgen.augment import env_kwargs
    from agentgen.envs.pool import EnvPool
    from agentgen.preflight import compose_job

    cfg = compose_job(["debug=smoke"])
    with EnvPool("sokoban", env_kwargs(cfg.env.sokoban), split="train", num_slots=2, num_workers=0) as p:
        yield p


def test_gigpo_invalid_penalty_reaches_it_from_the_env_and_other_algorithms_keep_their_numbers(pool_sokoban):
    # the env reports the penalty apart from the task reward; the runner records it on the turn
    from agentgen.agent.prompt import PromptBuilder
    from agentgen.rollout.policy import ExpertPolicy
    from agentgen.rollout.runner import Decision, EpisodeRunner, EpisodeSpec

    class Fumbling(ExpertPolicy):  # every other turn an action Sokoban refuses
        def act(self, states):
            return [Decision("jump", "jump", user="") if len(st.episode.turns) % 2 == 0 else d
                    for st, d in zip(states, super().act(states))]

    eps = EpisodeRunner(pool_sokoban, Fumbling(pool_sokoban, PromptBuilder(think=False)), 6).run(
        [EpisodeSpec("sokoban", s) for s in (3, 4)])
    turns = [t for e in eps for t in e.turns]
    assert any(t.invalid for t in turns) and any(not t.invalid for t in turns)
    for t in turns:  # the reward still holds the penalty (every other algorithm reads it as before)
        assert t.penalty == (-0.1 if t.invalid else 0.0)
        if t.invalid:
            assert t.reward == pytest.approx(-0.1)
    # the trainer's path: step_advantages hands the penalties to GiGPO; GRPO's numbers do not move
    algo = {"name": "gigpo", "gamma": 0.5, "omega": 1.0, "mode": "mean_norm", "similarity_thresh": 1.0,
            "kl_coef": 0.0, "invalid_penalty": "step"}
    out = step_advantages(algo, PEN_REWARDS, [0, 0], state_keys=PEN_KEYS, penalties=PEN)
    close(sum(out.advantages, []), [2.5, 1.5, 4.0, -2.5, -2.5, -4.0])
    grpo = {"name": "grpo", "kl_coef": 0.0, "norm_adv_by_std": False}
    with_pen = step_advantages(grpo, PEN_REWARDS, [0, 0], penalties=PEN)
    close(sum(with_pen.advantages, []), [1.5] * 3 + [-1.5] * 3)  # returns 3 and 0, the penalty in them


def test_gigpo_invalid_penalty_option_is_checked():
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(load_algo_file("gigpo"))
    assert cfg["invalid_penalty"] == "return"
    with pytest.raises(ValueError, match=r"algo.invalid_penalty='row' is invalid for 'gigpo'.*return, step"):
        validate_algo_config({**cfg, "invalid_penalty": "row"})


# ------------------------------------------------------------------ GiGPO: kl_in: reward on the episode and step levels
KL_ALGO = {"name": "gigpo", "gamma": 0.5, "omega": 1.0, "mode": "mean_norm", "similarity_thresh": 1.0,
           "kl_in": "reward", "kl_coef": 0.5}
# e0's first step has a KL of 1 + 1 = 2, which costs 0.5 * 2 = 1; every other step's KL is 0
KL = [[torch.tensor([1.0, 1.0]), torch.tensor([0.0])], [torch.tensor([0.0]), torch.tensor([0.0])],
      [torch.tensor([0.0]), torch.tensor([0.0])]]


def test_gigpo_kl_in_reward_reaches_both_levels_as_a_step_reward_by_default():
    # return: the KL penalty is a step reward, as for every algorithm: rewards [[-1, 10], [0, 0], [0, 0]].
    # Episode: R = [9, 0, 0], mean 3 -> [6, -3, -3]. Steps: G(e0) = [-1 + 0.5 * 10, 10] = [4, 10], the others 0;
    # a: [4, 0, 0] - 4/3; b: [10 (e0), 0 (e2)] - 5; c (e1's second step) alone: 0.
    out = step_advantages(KL_ALGO, REWARDS, GROUPS, kl=KL, state_keys=KEYS)
    close(sum(out.advantages, []), [6 + 8 / 3, 11, -3 - 4 / 3, -3, -3 - 4 / 3, -8])
    same = step_advantages({**KL_ALGO, "kl_reward": "return"}, REWARDS, GROUPS, kl=KL, state_keys=KEYS)
    close(sum(same.advantages, []), sum(out.advantages, []))


def test_gigpo_kl_in_reward_on_the_episode_rows_only_as_verl_agent():
    # row (verl-agent: apply_kl_penalty subtracts beta * KL from the row's token_level_rewards, which only the
    # episode level sums; the step returns come from the env rewards). Episode level: task returns [10, 0, 0],
    # mean 10/3; e0's rows score [10 - 1, 10] -> [17/3, 20/3], the others -10/3. Step level, KL-free:
    # G(e0) = [5, 10]; a: [5, 0, 0] - 5/3; b: [10, 0] - 5; c: 0.
    out = step_advantages({**KL_ALGO, "kl_reward": "row"}, REWARDS, GROUPS, kl=KL, state_keys=KEYS)
    close(sum(out.advantages, []), [9, 35 / 3, -5, -10 / 3, -5, -25 / 3])
    # with verl-agent's row statistics: rows [9, 10, 0, 0, 0, 0], mean 19/6
    rows = step_advantages({**KL_ALGO, "kl_reward": "row", "episode_stats": "step"}, REWARDS, GROUPS, kl=KL,
                           state_keys=KEYS)
    close(sum(rows.advantages, []), [35 / 6 + 10 / 3, 41 / 6 + 5, -19 / 6 - 5 / 3, -19 / 6, -19 / 6 - 5 / 3,
                                     -19 / 6 - 5])
    # both per-step charges together (verl-agent's order: the penalty, then the KL, on the same row)
    both = step_advantages({**KL_ALGO, "kl_reward": "row", "invalid_penalty": "step"}, REWARDS, GROUPS, kl=KL,
                           state_keys=KEYS, penalties=[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    close(sum(both.advantages, []), sum(out.advantages, []))


def test_gigpo_kl_reward_option_is_checked():
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(load_algo_file("gigpo"))
    assert cfg["kl_reward"] == "return"
    with pytest.raises(ValueError, match=r"algo.kl_reward='episode' is invalid for 'gigpo'.*return, row"):
        validate_algo_config({**cfg, "kl_reward": "episode"})
    with pytest.raises(ValueError, match=r"algo.kl_reward='row' is invalid.*kl_in='loss'.*algo.kl_in=reward"):
        validate_algo_config({**cfg, "kl_reward": "row"})
    validate_algo_config({**cfg, "kl_reward": "row", "kl_in": "reward"})
