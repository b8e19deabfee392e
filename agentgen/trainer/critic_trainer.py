"""PPO's learned critic in the training loop: built from the policy, evaluated on the same token batches,
trained with the clipped value loss alongside the policy, and checkpointed next to it.

The critic starts as a copy of the policy's decoder (no LM head) plus a fresh value head, as verl and
AgentGym-RL initialise it from the actor. Values come from the backbone run with the batch's own
position ids (left padding), so a state gets the same value whatever batch it sits in; the value of
the state before response token t is read at the position just before it (see
``agentgen.algos.critic_model.response_values``).

Checkpoint files inside the policy's checkpoint dir: ``critic/model.safetensors``,
``critic/optimizer.pt`` and ``critic/state.json`` (written to a temp dir, then renamed).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from torch import Tensor

from agentgen.algos.critic_model import CausalLMCritic
from agentgen.algos.losses import value_loss
from agentgen.trainer.batch import Sample, TokenBatch, collate
from agentgen.trainer.optim import make_optimizer

log = logging.getLogger(__name__)

CRITIC_DIR = "critic"


def critic_from_policy(policy) -> CausalLMCritic:
    """A critic whose backbone is a copy of the policy's decoder (``base_model_prefix``: e.g. ``model``)."""
    prefix = getattr(policy, "base_model_prefix", "model")
    backbone = getattr(policy, prefix, None)
    if backbone is None or not hasattr(backbone, "config"):
        raise ValueError(f"cannot find the decoder of {type(policy).__name__} (attribute {prefix!r}) to build "
                         "PPO's critic from; the policy must be a transformers *ForCausalLM model")
    critic = CausalLMCritic(copy.deepcopy(backbone))  # the value head stays float32 (it returns float32)
    critic.requires_grad_(True)
    return critic


class ValueModel:
    """The critic, its optimiser and its clipped value-loss update (``algo.critic``: lr, value_clip)."""

    def __init__(self, critic: CausalLMCritic, lr: float, value_clip: float | None, grad_clip: float,
                 weight_decay: float = 0.0):
        self.critic = critic
        self.value_clip = None if value_clip is None else float(value_clip)
        self.grad_clip = float(grad_clip)
        self.optimizer = make_optimizer(critic, lr, weight_decay)

    @classmethod
    def from_config(cls, policy, algo_cfg, trainer_cfg) -> ValueModel:
        c = algo_cfg.get("critic") or {}
        return cls(critic_from_policy(policy), lr=float(c.get("lr", 1e-5)), value_clip=c.get("value_clip", 0.5),
                   grad_clip=float(trainer_cfg.grad_clip), weight_decay=float(trainer_cfg.weight_decay))

    # ------------------------------------------------------------------ values
    def response_values(self, batch: TokenBatch) -> Tensor:
        """[B, R] values aligned with the response tokens: column t = V(state before response token t)."""
        device = next(self.critic.parameters()).device
        r = batch.response_ids.shape[1]
        hidden = self.critic.backbone(input_ids=batch.input_ids.to(device),
                                      attention_mask=batch.attention_mask.to(device),
                                      position_ids=batch.position_ids.to(device), use_cache=False).last_hidden_state
        return self.critic.value_head(hidden[:, -r - 1:-1, :])

    @torch.no_grad()
    def values(self, samples: list[Sample], micro_batch: int, pad_id: int) -> list[Tensor]:
        """Per-sample response-aligned values (a [n_tokens] tensor each), before any update."""
        self.critic.eval()
        out: list[Tensor] = []
        for start in range(0, len(samples), micro_batch):
            micro = samples[start:start + micro_batch]
            v = self.response_values(collate(micro, pad_id)).cpu()
            out.extend(row[row.shape[0] - len(s.response_ids):] for s, row in zip(micro, v))
        return out

    # ------------------------------------------------------------------ update
    def micro_step(self, micro: list[Sample], pad_id: int, weight: float, turn_level: bool,
                   agg: str) -> dict[str, float]:
        """Backward of the clipped value loss on one micro-batch (scaled by ``weight``, its share of the
        mini-batch). Turn level: one value per sample (its state's), regressed on the step's return;
        token level: every response token's value on that token's return."""
        self.critic.train()
        tb = collate(micro, pad_id)
        vpred = self.response_values(tb)
        mask = tb.response_mask.to(vpred.device)
        old = _right_aligned(micro, "values", vpred)
        returns = _right_aligned(micro, "returns", vpred)
        if turn_level:  # the step's value sits at its first response token
            first = mask.argmax(dim=1, keepdim=True)
            vpred, old, returns = (x.gather(1, first) for x in (vpred, old, returns))
            mask = torch.ones_like(vpred)
        loss, metrics = value_loss(vpred, old, returns, mask, clip=self.value_clip, agg=agg)
        (loss * weight).backward()
        err = (vpred.detach() - returns) * mask
        return {"critic/vf_loss": loss.item(), "critic/vf_clipfrac": metrics["vf_clipfrac"],
                "critic/vpred_mean": metrics["vpred_mean"],
                "critic/value_mae": float(err.abs().sum() / mask.sum().clamp(min=1))}

    def optimizer_step(self) -> float:
        norm = torch.nn.utils.clip_grad_norm_(self.critic.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.critic.eval()
        return float(norm)

    # ------------------------------------------------------------------ checkpoint
    def save(self, checkpoint_dir: str | Path, step: int) -> Path:
        """Write the critic into ``<checkpoint_dir>/critic`` atomically (temp dir, then rename)."""
        from safetensors.torch import save_model

        root = Path(checkpoint_dir)
        final, tmp = root / CRITIC_DIR, root / f".tmp-{CRITIC_DIR}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(self.critic, str(tmp / "model.safetensors"))
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": int(step)}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return final

    def load(self, checkpoint_dir: str | Path, expected_step: int | None = None) -> bool:
        """Restore the critic saved in ``checkpoint_dir``; False (and a warning) when it holds none, e.g.
        a checkpoint written by another algorithm: the critic then starts again from the policy's copy."""
        from safetensors.torch import load_model

        path = Path(checkpoint_dir) / CRITIC_DIR
        if not (path / "model.safetensors").exists():
            log.warning("%s holds no critic: PPO's critic starts fresh from the policy's weights", checkpoint_dir)
            return False
        load_model(self.critic, str(path / "model.safetensors"))
        if (path / "optimizer.pt").exists():
            self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
        saved = json.loads((path / "state.json").read_text()).get("step") if (path / "state.json").exists() else None
        if expected_step is not None and saved is not None and int(saved) != int(expected_step):
            log.warning("critic in %s is from step %s, the policy from step %s", checkpoint_dir, saved, expected_step)
        log.info("critic restored from %s (step %s)", path, saved)
        return True


def _right_aligned(micro: list[Sample], key: str, like: Tensor) -> Tensor:
    """Stack per-sample [n] rows of ``extras[key]`` right-aligned into ``like``'s [B, R] shape."""
    out = torch.zeros_like(like)
    width = like.shape[1]
    for b, s in enumerate(micro):
        row = s.extras[key]
        n = row.shape[0]
        out[b, width - n:] = row.to(out.device, out.dtype)
    return out
