"""The agent's prompt: the study's full prompt and the compact one of the CPU presets carry the same state,
and the compact one is much shorter in the tiny model's tokens; the tiny tokenizer sees a grid cell by cell."""

import pytest
from omegaconf import OmegaConf

from agentgen.agent.prompt import PromptBuilder
from agentgen.envs.sokoban.env import SokobanEnv
from agentgen.preflight import compose_job


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from agentgen.models.tiny import build_tokenizer

    return build_tokenizer(2048)


def turn(builder: PromptBuilder, env: SokobanEnv, history: list[tuple[str, str]]) -> list[dict[str, str]]:
    obs = env.render()
    user = builder.user_message(env.instruction(), env.task_description(), history, obs,
                                env.admissible_actions())
    return builder.messages(user)


def test_compact_prompt_keeps_the_state_and_drops_the_frame():
    env = SokobanEnv(split="test", render="grid", instruction="short")
    first, _ = env.reset(3)
    env.step("Up")
    msgs = turn(PromptBuilder(think=True, history_k=1, compact=True), env, [(first, "Up")])
    assert [m["role"] for m in msgs] == ["user"]  # no system message
    text = msgs[0]["content"]
    assert text.splitlines()[0].startswith("Sokoban: push the box X onto the target O.")
    assert f"{first}\nAction: Up" in text and env.render() in text  # history and the current state
    assert text.endswith("Actions: Up, Down, Left, Right\nAnswer: <think>...</think><action>...</action>")
    assert "[Current observation" not in text and "Your task" not in text
    no_think = PromptBuilder(think=False, history_k=0, compact=True)
    assert turn(no_think, env, [])[0]["content"].endswith("Answer: <action>...</action>")
    # An explicit system prompt is still honoured.
    assert turn(PromptBuilder(think=True, compact=True, system_prompt="Be brief."), env, [])[0]["role"] == "system"


def test_compact_prompt_is_under_a_third_of_the_tokens_of_the_full_one(tiny_tokenizer):
    """The tiny preset's prompt (grid, short rules, compact frame, no history) against the study's
    (coords, full rules and frame, history 1), in the tiny model's own tokens."""
    tok = tiny_tokenizer

    def tokens(builder, env, history):
        return len(tok.apply_chat_template(turn(builder, env, history), add_generation_prompt=True,
                                           tokenize=True, return_dict=False))

    full_env, tiny_env = SokobanEnv(split="test"), SokobanEnv(split="test", render="grid", instruction="short")
    full = [tokens(PromptBuilder(think=True, history_k=1), full_env, [(full_env.reset(s)[0], "Up")])
            for s in range(8)]
    compact = [tokens(PromptBuilder(think=True, history_k=0, compact=True), tiny_env, [])
               for s in range(8) if tiny_env.reset(s)]
    assert max(compact) * 3 < min(full), (compact, full)


def test_tiny_tokenizer_keeps_grid_cells_apart(tiny_tokenizer):
    """A grid row is six tokens, one per cell (a merged row would hide where the box is), while words that
    contain the grid's letters are tokenized as before."""
    tok = tiny_tokenizer
    env = SokobanEnv(split="test", render="grid")
    grid, _ = env.reset(3)
    pieces = tok.tokenize(grid)
    assert [tok.convert_tokens_to_string([p]) for p in pieces if p != "Ċ"] == [c for c in grid if c != "\n"]
    assert len(tok.tokenize("Push the box onto the target.")) < len("Push the box onto the target.") // 2


def test_prompt_style_is_validated_and_chosen_by_the_preset():
    tiny, small = compose_job(["model=tiny"]), compose_job(["model=smollm2_135m"])
    assert PromptBuilder.from_config(tiny.agent, tiny.think).compact
    assert not PromptBuilder.from_config(small.agent, small.think).compact
    bad = OmegaConf.create({"history_k": 1, "system_prompt": None, "prompt": "short"})
    with pytest.raises(ValueError, match="agent.prompt='short' is invalid; valid: full, compact"):
        PromptBuilder.from_config(bad, True)


def test_short_instruction_is_one_line_per_rendering():
    for render in ("coords", "grid"):
        env = SokobanEnv(render=render, instruction="short")
        env.reset(0)
        assert "\n" not in env.instruction() and len(env.instruction()) < 140
    with pytest.raises(ValueError, match="unknown instruction 'brief'; valid: full, short"):
        SokobanEnv(instruction="brief")
