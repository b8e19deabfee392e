"""Pytest fixtures for the cluster tests (load with ``pytest_plugins = ["slurm_cluster"]`` in conftest).

``slurm_cluster`` (session): a real Slurm cluster from scripts/slurm/start.sh: two nodes, n1 and n2 (one slurmd
each), on this host. It reuses a live
cluster (``$SLURM_CONF`` answering ``scontrol ping``, or one already running in the fixture's dir) and
leaves that running; otherwise it starts one under ``$AGENTGEN_SLURM_DIR`` (reused by later sessions) or, by
default, a state dir of its own per checkout and per run (``run_dir``) on free ports found from a hash of the
checkout path and pid (``free_ports``; ``$AGENTGEN_SLURM_PORT`` overrides), and stops it (deleting a
per-run dir) when the session ends: two checkouts or two sessions never share a cluster by accident.
``SLURM_CONF`` is exported in ``os.environ`` for the session, so submitit and Hydra's launcher in the test
process reach it. Without
Debian's slurm-wlm/munge the tests that use it are skipped locally and FAIL in CI (conftest's ``require``).

``agentgen_plugins_path`` (session): a directory holding ``hydra_plugins/agentgen_cluster`` (the shim
that lets Hydra load agentgen's sweeper and launcher), to put on PYTHONPATH of subprocesses: the
repository root when the shim is checked in there, else a temporary copy of ``plugins.SHIM_SOURCE``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import missing_slurm_binaries, require

REPO = Path(__file__).resolve().parents[1]
START = REPO / "scripts" / "slurm" / "start.sh"
STOP = REPO / "scripts" / "slurm" / "stop.sh"


@dataclass
class SlurmCluster:
    dir: Path | None  # state dir (None: an external cluster found through $SLURM_CONF)
    conf: Path
    env: dict[str, str]  # os.environ plus SLURM_CONF: pass to subprocesses
    started_here: bool
    start_seconds: float | None = None  # how long start.sh took, when this session started it

    def run(self, *cmd: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(cmd), env=self.env, check=False, capture_output=True, text=True, timeout=timeout
        )

    def state(self) -> str:
        """What Slurm says about its node and queue: printed when a job does not finish in time."""
        parts = []
        for cmd in (("sinfo", "-N", "-l"), ("squeue", "-a", "-l"), ("scontrol", "show", "job")):
            try:
                out = self.run(*cmd, timeout=20)
                parts.append(f"$ {' '.join(cmd)}\n{out.stdout}{out.stderr}")
            except subprocess.TimeoutExpired:
                parts.append(f"$ {' '.join(cmd)}\n(no answer in 20 s)")
        return "\n".join(parts)

    def result(self, job, timeout: float = 300.0):
        """``job.result()`` with a deadline: a job Slurm never runs again (a drained node, a held
        requeue) fails the test with the cluster's state instead of hanging the suite."""
        deadline = time.monotonic() + timeout
        while not job.done():
            if time.monotonic() > deadline:
                pytest.fail(
                    f"Slurm job {job.job_id} did not finish within {timeout:.0f} s\n{self.state()}\n"
                    f"--- job stderr ---\n{(job.stderr() or '')[-3000:]}",
                    pytrace=False,
                )
            time.sleep(1.0)
        return job.result()

    @contextlib.contextmanager
    def releasing_requeued_jobs(self, poll_s: float = 1.0):
        """Start requeued jobs at once instead of after Slurm's fixed hold (a requeued job becomes eligible
        only about 120 s later, ``Reason=BeginTime``); yields the list of job ids released, one entry per
        requeue seen. Keeps the requeue tests within CI's time budget; the requeue itself is Slurm's."""
        released: list[str] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(poll_s):
                try:
                    queue = self.run("squeue", "-h", "-r", "-t", "PENDING", "-o", "%i|%r", timeout=20)
                except subprocess.TimeoutExpired:
                    continue
                for line in queue.stdout.splitlines():
                    jid, _, reason = line.strip().partition("|")
                    if reason == "BeginTime":
                        if self.run("scontrol", "update", f"jobid={jid}", "StartTime=now", timeout=20).returncode == 0:
                            released.append(jid)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        try:
            yield released
        finally:
            stop.set()
            thread.join(timeout=30)


def run_dir(repo: Path = REPO, pid: int | None = None) -> Path:
    """The default state dir: per checkout (a hash of its path) and per run (the session's pid)."""
    key = hashlib.sha256(str(repo.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"agentgen-slurm-{key}-{os.getpid() if pid is None else pid}"


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


NODES = ("n1", "n2")  # start.sh's default node names (AGENTGEN_SLURM_NODES=2)


def free_ports(seed: str, count: int = 1 + len(NODES), low: int = 20000, high: int = 40000) -> int:
    """A port P = low + a multiple of ``count``, below high, with P..P+count-1 free (slurmctld, then one slurmd per
    node), searched from a start derived from ``seed`` (checkout path and pid): different checkouts and runs
    start their search apart."""
    span = (high - low) // count
    start = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % span
    for i in range(span):
        port = low + count * ((start + i) % span)
        if all(_bindable(port + k) for k in range(count)):
            return port
    raise RuntimeError(f"no {count} free consecutive ports in {low}-{high} for the test Slurm cluster")


def _responds(conf: Path) -> bool:
    if not conf.is_file():
        return False
    try:
        out = subprocess.run(
            ["scontrol", "ping"],
            env={**os.environ, "SLURM_CONF": str(conf)},
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "UP" in out.stdout


@pytest.fixture(scope="session")
def slurm_cluster():
    missing = missing_slurm_binaries()
    require("slurm", available=not missing, detail=f"missing {', '.join(missing)}")
    fixed_dir = os.environ.get("AGENTGEN_SLURM_DIR")
    state_dir = Path(fixed_dir) if fixed_dir else run_dir()
    external = os.environ.get("SLURM_CONF")
    started, seconds = False, None
    if external and _responds(Path(external)):
        conf, state_dir = Path(external), None
    else:
        conf = state_dir / "etc" / "slurm.conf"
        if not _responds(conf):
            t0 = time.monotonic()
            port = os.environ.get("AGENTGEN_SLURM_PORT") or str(free_ports(f"{REPO.resolve()}:{os.getpid()}"))
            proc = subprocess.run(
                ["bash", str(START), str(state_dir)], check=False, capture_output=True, text=True, timeout=120,
                env={**os.environ, "AGENTGEN_SLURM_PORT": port},
            )
            seconds = time.monotonic() - t0
            if proc.returncode != 0:
                logs = "".join(
                    f"\n--- {p}:\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
                    for p in sorted((state_dir / "log").glob("*.log"))
                )
                pytest.fail(
                    f"scripts/slurm/start.sh failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}{logs}"
                )
            started = True
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    cluster = SlurmCluster(
        dir=state_dir, conf=conf, env=dict(os.environ), started_here=started, start_seconds=seconds
    )
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        if started:
            purge = [] if fixed_dir else ["--purge"]  # a per-run dir is of no use once its run ends
            subprocess.run(
                ["bash", str(STOP), str(state_dir), *purge], check=False, capture_output=True, text=True, timeout=120
            )


@pytest.fixture(scope="session")
def agentgen_plugins_path(tmp_path_factory) -> Path:
    if (REPO / "hydra_plugins" / "agentgen_cluster" / "__init__.py").exists():
        return REPO
    from agentgen.cluster.plugins import write_shim

    root = tmp_path_factory.mktemp("agentgen_plugins")
    write_shim(root)
    return root
