"""The architecture holds: import-linter's contracts (pyproject.toml [tool.importlinter]: the layers, the
independent environments, no import circles) pass on the package as it is, and the job stays a table of
contents. A future back-import fails here, with import-linter naming the chain."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and "KEPT" in proc.stdout, proc.stdout[-2000:]


def test_a_broken_layer_is_caught(tmp_path):
    """The contract really looks: a copy of the package where the trainer imports the job fails it."""
    import shutil

    pkg = tmp_path / "agentgen"
    shutil.copytree(ROOT / "agentgen", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "trainer" / "sneaky.py").write_text("from agentgen import run  # noqa: F401\n")
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=tmp_path, capture_output=True,
                          text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert proc.returncode != 0
    assert "agentgen.trainer.sneaky -> agentgen.run" in proc.stdout, proc.stdout[-3000:]


def test_the_job_reads_as_a_table_of_contents():
    """agentgen/run.py strings the phases together; their work lives in agentgen/phases/ (issue 16: <= 200 lines)."""
    lines = (ROOT / "agentgen" / "run.py").read_text().count("\n")
    assert lines <= 200, f"agentgen/run.py has {lines} lines: move the work into a phase (agentgen/phases/)"
