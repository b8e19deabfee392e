"""The console of a job (agentgen/console.py), fast: the end block built from what the job wrote (paths that
exist and those that do not, wandb offline / online / logger=none, failed and skipped jobs), bars only on a
terminal and only on rank 0, and log records above the bars with the bars' own records kept out of the
console. tests/test_first_run.py watches a real job in tmux and through pipes."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import pytest

from agentgen import console


def _summary(status="completed", error=None, history=None):
    history = history if history is not None else [
        {"step": 0, "eval": {"sokoban": {"success_rate": 0.125, "episodes": 64}}},
        {"step": 10, "eval": {"sokoban": {"success_rate": 0.140625, "episodes": 64},
                              "webshop": {"success_rate": 0.0, "episodes": 4}}}]
    return {"status": status, "error": error, "train_env": "sokoban", "variant": {"algo": "grpo"},
            "train": {"steps": 10}, "wall_seconds": 452.3, "eval_history": history}


def _write_job(out: Path, *, summary=True, metrics=True, checkpoints=True, wandb: str | None = "offline",
               log=True) -> Path:
    out.mkdir(parents=True)
    if summary:
        (out / "summary.json").write_text(json.dumps(_summary()))
    if metrics:
        (out / "metrics.jsonl").write_text('{"step": 1}\n')
    if checkpoints:
        (out / "checkpoints" / "step_10").mkdir(parents=True)
        (out / "checkpoints" / "latest").write_text("step_10")
    if wandb:  # wandb's layout: <out>/wandb/<offline-run|run>-<time>-<id>/run-<id>.wandb
        run = out / "wandb" / f"{'offline-run' if wandb == 'offline' else 'run'}-20260101_120000-abc"
        run.mkdir(parents=True)
        (run / "run-abc.wandb").write_bytes(b"x")
    if log:
        (out / "launch.log").write_text("")
    return out


def test_end_block_lists_every_path_the_job_wrote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = _write_job(tmp_path / "outputs" / "run 1")
    text = console.end_block(out, _summary(), logger="wandb")
    lines = text.splitlines()
    assert lines[0] == "agentgen: job completed in 7 min 32 s (sokoban, grpo, 10 RL steps)"
    assert "    sokoban  0.12 -> 0.14   (step 0 -> 10, 64 episodes)" in lines
    assert "    webshop  0.00   (step 10, 4 episodes)" in lines  # evaluated once: one figure
    assert "  summary      outputs/run 1/summary.json" in lines  # relative to the working directory
    assert "  metrics      outputs/run 1/metrics.jsonl" in lines
    assert "  checkpoints  outputs/run 1/checkpoints  (latest: step_10)" in lines
    assert "  log          outputs/run 1/launch.log" in lines
    folder = "outputs/run 1/wandb/offline-run-20260101_120000-abc"
    assert f"  wandb run    {folder}  (offline)" in lines
    assert f"  upload       wandb sync '{folder}'" in lines  # quoted: the dir has a space
    assert lines[-1] == "  report       python -m agentgen.report 'outputs/run 1'"


def test_end_block_leaves_out_what_does_not_exist(tmp_path):
    out = _write_job(tmp_path / "run", metrics=False, checkpoints=False, wandb=None, log=False)
    text = console.end_block(out, _summary(), logger="wandb")
    assert "summary " in text and str(out / "summary.json") in text  # outside the cwd: absolute
    for absent in ("metrics", "checkpoints", "log ", "wandb", "upload"):
        assert absent not in text, absent
    assert f"python -m agentgen.report {out}" in text


def test_end_block_sync_command_only_for_offline_wandb_runs(tmp_path):
    offline = _write_job(tmp_path / "offline")
    assert "wandb sync" in console.end_block(offline, _summary(), logger="wandb")
    # logger=none in a dir an earlier wandb run wrote to: this job has no wandb run
    assert "wandb" not in console.end_block(offline, _summary(), logger="none")
    online = _write_job(tmp_path / "online", wandb="online")  # synced as it ran: nothing to upload
    assert "wandb" not in console.end_block(online, _summary(), logger="wandb")
    empty = _write_job(tmp_path / "empty", wandb=None)
    (empty / "wandb" / "offline-run-20260101_120000-abc").mkdir(parents=True)  # started, never wrote its log
    assert "wandb" not in console.end_block(empty, _summary(), logger="wandb")


def test_end_block_of_a_failed_job_with_nothing_written(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    text = console.end_block(out, _summary("failed", "ValueError: boom", history=[]), logger="wandb")
    assert text.splitlines()[0].startswith("agentgen: job failed in 7 min 32 s")
    assert "  error        ValueError: boom" in text
    assert "success" not in text and "report" not in text and "summary" not in text


def test_end_block_of_a_skipped_job(tmp_path):
    out = _write_job(tmp_path / "run")
    text = console.end_block(out, _summary(), logger="wandb", skipped=True)
    assert text.splitlines()[0] == ("agentgen: job already completed, skipped (resume=skip_completed; "
                                    "resume=always runs it again)")
    assert "0.12 -> 0.14" in text and "report" in text


def test_print_end_only_on_rank0(tmp_path, monkeypatch, capsys):
    out = _write_job(tmp_path / "run")
    monkeypatch.setattr(console.dist, "is_rank0", lambda: False)
    console.print_end(out, _summary(), "wandb")
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(console.dist, "is_rank0", lambda: True)
    console.print_end(out, _summary(), "wandb")
    assert "agentgen: job completed" in capsys.readouterr().out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_terminal_and_on_rank0(monkeypatch):
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    with console.progress(3, "sft") as bar:
        bar.update(3)
    assert not console.bars_shown() and pipe.getvalue() == ""  # not a terminal: nothing, no "\r"

    tty = _Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    assert console.bars_shown()
    with console.progress(3, "sft", unit="step") as bar:
        bar.set_postfix(loss="1.234")
        bar.update(3)
    assert "\r" in tty.getvalue() and "sft: 100%" in tty.getvalue() and "loss=1.234" in tty.getvalue()
    assert tty.getvalue().endswith("\n")  # leave=True: the finished bar stays on screen

    monkeypatch.setattr(console.dist, "is_rank0", lambda: False)
    tty.truncate(0)
    tty.seek(0)
    with console.progress(3, "sft") as bar:
        bar.update(3)
    assert not console.bars_shown() and tty.getvalue() == ""  # rank 1..n: no bars


def test_episode_bar_counts_episodes_and_success(monkeypatch):
    tty = _Terminal()
    monkeypatch.setattr(sys, "stderr", tty)

    class Ep:
        def __init__(self, success):
            self.success = success

    with console.progress(2, "rl sokoban", unit="step") as rl:
        rl.update(1)
        with console.episode_bar("eval sokoban @ step 1", 4) as on_episode:  # an evaluation during RL
            for s in (True, False, False, True):
                on_episode(Ep(s))
        screen = tty.getvalue()
        final, after = screen.rsplit("eval sokoban @ step 1: 100%", 1)[1].split("\n", 1)
        assert "4/4" in final and "success=0.50" in final  # left on screen, on a line of its own
        assert "rl sokoban:  50%" in after  # and the RL bar drawn again below it straight away
    with console.episode_bar(None, 4) as on_episode:
        assert on_episode is None


def test_log_records_print_above_bars_and_progress_records_stay_in_the_file(tmp_path, monkeypatch):
    tty = _Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    root = logging.getLogger()
    console_handler = logging.StreamHandler(sys.stderr)
    console_handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    file_handler = logging.FileHandler(tmp_path / "job.log")
    monkeypatch.setattr(root, "handlers", [console_handler, file_handler])
    monkeypatch.setattr(root, "level", logging.INFO)
    with console.bars_and_logs():
        assert root.handlers[1] is file_handler and root.handlers[0] is not console_handler
        with console.progress(2, "rl sokoban", unit="step") as bar:
            bar.update(1)
            logging.getLogger("agentgen").warning("a warning")
            console.progress_log.info("rl sokoban step 1/2: rollout success 0.50")
            bar.update(1)
    assert root.handlers == [console_handler, file_handler]  # put back
    screen = tty.getvalue()
    assert "[agentgen] a warning\n" in screen  # on a line of its own, above the bar
    assert "rollout success" not in screen  # the bar shows it
    file_handler.flush()
    logged = (tmp_path / "job.log").read_text()
    assert "a warning" in logged and "rl sokoban step 1/2: rollout success 0.50" in logged


def test_without_a_terminal_the_console_keeps_the_progress_records(monkeypatch):
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(root, "level", logging.INFO)
    with console.bars_and_logs():
        assert root.handlers == [handler]
        console.progress_log.info("rl sokoban step 1/2: rollout success 0.50")
    assert pipe.getvalue() == "rl sokoban step 1/2: rollout success 0.50\n"


@pytest.mark.parametrize("seconds,text", [(5.4, "5 s"), (452.3, "7 min 32 s"), (3 * 3600 + 125, "3 h 02 min")])
def test_duration(seconds, text):
    assert console._duration(seconds) == text
