"""Keep credentials out of everything a job writes: summary.json, ``.hydra/``, its log, checkpoints' state
and the wandb config are shared, synced and attached to bug reports.

A secret is the value of an environment variable whose name looks like one (``*_KEY``, ``*_TOKEN``,
``*_SECRET``, ``*PASSWORD*``, e.g. ``WANDB_API_KEY``, ``HF_TOKEN``). Such a value reaches a job's files
when a config interpolates it (``${oc.env:HF_TOKEN}``), a command line carries it, or an error message or
a library's log line quotes it; ``redact`` replaces it with ``***`` wherever it appears in a string.

Two more ways keep it out of what a Slurm sweep writes (``.submitit/``'s pickles and logs, ``multirun.yaml``,
the jobs manifest, the job dirs' names): the launcher hands a secret given literally on the command line on
as a reference to the variable holding it (``env_references``: the job resolves it from its environment,
which Slurm passes on), and the job's stdout and stderr (submitit's log files) pass through a masking
process (``mask_std_streams``; this file, run by path, is that process).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

OVERRIDE_DIRNAME_EXCLUDE = "hydra.job.config.override_dirname.exclude_keys"

NAME = re.compile(r"(_KEY|_TOKEN|_SECRET)$|PASSWORD|^(API_KEY|TOKEN|SECRET)$", re.IGNORECASE)
MIN_LEN = 6  # shorter values ("1", "true") would redact ordinary text; real credentials are longer
MASK = "***"


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """The secret values of the environment, longest first (so a value containing another is masked whole)."""
    env = os.environ if environ is None else environ
    found = {v for k, v in env.items() if NAME.search(k) and len(v.strip()) >= MIN_LEN}
    return sorted(found, key=len, reverse=True)


def redact_text(text: str, values: list[str] | None = None) -> str:
    for v in secret_values() if values is None else values:
        if v in text:
            text = text.replace(v, MASK)
    return text


def redact(obj: Any, values: list[str] | None = None) -> Any:
    """``obj`` (nested dicts, lists, strings) with every secret value masked; other values unchanged."""
    values = secret_values() if values is None else values
    if not values:
        return obj
    if isinstance(obj, str):
        return redact_text(obj, values)
    if isinstance(obj, dict):
        return {redact(k, values): redact(v, values) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v, values) for v in obj)
    return obj


def redact_files(paths: list[Path]) -> None:
    """Mask secrets in text files already written by others (Hydra's ``.hydra/*.yaml``)."""
    values = secret_values()
    if not values:
        return
    for p in paths:
        text = p.read_text()
        clean = redact_text(text, values)
        if clean != text:
            p.write_text(clean)


@contextlib.contextmanager
def masked_argv():
    """``sys.argv`` with secrets masked for the block: wandb stores the command line in its run metadata."""
    saved = list(sys.argv)
    sys.argv[:] = redact(saved)
    try:
        yield
    finally:
        sys.argv[:] = saved


class RedactingFilter(logging.Filter):
    """Masks secrets in a log record's final message (and its traceback) before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        values = secret_values()
        if values:
            msg = record.getMessage()
            clean = redact_text(msg, values)
            if clean != msg:
                record.msg, record.args = clean, None
            if record.exc_info and record.exc_info[1] is not None:
                text = logging.Formatter().formatException(record.exc_info)
                record.exc_text = redact_text(text, values)  # formatters print exc_text when it is set
        return True


def install_log_filter() -> None:
    """Put the filter on every handler of the root logger (Hydra's console and job log file) once."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def env_references(args: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """Command-line overrides with each secret value replaced by ``${oc.env:NAME}``, the variable holding it:
    Hydra's copies of the command line (``multirun.yaml``, the submitted jobs' pickles) then hold the reference,
    and the job resolves it. Keys that carried one are left out of the output dirs' names
    (``hydra.job.override_dirname``, which resolves the reference), added to any exclude list already given."""
    env = os.environ if environ is None else environ
    names: dict[str, str] = {}
    for name in sorted(env):
        value = env[name]
        if NAME.search(name) and len(value.strip()) >= MIN_LEN:
            names.setdefault(value, name)
    values = sorted(names, key=len, reverse=True)
    out, keys, given = [], [], None
    for arg in args:
        key, eq, _ = arg.partition("=")
        if arg.startswith("-") or not eq:
            out.append(arg)
            continue
        if key == OVERRIDE_DIRNAME_EXCLUDE:
            given = arg
            continue
        for v in values:
            if v in arg:
                arg = arg.replace(v, "${oc.env:" + names[v] + "}")
                keys.append(key.lstrip("+~"))
        out.append(arg)
    if keys:
        listed = given.partition("=")[2].strip().strip("[]") if given else ""
        merged = [k for k in (x.strip() for x in listed.split(",")) if k] + sorted(set(keys))
        out.append(f"{OVERRIDE_DIRNAME_EXCLUDE}=[{','.join(dict.fromkeys(merged))}]")
    elif given:
        out.append(given)
    return out


_MASKER_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2")


def mask_std_streams() -> None:
    """From now on, everything this process and its children write to stdout and stderr (file descriptors 1
    and 2: Python, C libraries, subprocesses) reaches the original destination, a Slurm job's log files,
    through a masking process with secrets replaced by ``***``. The masker runs until every writer is gone, so
    it passes on all that was written even when the job is SIGKILLed. No-op without secrets."""
    if not secret_values():
        return
    import subprocess

    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
        read, write = os.pipe()
        target = os.dup(fd)
        subprocess.Popen([sys.executable, "-I", str(Path(__file__).resolve())], stdin=read, stdout=target,
                         stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        os.close(read)
        os.close(target)
        os.dup2(write, fd)  # fd stays inheritable: children write through the masker too
        os.close(write)


def _mask_stream() -> None:
    """The masking process: stdin to stdout, secrets masked; a value split across reads is held back until
    it is complete (at most the longest secret's length less one character)."""
    import select
    import signal

    for name in _MASKER_SIGNALS:  # Slurm signals every process of the job: this one ends when the writers do
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    values = [v.encode() for v in secret_values()]
    hold = max((len(v) for v in values), default=1) - 1
    mask = MASK.encode()
    buf = b""
    while True:
        ready, _, _ = select.select([0], [], [], 0.5)
        chunk = os.read(0, 65536) if ready else None
        if chunk is not None:
            if not chunk:
                break
            buf += chunk
        for v in values:
            buf = buf.replace(v, mask)
        cut = len(buf) if chunk is None else max(0, len(buf) - hold)  # idle: nothing more is coming soon
        if cut:
            _write_all(buf[:cut])
            buf = buf[cut:]
    _write_all(buf)


def _write_all(data: bytes) -> None:
    while data:
        data = data[os.write(1, data):]


if __name__ == "__main__":
    _mask_stream()
