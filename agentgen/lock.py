"""One job per output dir: a second job started in a dir where one is running would interleave its
checkpoints, metrics and summary with the first one's, so it is refused.

The lock is ``fcntl.flock`` on ``<out>/.agentgen.lock``: the kernel drops it when the holder dies (even by
SIGKILL or the OOM killer), so a crashed job never leaves a stale lock and re-running it resumes at once.
The file also names the holder (pid, host, Slurm job id, start time) for the refusal message; that text is
only informative, the flock is the truth. On a shared filesystem (NFS v4 maps flock to its byte-range
locks) the lock holds across nodes; on Lustre the mount needs ``-o flock``.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import socket
from pathlib import Path

from agentgen.errors import ConfigError

LOCK_FILE = ".agentgen.lock"
_HELD: set[int] = set()  # descriptors of the locks this process holds


def _close_held_in_child() -> None:
    """A child forked without exec (a fork-started worker) shares the parent's lock and would keep it after
    the parent died: it closes its copies."""
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


class OutputDirBusy(ConfigError):
    """Another live job holds the output dir's lock."""


def identity() -> dict[str, object]:
    """Who holds the lock: what the refusal message shows."""
    ident: dict[str, object] = {"pid": os.getpid(), "host": socket.gethostname(),
                                "started": dt.datetime.now().isoformat(timespec="seconds")}
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if job and os.environ.get("SLURM_ARRAY_TASK_ID"):
        ident["slurm_job_id"] = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    elif os.environ.get("SLURM_JOB_ID"):
        ident["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return ident


def describe(holder: dict[str, object]) -> str:
    if not holder:
        return "a job whose identity could not be read"
    who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
    if holder.get("slurm_job_id"):
        who = f"Slurm job {holder['slurm_job_id']} ({who})"
    if holder.get("started"):
        who += f", started {holder['started']}"
    return who


def _busy_error(out_dir: Path, holder: dict[str, object]) -> OutputDirBusy:
    stop = f"scancel {holder['slurm_job_id']}" if holder.get("slurm_job_id") else f"kill {holder.get('pid', '<pid>')}"
    return OutputDirBusy(
        f"output dir {out_dir} is in use by a running job: {describe(holder)}. Two jobs in one dir would "
        f"overwrite each other's checkpoints, metrics and summary.json, so this launch was refused and nothing "
        f"was written. Wait for that job to end, stop it ({stop}; re-running afterwards resumes from its last "
        f"checkpoint), or choose another dir (hydra.run.dir=...)."
    )


def _read_holder(path: Path) -> dict[str, object]:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def check(out_dir: str | Path) -> None:
    """Raise ``OutputDirBusy`` if a live job holds ``out_dir``'s lock; creates nothing (launch.py calls
    it before Hydra writes ``.hydra/`` and its log into the dir)."""
    path = Path(out_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise _busy_error(Path(out_dir), _read_holder(path)) from None
        raise
    finally:
        os.close(fd)


class JobLock:
    """The held lock of one job; ``release()`` (or the process's death) frees the dir."""

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> "JobLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _busy_error(self.path.parent, _read_holder(self.path)) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(identity()).encode())
        os.fsync(fd)
        self.fd = fd
        _HELD.add(fd)
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:  # a full disk cannot stop the release
            pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        _HELD.discard(self.fd)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "JobLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
