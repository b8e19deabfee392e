"""Datasets written to disk: expert trajectories for SFT (expert.py)."""
