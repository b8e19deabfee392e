"""The sampler/trainer mismatch made visible and correctable (issue 22 item 5): the rollout engine's own
log-probs travel with every sampled token, the trainer logs their gap to its own scoring
(``rollout/logprob_gap_mean`` / ``_max``) and, with ``algo.tis_cap``, weighs each token's policy gradient by
the truncated importance ratio min(pi_trainer / pi_sampler, cap)."""

import math

import pytest
import torch
from test_trainer_rl import SeededEpisodes, make_trainer

from agentgen.algos.losses import logprob_gap, tis_weights
from agentgen.episode import Episode, Turn
from agentgen.trainer.batch import Sample, collate, response_logits, token_logprobs


def test_gap_and_weights_by_hand():
    behaviour = torch.tensor([[-1.0, -2.0, -0.5]])
    sampler = torch.tensor([[-1.5, -1.0, -0.5]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    total, peak, n = logprob_gap(behaviour, sampler, mask)
    assert (total, peak, n) == (pytest.approx(1.5), pytest.approx(1.0), 2)
    w = tis_weights(behaviour, sampler, mask, cap=1.5)
    # exp(0.5) = 1.6487 is capped at 1.5; exp(-1) = 0.3679; off the response the weight is 1
    assert w.tolist() == [[pytest.approx(1.5), pytest.approx(math.exp(-1.0)), 1.0]]
    assert not w.requires_grad


class SampledBy(SeededEpisodes):
    """SeededEpisodes whose tokens carry a sampler's log-probs: the policy's own (scored at the start of the
    step, as an exact sampler would give them) plus ``offset``."""

    def __init__(self, policy, offset: float):
        super().__init__()
        self.policy, self.offset = policy, offset

    def episodes_of(self, call: int) -> list[Episode]:
        episodes = super().episodes_of(call)
        for e in episodes:
            for t in e.turns:
                tb = collate([Sample(t.prompt_ids, t.response_ids)], 0)
                with torch.no_grad():
                    lp = token_logprobs(response_logits(self.policy, tb, 1.0), tb)[0, -len(t.response_ids):]
                t.sampler_logprobs = [float(x) + self.offset for x in lp]
        return episodes


def trainer_with_sampler(offset: float, **algo):
    trainer = make_trainer("grpo", ref=None, group_size=2, kl_coef=0.0, **algo)
    trainer.rollout_fn = SampledBy(trainer.model, offset)
    return trainer


def test_the_gap_is_logged_against_the_trainers_scoring():
    exact = trainer_with_sampler(0.0).step(0)
    assert exact["rollout/logprob_gap_max"] < 1e-5  # the same fp32 model scoring the same tokens
    off = trainer_with_sampler(-math.log(2)).step(0)  # a sampler that gives every token half the probability
    assert off["rollout/logprob_gap_mean"] == pytest.approx(math.log(2), abs=1e-5)
    assert off["rollout/logprob_gap_max"] == pytest.approx(math.log(2), abs=1e-5)
    assert "train/tis_weight_mean" not in off  # no correction unless asked for
    plain = make_trainer("grpo", ref=None, group_size=2, kl_coef=0.0).step(0)  # episodes without sampler log-probs
    assert "rollout/logprob_gap_mean" not in plain


def test_tis_scales_each_tokens_gradient_by_the_capped_ratio():
    # on-policy (one epoch, one mini-batch): ratio 1, so the surrogate is -mean(A); the sampler gave every token
    # half the trainer's probability, so pi_trainer / pi_sampler = 2, capped at 1.5: every advantage x 1.5
    base = trainer_with_sampler(-math.log(2)).step(0)
    tis = trainer_with_sampler(-math.log(2), **{"tis_cap": 1.5}).step(0)
    assert tis["train/pg_loss"] == pytest.approx(1.5 * base["train/pg_loss"], rel=1e-4, abs=1e-7)
    assert tis["train/tis_weight_mean"] == pytest.approx(1.5) and tis["train/tis_capped_frac"] == 1.0
    under = trainer_with_sampler(math.log(2), **{"tis_cap": 1.5}).step(0)  # the sampler was more confident
    assert under["train/tis_weight_mean"] == pytest.approx(0.5, abs=1e-5) and under["train/tis_capped_frac"] == 0.0


def test_tis_cap_must_be_positive():
    from omegaconf import OmegaConf

    from agentgen.algos.registry import validate_algo_config
    from agentgen.config import load_algo_file

    algo = OmegaConf.to_container(load_algo_file("grpo"))
    with pytest.raises(ValueError, match="algo.tis_cap=0.0 is invalid"):
        validate_algo_config({**algo, "tis_cap": 0.0})
    validate_algo_config({**algo, "tis_cap": 2.0})


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_hf_sampler_logprobs_are_the_trainers(temperature):
    """rollout=hf's log-probs, recorded while generating with the KV cache, equal the trainer's full forward."""
    from agentgen.models.loader import load_policy
    from agentgen.preflight import compose_job
    from agentgen.rollout.hf import HFGenerator

    cfg = compose_job(["debug=smoke"])
    model, tok, _ = load_policy(cfg.model)
    gen = HFGenerator(model, tok, batch_size=3)
    prompts = [tok.encode(text) for text in ("#####\n#P_XO#", "Up Down Left", "<think>the box is right of")]
    torch.manual_seed(0)
    ids, lps = gen.generate_with_logprobs(prompts, 12, temperature)
    assert [len(a) for a in ids] == [len(b) for b in lps] and all(ids)
    tb = collate([Sample(p, r) for p, r in zip(prompts, ids)], tok.pad_token_id)
    with torch.no_grad():
        scored = token_logprobs(response_logits(model, tb, temperature or 1.0), tb)
    for b, (r, lp) in enumerate(zip(ids, lps)):
        assert scored[b, scored.shape[1] - len(r):].tolist() == pytest.approx(lp, abs=1e-4)
    torch.manual_seed(0)
    assert gen.generate(prompts, 12, temperature) == ids  # recording changes nothing of the sampling


def test_turns_carry_the_sampler_logprobs_to_the_trainer():
    from agentgen.trainer.rl_trainer import turn_sample

    t = Turn([1, 2], [3, 4], "x", None, 0.0, "obs", True, False, sampler_logprobs=[-0.1, -0.2])
    assert turn_sample(t).extras["sampler"].tolist() == pytest.approx([-0.1, -0.2])
    assert "sampler" not in turn_sample(Turn([1], [3], "x", None, 0.0, "obs", True, False)).extras


def test_an_empty_response_gets_one_kl_entry_with_the_samplers_logprobs_reused():
    """``kl_in: reward`` with the sampler's log-probs reused as the behaviour's: an empty response's KL has one
    entry, as its reference log-probs do (a [0] KL shifted every later KL of the episode by a token)."""
    from agentgen.trainer.rl_trainer import turn_sample

    trainer = make_trainer("grpo", group_size=2, kl_coef=0.05, kl_in="reward")
    assert trainer.sampler_exact and trainer._kl_in_reward
    turns = [Turn([5, 6, 7], [8, 9], "x", None, 0.0, "obs", True, False, sampler_logprobs=[-1.0, -2.0]),
             Turn([5, 6, 7], [], "", None, 0.0, "obs", False, False, sampler_logprobs=[]),
             Turn([5, 6], [4], "y", None, 0.0, "obs", True, False, sampler_logprobs=[-0.5])]
    samples = [turn_sample(t) for t in turns]
    trainer._score(samples, len(samples))
    for s in samples:
        assert s.extras["kl"].numel() == s.extras["ref"].numel() == s.extras["old"].numel() \
            == max(1, len(s.response_ids))


def test_the_sampler_check_sees_a_drift_the_reused_logprobs_hide():
    """Off-policy (two epochs) with the sampler's log-probs reused as the behaviour's: ``rollout/logprob_gap`` is
    0 by construction even for a broken sampler (every token's log-prob off by log 2). The periodic check
    (``trainer.check_sampler_every``, on by default) scores a few samples with the trainer and sees it."""
    broken = trainer_with_sampler(-math.log(2), ppo_epochs=2)
    assert broken.check_sampler_every > 0 and broken.sampler_exact  # on by default, and the reuse applies
    m = broken.step(0)
    assert m["rollout/logprob_gap_max"] == pytest.approx(0.0, abs=1e-6)  # blind: old = the sampler's own
    assert m["rollout/sampler_check_gap_mean"] == pytest.approx(math.log(2), abs=1e-5)
    assert m["rollout/sampler_check_gap_max"] == pytest.approx(math.log(2), abs=1e-5)
    exact = trainer_with_sampler(0.0, ppo_epochs=2).step(0)
    assert exact["rollout/sampler_check_gap_max"] < 1e-5
    assert "rollout/sampler_check_gap_mean" not in broken.step(1)  # every 10 steps, not every step
    on_policy = trainer_with_sampler(-math.log(2)).step(0)  # no reuse: the gap is measured for real already
    assert "rollout/sampler_check_gap_mean" not in on_policy
    assert on_policy["rollout/logprob_gap_mean"] == pytest.approx(math.log(2), abs=1e-5)
    off = trainer_with_sampler(-math.log(2), ppo_epochs=2)
    off.check_sampler_every = 0
    assert "rollout/sampler_check_gap_mean" not in off.step(0)
