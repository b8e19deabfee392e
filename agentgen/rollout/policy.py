"""The policies the episode runner drives (``agentgen.rollout.runner.Policy``).

- ``ModelPolicy``: the LLM; builds each prompt (the agent's memory, trimmed to the token budget), generates all
  of a turn's answers as one batch through the rollout engine (``rollout=hf`` or ``vllm``) and parses them;
- ``ExpertPolicy``: the env's scripted expert (``expert_action`` / ``expert_thought``), answering in the format
  the model is trained to give (the SFT data);
- ``RandomPolicy``: a uniformly random admissible action (profiling's baseline).
Every one of them sees the same ``AgentState`` and the scripted ones record the same user message the model
would have been prompted with, so SFT data, rollouts, evaluation and profiles cannot drift apart."""

from __future__ import annotations

import random
import time

from agentgen.agent.parser import format_response, parse_response
from agentgen.agent.prompt import PromptBuilder
from agentgen.episode import turn_seed
from agentgen.rollout.runner import AgentState, Decision

QUERY_TEMPLATE = "<your query>"  # the slot in WebShop's search template (agentgen.envs.webshop.SEARCH_TEMPLATE)


def user_message(prompts: PromptBuilder, st: AgentState, limit: int | None = None) -> str:
    return prompts.user_message(st.instruction, st.episode.task, st.history, st.observation, st.admissible,
                                limit=limit)


class ModelPolicy:
    """The model, sampling with the job's settings (temperature, top-p, top-k) through ``generator``."""

    def __init__(self, generator, tokenizer, prompts: PromptBuilder, max_prompt_tokens: int,
                 max_response_tokens: int, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0):
        self.generator = generator
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.max_prompt_tokens = max_prompt_tokens
        self.max_response_tokens = max_response_tokens
        self.sampling = (temperature, top_p, top_k)
        self.num_prompt_truncations = 0
        self.generate_seconds = 0.0  # in the rollout engine (the rest of act is prompts and parsing)
        self.prompt_tokens = self.generated_tokens = 0
        self.num_aborted_generations = 0  # answers abandoned (time limit, non-finite logits): their episodes abort

    def encode_prompt(self, st: AgentState) -> tuple[list[int], str]:
        """(token ids, the user message with the memory's full history): the chat-templated prompt, dropping
        history, oldest first, until it fits the token budget."""
        limit, first = None, None
        while True:
            user = user_message(self.prompts, st, limit)
            first = user if first is None else first
            ids = self.tokenizer.apply_chat_template(self.prompts.messages(user), add_generation_prompt=True,
                                                     tokenize=True, return_dict=False)
            if hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
            ids = list(ids)
            shown = len(self.prompts.memory.recall(st.history, limit))
            if len(ids) <= self.max_prompt_tokens or shown == 0:
                break
            limit = shown - 1
        if len(ids) > self.max_prompt_tokens:  # last resort: keep the end (observation and format rules)
            self.num_prompt_truncations += 1
            ids = ids[-self.max_prompt_tokens:]
        return ids, first

    def act(self, states: list[AgentState]) -> list[Decision]:
        encoded = [self.encode_prompt(st) for st in states]
        prompts = [ids for ids, _ in encoded]
        seeds = [turn_seed(st.episode.spec, st.episode.prefix_steps + len(st.episode.turns)) for st in states]
        # paired episodes (evaluation): each row's draws fixed by its episode and turn, whatever its batch
        seeded = {"seeds": seeds} if seeds and all(s is not None for s in seeds) else {}
        t0 = time.perf_counter()
        if hasattr(self.generator, "generate_with_logprobs"):  # the sampler's own log-probs (rollout/logprob_gap)
            responses, logprobs = self.generator.generate_with_logprobs(prompts, self.max_response_tokens,
                                                                        *self.sampling, **seeded)
        else:
            responses = self.generator.generate(prompts, self.max_response_tokens, *self.sampling, **seeded)
            logprobs = [None] * len(responses)
        self.generate_seconds += time.perf_counter() - t0
        version = getattr(self.generator, "weight_version", None)  # read after the call: a partial rollout's
        # generator may take newer weights as the call starts (agentgen.rollout.ahead)
        self.prompt_tokens += sum(len(p) for p in prompts)
        self.generated_tokens += sum(len(r) for r in responses if r is not None)
        out = []
        for (pids, user), rids, lps in zip(encoded, responses, logprobs):
            if rids is None:  # the engine abandoned this generation (rollout.generation_timeout)
                self.num_aborted_generations += 1
                reason = getattr(self.generator, "last_abort_reason", None) or "the generation was abandoned"
                out.append(Decision("", None, False, user, pids, aborted=reason, weight_version=version))
                continue
            text = self.tokenizer.decode(rids, skip_special_tokens=True)
            parsed = parse_response(text, self.prompts.think)
            out.append(Decision(text, parsed.action, parsed.format_ok, user, pids, list(rids),
                                len(rids) >= self.max_response_tokens, lps, weight_version=version))
        return out


class ExpertPolicy:
    """The env's expert through the pool; its answer is the training target (thought and action, in the format
    the prompt asks for)."""

    def __init__(self, pool, prompts: PromptBuilder):
        self.pool = pool
        self.prompts = prompts

    def act(self, states: list[AgentState]) -> list[Decision | None]:
        slots = [st.slot for st in states]
        actions = self.pool.expert_actions(slots)
        thoughts = self.pool.expert_thoughts(slots) if self.prompts.think else {}
        return [None if actions[st.slot] is None else
                Decision(format_response(actions[st.slot], thoughts.get(st.slot), self.prompts.think),
                         actions[st.slot], user=user_message(self.prompts, st)) for st in states]


class RandomPolicy:
    """A uniformly random admissible action, from a generator seeded per episode (reproducible whatever the
    batching); envs that list no admissible actions are asked for ``valid_actions()``."""

    def __init__(self, pool, prompts: PromptBuilder, seed: int = 0, can_list_valid: bool = True):
        self.pool = pool
        self.prompts = prompts
        self.seed = seed
        self.can_list_valid = can_list_valid
        self._rngs: dict[int, random.Random] = {}

    def act(self, states: list[AgentState]) -> list[Decision | None]:
        need = [st.slot for st in states if st.admissible is None]
        if need and not self.can_list_valid:
            raise ValueError(f"{self.pool.env_name}: the random policy needs admissible actions and this env lists "
                             "none (nor valid_actions())")
        listed = self.pool.call(need, "valid_actions") if need else {}
        out: list[Decision | None] = []
        for st in states:
            rng = self._rngs.get(id(st.episode))
            if rng is None:  # the episode's first turn
                rng = self._rngs[id(st.episode)] = random.Random(self.seed * 1_000_003 + st.episode.spec.seed)
            options = st.admissible or listed.get(st.slot) or []
            if not options:
                out.append(None)
                continue
            action = fill_query(rng.choice(options), st.episode.task, rng)
            out.append(Decision(action, action, user=user_message(self.prompts, st)))
        return out


def fill_query(action: str, task: str, rng: random.Random) -> str:
    """A random policy's query for WebShop's search template: 2-6 words of the task, in order."""
    if QUERY_TEMPLATE not in action:
        return action
    words = [w.strip(",.:;") for w in task.split() if w.strip(",.:;")] or ["item"]
    k = min(len(words), rng.randint(2, 6))
    start = rng.randrange(len(words) - k + 1)
    return action.replace(QUERY_TEMPLATE, " ".join(words[start : start + k]))
