"""The first minutes of a new user at the command line: ``--help``, tab completion, and the search path
that both walk (only ``sweeps/`` besides ``conf/``)."""

from __future__ import annotations

import os
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentgen import cli_help

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _launch(*args: str, env: dict | None = None, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    tic = time.perf_counter()
    proc = subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, env=env or ENV, capture_output=True,
                          text=True, timeout=timeout, check=False)
    return proc, time.perf_counter() - tic


def test_help_template_is_generated_from_the_current_conf_files():
    assert cli_help.HELP_FILE.read_text() == cli_help.template_yaml(cli_help.generate()), (
        "conf/hydra/help/agentgen.yaml is stale: run `python -m agentgen.cli_help --write`"
    )


def test_help_names_every_group_option_and_sweep_on_one_line_each():
    text = cli_help.generate()
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= cli_help.WIDTH
    for group in sorted(p for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"):
        start = lines.index(next(ln for ln in lines if ln.startswith(f"  {group.name}")))
        block = []
        for ln in lines[start + 1:]:
            if not ln.startswith("    "):
                break
            block.append(ln.split()[0])
        assert block == sorted(p.stem for p in group.glob("*.yaml")), group.name
    for sweep in (REPO / "sweeps").glob("*.yaml"):
        if sweep.stem != "_common":
            assert any(ln.split()[:1] == [sweep.stem] for ln in lines), sweep.stem
    assert "    sokoban   * Sokoban as in the generalization-tax study" in text  # default marked, header summarised


def test_launch_help_prints_hydras_template_in_well_under_two_seconds():
    from hydra import compose, initialize_config_dir

    import agentgen.config  # noqa: F401  (registers the schema config.yaml composes)

    proc, wall = _launch("--help")
    assert proc.returncode == 0, proc.stderr
    assert wall < 2.0, f"--help took {wall:.2f} s"
    assert proc.stdout == cli_help.stored_help() == cli_help.generate()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    assert string.Template(cfg.hydra.help.template).substitute() == proc.stdout  # what Hydra's --help prints
    proc, _ = _launch("env=alfworld", "-h")
    assert proc.returncode == 0 and proc.stdout == cli_help.generate()


def test_the_sweeps_source_shows_hydra_only_the_sweeps_folder(tmp_path: Path):
    """An installed checkout has .venv/, outputs/ and multirun/ next to sweeps/: none of them is a group."""
    from hydra.core.object_type import ObjectType
    from hydra.plugins.config_source import ConfigLoadError

    from agentgen.cluster.plugins import SweepsConfigSource

    for d in ("sweeps", ".venv/lib/site-packages/hydra/test_utils/configs", "outputs/2026-01-01", "conf/env"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "sweeps" / "grid.yaml").write_text("seed: 1\n")
    (tmp_path / "outputs" / "2026-01-01" / "config.yaml").write_text("seed: 2\n")
    source = SweepsConfigSource("agentgen-sweeps", f"agentgen-sweeps://{tmp_path}")
    assert source.list("", None) == ["sweeps"]
    assert source.list("", ObjectType.CONFIG) == []
    assert source.list("sweeps", None) == ["grid"]
    assert not source.is_group("outputs") and not source.is_group(".venv") and not source.is_config("outputs/x")
    assert source.load_config("sweeps/grid").config.seed == 1
    with pytest.raises(ConfigLoadError):
        source.load_config("outputs/2026-01-01/config")


def test_hydra_sees_agentgens_groups_plus_sweeps_and_nothing_else():
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from agentgen.cluster.plugins import register

    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        groups = set(GlobalHydra.instance().config_loader().list_groups(""))
    expected = {p.name for p in CONF.iterdir() if p.is_dir()} | {"sweeps", "hydra"}
    assert groups == expected


@pytest.mark.parametrize(
    "line, expected",
    [
        ("python launch.py env=so", {"env=sokoban"}),
        ("python launch.py +sweeps=gen", {"+sweeps=gen_tax"}),
        ("python launch.py cluster=slurm_", {"cluster=slurm_1gpu", "cluster=slurm_8gpu", "cluster=slurm_multinode"}),
        ("python launch.py trainer.st", {"trainer.steps=", "trainer.strategy="}),
    ],
)
def test_tab_completion_answers_fast(line: str, expected: set[str]):
    proc, wall = _launch("-sc", "query=bash", env={**ENV, "COMP_LINE": line, "COMP_POINT": str(len(line))})
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == expected
    assert wall < 2.0, f"completion of {line!r} took {wall:.2f} s"
