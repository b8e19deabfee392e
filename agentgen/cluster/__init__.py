"""Experiment management: sweeps, Slurm submission, dry-run plans and sweep status.

- ``sweep``: expand a sweep (``hydra.sweeper.params`` + command line) into jobs, excluded combinations,
  where each job writes its output.
- ``plugins`` / ``launcher``: the Hydra plugins behind ``cluster=slurm`` and the sweep files
  (``hydra/sweeper: agentgen`` with ``exclude``, the Slurm launcher with skip / no-wait / manifest, the
  ``sweeps/`` search path). Hydra loads plugins only from the ``hydra_plugins`` namespace, so
  ``hydra_plugins/agentgen_cluster`` re-exports them (see ``plugins.SHIM_SOURCE``).
- ``plan``: the dry run (``python -m agentgen.cluster.plan ...``): jobs, grid, GPUs, GPU-hours, validation.
- ``status``: the state of a sweep's jobs (``python -m agentgen.cluster.status multirun/<sweep>``).
- ``manifest`` / ``slurm``: the sweep's record of submitted jobs; ``squeue`` / ``sacct`` queries.
"""
