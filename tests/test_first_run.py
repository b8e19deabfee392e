"""A new user's first run, the way they see it: a real ``launch.py debug=smoke`` job typed into a shell in
tmux, its screen captured with ``tmux capture-pane`` (one finished bar per phase, the end block with the
paths the job wrote and the commands to run next); and the same job with its output piped (a Slurm log,
CI), which has no carriage-return bars but one log line per step and evaluation."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import require

ROOT = Path(__file__).resolve().parent.parent
# after SFT an evaluation of the trained env (step 0), then every step: a before and an after figure
JOB = ("debug=smoke", "eval.envs=[sokoban]", "eval.before_training=true", "eval.before_training_envs=train")
WIDTH, HEIGHT = 110, 60


def _tmux(socket: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, check=check)


def run_in_tmux(cwd: Path, command: str, timeout: float = 1500) -> tuple[int, str]:
    """Type ``command`` into a shell in a detached tmux session of its own server, wait until it exits and
    return (exit code, the whole pane with its scroll-back, wrapped lines joined)."""
    socket = f"agentgen-test-{os.getpid()}"
    status = cwd / ".exit_code"
    _tmux(socket, "-f", "/dev/null", "new-session", "-d", "-s", "job", "-x", str(WIDTH), "-y", str(HEIGHT),
          "-c", str(cwd), "bash --noprofile --norc")
    try:
        _tmux(socket, "set-option", "-t", "job", "history-limit", "5000")
        _tmux(socket, "send-keys", "-t", "job", f"{command}; echo $? > {shlex.quote(str(status))}", "Enter")
        deadline = time.time() + timeout
        while not status.exists() or not status.read_text().strip():
            assert time.time() < deadline, _tmux(socket, "capture-pane", "-p", "-J", "-t", "job").stdout
            time.sleep(2)
        pane = _tmux(socket, "capture-pane", "-p", "-J", "-S", "-", "-t", "job").stdout
        return int(status.read_text()), pane
    finally:
        _tmux(socket, "kill-server", check=False)


@pytest.mark.timeout(1800)
def test_first_run_in_a_terminal_shows_one_bar_per_phase_and_where_everything_is(tmp_path):
    require("tmux")
    command = " ".join([shlex.quote(sys.executable), shlex.quote(str(ROOT / "launch.py")), *JOB, "hydra.run.dir=run"])
    code, pane = run_in_tmux(tmp_path, f"OMP_NUM_THREADS=1 {command}")
    print(pane)  # shown when the test fails
    assert code == 0
    lines = [line.rstrip() for line in pane.splitlines()]

    def finished(pattern: str) -> list[str]:
        return [line for line in lines if re.fullmatch(pattern, line)]

    # each phase's bar, finished and left on the screen, with its figures
    assert len(finished(r"sft: 100%\|█+\| 2/2 \[.*, acc=\d\.\d\d, loss=\d+\.\d{3}\]")) == 1, pane
    assert len(finished(r"rl sokoban: 100%\|█+\| 2/2 \[.*, success=\d\.\d\d, s/step=\d+\.\d\]")) == 1, pane
    for step in (0, 1, 2):
        assert len(finished(rf"eval sokoban @ step {step}: 100%\|█+\| 2/2 \[.*, success=\d\.\d\d\]")) == 1, pane
    # nothing else draws bars or chatters: no per-file bars of transformers, no library debug lines, and the
    # log lines the bars already show stay in the job's log file
    for noise in ("Loading weights", "Writing model shards", "expert data", "[bm25s]", "real_accelerator",
                  "rollout success", "][INFO] eval sokoban", "SFT done"):
        assert noise not in pane, noise
    logged = (tmp_path / "run" / "launch.log").read_text()
    assert "rl sokoban step 2/2: rollout success" in logged and "eval sokoban @ step 2: success" in logged

    # the end block: status and figures, then every path the job wrote, relative to where the user is
    end = lines[next(i for i, line in enumerate(lines) if line.startswith("agentgen: job completed")):]
    assert re.fullmatch(r"agentgen: job completed in .+ \(sokoban, grpo, 2 RL steps\)", end[0])
    assert re.fullmatch(r"    sokoban  \d\.\d\d -> \d\.\d\d   \(step 0 -> 2, 2 episodes\)", end[2])
    assert "  summary      run/summary.json" in end
    assert "  metrics      run/metrics.jsonl" in end
    assert "  checkpoints  run/checkpoints  (latest: step_2)" in end
    assert "  log          run/launch.log" in end
    sync = [line for line in end if line.startswith("  upload       wandb sync run/wandb/offline-run-")]
    assert len(sync) == 1 and (tmp_path / sync[0].split()[-1] / "files").is_dir()  # the offline run's folder
    assert f"  wandb run    {sync[0].split()[-1]}  (offline)" in end
    assert "  report       python -m agentgen.report run" in end
    for path in ("summary.json", "metrics.jsonl", "checkpoints/latest"):
        assert (tmp_path / "run" / path).exists()


@pytest.mark.timeout(1800)
def test_piped_output_has_no_bars_but_a_line_per_step_and_the_end_block(tmp_path):
    def launch(*extra: str) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, str(ROOT / "launch.py"), *JOB, "logger=none", "hydra.run.dir=run", *extra],
                           capture_output=True, text=True, cwd=tmp_path, timeout=1500,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr[-4000:]
        return r

    r = launch()
    assert "\r" not in r.stdout and "\r" not in r.stderr  # no carriage-return bars in a log file
    for line in ("sft step 2/2: loss", "eval sokoban @ step 0: success", "rl sokoban step 1/2: rollout success",
                 "rl sokoban step 2/2: rollout success", "eval sokoban @ step 2: success"):
        assert line in r.stdout, line
    end = r.stdout[r.stdout.index("agentgen: job completed"):].splitlines()
    assert "  summary      run/summary.json" in end and "  report       python -m agentgen.report run" in end
    assert not any("wandb" in line for line in end)  # logger=none

    again = launch()  # resume=skip_completed: says so, with the same paths
    assert "agentgen: job already completed, skipped" in again.stdout
    assert "  summary      run/summary.json" in again.stdout


def test_readme_first_screen_shows_set_up_run_what_it_prints_and_help():
    """What a new user reads before scrolling (40 lines): the two set-up commands, the run command, a captured
    screen of a run whose bars and end block have today's format, and --help."""
    screen = (ROOT / "README.md").read_text().splitlines()[:40]
    text = "\n".join(screen)
    for command in ("make install", "make test", ".venv/bin/python launch.py ", ".venv/bin/python launch.py --help"):
        assert command in text, command
    for pattern in (r"\$ \.venv/bin/python launch\.py.*", r"sft: 100%\|█+\| .*loss=.*",
                    r"eval sokoban @ step \d+: 100%\|█+\| .*success=\d\.\d\d\]",
                    r"rl sokoban: 100%\|█+\| .*success=\d\.\d\d, s/step=\d+\.\d\]",
                    r"agentgen: job completed in .*", r"    sokoban +\d\.\d\d -> \d\.\d\d +\(step \d+ -> \d+, .*",
                    r"  summary      \S+/summary\.json", r"  metrics      \S+/metrics\.jsonl",
                    r"  checkpoints  \S+/checkpoints  \(latest: step_\d+\)", r"  log          \S+/launch\.log",
                    r"  wandb run    (\S+/wandb/offline-run-\S+)  \(offline\)",
                    r"  upload       wandb sync \S+/wandb/offline-run-\S+",
                    r"  report       python -m agentgen\.report \S+"):
        assert any(re.fullmatch(pattern, line) for line in screen), pattern
