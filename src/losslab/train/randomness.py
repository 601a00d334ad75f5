"""Seeded randomness of the forward pass during training (dropout and any other draw).

Dropout and other random layers draw from torch's global generator, which functional
code cannot hand a generator of its own. The trainer therefore reseeds that generator
before every step from (run seed, step), inside `forked` so the caller's global state
is restored afterwards. Reseeding per step, rather than once, makes step t's masks a
function of the seed and t alone: a callback that draws random numbers (a Lanczos
start) cannot shift them, and the same command gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["forked", "seed_step", "step_seed"]

_MASK = (1 << 64) - 1


def step_seed(seed: int, step: int) -> int:
    """A 63-bit seed for ``step`` of the run seeded ``seed``: SplitMix64 (Steele et al. 2014) of both."""
    z = ((int(seed) & 0xFFFFFFFF) << 32 | (int(step) & 0xFFFFFFFF)) + 0x9E3779B97F4A7C15
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) >> 1


def seed_step(seed: int, step: int, device: torch.device) -> None:
    """Seed the generator the forward pass draws from on ``device`` for this step."""
    value = step_seed(seed, step)
    torch.random.default_generator.manual_seed(value)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(value)


@contextmanager
def forked(device: torch.device) -> Iterator[None]:
    """Restore the global generators of the CPU (and ``device``) when the block ends."""
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices):
        yield
