"""The rollout loop's and env pool's options: the ``rollout.*`` keys every engine shares
(agentgen/rollout/runner.py, agentgen/envs/pool.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from agentgen.options._rules import at_least, need, positive, share


@dataclass
class PoolOptions:
    """What an EnvPool reads (agentgen/envs/pool.py)."""

    num_workers: int = 0  # env worker processes; 0 = in-process
    step_timeout: float = 300.0  # seconds before a hung env step restarts its worker

    def check(self) -> None:
        at_least(self.num_workers, 0, "rollout.num_workers", " (env worker processes; 0: in-process)")
        positive(self.step_timeout, "rollout.step_timeout", " of seconds before a hung env step restarts its worker")


@dataclass
class RolloutOptions:
    """The ``rollout`` node's own keys: sampling, batching, time limits, and the pool's (in this order, which is
    the order ``--cfg job`` prints)."""

    name: str = "hf"  # hf | vllm
    temperature: float = 1.0  # rollout temperature (papers.md A)
    top_p: float = 1.0
    top_k: int = 0
    generation_batch_size: int = 64  # sequences per generate() call
    num_workers: int = PoolOptions.num_workers
    env_overlap: bool = False  # two waves: one half's env steps run while the other half generates
    step_timeout: float = PoolOptions.step_timeout
    # seconds one turn's generation may take before it is abandoned and its episodes abort (vllm: the engine
    # is killed and restarted; hf: the decoder stops at the deadline); None: no limit
    generation_timeout: Optional[float] = 600.0
    params: Dict[str, Any] = field(default_factory=dict)  # the engine's own (HFOptions, VLLMOptions)

    def pool(self) -> PoolOptions:
        return PoolOptions(num_workers=self.num_workers, step_timeout=self.step_timeout)

    def check(self) -> None:
        self.pool().check()
        at_least(self.temperature, 0, "rollout.temperature")
        share(self.top_p, "rollout.top_p")
        at_least(self.top_k, 0, "rollout.top_k", " (0: no top-k cut)")
        at_least(self.generation_batch_size, 1, "rollout.generation_batch_size")
        need(self.generation_timeout is None or (isinstance(self.generation_timeout, (int, float))
                                                 and self.generation_timeout > 0),
             f"rollout.generation_timeout={self.generation_timeout!r} is invalid: it must be a positive number of "
             "seconds, or null (no limit).")
