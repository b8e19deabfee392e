"""The SFT data cache (agentgen/data/expert.py): every rank of a multi-process job writes the same file."""

from __future__ import annotations

import multiprocessing as mp

from agentgen.data import expert

RECORDS = [{"env": "sokoban", "messages": [{"role": "user", "content": "x" * 2000}], "i": i} for i in range(200)]


def _write_many(path, barrier, times: int) -> None:
    barrier.wait()
    for _ in range(times):
        expert.write(RECORDS, path)


def test_two_processes_writing_the_same_cache_file_do_not_collide(tmp_path):
    path = tmp_path / "sft_data" / "sokoban.jsonl"
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_write_many, args=(path, barrier, 30)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]  # a shared temporary name made one rank's rename fail
    assert expert.read(path) == RECORDS
    assert sorted(x.name for x in path.parent.iterdir()) == ["sokoban.jsonl"]  # no temporary left behind
