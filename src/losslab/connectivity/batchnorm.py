"""Batch-norm statistics that belong to a point θ, not to the network it came from.

A batch-norm layer in eval mode normalizes with running statistics gathered while one
network trained. At a point between two networks those statistics describe neither:
interpolated networks then look far worse than they are, and resetting the statistics
removes most of the apparent barrier (Garipov et al. 2018; Jordan et al. 2023, where
this reset is the batch-norm form of REPAIR).

`reestimate_batch_norm` sets every layer's running mean and variance to the mean and
population variance of its input over the training data, layer by layer in the order
the forward pass reaches them, with the layers before already set. That is exactly
what train-mode batch norm computes on the whole training set as one batch, so the
result does not depend on how the data are batched.
"""

from __future__ import annotations

import torch
from torch import nn

from losslab.objective import Objective

__all__ = ["ChannelMoments", "interpolate_buffers", "reestimate_batch_norm"]


class _Reached(Exception):
    """Raised by the hook to stop a forward pass once the layer being estimated has its input."""


class ChannelMoments:
    """Per-channel mean and population variance of activations, accumulated over batches.

    Sums run in float64 around the first batch's mean, which avoids the cancellation
    of E[x²] − E[x]² when the mean is large against the spread.
    """

    def __init__(self) -> None:
        self.count = 0
        self.shift: torch.Tensor | None = None
        self.total: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None

    def add(self, x: torch.Tensor, axis: int = 1) -> None:
        """Add activations ``x``: ``axis`` holds the channels, every other axis observations."""
        rows = x.movedim(axis, -1).reshape(-1, x.shape[axis]).double()
        if self.shift is None:
            self.shift = rows.mean(0)
            self.total = torch.zeros_like(self.shift)
            self.squares = torch.zeros_like(self.shift)
        centred = rows - self.shift
        self.total += centred.sum(0)
        self.squares += centred.square().sum(0)
        self.count += len(rows)

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.shift is not None and self.total is not None and self.squares is not None
        mean = self.total / self.count
        return self.shift + mean, (self.squares / self.count - mean.square()).clamp_min(0.0)


class _NextLayer:
    """A forward pre-hook that catches the input of the first batch-norm layer not yet estimated."""

    def __init__(self, done: set[int]) -> None:
        self.done = done
        self.target: int | None = None
        self.moments = ChannelMoments()

    def __call__(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if id(module) in self.done:
            return
        if self.target is None:
            self.target = id(module)
        if id(module) == self.target:
            self.moments.add(args[0])
        raise _Reached  # nothing after this layer matters until it is estimated


def reestimate_batch_norm(
    objective: Objective, theta: torch.Tensor, buffers: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Buffers for θ whose batch-norm statistics are re-estimated on ``objective``'s data.

    Other buffers are copied from ``buffers`` (default: the objective's). Costs one
    partial forward pass over the data per batch-norm layer.
    """
    out = {k: v.clone() for k, v in (objective.buffers if buffers is None else buffers).items()}
    layers = {
        id(m): (name, m)
        for name, m in objective.model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    }
    done: set[int] = set()
    while True:
        catch = _NextLayer(done)
        handles = [m.register_forward_pre_hook(catch) for _, m in layers.values()]
        try:
            for X, _ in objective.batches():
                try:
                    objective.forward(theta, X, buffers=out)
                except _Reached:
                    pass
        finally:
            for handle in handles:
                handle.remove()
        if catch.target is None:
            return out
        mean, var = catch.moments.mean_var()
        prefix = layers[catch.target][0]
        out[f"{prefix}.running_mean"] = mean.to(out[f"{prefix}.running_mean"].dtype)
        out[f"{prefix}.running_var"] = var.to(out[f"{prefix}.running_var"].dtype)
        done.add(catch.target)


def interpolate_buffers(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], t: float) -> dict[str, torch.Tensor]:
    """(1 − t)·a + t·b for floating buffers (running statistics); counters are taken from ``a``."""
    return {k: torch.lerp(a[k], b[k], t) if a[k].is_floating_point() else a[k] for k in a}
