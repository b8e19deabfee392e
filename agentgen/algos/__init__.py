"""The RL algorithms' mathematics: advantages, losses, KL estimators, the Tree-GRPO search structure
and the ScalingInter-RL turn schedule. Pure functions on tensors; the trainer loop lives elsewhere and
dispatches on ``cfg.algo.name`` through ``agentgen.algos.registry``."""
