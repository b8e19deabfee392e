"""The one episode loop (agentgen.rollout.runner) and its policies: the expert's SFT records are prompted
exactly as the model is prompted on the same states, the random policy does not depend on batching, and the
agent's memory decides which past turns a prompt shows."""

import time

import pytest

from agentgen.agent.memory import FullHistory, LastK, make_memory
from agentgen.agent.prompt import PromptBuilder
from agentgen.augment import env_kwargs
from agentgen.data import expert
from agentgen.envs.pool import EnvPool
from agentgen.preflight import compose_job
from agentgen.rollout.policy import ExpertPolicy, ModelPolicy, RandomPolicy
from agentgen.rollout.runner import Decision, EpisodeRunner, EpisodeSpec

SEEDS = [3, 4, 5, 6, 7]


@pytest.fixture(scope="module")
def cfg():
    return compose_job(["debug=smoke"])


@pytest.fixture
def pool(cfg):
    with EnvPool("sokoban", env_kwargs(cfg.env.sokoban), split="train", num_slots=3, num_workers=0) as p:
        yield p


class Recording:
    """The expert's actions, while noting the token ids the model policy would have been prompted with."""

    def __init__(self, pool, prompts, tokenizer):
        self.expert = ExpertPolicy(pool, prompts)
        self.model = ModelPolicy(None, tokenizer, prompts, 4096, 64)
        self.prompt_ids: dict[tuple[int, int], list[int]] = {}

    def act(self, states):
        for st in states:
            self.prompt_ids[(st.episode.spec.seed, len(st.episode.turns))] = self.model.encode_prompt(st)[0]
        return self.expert.act(states)


@pytest.mark.parametrize("history_k,compact", [(2, False), (0, True)])
def test_sft_records_are_prompted_as_the_model_is(pool, cfg, history_k, compact):
    from agentgen.models.loader import load_policy

    _, tokenizer, _ = load_policy(cfg.model)
    prompts = PromptBuilder(think=True, history_k=history_k, compact=compact)
    records = expert.collect(pool, "sokoban", SEEDS, prompts, max_turns=8)
    recorder = Recording(pool, prompts, tokenizer)
    EpisodeRunner(pool, recorder, 8).run([EpisodeSpec("sokoban", s) for s in SEEDS])
    assert len(records) == len(recorder.prompt_ids) > len(SEEDS)  # several turns per episode
    for r in records:
        ids = tokenizer.apply_chat_template(r["messages"][:-1], add_generation_prompt=True, tokenize=True,
                                            return_dict=False)
        assert list(ids) == recorder.prompt_ids[(r["seed"], r["step"])], (r["seed"], r["step"])
    assert [r["seed"] for r in records] == sorted(r["seed"] for r in records)  # in the order of the seeds


def test_random_policy_does_not_depend_on_batching(cfg):
    prompts = PromptBuilder(think=False, history_k=1)
    runs = []
    for slots in (1, 4):
        with EnvPool("sokoban", env_kwargs(cfg.env.sokoban), split="train", num_slots=slots, num_workers=0) as p:
            eps = EpisodeRunner(p, RandomPolicy(p, prompts, seed=9), 6).run([EpisodeSpec("sokoban", s) for s in SEEDS])
            runs.append([[t.action for t in e.turns] for e in eps])
    assert runs[0] == runs[1]
    assert len({tuple(a) for a in runs[0]}) > 1


def test_an_expert_without_a_plan_ends_its_episode_failed(pool):
    class NoPlan(ExpertPolicy):
        def act(self, states):
            return [None if st.episode.spec.seed == 4 else d for st, d in zip(states, super().act(states))]

    eps = EpisodeRunner(pool, NoPlan(pool, PromptBuilder(think=True)), 8).run([EpisodeSpec("sokoban", s)
                                                                              for s in SEEDS])
    by_seed = {e.spec.seed: e for e in eps}
    assert by_seed[4].steps == 0 and not by_seed[4].success
    assert all(by_seed[s].steps > 0 for s in SEEDS if s != 4)


def test_memory_decides_the_past_turns_shown():
    history = [(f"obs {i}", f"act {i}") for i in range(5)]
    assert LastK(2).recall(history) == history[-2:]
    assert LastK(0).recall(history) == []
    assert LastK(3).recall(history, limit=1) == history[-1:]
    assert FullHistory().recall(history) == history
    assert FullHistory().recall(history, limit=2) == history[-2:]
    full = PromptBuilder(think=False, history_k=1, memory_name="full").user_message("rules", "", history, "now", None)
    assert all(f"act {i}" in full for i in range(5))
    last = PromptBuilder(think=False, history_k=1).user_message("rules", "", history, "now", None)
    assert "act 4" in last and "act 3" not in last
    with pytest.raises(ValueError, match="agent.memory='episodic' is invalid; valid: last_k, full"):
        make_memory("episodic", 2)


