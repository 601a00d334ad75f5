"""Magnitude pruning masks and masked training on the flat θ of an `Objective`.

A mask is a boolean [D] over θ: True keeps an entry, False prunes it. Only weight
matrices (parameters with two or more dimensions) are pruned; biases and norm
parameters are always kept, as in Frankle & Carbin (2019). ``keep`` is the fraction of
the prunable entries kept, counted on the *original* size, so iterative pruning to
keep=0.2 ends with exactly the number of weights one-shot pruning to 0.2 has.

Magnitude pruning (Han et al. 2015): keep the ``round(keep · N)`` entries of largest
|θ|, where N counts every prunable entry ('global') or each weight matrix on its own
('layer', so every layer keeps the same fraction). Entries already pruned by a previous
mask stay pruned (their magnitude counts as −∞).

Masked training (`train_masked`) multiplies the gradient by the mask before every
optimizer step and starts from θ ⊙ mask. That keeps pruned entries at exactly 0 for
every optimizer here: their gradient is 0, so SGD's step, the momentum buffer, Adam's
moments (m = v = 0, step 0/(0 + ε) = 0) and coupled weight decay (wd · 0) are all 0.
The loop replicates `losslab.train.train` step for step (batch order, forward seeds,
optimizer), so an all-True mask gives bit-identical weights (tests/test_studies_lottery.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from losslab.errors import UserError, check_choice, check_float, check_int
from losslab.objective import Objective
from losslab.train.config import TrainConfig
from losslab.train.optim import FlatOptimizer
from losslab.train.randomness import forked, seed_step

__all__ = [
    "SCOPES",
    "kept_counts",
    "magnitude_mask",
    "mask_violations",
    "prunable",
    "pruned_nonzeros",
    "random_mask_like",
    "train_masked",
]

SCOPES = ("global", "layer")


def prunable(objective: Objective) -> dict[str, slice]:
    """The slices of θ that pruning may remove: every parameter with ≥ 2 dimensions."""
    slices = objective.layout.slices
    out = {
        name: slices[name]
        for name, shape in zip(objective.layout.names, objective.layout.shapes, strict=True)
        if len(shape) >= 2
    }
    if not out:
        raise UserError("Pruning needs a model with weight matrices: this model has only 1-D parameters.")
    return out


def _target(keep: float, size: int) -> int:
    return int(round(keep * size))


def magnitude_mask(
    objective: Objective,
    theta: torch.Tensor,
    keep: float,
    scope: str = "global",
    previous: torch.Tensor | None = None,
) -> torch.Tensor:
    """The boolean [D] mask keeping the largest-|θ| ``keep`` fraction of the prunable entries.

    ``previous`` (a mask) restricts the choice to entries it keeps (iterative pruning).
    Ties are broken by position (a stable sort), so the mask is deterministic.
    """
    check_float(keep, "keep", "pruning", low=0.0, high=1.0)
    check_choice(scope, "scope", "pruning", SCOPES)
    theta = objective.as_theta(theta).detach()
    magnitude = theta.abs().double()
    if previous is not None:
        magnitude = magnitude.masked_fill(~previous.to(magnitude.device), -math.inf)
    mask = torch.ones(objective.dim, dtype=torch.bool, device=theta.device)
    parts = prunable(objective)
    groups = [list(parts.values())] if scope == "global" else [[s] for s in parts.values()]
    for group in groups:
        values = torch.cat([magnitude[s] for s in group])
        count = _target(keep, len(values))
        order = torch.argsort(-values, stable=True)
        chosen = torch.zeros(len(values), dtype=torch.bool, device=theta.device)
        chosen[order[:count]] = True
        offset = 0
        for s in group:
            size = s.stop - s.start
            mask[s] = chosen[offset : offset + size]
            offset += size
    return mask


def random_mask_like(objective: Objective, mask: torch.Tensor, seed: int) -> torch.Tensor:
    """A uniformly random mask keeping as many entries of each weight matrix as ``mask`` does.

    Frankle & Carbin's random-pruning baseline: same layer-wise sparsity, random positions.
    """
    generator = torch.Generator().manual_seed(int(seed))
    out = torch.ones_like(mask, dtype=torch.bool)
    for s in prunable(objective).values():
        size = s.stop - s.start
        count = int(mask[s].sum())
        chosen = torch.zeros(size, dtype=torch.bool)
        chosen[torch.randperm(size, generator=generator)[:count]] = True
        out[s] = chosen.to(mask.device)
    return out


def kept_counts(objective: Objective, mask: torch.Tensor) -> dict[str, int]:
    """Kept entries of each prunable matrix and in all of them (key 'all')."""
    counts = {name: int(mask[s].sum()) for name, s in prunable(objective).items()}
    counts["all"] = sum(counts.values())
    return counts


def mask_violations(objective: Objective, mask: torch.Tensor, keep: float, scope: str) -> int:
    """How far the mask's kept counts are from ``round(keep · N)`` (0 when it has the requested sparsity)."""
    parts = prunable(objective)
    counts = kept_counts(objective, mask)
    if scope == "global":
        return abs(counts["all"] - _target(keep, sum(s.stop - s.start for s in parts.values())))
    return sum(abs(counts[name] - _target(keep, s.stop - s.start)) for name, s in parts.items())


