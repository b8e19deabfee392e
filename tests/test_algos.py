"""Advantage estimators and losses checked against values worked out by hand on small tensors."""

import math

import pytest
import torch

from agentgen.algos.advantages import (
    discounted_returns,
    gae_advantages,
    grpo_advantages,
    kl_penalised_rewards,
    outcome_token_rewards,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    rloo_advantages,
)
from agentgen.algos.losses import aggregate_loss, entropy_from_logits, kl_divergence, policy_loss, value_loss
from agentgen.algos.masked import masked_mean, masked_var, masked_whiten


# ------------------------------------------------------------------------------------------------- GRPO
def test_grpo_advantage_by_hand():
    # group 0: [1, 0, 1, 0] -> mean 0.5, unbiased std sqrt(1/3); group 1: [10, 0] -> mean 5, std sqrt(50)
    returns = torch.tensor([1.0, 0.0, 1.0, 0.0, 10.0, 0.0])
    groups = torch.tensor([7, 7, 7, 7, 3, 3])  # ids need not be contiguous
    adv = grpo_advantages(returns, groups)
    a0 = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    a1 = 5.0 / (math.sqrt(50.0) + 1e-6)
    torch.testing.assert_close(adv, torch.tensor([a0, -a0, a0, -a0, a1, -a1]))


def test_grpo_equal_rewards_and_single_sample_groups_get_zero():
    returns = torch.tensor([10.0, 10.0, 10.0, -0.1, 4.0])
    groups = torch.tensor([0, 0, 0, 1, 2])
    assert torch.equal(grpo_advantages(returns, groups), torch.zeros(5))


def test_grpo_without_std_normalisation():
    adv = grpo_advantages(torch.tensor([3.0, 1.0, 2.0]), torch.tensor([0, 0, 0]), norm_by_std=False)
    torch.testing.assert_close(adv, torch.tensor([1.0, -1.0, 0.0]))


def test_grpo_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same length"):
        grpo_advantages(torch.zeros(3), torch.zeros(2, dtype=torch.long))


# ------------------------------------------------------------------------------------------------- RLOO
def test_rloo_leave_one_out_baseline():
    returns = torch.tensor([1.0, 0.0, 0.0, 4.0, 2.0, 7.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 2])
    # group 0: 1 - (0+0)/2 = 1, 0 - (1+0)/2 = -0.5 twice; group 1: 4-2=2, 2-4=-2; group 2 alone: 0
    torch.testing.assert_close(
        rloo_advantages(returns, groups), torch.tensor([1.0, -0.5, -0.5, 2.0, -2.0, 0.0])
    )


# ----------------------------------------------------------------------------------------------- masked
def test_masked_statistics_ignore_hidden_positions():
    x = torch.tensor([[1.0, 100.0, 3.0], [5.0, -50.0, 7.0]])
    m = torch.tensor([[1, 0, 1], [1, 0, 1]])
    assert masked_mean(x, m).item() == pytest.approx(4.0)
    assert masked_var(x, m).item() == pytest.approx(20.0 / 3.0)  # deviations -3,-1,1,3 -> 20 / (4-1)
    w = masked_whiten(x, m)
    kept = w[m.bool()]
    assert kept.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert kept.std().item() == pytest.approx(1.0, abs=1e-5)
    assert masked_mean(x, torch.zeros_like(m)).item() == 0.0  # empty mask: 0, not NaN


# --------------------------------------------------------------------------------------------------- KL
def test_kl_estimators_by_hand():
    logp = torch.tensor([math.log(0.5), math.log(0.2)])
    ref = torch.tensor([math.log(0.25), math.log(0.4)])
    d = logp - ref  # [log 2, -log 2]
    torch.testing.assert_close(kl_divergence(logp, ref, "k1"), d)
    torch.testing.assert_close(kl_divergence(logp, ref, "k2"), 0.5 * d**2)
    # k3 = r - log r - 1 with r = p_ref / p: r = 0.5 -> 0.5 + log 2 - 1; r = 2 -> 2 - log 2 - 1
    torch.testing.assert_close(
        kl_divergence(logp, ref, "k3"), torch.tensor([math.log(2) - 0.5, 1 - math.log(2)])
    )
    assert torch.equal(kl_divergence(logp, ref, "low_var_kl"), kl_divergence(logp, ref, "k3"))
    assert kl_divergence(torch.tensor([0.0]), torch.tensor([-40.0]), "k3").item() == 10.0  # clamped


def test_kl_unknown_estimator_names_valid_ones():
    with pytest.raises(ValueError, match="k3"):
        kl_divergence(torch.zeros(1), torch.zeros(1), "k4")


