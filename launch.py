#!/usr/bin/env python
"""agentgen's one launcher: runs a job locally or sends a sweep to Slurm (hydra-submitit-launcher).

    python launch.py                                   # the embedded default: SFT + GRPO on Sokoban, tiny model, CPU
    python launch.py env=alfworld think=false debug=smoke
    python launch.py -m env=sokoban,sciworld think=true,false debug=smoke
    python launch.py -m env=sokoban,sciworld think=true,false cluster=slurm   # a Slurm job array

Every job's config is composed and validated before anything runs or is submitted: a bad value
stops the launcher with one paragraph naming it and the valid values (exit code 2).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agentgen.config import ConfigError  # noqa: E402  (registers the schema)
from agentgen.preflight import preflight  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    from agentgen.run import run

    return run(cfg)


if __name__ == "__main__":
    try:
        proceed = preflight(sys.argv[1:])
    except ConfigError as err:
        print(f"agentgen: error: {err}", file=sys.stderr)
        sys.exit(2)
    if proceed:
        main()
