"""agentgen's Slurm launcher (``cluster=slurm*``): hydra-submitit-launcher's, plus what long sweeps need.

On top of submitting the sweep as one Slurm job array, it
- skips jobs whose summary.json says completed (``resume=skip_completed``, the default) and jobs still
  queued or running from an earlier submission of the same sweep dir, so re-running a sweep only
  (re)submits unfinished work, and every job keeps its number and output dir;
- records each submission in the sweep's manifest (``agentgen.cluster.manifest``) for ``status``;
- with ``cluster.wait=false`` returns right after submission instead of waiting for the jobs.
On a time limit or preemption the job checkpoints at its next RL step boundary and is requeued
(``agentgen.cluster.preemption``; ``__call__`` installs it in the job process, ``cluster.signal_delay_s``
gives the warning time, ``cluster.max_requeues`` -> submitit's ``max_num_timeout`` caps time-limit
requeues): the requeued job runs again in the same output dir and resumes from that checkpoint.
A job that *fails* (killed without warning: the OOM killer, a node failure, SIGKILL; or an error) is
resubmitted while the launcher waits, up to ``cluster.max_failures`` times, into the same output dir, where it
resumes from its last complete checkpoint; failures are not preemptions and do not use up ``max_requeues``.
A job someone cancelled (``scancel``) is not resubmitted: it fails, naming its state.

Hydra accepts launchers only from the ``hydra_plugins`` namespace; ``hydra_plugins/agentgen_cluster``
subclasses this one there (see ``agentgen.cluster.plugins``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

from agentgen import secrets
from agentgen.cluster import manifest, preemption, slurm
from agentgen.cluster.sweep import job_output_dir, summary_status

log = logging.getLogger(__name__)

NO_RESULT_GRACE_S = 15.0  # a job out of the queue this long with no result file has ended without one


def gpu_shortfall(job_cfg) -> str | None:
    """Why a job's model does not fit one job of its cluster preset (``model.resources.gpus`` against
    ``cluster.gpus_per_node x cluster.nodes``), or None when it fits."""
    need = int(OmegaConf.select(job_cfg, "model.resources.gpus", default=0) or 0)
    per_node = int(OmegaConf.select(job_cfg, "cluster.gpus_per_node", default=0) or 0)
    nodes = int(OmegaConf.select(job_cfg, "cluster.nodes", default=1) or 1)
    if need <= per_node * nodes:
        return None
    model = OmegaConf.select(job_cfg, "model.name", default="?")
    cluster = OmegaConf.select(job_cfg, "cluster.name", default="?")
    return f"model={model} needs {need} GPU(s), cluster={cluster} gives {per_node} per node x {nodes} node(s)"


SHOWN_JOBS = 10  # submissions up to this size print every job's id, output dir and logs


def submission_note(to_submit: Sequence[tuple[int, list[str], Path]], jobs: Sequence[Any], status_cmd: str,
                    wait: bool) -> str:
    """What the user needs right after submission: Slurm job ids, output dirs, logs, and how to follow them."""
    array_id = str(jobs[0].job_id).split("_")[0]
    lines = [f"Submitted {len(jobs)} job(s) to Slurm as array {array_id}."]
    if len(jobs) <= SHOWN_JOBS:
        for (num, overrides, out), job in zip(to_submit, jobs):
            lines += [
                f"  Slurm job {job.job_id} (#{num}: {' '.join(filter_overrides(overrides)) or 'defaults'})",
                f"    output dir: {out}",
                f"    logs:       {job.paths.stdout}",
                f"                {job.paths.stderr}",
            ]
    else:
        lines.append(f"  logs under {Path(str(jobs[0].paths.stdout)).parent}")
    lines.append(f"Status: {status_cmd}")
    lines.append("Waiting for the job(s) to end (cluster.wait=false returns right after submission)." if wait
                 else "cluster.wait=false: not waiting; follow them with the status command above.")
    return "\n".join(lines)


def _final_state(job) -> str:
    """The Slurm state a job ended in (CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...), or "" if unknown."""
    jid = str(job.job_id)
    return (slurm.queue_snapshot([jid], all_states=True) or {}).get(jid) or ""


def _without_secrets(ret: JobReturn) -> JobReturn:
    """The job's result as submitit pickles it into ``.submitit/``, with secrets masked: the job resolved its
    config in place (``${oc.env:...}`` became the value), and an error's message may quote one."""
    values = secrets.secret_values()
    if not values:
        return ret
    for name in ("cfg", "hydra_cfg"):
        cfg = getattr(ret, name, None)
        if cfg is not None:
            setattr(ret, name, OmegaConf.create(secrets.redact(OmegaConf.to_container(cfg, resolve=False), values)))
    ret.overrides = secrets.redact(list(ret.overrides or []), values)
    value = ret._return_value
    if isinstance(value, BaseException):
        ret._return_value = RuntimeError(secrets.redact_text(f"{type(value).__name__}: {value}", values))
    else:
        ret._return_value = secrets.redact(value, values)
    return ret