# ------------------------------------------------------------------------------------------- policy loss
def test_policy_loss_clip_by_hand():
    # token ratios: 1.5 (A>0: clipped to 1.2), 0.5 (A<0: clipped to 0.8), 1.0, and a masked token
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.0, 9.0]]))
    adv = torch.tensor([[2.0, -1.0, 3.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, metrics = policy_loss(logp, old, adv, mask)
    # per token: max(-2*1.5, -2*1.2) = -2.4; max(0.5, 0.8) = 0.8; -3.0
    assert loss.item() == pytest.approx((-2.4 + 0.8 - 3.0) / 3)
    assert metrics["clipfrac"] == pytest.approx(2 / 3)
    assert metrics["clipfrac_high"] == pytest.approx(1 / 3)
    assert metrics["clipfrac_low"] == pytest.approx(1 / 3)
    assert metrics["approx_kl"] == pytest.approx(-(math.log(1.5) + math.log(0.5)) / 3)


def test_policy_loss_asymmetric_clip_higher():
    logp = torch.log(torch.tensor([[1.25]]))
    old = torch.zeros(1, 1)
    mask = torch.ones(1, 1)
    sym, _ = policy_loss(logp, old, torch.tensor([1.0]), mask, clip_low=0.2, clip_high=0.2)
    dapo, _ = policy_loss(logp, old, torch.tensor([1.0]), mask, clip_low=0.2, clip_high=0.28)
    assert sym.item() == pytest.approx(-1.2)
    assert dapo.item() == pytest.approx(-1.25)  # inside the wider upper range: not clipped


def test_policy_loss_gradient_is_advantage_at_ratio_one():
    logp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    loss, _ = policy_loss(logp, torch.zeros(2, 3), torch.tensor([1.0, -2.0]), mask)
    loss.backward()
    # token-mean over 3 tokens: d loss / d logp = -A / 3 on response tokens, 0 elsewhere
    torch.testing.assert_close(logp.grad, torch.tensor([[-1 / 3, -1 / 3, 0.0], [2 / 3, 0.0, 0.0]]))


def test_policy_loss_dual_clip_bounds_negative_advantages():
    logp = torch.log(torch.tensor([[10.0]]))
    loss, _ = policy_loss(logp, torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1), dual_clip=3.0)
    assert loss.item() == pytest.approx(3.0)  # would be 10 without the dual clip


def test_loss_aggregations_by_hand():
    loss_mat = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])  # last row: no response tokens
    assert aggregate_loss(loss_mat, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate_loss(loss_mat, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate_loss(loss_mat, mask, "seq-mean-token-sum").item() == pytest.approx((6 + 4) / 2)
    with pytest.raises(ValueError, match="token-mean"):
        aggregate_loss(loss_mat, mask, "sum")


# ---------------------------------------------------------------------------------------------- entropy
def test_entropy_from_logits_by_hand():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # uniform over 4 -> log 4; one-hot -> 0; third position masked
    assert entropy_from_logits(logits, mask).item() == pytest.approx(math.log(4) / 2, abs=1e-5)


# ------------------------------------------------------------------------------------------------- GAE


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.2, 0.4, 0.6]])
    adv, ret = gae_advantages(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.8, whiten=False)
    # t2: delta 0.4 -> A 0.4; t1: delta 0.9*0.6-0.4 = 0.14 -> 0.14 + 0.72*0.4 = 0.428;
    # t0: delta 0.9*0.4-0.2 = 0.16 -> 0.16 + 0.72*0.428 = 0.46816
    torch.testing.assert_close(adv, torch.tensor([[0.46816, 0.428, 0.4]]))
    torch.testing.assert_close(ret, torch.tensor([[0.66816, 0.828, 1.0]]))


def test_gae_skips_observation_tokens_and_padding():
    # [response, observation, response, padding]: the observation token's value and reward are ignored and
    # the bootstrap of the first response token is the value of the next *response* token
    rewards = torch.tensor([[0.0, 5.0, 1.0, 7.0]])
    values = torch.tensor([[0.2, 99.0, 0.6, 42.0]])
    mask = torch.tensor([[1, 0, 1, 0]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=0.9, lam=0.8, whiten=False)
    # t2: A = 1 - 0.6 = 0.4; t0: delta = 0.9*0.6 - 0.2 = 0.34 -> A = 0.34 + 0.72*0.4 = 0.628
    torch.testing.assert_close(adv, torch.tensor([[0.628, 0.0, 0.4, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.828, 0.0, 1.0, 0.0]]))


def test_gae_turn_level_is_return_minus_value_with_gamma_lam_one():
    # one episode of 3 steps: invalid action (-0.1), then nothing, then success (+10)
    step_rewards = torch.tensor([[-0.1, 0.0, 10.0]])
    step_values = torch.tensor([[3.0, 4.0, 6.0]])
    adv, ret = gae_advantages(step_rewards, step_values, torch.ones(1, 3), gamma=1.0, lam=1.0, whiten=False)
    torch.testing.assert_close(ret, torch.tensor([[9.9, 10.0, 10.0]]))
    torch.testing.assert_close(adv, torch.tensor([[6.9, 6.0, 4.0]]))


def test_gae_whitening_uses_masked_tokens_only():
    rewards = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    values = torch.zeros(2, 3)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    adv, _ = gae_advantages(rewards, values, mask, whiten=True)
    kept = adv[mask.bool()]  # raw advantages 1, 1, 0
    torch.testing.assert_close(
        kept, (torch.tensor([1.0, 1.0, 0.0]) - 2 / 3) / torch.tensor([1.0, 1.0, 0.0]).std()
    )
    assert adv[~mask.bool()].abs().sum() == 0


def test_outcome_reward_lands_on_last_response_token():
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0]])
    out = outcome_token_rewards(torch.tensor([10.0, -0.1, 3.0]), mask)
    expected = torch.zeros(3, 4)
    expected[0, 1], expected[1, 3] = 10.0, -0.1
    torch.testing.assert_close(out, expected)


