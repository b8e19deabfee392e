"""Nothing of a job is left behind when its process dies without cleaning up (SIGKILL, the OOM killer).

A vLLM engine runs in processes of its own (EngineCore and its workers), started by multiprocessing's
*spawn*: a fresh interpreter that runs no code of agentgen before vLLM's, so a parent-death signal
(``PR_SET_PDEATHSIG``) cannot be set inside them without patching vLLM, and vLLM's EngineCore does not watch
its parent (its workers watch EngineCore through a pipe). It keeps running, busy, with its memory (and on a
GPU node, the GPU), and its staged weights stay in ``/dev/shm``.

So the job starts one small watchdog process (this file, run by path with only the standard library and
psutil) and tells it, through a pipe, the processes and paths to clean up. The watchdog learns of the job's
end from the pipe (end of file: the kernel closes it whatever ended the job) or from being re-parented;
then it sends SIGTERM to the registered processes (vLLM's EngineCore shuts its workers down and frees its
shared memory on SIGTERM), SIGKILLs whatever of them and their children is still there after a grace
period, and removes the registered paths. It runs in a session of its own, so the terminal's Ctrl-C or a
signal to the job's process group does not end it before the job's processes.

Second line of defence, for a watchdog killed along with the job (a kill of the whole session, a node
reboot of /dev/shm aside): the folders a job makes for others to fill (staged weights in ``/dev/shm``,
LoRA adapters, vLLM's ZeroMQ sockets in the temp dir) carry their owner's pid and start time in their name,
and every job's start removes those whose owner is gone (``sweep_stale``).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil

SHM = Path("/dev/shm")
WEIGHTS_PREFIX = "agentgen-weights-"  # staged weights for the rollout engine (/dev/shm)
LORA_PREFIX = "agentgen-lora-"  # adapters handed to vLLM (temp dir)
RPC_PREFIX = "agentgen-rpc-"  # vLLM's ZeroMQ ipc sockets (temp dir): it never removes them, even on a clean exit
GRACE_S = 5.0  # SIGTERM -> SIGKILL: vLLM's EngineCore shutdown (workers, shared memory) takes about a second
# <prefix><owner pid>-<owner start time, 1/100 s>-<random>
_OWNED = re.compile("^(?:" + "|".join(map(re.escape, (WEIGHTS_PREFIX, LORA_PREFIX, RPC_PREFIX))) + r")(\d+)-(\d+)-")


def _start_time(pid: int) -> int | None:
    """A process's start time in 1/100 s (with its pid, who it is: pids are reused), or None if it is gone."""
    try:
        return int(psutil.Process(pid).create_time() * 100)
    except psutil.Error:
        return None


# ------------------------------------------------------------------------------------ the job's side
class Reaper:
    """The job's handle on its watchdog process; ``reaper()`` gives the one of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(Path(__file__).resolve()), str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True, text=True)

    def _send(self, line: str) -> None:
        with self._lock:
            try:
                self.proc.stdin.write(line + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):  # the watchdog is gone: nothing more to tell
                pass

    def watch_process(self, pid: int) -> None:
        """End process ``pid`` (and its children) when this job's process dies."""
        started = _start_time(pid)
        if started is not None:
            self._send(f"pid {pid} {started}")

    def watch_path(self, path: str | Path) -> None:
        """Remove ``path`` (a file or a folder) when this job's process dies."""
        self._send(f"path {Path(path).resolve()}")


_reaper: Reaper | None = None
_reaper_pid: int | None = None


def reaper() -> Reaper:
    """This process's watchdog, started on first use (a forked child starts its own)."""
    global _reaper, _reaper_pid
    if _reaper is None or _reaper_pid != os.getpid():
        _reaper, _reaper_pid = Reaper(), os.getpid()
    return _reaper


def owned_dir(prefix: str, root: Path | None = None) -> Path:
    """A new folder under ``root`` (the temp dir by default) named after this process, so that a later job can
    tell when it is stale (``sweep_stale``); the watchdog removes it if the job dies."""
    me = os.getpid()
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{me}-{_start_time(me)}-", dir=root))
    reaper().watch_path(path)
    return path


