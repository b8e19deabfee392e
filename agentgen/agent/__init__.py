"""The agent's side of the dialogue: how prompts are built and how answers are read."""

from agentgen.agent.parser import ParsedResponse, parse_response
from agentgen.agent.prompt import PromptBuilder

__all__ = ["ParsedResponse", "parse_response", "PromptBuilder"]
