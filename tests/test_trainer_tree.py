"""Continuing episodes from a stored prefix (Tree-GRPO's env restoration) on the real Sokoban env, with
the tiny policy model and with a seeded random policy over the admissible actions: the replay restores
the exact state and history, nothing of the prefix is generated again, the turn limit counts the
prefix, a replay that cannot be completed aborts only its own episode, and whole forests have
M * (L * N + 1) leaves per prompt with one generation per tree node."""

from __future__ import annotations

import dataclasses
import hashlib
import random

import pytest
import torch

from agentgen.agent.prompt import PromptBuilder
from agentgen.augment import env_kwargs
from agentgen.envs.pool import EnvPool
from agentgen.preflight import compose_job
from agentgen.rollout.hf import HFGenerator
from agentgen.rollout.policy import ModelPolicy
from agentgen.rollout.runner import EpisodeRunner, EpisodeSpec
from agentgen.trainer.tree_rollout import TreeRollout

torch.set_num_threads(1)  # the tiny model gains nothing from threads; other tests share the cores


@pytest.fixture(scope="module")
def cfg():
    return compose_job(["debug=smoke"])


@pytest.fixture(scope="module")
def tiny(cfg):
    from agentgen.models.loader import load_policy

    model, tokenizer, _ = load_policy(cfg.model)
    return model, tokenizer


@pytest.fixture
def pool(cfg):
    kwargs = env_kwargs(cfg.env.sokoban)
    kwargs["max_steps"] = 6
    with EnvPool("sokoban", kwargs, split="train", num_slots=4, num_workers=0) as p:
        yield p


class CountingGenerator:
    """Passes generation through to ``inner`` and records every prompt it was asked to continue."""

    def __init__(self, inner):
        self.inner = inner
        self.prompts: list[list[int]] = []

    def generate(self, prompts, max_new_tokens, temperature, top_p=1.0, top_k=0):
        self.prompts.extend(list(p) for p in prompts)
        return self.inner.generate(prompts, max_new_tokens, temperature, top_p, top_k)


class RandomAdmissiblePolicy:
    """Answers with a well-formed think/action pair for an admissible action read from the prompt.
    ``deterministic``: the action is a hash of the prompt (same state and history, same action);
    otherwise drawn from a seeded stream."""

    def __init__(self, tokenizer, deterministic: bool, seed: int = 0):
        self.tokenizer = tokenizer
        self.deterministic = deterministic
        self.rng = random.Random(seed)

    def generate(self, prompts, max_new_tokens, temperature, top_p=1.0, top_k=0):
        out = []
        for ids in prompts:
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            actions = text.split("Admissible actions: ")[-1].split("\n")[0].split(", ")
            if self.deterministic:
                pick = int(hashlib.sha256(text.encode()).hexdigest(), 16) % len(actions)
            else:
                pick = self.rng.randrange(len(actions))
            answer = f"<think>try {actions[pick]}</think><action>{actions[pick]}</action>"
            out.append(self.tokenizer.encode(answer, add_special_tokens=False) + [self.tokenizer.eos_token_id])
        return out


def make_runner(pool, generator, tokenizer, max_turns: int = 6, temperature: float = 1.0) -> EpisodeRunner:
    policy = ModelPolicy(generator, tokenizer, PromptBuilder(think=True, history_k=2), 4096, 24, temperature)
    return EpisodeRunner(pool, policy, max_turns)


def continuation(episode, depth: int, index: int = 0) -> EpisodeSpec:
    return EpisodeSpec(env="sokoban", seed=episode.spec.seed, group=episode.spec.group,
                       meta={"prefix": episode.turns[:depth], "expansion": index})


