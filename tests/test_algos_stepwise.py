"""Per-step advantages of the stepwise trainer, checked by hand."""

import math

import pytest
import torch

from agentgen.algos.stepwise import step_advantages

GRPO = {"name": "grpo", "kl_coef": 0.01, "kl_in": "loss", "norm_adv_by_std": True}
PPO_TURN = {
    "name": "ppo",
    "kl_coef": 0.0,
    "kl_in": "reward",
    "gamma": 1.0,
    "lam": 1.0,
    "credit": "turn",
    "whiten_advantages": False,
}


def test_grpo_broadcasts_the_episode_advantage_to_every_step():
    out = step_advantages(GRPO, [[0.0, -0.1, 10.0], [0.0, 0.0], [5.0]], [0, 0, 1])
    # returns 9.9 and 0 in group 0 (unbiased std 9.9/sqrt(2)), group 1 alone -> 0
    a = 4.95 / (9.9 / math.sqrt(2) + 1e-6)
    assert out.advantages == [pytest.approx([a] * 3), pytest.approx([-a] * 2), [0.0]]
    assert out.returns is None


def test_episode_step_weight_makes_every_episode_weigh_the_same():
    # Dr. GRPO returns 10 (3 steps) and 0 (1 step): advantages +5 and -5 per step. Summed over samples
    # that is 15 - 5 = +10; with step_weight episode the scale is mean_T / T_e = 2/3 and 2, so each
    # episode's steps sum to +10 and -10 and the total sample weight (4) is unchanged.
    algo = {**GRPO, "norm_adv_by_std": False, "step_weight": "episode"}
    out = step_advantages(algo, [[0.0, 0.0, 10.0], [0.0]], [0, 0])
    assert out.advantages == [pytest.approx([10 / 3] * 3), pytest.approx([-10.0])]
    assert sum(out.advantages[0]) + sum(out.advantages[1]) == pytest.approx(0.0)
    plain = step_advantages({**algo, "step_weight": "step"}, [[0.0, 0.0, 10.0], [0.0]], [0, 0])
    assert plain.advantages == [pytest.approx([5.0] * 3), pytest.approx([-5.0])]


def test_episode_step_weight_scales_token_advantages_but_not_the_critic_returns():
    algo = {**PPO_TURN, "credit": "token", "step_weight": "episode"}
    plain = step_advantages({**algo, "step_weight": "step"}, [[0.0, 1.0], [1.0]], [0, 1],
                            values=[[torch.zeros(2), torch.zeros(1)], [torch.zeros(2)]], response_lengths=[[2, 1], [2]])
    out = step_advantages(algo, [[0.0, 1.0], [1.0]], [0, 1],
                          values=[[torch.zeros(2), torch.zeros(1)], [torch.zeros(2)]], response_lengths=[[2, 1], [2]])
    # mean T = 1.5: episode 0 (2 steps) x 0.75, episode 1 (1 step) x 1.5
    assert torch.allclose(out.advantages[0][0], plain.advantages[0][0] * 0.75)
    assert torch.allclose(out.advantages[1][0], plain.advantages[1][0] * 1.5)
    assert all(torch.equal(a, b) for a, b in zip(out.returns[0], plain.returns[0]))


def test_rloo_with_kl_in_reward_uses_the_episode_kl_sum():
    algo = {"name": "rloo", "kl_coef": 0.5, "kl_in": "reward"}
    kl = [[torch.tensor([1.0, 1.0])], [torch.tensor([0.0])]]
    out = step_advantages(algo, [[10.0], [10.0]], [3, 3], kl=kl)
    # returns 10 - 0.5*2 = 9 and 10: leave-one-out 9 - 10 = -1, 10 - 9 = 1
    assert out.advantages == [[pytest.approx(-1.0)], [pytest.approx(1.0)]]


def test_ppo_turn_level_gae_over_steps():
    out = step_advantages(PPO_TURN, [[-0.1, 0.0, 10.0], [0.0]], [0, 1], values=[[3.0, 4.0, 6.0], [2.0]])
    assert out.advantages[0] == pytest.approx([6.9, 6.0, 4.0])
    assert out.returns[0] == pytest.approx([9.9, 10.0, 10.0])
    assert out.advantages[1] == pytest.approx([-2.0]) and out.returns[1] == pytest.approx([0.0])


def test_ppo_token_level_bootstraps_across_step_boundaries():
    algo = {**PPO_TURN, "credit": "token", "gamma": 0.9, "lam": 0.8}
    # one episode: step 0 has 1 token (value 0.2, reward 0), step 1 has 2 tokens (values 0.4, 0.6, reward 1)
    out = step_advantages(
        algo,
        [[0.0, 1.0]],
        [0],
        values=[[torch.tensor([0.2]), torch.tensor([0.4, 0.6])]],
        response_lengths=[[1, 2]],
    )
    # identical to the 3-token row of test_gae_by_hand
    torch.testing.assert_close(out.advantages[0][0], torch.tensor([0.46816]))
    torch.testing.assert_close(out.advantages[0][1], torch.tensor([0.428, 0.4]))
    torch.testing.assert_close(out.returns[0][1], torch.tensor([0.828, 1.0]))


def test_reinforce_pp_turn_level_with_kl_penalty_whitened_over_batch():
    algo = {"name": "reinforce_pp", "kl_coef": 0.1, "kl_in": "reward", "gamma": 1.0, "credit": "turn"}
    kl = [[torch.tensor([1.0, 1.0]), torch.tensor([0.0])], [torch.tensor([3.0])]]
    out = step_advantages(algo, [[0.0, 10.0], [0.0]], [0, 1], kl=kl)
    # shaped step rewards [-0.2, 10] and [-0.3] -> returns-to-go [9.8, 10] and [-0.3]
    g = torch.tensor([9.8, 10.0, -0.3])
    expected = ((g - g.mean()) / g.std()).tolist()
    assert out.advantages[0] + out.advantages[1] == pytest.approx(expected, abs=1e-5)


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="values"):
        step_advantages(PPO_TURN, [[1.0]], [0])
    with pytest.raises(ValueError, match="per-token kl"):
        step_advantages({**PPO_TURN, "kl_coef": 0.1}, [[1.0]], [0], values=[[0.0]])
    with pytest.raises(ValueError, match="TreeSearch"):
        step_advantages({"name": "tree_grpo"}, [[1.0]], [0])
    with pytest.raises(ValueError, match="step, episode"):
        step_advantages({**GRPO, "step_weight": "trajectory"}, [[1.0]], [0])
    with pytest.raises(ValueError, match="turn, token"):
        step_advantages({**PPO_TURN, "credit": "episode"}, [[1.0]], [0], values=[[0.0]])
