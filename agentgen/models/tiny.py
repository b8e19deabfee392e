"""The tiny local model: a small Llama-architecture causal LM with a byte-level BPE tokenizer trained on
agentgen's own prompts, built deterministically with no download and cached after the first build.

It exists so that the whole pipeline (SFT, RL, evaluation, ZeRO, vLLM) runs for real on a CPU. Head
dimension 64, because vLLM's CPU attention kernels reject smaller heads.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any, Iterator

from agentgen.agent.parser import format_response
from agentgen.agent.prompt import PromptBuilder
from agentgen.envs import make

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
# Whole tokens for the answer format, so a tiny model emits each tag in one step.
FORMAT_TOKENS = ["<think>", "</think>", "<action>", "</action>"]
# One character of a grid-rendered room (a line of only these characters): a token of its own, so the
# model sees the room cell by cell (a whole row merged into one token hides where the box is).
GRID_CELL = r"[#_OX\u221aPS](?=[#_OX\u221aPS]*(?:\n|$))"
PACKAGE = Path(__file__).resolve().parents[1]  # agentgen/
# The code a build runs: this module (tokenizer, architecture) and what writes its corpus (the agent's prompts
# and answer format, the environments). The libraries that train the tokenizer and initialise the weights too.
BUILDER_SOURCES = ("models/tiny.py", "agent", "envs")
BUILDER_LIBRARIES = ("tokenizers", "transformers", "torch")


def builder_files() -> list[Path]:
    """The source files of ``BUILDER_SOURCES`` (a file, or every .py file under a package), sorted."""
    files: list[Path] = []
    for rel in BUILDER_SOURCES:
        path = PACKAGE / rel
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def builder_hash() -> str:
    """A hash of the builder's source files and library versions: a cached model built by other code is
    never reused (a stale model fails in ways that look like training bugs)."""
    from importlib.metadata import PackageNotFoundError, version

    h = hashlib.sha256()
    for path in builder_files():
        h.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for lib in BUILDER_LIBRARIES:
        try:
            h.update(f"{lib}=={version(lib)}\0".encode())
        except PackageNotFoundError:
            h.update(f"{lib} missing\0".encode())
    return h.hexdigest()


def build_key(params: dict[str, Any]) -> str:
    """The cache key of a build: its params and ``builder_hash()``."""
    blob = json.dumps({"builder": builder_hash(), **params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def corpus(num_episodes: int = 300, seed: int = 0) -> Iterator[str]:
    """Text the tokenizer learns from: real agent prompts and expert answers on Sokoban (both renderings, the
    compact prompt, thinking on and off) and the other environments' instructions where their engines are installed.
    Byte-level fallback keeps any other text encodable."""

    rng = random.Random(seed)
    for render, style, thought in (("coords", "full", "plan"), ("grid", "full", "plan"), ("grid", "short", "plan"),
                                   ("grid", "short", "steps")):
        env = make("sokoban", split="train", max_steps=15, render=render, instruction=style, thought=thought)
        for think in (True, False):
            builder = PromptBuilder(think=think, history_k=2, compact=style == "short")
            for _ in range(num_episodes // 4):
                obs, info = env.reset(rng.randrange(10**6))
                history: list[tuple[str, str]] = []
                done = False
                while not done:
                    yield builder.user_message(env.instruction(), info["task"], history, obs,
                                               info["admissible_actions"])
                    action = env.expert_action() or "Up"
                    yield format_response(action, env.expert_thought(), think)
                    history.append((obs, action))
                    obs, _, done, info = env.step(action)


def build_tokenizer(vocab_size: int, seed: int = 0):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    # A coordinate pair "(r, c)" is one unit, a grid cell is one token and punctuation splits text; within a
    # piece, merges may cross spaces, so frequent phrases ("Wall at ") become one token but layouts never do.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GRID_CELL + r"|\(\d+, \d+\)|[\n,.:;!?()<>\[\]\"]"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(seed=seed), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in FORMAT_TOKENS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<pad>", unk_token=None)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build(params: dict[str, Any], out_dir: Path) -> None:
    """Build tokenizer and randomly initialised model from ``params`` into ``out_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(int(params["vocab_size"]), seed=int(params.get("init_seed", 0)))
    heads = int(params["num_attention_heads"])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=int(params["hidden_size"]),
        intermediate_size=int(params["intermediate_size"]),
        num_hidden_layers=int(params["num_hidden_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=int(params.get("num_key_value_heads", heads)),
        head_dim=int(params["hidden_size"]) // heads,
        max_position_embeddings=int(params["max_position_embeddings"]),
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(int(params.get("init_seed", 0)))
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("</action>")]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
