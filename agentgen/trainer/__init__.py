"""Training: supervised warm-up (sft.py) and the RL loop (rl.py) over token batches (batch.py)."""
