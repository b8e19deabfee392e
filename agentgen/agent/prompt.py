"""Builds the agent's prompt for one turn (papers.md A): the env's instruction, the task, the last k
observation/action pairs, the current observation and the admissible actions, as one user message
rendered through the model's chat template. Every turn is a fresh prompt (stepwise training, as in
verl-agent), so each (prompt, response) pair is one training sample."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SYSTEM = "You are an agent acting in a text-based environment. Reach the goal in as few steps as you can."
FORMAT_THINK = ("First think step by step inside <think> </think>, then give exactly one action inside "
                "<action> </action>, e.g. <think>...</think><action>...</action>")
FORMAT_NO_THINK = ("Give exactly one action inside <action> </action> and nothing else, e.g. "
                   "<action>...</action>")


@dataclass
class PromptBuilder:
    think: bool
    history_k: int = 2
    system_prompt: str | None = None

    def user_message(self, instruction: str, task: str, history: list[tuple[str, str]], observation: str,
                     admissible: list[str] | None, history_k: int | None = None) -> str:
        k = self.history_k if history_k is None else history_k
        parts = []
        if instruction:
            parts.append(instruction.strip())
        if task:
            parts.append(f"Your task: {task.strip()}")
        recent = history[-k:] if k > 0 else []
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

    def messages(self, user: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system_prompt or DEFAULT_SYSTEM}, {"role": "user", "content": user}]