@dataclass
class _Retries:
    """What resubmitting a failed job needs: the sweep's executor, each job's submission arguments, and how
    many of its ``cluster.max_failures`` it has used."""

    executor: Any
    args: dict[int, tuple]
    limit: int  # cluster.max_failures
    used: dict[int, int] = field(default_factory=dict)


class AgentgenSlurmLauncher(SlurmLauncher):
    def _executor(self):
        """A submitit executor with this launcher's parameters, as hydra-submitit-launcher builds it."""
        import submitit

        params = dict(self.params)
        if not params.get("gpus_per_node"):
            params.pop("gpus_per_node", None)  # 0 GPUs: ask for none rather than a GRES of 0
        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=params["submitit_folder"],
            slurm_max_num_timeout=params.get("max_num_timeout", 0),
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                k if k in base else f"{self._EXECUTOR}_{k}": v
                for k, v in params.items()
                if k not in init_keys
            }
        )
        return executor

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """The job itself, on the node: Slurm's warning signals become a request that the RL loop honours at
        its next step boundary (checkpoint, then requeue) instead of submitit's exit mid-update. Its stdout and
        stderr (submitit's log files) pass through agentgen.secrets' masking process."""
        secrets.mask_std_streams()
        preemption.install(signal_delay_s=self.params.get("signal_delay_s"))
        try:
            result = super().__call__(*args, **kwargs)
        except preemption.JobInterrupted:
            preemption.requeue_if_requested()  # last: scontrol requeue kills this job's processes
            raise
        finally:
            preemption.stand_down()
        if preemption.was_requeued():  # by the watchdog, as this run ended: the requeued run gives the result
            raise preemption.JobInterrupted("requeued by the preemption watchdog before this run returned")
        return _without_secrets(result)

    def _pickle_shim_by_value(self) -> None:
        """The job unpickles this launcher; let it do so without importing the hydra_plugins shim module
        (only agentgen itself must be importable on the node)."""
        module = type(self).__module__
        if module != __name__ and module in sys.modules:
            import cloudpickle

            cloudpickle.register_pickle_by_value(sys.modules[module])

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        cfg = self.config
        sweep_dir = Path(str(cfg.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        resume = str(cfg.get("resume", "skip_completed"))
        wait = bool(OmegaConf.select(cfg, "cluster.wait", default=True))

        earlier = manifest.load(sweep_dir)
        queued = slurm.queue_states(r.slurm_job_id for r in earlier.values()) if earlier else {}
        returns: dict[int, JobReturn] = {}
        to_submit: list[tuple[int, list[str], Path]] = []
        too_big: list[str] = []
        for i, overrides in enumerate(job_overrides):
            num = initial_job_idx + i
            job_cfg = self.hydra_context.config_loader.load_sweep_config(cfg, list(overrides))
            out = job_output_dir(job_cfg, num)
            shown = " ".join(filter_overrides(overrides))
            problem = gpu_shortfall(job_cfg)
            if problem:
                too_big.append(f"#{num} ({shown}): {problem}")
                continue
            status = summary_status(out)
            rec = earlier.get(str(out))
            if resume == "skip_completed" and status == "completed":
                log.info("\t#%d : %s -- already completed, skipped (resume=skip_completed)", num, shown)
                returns[num] = self._skipped(
                    overrides, out, {"status": "completed", "skipped": True, "output_dir": str(out)}
                )
            elif rec is not None and queued.get(rec.slurm_job_id) in slurm.ACTIVE_STATES:
                state = queued[rec.slurm_job_id].lower()
                log.info(
                    "\t#%d : %s -- still %s as Slurm job %s, not resubmitted",
                    num,
                    shown,
                    state,
                    rec.slurm_job_id,
                )
                returns[num] = self._skipped(
                    overrides,
                    out,
                    {"status": state, "slurm_job_id": rec.slurm_job_id, "output_dir": str(out)},
                )
            else:
                log.info("\t#%d : %s", num, shown)
                to_submit.append((num, list(overrides), out))

        if too_big:
            raise ValueError(
                f"{len(too_big)} job(s) need more GPUs than one job of this cluster preset has, so nothing was "
                f"submitted: {'; '.join(too_big[:5])}{' ...' if len(too_big) > 5 else ''}. Choose a preset with "
                f"enough GPUs (cluster=slurm_1gpu, slurm_8gpu, slurm_multinode) or override cluster.gpus_per_node "
                f"/ cluster.nodes."
            )
        if not to_submit:
            log.info(
                "Nothing to submit: all %d jobs are completed or still queued (%s)",
                len(job_overrides),
                sweep_dir,
            )
            return [returns[initial_job_idx + i] for i in range(len(job_overrides))]

        self._pickle_shim_by_value()
        executor = self._executor()
        log.info("Submitit 'slurm' sweep output dir : %s", sweep_dir)
        job_params = [
            (overrides, "hydra.sweep.dir", num, f"job_id_for_{num}", Singleton.get_state())
            for num, overrides, _ in to_submit
        ]
        jobs = executor.map_array(self, *zip(*job_params))
        manifest.append(
            sweep_dir,
            [
                manifest.JobRecord(num, overrides, str(out), str(job.job_id), manifest.now())
                for (num, overrides, out), job in zip(to_submit, jobs)
            ],
        )
        array_id = str(jobs[0].job_id).split("_")[0]
        status_cmd = f"python -m agentgen.cluster.status {sweep_dir}"
        log.info(
            "Submitted %d job(s) as Slurm array %s; follow them with: %s", len(jobs), array_id, status_cmd
        )
        print(submission_note(to_submit, jobs, status_cmd, wait), flush=True)

        if wait:
            self._retries = _Retries(executor, {num: params for (num, _, _), params in zip(to_submit, job_params)},
                                     int(OmegaConf.select(cfg, "cluster.max_failures", default=0) or 0))
            returns.update(self._wait_for({num: (overrides, job) for (num, overrides, _), job in zip(to_submit, jobs)},
                                          sweep_dir, {num: out for num, _, out in to_submit}))
        else:
            for (num, overrides, out), job in zip(to_submit, jobs):
                returns[num] = self._skipped(
                    overrides,
                    out,
                    {"status": "submitted", "slurm_job_id": str(job.job_id), "output_dir": str(out)},
                )
        return [returns[initial_job_idx + i] for i in range(len(job_overrides))]

    def _wait_for(self, submitted: dict[int, tuple[list[str], Any]], sweep_dir: Path | None = None,
                  outs: dict[int, Path] | None = None) -> dict[int, JobReturn]:
        """Each submitted job's JobReturn once it has ended (requeues and resubmissions after failures included).

        submitit learns that a job ended from its result file or from ``sacct``. Without Slurm accounting
        (sacct fails, as on the one-node test cluster) a job that ended *without* a result (killed by its
        time limit when it could not be requeued, cancelled, out of memory) would be waited for forever, so
        the queue is watched too: a job that has left it for ``NO_RESULT_GRACE_S`` with no result fails,
        naming its final state and log."""
        returns: dict[int, JobReturn] = {}
        pending = dict(submitted)
        gone_since: dict[int, float] = {}
        t0 = time.monotonic()
        while pending:
            # every state (-t all): squeue's default hides a job between its requeue and its next start
            # (REQUEUED, REQUEUE_FED), which would look like a job that ended without a result
            queue = slurm.queue_snapshot((str(job.job_id) for _, job in pending.values()), all_states=True)
            for num, (overrides, job) in list(pending.items()):
                if job.paths.result_pickle.exists():
                    result = job.results()[0]
                    retry = result.status == JobStatus.FAILED and self._retry(num, overrides, job, sweep_dir, outs,
                                                                              pending, f"failed: {result.return_value}")
                    if not retry:
                        returns[num] = result
                        del pending[num]
                elif queue is None or queue.get(str(job.job_id)) in slurm.ACTIVE_STATES:
                    gone_since.pop(num, None)  # still queued / running / requeued (or squeue did not answer)
                elif time.monotonic() - gone_since.setdefault(num, time.monotonic()) >= NO_RESULT_GRACE_S:
                    gone_since.pop(num, None)
                    cancelled = _final_state(job).startswith("CANCELLED")  # scancel is a decision, not a failure
                    if cancelled or not self._retry(num, overrides, job, sweep_dir, outs, pending,
                                                    "ended without a result"):
                        returns[num] = self._ended_without_result(num, overrides, job)
                        del pending[num]
            if pending:
                time.sleep(min(30.0, 2.0 + 0.02 * (time.monotonic() - t0)))
        return returns

    def _retry(self, num: int, overrides: Sequence[str], job, sweep_dir: Path | None, outs: dict[int, Path] | None,
               pending: dict[int, tuple[list[str], Any]], why: str) -> bool:
        """Resubmit failed job ``num`` (same overrides, same output dir: it resumes from its checkpoint) while
        it has ``cluster.max_failures`` left; returns whether it was resubmitted. A resubmission policy inside
        the launcher's polling loop (one budget per job, a new Slurm job each time, recorded in the manifest),
        not a call to repeat, so no retry library."""
        retries: _Retries | None = getattr(self, "_retries", None)  # set by launch() before it waits
        if retries is None or num not in retries.args or retries.used.get(num, 0) >= retries.limit:
            return False
        limit = retries.limit
        used = retries.used.get(num, 0)
        retries.used[num] = used + 1
        new = retries.executor.submit(self, *retries.args[num])
        log.warning("Slurm job %s (#%d) %s; resubmitted as Slurm job %s (failure %d of cluster.max_failures=%d); "
                    "it resumes from its last complete checkpoint", job.job_id, num, why, new.job_id, used + 1, limit)
        if sweep_dir is not None and outs is not None:
            manifest.append(sweep_dir, [manifest.JobRecord(num, list(overrides), str(outs[num]), str(new.job_id),
                                                           manifest.now())])
        pending[num] = (list(overrides), new)
        return True

    def _ended_without_result(self, num: int, overrides: Sequence[str], job) -> JobReturn:
        jid = str(job.job_id)
        state = _final_state(job) or "unknown: it left the queue"
        tail = "\n".join((job.stderr() or "").strip().splitlines()[-12:])
        err = RuntimeError(
            f"Slurm job {jid} (#{num}: {' '.join(filter_overrides(overrides))}) ended ({state}) without a result; "
            f"its log: {job.paths.stderr}. Re-running the sweep resumes it from its last checkpoint."
            + (f"\nEnd of its log:\n{tail}" if tail else "")
        )
        ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
        ret.return_value = err
        return ret

    def _skipped(self, overrides: Sequence[str], out: Path, value: dict[str, Any]) -> JobReturn:
        """A JobReturn for a job this launcher did not run now (completed, queued, or submitted without waiting)."""
        ret = JobReturn(overrides=list(overrides), working_dir=str(out), status=JobStatus.COMPLETED)
        ret.return_value = value
        return ret
