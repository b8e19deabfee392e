"""Process groups and ranks: one process per GPU (or per CPU slot in tests), started by torchrun locally or
by submitit on Slurm (``tasks_per_node > 1``: every task runs the whole job function).

Everything here is a no-op for a single process, so the same job code runs unchanged with one rank or
many. The conventions the rest of agentgen relies on:

- rank 0 owns logging, ``summary.json`` and checkpoint bookkeeping (``is_rank0``);
- work lists (episode specs) are split across ranks with ``split`` and the results put back in the
  original order on every rank with ``gather_split`` (rollouts are split across ranks and gathered);
- collectives on Python objects (``broadcast_object``, ``all_gather_objects``) go over a gloo group even
  when the default group is NCCL, so they never need a GPU copy.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch
import torch.distributed as td

log = logging.getLogger(__name__)
T = TypeVar("T")

_OBJECT_GROUP = None  # gloo group for pickled-object collectives (the default group may be NCCL)
_LAUNCHER: str | None = None  # who started the ranks, as seen by init (submitit's export sets RANK too)


@dataclass(frozen=True)
class RankInfo:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    launcher: str  # single | torchrun | submitit

    @property
    def is_rank0(self) -> bool:
        return self.rank == 0


def launcher() -> str:
    """Who started this process: torchrun (RANK/WORLD_SIZE set), a multi-task submitit job, or nobody."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return "torchrun"
    if os.environ.get("SUBMITIT_EXECUTOR") and _submitit_num_tasks() > 1:
        return "submitit"
    return "single"


def _submitit_num_tasks() -> int:
    try:
        import submitit

        return int(submitit.JobEnvironment().num_tasks)
    except Exception:  # noqa: BLE001 - not inside a submitit job
        return 1


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def init(backend: str | None = None, timeout_minutes: float = 60.0, single_group: bool = False) -> RankInfo:
    """Join the job's process group (idempotent). Under submitit the rank variables come from
    ``TorchDistributedEnvironment().export()``; CUDA_VISIBLE_DEVICES is left alone because vLLM's
    tensor-parallel workers and DeepSpeed address GPUs by LOCAL_RANK.

    A single process gets no group unless ``single_group`` (DeepSpeed needs one even for one GPU):
    then a one-rank group on a free localhost port."""
    global _OBJECT_GROUP, _LAUNCHER
    how = _LAUNCHER or launcher()
    _LAUNCHER = how
    if how == "single":
        if single_group and not td.is_initialized():
            backend = backend or default_backend()
            td.init_process_group(backend=backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
                                  world_size=1, timeout=datetime.timedelta(minutes=timeout_minutes))
        return info()
    if how == "submitit" and "RANK" not in os.environ:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        os.environ["MASTER_ADDR"] = master_address(os.environ["MASTER_ADDR"])
    if not td.is_initialized():
        backend = backend or default_backend()
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        td.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes))
        import socket

        node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()  # Slurm's name: several may share a host
        log.info("joined process group: rank %d of %d (%s, %s) on node %s via %s:%s", td.get_rank(),
                 td.get_world_size(), backend, how, node, os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT"))
    if _OBJECT_GROUP is None:
        _OBJECT_GROUP = td.new_group(backend="gloo") if td.get_backend() != "gloo" else td.group.WORLD
    _share_cpu_threads()
    return info()


def master_address(node: str) -> str:
    """An address for submitit's MASTER_ADDR, which is the job's first Slurm node *name*. A node name need not
    resolve (``NodeName=n1 NodeAddr=10.0.0.5``; several node daemons on one host): then Slurm's NodeAddr
    for it, else the name unchanged (the rendezvous then fails naming it)."""
    import socket
    import subprocess

    try:
        socket.getaddrinfo(node, None)
        return node
    except (socket.gaierror, UnicodeError):
        pass
    try:
        out = subprocess.run(["scontrol", "show", "node", node], capture_output=True, text=True, timeout=30,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return node
    addr = next((w.split("=", 1)[1] for w in out.split() if w.startswith("NodeAddr=")), "")
    if addr and addr != node:
        log.info("MASTER_ADDR: Slurm node %s does not resolve, using its NodeAddr %s", node, addr)
        return addr
    return node


def _share_cpu_threads() -> None:
    """CPU ranks on one node split its cores: torch's default (every core per process) oversubscribes
    them, and oversubscribed CPU kernels run several times slower. torchrun's own OMP_NUM_THREADS wins;
    both launchers (torchrun, submitit's export) set LOCAL_WORLD_SIZE."""
    if torch.cuda.is_available() or "OMP_NUM_THREADS" in os.environ:
        return
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // local))


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def info() -> RankInfo:
    how = _LAUNCHER or launcher()
    if td.is_available() and td.is_initialized():
        rank, world = td.get_rank(), td.get_world_size()
    else:
        rank, world = 0, 1
    local = int(os.environ.get("LOCAL_RANK", 0)) if world > 1 else 0
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world)) if world > 1 else 1
    return RankInfo(rank, world, local, local_world, how if world > 1 else "single")


def is_distributed() -> bool:
    return td.is_available() and td.is_initialized() and td.get_world_size() > 1


def rank() -> int:
    return td.get_rank() if is_distributed() else 0


def world_size() -> int:
    return td.get_world_size() if is_distributed() else 1


def is_rank0() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        td.barrier(group=_object_group())


def _object_group():
    return _OBJECT_GROUP if _OBJECT_GROUP is not None else td.group.WORLD


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (e.g. the output dir rank 0 chose)."""
    if not is_distributed():
        return obj
    box = [obj if rank() == src else None]
    td.broadcast_object_list(box, src=src, group=_object_group())
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    td.all_gather_object(out, obj, group=_object_group())
    return out


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum over ranks of a list of floats (metrics)."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    td.all_reduce(t, op=td.ReduceOp.SUM, group=_object_group())
    return t.tolist()


def split(items: Sequence[T], num_parts: int | None = None, part: int | None = None) -> list[T]:
    """This rank's contiguous share of ``items`` (sizes differ by at most one; earlier parts larger)."""
    n = world_size() if num_parts is None else num_parts
    r = rank() if part is None else part
    base, extra = divmod(len(items), n)
    start = r * base + min(r, extra)
    return list(items[start:start + base + (1 if r < extra else 0)])


def gather_split(local: list[T], group_size: int = 1) -> list[T]:
    """Inverse of ``split``: every rank's results concatenated in part order, on every rank.

    ``group_size`` > 1 means consecutive ranks form one part (a vLLM tensor-parallel group generating the
    same outputs); only the first rank of each group contributes."""
    if not is_distributed():
        return list(local)
    gathered = all_gather_objects(local)
    return [x for r, chunk in enumerate(gathered) if r % group_size == 0 for x in chunk]


def destroy() -> None:
    global _OBJECT_GROUP, _LAUNCHER
    if td.is_available() and td.is_initialized():
        td.destroy_process_group()
    _OBJECT_GROUP = None
    _LAUNCHER = None