@pytest.mark.parametrize("policy", ["tiny_greedy", "random_admissible"])
def test_continuing_a_deterministic_policy_reproduces_the_chain_suffix(policy, pool, tiny):
    model, tokenizer = tiny
    inner = HFGenerator(model, tokenizer, batch_size=8) if policy == "tiny_greedy" else \
        RandomAdmissiblePolicy(tokenizer, deterministic=True)
    gen = CountingGenerator(inner)
    runner = make_runner(pool, gen, tokenizer, temperature=0.0)
    chains = runner.run([EpisodeSpec("sokoban", seed, g) for g, seed in enumerate([11, 12, 13])])
    long_chains = [e for e in chains if e.steps >= 3]
    assert long_chains, [e.steps for e in chains]
    if policy == "random_admissible":  # the state really moves, so the replay has something to restore
        assert any(not t.invalid for e in chains for t in e.turns)
    gen.prompts.clear()
    specs = [continuation(e, d, i) for i, (e, d) in enumerate((e, d) for e in long_chains for d in (1, e.steps - 1))]
    conts = runner.run(specs)
    assert len(conts) == len(specs)
    new_turns = 0
    for spec, cont in zip(specs, conts):
        chain = next(e for e in long_chains if e.spec.seed == spec.seed)
        depth = len(spec.meta["prefix"])
        assert cont.prefix_steps == depth and cont.replay_mismatches == 0 and not cont.aborted
        suffix = chain.turns[depth:]
        # same state, same history in the prompt, same (deterministic) answers, same rewards
        assert [t.prompt_ids for t in cont.turns] == [t.prompt_ids for t in suffix]
        assert [t.response_ids for t in cont.turns] == [t.response_ids for t in suffix]
        assert [t.reward for t in cont.turns] == [t.reward for t in suffix]
        assert (cont.success, cont.truncated) == (chain.success, chain.truncated)
        new_turns += cont.steps
    # nothing of the prefixes was generated again, and their env steps were replayed instead
    assert len(gen.prompts) == new_turns
    assert runner.num_replayed_steps == sum(len(s.meta["prefix"]) for s in specs)


def test_turn_limit_counts_the_replayed_prefix(pool, tiny):
    _, tokenizer = tiny
    runner = make_runner(pool, RandomAdmissiblePolicy(tokenizer, deterministic=False, seed=3), tokenizer, max_turns=6)
    chains = [e for e in runner.run([EpisodeSpec("sokoban", s, s) for s in range(20, 28)]) if e.steps >= 4]
    assert chains
    runner.max_turns = 4
    conts = runner.run([continuation(e, 3, i) for i, e in enumerate(chains)])
    for c in conts:
        assert c.prefix_steps == 3 and c.steps == 1  # one new step fits under the limit of 4
        assert c.success or c.truncated


def test_a_replay_that_cannot_restore_the_prefix_aborts_only_its_own_continuation(pool, tiny):
    _, tokenizer = tiny
    runner = make_runner(pool, RandomAdmissiblePolicy(tokenizer, deterministic=False, seed=5), tokenizer, max_turns=6)
    chains = runner.run([EpisodeSpec("sokoban", s, s) for s in range(40, 52)])
    finished = next(e for e in chains if e.success or e.steps == 6)  # success or the env's step limit
    ok = next(e for e in chains if e.steps >= 3 and e is not finished)
    ended = continuation(finished, finished.steps, 0)  # the whole episode: nothing left to continue
    elsewhere = dataclasses.replace(continuation(ok, 2, 1), seed=ok.spec.seed + 1000)  # another puzzle
    conts = runner.run([ended, elsewhere, continuation(ok, 1, 2)])
    by_index = {c.spec.meta["expansion"]: c for c in conts}
    assert by_index[0].aborted and by_index[0].turns == [] and by_index[0].final_info["replay_done_early"]
    assert by_index[1].aborted and by_index[1].turns == [] and by_index[1].replay_mismatches == 1
    assert by_index[1].final_info["replay_mismatch"] and runner.num_replay_mismatches == 1
    assert not by_index[2].aborted and by_index[2].steps >= 1


@pytest.mark.parametrize("M,N,L", [(2, 2, 1), (2, 1, 3)])
def test_forest_on_sokoban_has_M_LN_plus_1_leaves_and_one_generation_per_node(M, N, L, pool, tiny):
    _, tokenizer = tiny
    gen = CountingGenerator(RandomAdmissiblePolicy(tokenizer, deterministic=False, seed=M * 10 + L))
    runner = make_runner(pool, gen, tokenizer)

    def rollout(specs, step):
        return runner.run([dataclasses.replace(s, env="sokoban") for s in specs])

    forest = TreeRollout(M, N, L, rollout, run_seed=0).build(seeds=[101, 102, 103], step=0)
    for _, search in forest.live():
        assert len(search.leaves()) == M * (L * N + 1)
        for leaf in search.leaves():  # every leaf ends an episode: success or a turn limit
            assert leaf.done and (leaf.data["success"] or leaf.depth == 6)
    nodes = [n for _, s in forest.live() for n in s.step_nodes()]
    assert len(forest.live()) == 3 and forest.aborted_chains == forest.aborted_expansions == 0
    assert len(gen.prompts) == len(nodes)  # one generation per tree node: shared prefixes are not regenerated
    assert forest.replay_mismatches == 0
    replayed = sum(s.replayed_env_steps for _, s in forest.live())
    assert runner.num_replayed_steps == replayed
    m = forest.metrics("per_leaf")
    assert m["rollout/generated_tokens"] == sum(n.generated_tokens for n in nodes)
    assert m["tree/leaves_per_prompt"] == M * (L * N + 1)
