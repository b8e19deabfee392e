"""Builds the agent's prompt for one turn (papers.md A): the env's instruction, the task, the last k
observation/action pairs, the current observation and the admissible actions, as one user message
rendered through the model's chat template. Every turn is a fresh prompt (stepwise training, as in
verl-agent), so each (prompt, response) pair is one training sample.

``compact`` (``agent.prompt=compact``, the CPU presets) keeps the same content without the frame: no system
message, no section headers, a one-line answer format. The study's prompt stays the default: on a cluster
the frame is cheap, on 2 cores every prompt token is paid for in every rollout and update."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentgen.agent.memory import Memory, make_memory

DEFAULT_SYSTEM = "You are an agent acting in a text-based environment. Reach the goal in as few steps as you can."
FORMAT_THINK = ("First think step by step inside <think> </think>, then give exactly one action inside "
                "<action> </action>, e.g. <think>...</think><action>...</action>")
FORMAT_NO_THINK = ("Give exactly one action inside <action> </action> and nothing else, e.g. "
                   "<action>...</action>")
COMPACT_FORMAT_THINK = "Answer: <think>...</think><action>...</action>"
COMPACT_FORMAT_NO_THINK = "Answer: <action>...</action>"
PROMPT_STYLES = ("full", "compact")


@dataclass
class PromptBuilder:
    think: bool
    history_k: int = 2
    system_prompt: str | None = None
    compact: bool = False
    memory_name: str = "last_k"  # agent.memory: which past turns the prompt shows (agentgen.agent.memory)
    memory: Memory = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.memory = make_memory(self.memory_name, self.history_k)

    @classmethod
    def from_config(cls, agent: Any, think: bool) -> PromptBuilder:
        """The job's prompt builder from its own settings: the ``agent`` group (history_k, system_prompt, prompt,
        memory) and ``think``, not the whole job config."""
        style = str(agent.get("prompt", "full"))
        if style not in PROMPT_STYLES:
            raise ValueError(f"agent.prompt={style!r} is invalid; valid: {', '.join(PROMPT_STYLES)}")
        return cls(think=bool(think), history_k=int(agent.history_k), system_prompt=agent.system_prompt,
                   compact=style == "compact", memory_name=str(agent.get("memory", "last_k")))

    def user_message(self, instruction: str, task: str, history: list[tuple[str, str]], observation: str,
                     admissible: list[str] | None, limit: int | None = None) -> str:
        """The turn's user message; ``limit`` caps the past turns shown (the model policy's token budget)."""
        recent = self.memory.recall(history, limit)
        if self.compact:
            return self._compact_message(instruction, task, recent, observation, admissible)
        parts = []
        if instruction:
            parts.append(instruction.strip())
        if task:
            parts.append(f"Your task: {task.strip()}")
        if recent:
            start = len(history) - len(recent) + 1
            lines = [f"Previous steps (last {len(recent)}):"]
            for i, (obs, act) in enumerate(recent, start):
                lines.append(f"[Step {i} observation]\n{obs.strip()}\n[Step {i} action] {act}")
            parts.append("\n".join(lines))
        parts.append(f"[Current observation, step {len(history) + 1}]\n{observation.strip()}")
        if admissible:
            parts.append("Admissible actions: " + ", ".join(admissible))
        parts.append(FORMAT_THINK if self.think else FORMAT_NO_THINK)
        return "\n\n".join(parts)

    def _compact_message(self, instruction: str, task: str, recent: list[tuple[str, str]], observation: str,
                         admissible: list[str] | None) -> str:
        lines = [text.strip() for text in (instruction, task) if text and text.strip()]
        lines += [f"{obs.strip()}\nAction: {act}" for obs, act in recent]
        lines.append(observation.strip())
        if admissible:
            lines.append("Actions: " + ", ".join(admissible))
        lines.append(COMPACT_FORMAT_THINK if self.think else COMPACT_FORMAT_NO_THINK)
        return "\n".join(lines)

    def messages(self, user: str) -> list[dict[str, str]]:
        if self.compact and not self.system_prompt:
            return [{"role": "user", "content": user}]
        return [{"role": "system", "content": self.system_prompt or DEFAULT_SYSTEM}, {"role": "user", "content": user}]