def test_model_policy_drops_the_oldest_turns_to_fit_its_budget(cfg):
    from agentgen.episode import Episode
    from agentgen.models.loader import load_policy
    from agentgen.rollout.runner import AgentState

    _, tokenizer, _ = load_policy(cfg.model)
    history = [("#" * 40 + f"\nobs {i}", f"Up {i}") for i in range(6)]
    st = AgentState(0, Episode(EpisodeSpec("sokoban", 1), task=""), "rules", "now", None, history)
    roomy = ModelPolicy(None, tokenizer, PromptBuilder(think=False, memory_name="full"), 100_000, 8)
    ids, user = roomy.encode_prompt(st)
    tight = ModelPolicy(None, tokenizer, PromptBuilder(think=False, memory_name="full"), len(ids) - 20, 8)
    tight_ids, tight_user = tight.encode_prompt(st)
    assert len(tight_ids) <= len(ids) - 20 and tight.num_prompt_truncations == 0
    assert tight_user == user  # the message recorded is the memory's whole view (before the budget)
    assert "Up 0" in tokenizer.decode(ids) and "Up 0" not in tokenizer.decode(tight_ids)


class SteppedWhileActing:
    """A deterministic policy (each action from the episode's seed and turn) that notes, through a wrapped pool,
    whether each env step, and each reset of new episodes, ran while it was acting for other slots
    (``rollout.env_overlap``): their time spans against the spans of its acts."""

    MOVES = ("up", "down", "left", "right")

    def __init__(self, pool):
        self.acts: list[tuple[float, float]] = []
        self.steps: list[tuple[float, float]] = []
        self.resets: list[tuple[float, float]] = []
        step, reset = pool.step, pool.reset

        def watched(call, spans):
            def run(arg):
                t0 = time.perf_counter()
                out = call(arg)
                time.sleep(0.05)  # a slow engine: room for the other wave to act meanwhile
                spans.append((t0, time.perf_counter()))
                return out
            return run
        pool.step, pool.reset = watched(step, self.steps), watched(reset, self.resets)

    def overlapped(self, spans: list[tuple[float, float]]) -> int:
        """How many of ``spans`` ran while the policy was acting."""
        return sum(any(a0 < e and s < a1 for a0, a1 in self.acts) for s, e in spans)

    def act(self, states):
        t0 = time.perf_counter()
        time.sleep(0.02)
        # episodes give up after 3-6 turns (a None decision ends one), so they end out of step and free slots
        # while other episodes still play
        out = [None if len(st.episode.turns) >= 3 + st.episode.spec.seed % 4 else
               Decision(m, m) for st, m in ((st, self.MOVES[(st.episode.spec.seed * 7 + len(st.episode.turns)) % 4])
                                            for st in states)]
        self.acts.append((t0, time.perf_counter()))
        return out


def test_env_overlap_plays_the_same_episodes_while_one_wave_steps_behind_the_others_act(cfg):
    played, overlapped, hidden, resets_hidden = {}, {}, {}, {}
    for overlap in (False, True):
        with EnvPool("sokoban", env_kwargs(cfg.env.sokoban), split="train", num_slots=4, num_workers=0) as p:
            policy = SteppedWhileActing(p)
            runner = EpisodeRunner(p, policy, 6, overlap=overlap)
            eps = runner.run([EpisodeSpec("sokoban", s, group=s) for s in range(10)])  # more episodes than slots
            played[overlap] = [(e.spec.seed, [t.action for t in e.turns], [t.reward for t in e.turns], e.success,
                                e.truncated) for e in eps]
            overlapped[overlap] = policy.overlapped(policy.steps)
            resets_hidden[overlap] = policy.overlapped(policy.resets)
            hidden[overlap] = runner.seconds["env_hidden"]
    assert played[True] == played[False]  # the same episodes, turn for turn, in the specs' order
    assert [seed for seed, *_ in played[True]] == list(range(10))
    assert overlapped[False] == 0 and hidden[False] == 0.0
    assert overlapped[True] > 0 and hidden[True] > 0.0
    # the 6 episodes after the first 4 start in freed slots: their resets ran behind the policy's acting
    assert resets_hidden[False] == 0 and resets_hidden[True] > 0
