"""The phases of a job, each a function of its ``Workspace`` (``agentgen.workspace``):

- ``sft_phase``: expert (or another checkpoint's) trajectories, mixed by state-action pairs, then supervised warm-up;
- ``rl_phase``: one RL stage: rollouts, update, health watch, evaluation and checkpoints on schedule;
- ``evaluate``: every env in ``eval.envs`` on its test split;
- ``split``: the difficulty split (``task=split``);
- ``profile_phase``: the environment profile (``task=profile``, papers.md A section 5).
``agentgen.run`` strings them together; a new phase is one module here and one line there."""
