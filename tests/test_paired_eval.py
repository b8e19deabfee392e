"""Paired evaluation (``eval.paired``): each held-out episode's sampling is seeded by the run's seed and the
episode, not by the call or the global RNG. So an unchanged model gets exactly the same evaluation every time,
an episode draws the same whatever shares its batch (which is what pairs two checkpoints' evaluations), and the
seeded draws still follow the model's distribution."""

from __future__ import annotations

import pytest
import torch

from agentgen.errors import ConfigError
from agentgen.models.loader import load_policy
from agentgen.phases.evaluate import episode_specs, evaluate
from agentgen.preflight import compose_job, validate
from agentgen.rollout import make_generator
from agentgen.rollout.hf import HFGenerator
from agentgen.tracking import Tracker
from agentgen.workspace import Workspace

OVERRIDES = ["debug=smoke", "env=sokoban", "eval.envs=[sokoban]", "eval.temperature=1.0", "logger=none",
             "eval.episodes_per_env.sokoban=3", "debug.max_steps=2"]


def wide_weights(model):
    """Weights drawn wide (std 0.2): a freshly initialised tiny model repeats one token, which would make every
    draw alike whatever its seed."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    cfg = compose_job(OVERRIDES)
    out = tmp_path_factory.mktemp("paired")
    job = Workspace(cfg, out)
    model, tok, _ = load_policy(cfg.model)
    job.model, job.tokenizer = wide_weights(model), tok
    job.generator = make_generator(cfg.rollout, job.model, tok)
    job.tracker = Tracker(cfg.logger, out, {}, name="paired", tags=[])
    yield job
    job.close()


def play(ws, seeds: list[int], slots: int) -> dict[tuple[int, int], list[list[int]]]:
    """Evaluation's episodes of ``seeds`` (evaluate's own specs and runner) with ``slots`` played at once:
    (instance seed, repeat) -> each turn's sampled tokens."""
    runner = ws.runner("sokoban", "test", slots, temperature=ws.cfg.eval.temperature)
    eps = runner.run(episode_specs("sokoban", seeds, int(ws.cfg.seed)))
    seen: dict[int, int] = {}
    out = {}
    for e in eps:
        k = seen[e.spec.seed] = seen.get(e.spec.seed, -1) + 1
        out[(e.spec.seed, k)] = [t.response_ids for t in e.turns]
    return out


def test_an_unchanged_model_is_evaluated_the_same_every_time(ws):
    torch.manual_seed(0)
    first = play(ws, [3, 4, 5], 3)
    torch.manual_seed(1)  # the global RNG moved on (RL steps, other evaluations): no effect
    assert play(ws, [3, 4, 5], 3) == first
    assert len({tuple(map(tuple, turns)) for turns in first.values()}) == 3  # the episodes do differ
    evaluate(ws, 0)
    records = (ws.out / "eval_episodes/sokoban/step_0.jsonl").read_text()
    torch.manual_seed(2)
    evaluate(ws, 0)
    assert (ws.out / "eval_episodes/sokoban/step_0.jsonl").read_text() == records
    assert ws.eval_history[0] == ws.eval_history[1]


def test_an_episode_draws_the_same_whatever_shares_its_batch_or_their_order(ws):
    alone = play(ws, [7], 1)
    crowded = play(ws, [3, 4, 7, 5, 6], 5)
    reordered = play(ws, [6, 7, 3], 2)
    assert crowded[(7, 0)] == reordered[(7, 0)] == alone[(7, 0)]
    assert crowded[(3, 0)] == reordered[(3, 0)] and crowded[(6, 0)] == reordered[(6, 0)]
    # a repeat of an instance (eval.episodes beyond the test split) draws numbers of its own
    twice = play(ws, [7, 7], 2)
    assert twice[(7, 0)] == alone[(7, 0)] and twice[(7, 1)] != twice[(7, 0)]


@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_seeded_rows_sample_the_models_distribution(ws, top_p):
    """One prompt, 4000 rows of their own seeds, one token each: every token's frequency is within 4.5 standard
    errors of its probability under the model (after top-p), and one seed always draws the same token."""
    gen = HFGenerator(ws.model, ws.tokenizer, batch_size=1000)
    gen.eos_ids, gen.stop_strings = [], []
    prompt = list(ws.tokenizer.apply_chat_template([{"role": "user", "content": "Push the box onto the target."}],
                                                   add_generation_prompt=True, tokenize=True, return_dict=False))
    n = 4000
    drawn = [r[0] for r in gen.generate([prompt] * n, 1, 1.0, top_p=top_p, seeds=list(range(n)))]
    assert gen.generate([prompt] * 3, 1, 1.0, top_p=top_p, seeds=[5, 5, 5]) == [[drawn[5]]] * 3
    with torch.no_grad():
        logits = ws.model(torch.tensor([prompt])).logits[0, -1].float()
    if top_p < 1:
        from agentgen.rollout.hf import truncate

        logits = truncate(logits[None], top_p, 0)[0]
    probs = torch.softmax(logits, -1).double()
    counts = torch.bincount(torch.tensor(drawn), minlength=probs.numel()).double()
    assert counts[probs == 0].sum() == 0
    common = probs * n >= 10
    assert common.sum() >= 5  # a spread distribution, not one token
    z = (counts - n * probs) / (n * probs * (1 - probs)).sqrt()
    assert z[common].abs().max() <= 4.5, z[common].abs().max()


def test_generate_decoder_cannot_pair_and_says_so():
    cfg = compose_job(["debug=smoke", "rollout.params.decode=generate"])
    with pytest.raises(ConfigError, match=r"decode=generate cannot seed.*decode=loop.*eval.paired=false"):
        validate(cfg)
    validate(compose_job(["debug=smoke", "rollout.params.decode=generate", "eval.paired=false"]))
    validate(compose_job(["debug=smoke", "rollout.params.decode=generate", "eval.temperature=0"]))  # greedy: no draws


def test_generate_decoder_refuses_row_seeds(ws):
    gen = HFGenerator(ws.model, ws.tokenizer, decode="generate")
    with pytest.raises(ValueError, match="decode=generate cannot seed"):
        gen.generate([[1, 2, 3]], 2, 1.0, seeds=[0])
