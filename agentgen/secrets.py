"""Keep credentials out of everything a job writes: summary.json, ``.hydra/``, its log, checkpoints' state
and the wandb config are shared, synced and attached to bug reports.

A secret is the value of an environment variable whose name looks like one (``*_KEY``, ``*_TOKEN``,
``*_SECRET``, ``*PASSWORD*``, e.g. ``WANDB_API_KEY``, ``HF_TOKEN``). Such a value reaches a job's files
when a config interpolates it (``${oc.env:HF_TOKEN}``), a command line carries it, or an error message or
a library's log line quotes it; ``redact`` replaces it with ``***`` wherever it appears in a string.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

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