def weights_dir() -> Path:
    """A new folder to stage weights in: in /dev/shm when the machine has it (memory speed)."""
    return owned_dir(WEIGHTS_PREFIX, SHM if SHM.is_dir() and os.access(SHM, os.W_OK) else None)


def sweep_stale(*roots: Path) -> list[Path]:
    """Remove the folders ``owned_dir`` made under ``roots`` (default: /dev/shm and the temp dir) whose owner
    process is gone (a job killed with its watchdog); returns them. Folders of live processes, of other users,
    and not named by ``owned_dir`` are left."""
    removed: list[Path] = []
    for root in roots or (SHM, Path(tempfile.gettempdir())):
        removed += _sweep_stale(root)
    return removed


def _sweep_stale(root: Path) -> list[Path]:
    removed = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for path in entries:
        m = _OWNED.match(path.name)
        if not m or not path.is_dir():
            continue
        pid, started = int(m.group(1)), int(m.group(2))
        if _start_time(pid) == started:
            continue  # its owner still runs
        try:
            shutil.rmtree(path)
            removed.append(path)
        except OSError:  # another user's, or removed meanwhile
            continue
    return removed


def _in_use(root: Path) -> set[str]:
    """Names under ``root`` that a process of this user has open or mapped (``/proc/<pid>/fd``, ``maps``)."""
    used: set[str] = set()
    prefix = str(root).rstrip("/") + "/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith(prefix):
                    used.add(target[len(prefix):].split("/")[0].removesuffix(" (deleted)"))
            for line in (proc / "maps").read_text().splitlines():
                at = line.find(prefix)
                if at >= 0:
                    used.add(line[at + len(prefix):].split("/")[0].removesuffix(" (deleted)"))
        except OSError:  # gone, or another user's
            continue
    return used


def sweep_unused(pattern: str, root: Path = SHM) -> list[Path]:
    """Remove this user's files under ``root`` matching ``pattern`` that no process has open or mapped: shared
    memory of a killed process whose names the next one would reuse. Call it only before this job's own
    processes create such files (a file created but not yet opened elsewhere would look unused)."""
    me = os.getuid()
    try:
        candidates = [p for p in root.glob(pattern) if p.is_file() and p.stat().st_uid == me]
    except OSError:
        return []
    if not candidates:
        return []
    used = _in_use(root)
    removed = []
    for path in candidates:
        if path.name not in used:
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                continue
    return removed


# ------------------------------------------------------------------------------------ the watchdog
def _reap(procs: dict[int, int], paths: list[str]) -> None:
    """SIGTERM the registered processes still alive (the same ones: same start time), SIGKILL them and their
    children after ``GRACE_S``, then remove the registered paths."""
    alive: list[psutil.Process] = []
    for pid, started in procs.items():
        if _start_time(pid) != started:
            continue
        try:
            proc = psutil.Process(pid)
            alive += [proc, *proc.children(recursive=True)]
        except psutil.Error:
            continue
    for proc in alive:
        if proc.pid in procs:
            try:
                proc.terminate()
            except psutil.Error:
                pass
    _, left = psutil.wait_procs(alive, timeout=GRACE_S)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=GRACE_S)
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            Path(path).unlink(missing_ok=True)


def _watch(job_pid: int) -> None:
    """Read registrations until the job's end (end of the pipe, or re-parented), then reap."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    procs: dict[int, int] = {}
    paths: list[str] = []
    buf = ""
    fd = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            if os.getppid() != job_pid:
                break  # the job is gone although the pipe is not closed (a forked child of it holds it)
            continue
        chunk = os.read(fd, 65536).decode(errors="replace")
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split("\n")
        for line in lines:
            kind, _, rest = line.partition(" ")
            if kind == "pid":
                pid, started = rest.split()
                procs[int(pid)] = int(started)
            elif kind == "path":
                paths.append(rest)
    _reap(procs, paths)


if __name__ == "__main__":
    _watch(int(sys.argv[1]))
