"""agentgen: RL post-training of LLM agents on multi-turn text environments, built to study how what an
agent learns in one environment carries over to environments it never saw."""

__version__ = "0.1.0"
