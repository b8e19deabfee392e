#!/usr/bin/env python
"""agentgen's one launcher: runs a job locally or sends a sweep to Slurm (hydra-submitit-launcher).

    python launch.py                                   # the embedded default: SFT + GRPO on Sokoban, tiny model, CPU
    python launch.py env=alfworld think=false debug=smoke
    python launch.py -m env=sokoban,sciworld think=true,false debug=smoke
    python launch.py -m env=sokoban,sciworld think=true,false cluster=slurm   # a Slurm job array
    python launch.py -m +sweeps=gen_tax model=llama3_1_8b_instruct cluster=slurm_8gpu --plan   # dry run

Every job's config is composed and validated before anything runs or is submitted: a bad value
stops the launcher with one paragraph naming it and the valid values (exit code 2). ``--plan`` (or
``task=plan``) prints the jobs, the grid, the GPUs and the estimated GPU-hours and submits nothing.
A single job with a Slurm cluster preset (``cluster=slurm*``, no ``-m``) is submitted to Slurm as a
one-job sweep, printing its job id, output dir and logs; ``cluster=local`` (the default) runs it here.
``--help`` prints Hydra's help template (conf/hydra/help/agentgen.yaml, generated from the conf files)
straight away: Hydra's own help path composes everything first and takes seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

if __name__ == "__main__" and any(a in ("--help", "-h") for a in sys.argv[1:]):
    from agentgen.cli_help import print_help

    print_help()
    sys.exit(0)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from agentgen.config import ConfigError  # noqa: E402  (registers the schema)
from agentgen.preflight import (  # noqa: E402
    check_output_dir,
    job_config_request,
    preflight,
    print_job_config,
    submits_to_slurm,
)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    from agentgen.run import run

    return run(cfg)


if __name__ == "__main__":
    from agentgen.secrets import env_references

    # a secret given literally travels on as ${oc.env:NAME}: Hydra's copies of the command line keep the reference
    sys.argv[1:] = env_references(sys.argv[1:])
    args = sys.argv[1:]
    if "--plan" in args or "task=plan" in args:
        from agentgen.cluster.plan import main as plan_main

        sys.exit(plan_main(args))
    asked = job_config_request(args)
    if asked is not None:  # --cfg job: the config as the job runs it (env configs merged), not Hydra's composition
        try:
            print_job_config(asked)
        except ConfigError as err:
            print(f"agentgen: error: {err}", file=sys.stderr)
            sys.exit(2)
        sys.exit(0)
    try:
        checked = preflight(args)
    except ConfigError as err:
        print(f"agentgen: error: {err}", file=sys.stderr)
        sys.exit(2)
    cluster = submits_to_slurm(checked)
    if not cluster:
        try:
            check_output_dir(args, checked)  # before Hydra writes .hydra/ and its log into a running job's dir
        except ConfigError as err:
            print(f"agentgen: error: {err}", file=sys.stderr)
            sys.exit(2)
    if cluster:  # Hydra launches on Slurm only in multirun mode: submit this one job as a one-job sweep
        print(f"agentgen: cluster={cluster}: submitting this job to Slurm (cluster=local runs it here)", flush=True)
        sys.argv.insert(1, "-m")
    main()