# ------------------------------------------------------------------------------------------ REINFORCE++
def test_discounted_returns_skip_masked_positions():
    rewards = torch.tensor([[0.0, 9.0, 1.0]])
    mask = torch.tensor([[1, 0, 1]])
    torch.testing.assert_close(discounted_returns(rewards, mask, gamma=0.5), torch.tensor([[0.5, 0.0, 1.0]]))


def test_reinforce_pp_kl_penalty_and_global_whitening_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    kl = torch.ones(2, 3)
    adv, ret = reinforce_pp_advantages(rewards, mask, gamma=0.5, kl=kl, kl_coef=0.1)
    # shaped row 0: [-0.1, -0.1, 0.9] -> G = [0.075, 0.35, 0.9]; row 1: [-0.1, 0.9] -> G = [0.35, 0.9]
    torch.testing.assert_close(ret, torch.tensor([[0.075, 0.35, 0.9], [0.35, 0.9, 0.0]]))
    g = torch.tensor([0.075, 0.35, 0.9, 0.35, 0.9])
    torch.testing.assert_close(adv[mask.bool()], (g - g.mean()) / g.std(), atol=1e-5, rtol=1e-5)
    assert adv[1, 2] == 0


def test_reinforce_pp_without_kl_ignores_kl_tensor():
    rewards = torch.tensor([[1.0, 2.0]])
    adv_a, ret_a = reinforce_pp_advantages(rewards, torch.ones(1, 2), kl=torch.full((1, 2), 5.0), kl_coef=0.0)
    adv_b, ret_b = reinforce_pp_advantages(rewards, torch.ones(1, 2))
    assert torch.equal(ret_a, ret_b) and torch.equal(adv_a, adv_b)


def test_reinforce_pp_baseline_subtracts_group_mean_then_whitens():
    scores = torch.tensor([1.0, 0.0, 5.0, 5.0])
    mask = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 0]])
    adv = reinforce_pp_baseline_advantages(scores, torch.tensor([0, 0, 1, 1]), mask)
    # centred: [0.5, -0.5, 0, 0] broadcast -> tokens [0.5, 0.5, -0.5, 0, 0, 0]
    tokens = torch.tensor([0.5, 0.5, -0.5, 0.0, 0.0, 0.0])
    torch.testing.assert_close(
        adv[mask.bool()], (tokens - tokens.mean()) / tokens.std(), atol=1e-5, rtol=1e-5
    )


def test_kl_penalised_rewards_sum_kl_over_response_tokens():
    out = kl_penalised_rewards(
        torch.tensor([10.0, 0.0]),
        torch.tensor([[1.0, 2.0, 50.0], [0.5, 0.5, 0.5]]),
        torch.tensor([[1, 1, 0], [1, 1, 1]]),
        kl_coef=0.1,
    )
    torch.testing.assert_close(out, torch.tensor([10.0 - 0.3, -0.15]))


# ------------------------------------------------------------------------------------------ value loss
def test_value_loss_clipping_by_hand():
    # token 0: V moved 0.5 -> 1.0, clipped to 0.7; target 2: max(1.0, 1.69) = 1.69 (clip active)
    # token 1: V unchanged at 2, target 3: 1.0; token 2 masked out
    values = torch.tensor([[1.0, 2.0, 100.0]])
    old = torch.tensor([[0.5, 2.0, 0.0]])
    returns = torch.tensor([[2.0, 3.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    loss, metrics = value_loss(values, old, returns, mask, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (1.69 + 1.0) / 2)
    assert metrics["vf_clipfrac"] == pytest.approx(0.5)
    plain, _ = value_loss(values, old, returns, mask, clip=None)
    assert plain.item() == pytest.approx(0.5 * (1.0 + 1.0) / 2)


def test_top_entropy_mask_keeps_the_choosing_tokens():
    """algo.top_entropy_frac: the policy gradient reaches only the top fraction of response tokens by entropy."""
    from agentgen.algos.losses import top_entropy_mask

    entropy = torch.tensor([[0.01, 0.9, 0.02, 0.5], [0.03, 0.04, 2.0, 7.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])  # the last token is padding: never kept, however uncertain
    keep = top_entropy_mask(entropy, mask, 0.3)
    assert keep.tolist() == [[0, 1, 0, 0], [0, 0, 1, 0]]  # the top 30% of 7 response tokens: the 2 most uncertain
    assert top_entropy_mask(entropy, mask, 1.0).tolist() == mask.float().tolist()
    assert top_entropy_mask(entropy, torch.zeros_like(mask), 0.2).sum() == 0
