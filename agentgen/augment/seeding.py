"""Deterministic randomness for augmentation: every draw comes from (augment seed, split, env seed,
step, purpose), so a rerun, a resumed job or another worker process injects the same distractors."""

from __future__ import annotations

import random

import numpy as np

_SPLIT_WORD = {"train": 0x7A, "test": 0x7E}
# What a draw is for: separate streams so that, e.g., changing prob never changes the distractors.
EPISODE_STREAM = 0xE1  # is this trajectory augmented?
DISTRACTOR_STREAM = 0xD1  # which distractors, where


def stream(aug_seed: int | None, split: str, env_seed: int | None, step: int, purpose: int) -> random.Random:
    words = [int(aug_seed or 0), _SPLIT_WORD[split], int(env_seed or 0), int(step), purpose]
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return random.Random(int(state[0]) << 32 | int(state[1]))


def episode_augmented(prob: float, aug_seed: int | None, split: str, env_seed: int | None) -> bool:
    """Whether the trajectory of ``env_seed`` is augmented: a fixed fraction ``prob`` of seeds."""
    if prob >= 1.0:
        return True
    if prob <= 0.0:
        return False
    return stream(aug_seed, split, env_seed, 0, EPISODE_STREAM).random() < prob