def train_masked(
    objective: Objective,
    config: TrainConfig,
    mask: torch.Tensor,
    theta: torch.Tensor | None = None,
    *,
    start_step: int = 0,
) -> tuple[torch.Tensor, bool]:
    """Train θ ⊙ mask with the gradient masked at every step; (final θ, diverged).

    Same steps, batch order and forward seeds as `losslab.train.train` with ``config``;
    pruned entries stay exactly 0 (see the module docstring). Batch norm is refused:
    its running statistics are not tracked here. ``start_step`` is where on the
    learning-rate schedule θ was taken: step s uses ``config.lr_at(start_step + s,
    start_step + total)``, so a run rewound to step k of a T-step run continues that
    run's schedule from k (Frankle et al. 2020) instead of restarting it (0: the
    trainer's own schedule; no effect under the constant schedule).
    """
    from losslab.connectivity import has_batch_norm

    if has_batch_norm(objective.model):
        raise UserError("Masked training does not track batch-norm statistics: use a model without batch norm.")
    check_int(start_step, "start_step", "masked training", low=0)
    theta = objective.as_theta(objective.theta0 if theta is None else theta).detach().clone()
    keep = mask.to(device=theta.device, dtype=theta.dtype)
    theta.mul_(keep)
    n = objective.n
    rows, per_epoch, total = config.batch_rows(n), config.steps_per_epoch(n), config.total_steps(n)
    generator = torch.Generator().manual_seed(int(config.seed))
    optimizer = FlatOptimizer(config, theta)
    order = torch.arange(n)
    with forked(objective.device):
        for step in range(total):
            position = step % per_epoch
            if position == 0:
                order = torch.arange(n) if rows == n else torch.randperm(n, generator=generator)
            index = order[position * rows : (position + 1) * rows].to(objective.device)
            params = theta.detach().requires_grad_(True)
            seed_step(config.seed, step, objective.device)
            value = objective.batch_loss(params, index, train=True)
            (grad,) = torch.autograd.grad(value, params)
            if not (torch.isfinite(value) and torch.isfinite(grad).all()):
                return theta, True
            theta = optimizer.step(theta, grad * keep, config.lr_at(start_step + step, start_step + total))
    return theta, False


def pruned_nonzeros(theta: torch.Tensor, mask: torch.Tensor) -> int:
    """Pruned entries of θ that are not exactly 0 (must be 0 after masked training)."""
    return int(np.count_nonzero(theta.detach().cpu().numpy()[~mask.cpu().numpy()]))
