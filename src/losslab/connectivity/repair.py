"""REPAIR (Jordan et al. 2023): undo the variance collapse of interpolated hidden units.

Averaging two aligned networks averages hidden units that are correlated but not
equal, so the units of θ(t) have smaller spread than those of either endpoint, and the
collapse compounds with depth. REPAIR rescales every unit u of the network at t so its
mean and standard deviation on the data are the interpolated ones of the endpoints,

    μ*_u = (1 − t)·μ_u^A + t·μ_u^B,     σ*_u = (1 − t)·σ_u^A + t·σ_u^B,

applied to the outputs of each linear or convolutional layer that computes a group of
hidden units, in forward order (correcting a layer changes the statistics downstream).
The affine correction z ← (z − μ_u)·σ*_u/σ_u + μ*_u is folded into that layer's weight
and bias, so the corrected point is again a θ. For networks with batch norm the reset
of the statistics (`reestimate_batch_norm`) is the same correction and is on by default.
"""

from __future__ import annotations

import torch

from losslab.connectivity.batchnorm import ChannelMoments
from losslab.connectivity.graph import Layer, TracedNetwork
from losslab.connectivity.network import Network, has_batch_norm
from losslab.errors import UserError
from losslab.objective import Objective

__all__ = ["Repair", "check_repairable"]


def check_repairable(objective: Objective) -> None:
    """Fail early for models REPAIR does not apply to (batch norm: the reset does its job)."""
    if has_batch_norm(objective.model):
        raise UserError(
            "REPAIR is for networks without batch norm: with batch norm the statistics "
            "reset at every point (on by default, --bn-reset) is the same correction "
            "(Jordan et al. 2023)."
        )


class Repair:
    """REPAIR between ``start`` and ``end`` (B aligned to A): ``repair(θ, t)`` corrects θ(t)."""

    def __init__(self, traced: TracedNetwork, start: Network, end: Network) -> None:
        check_repairable(traced.objective)
        self.traced = traced
        self.layers = [layer for layer in traced.layers if not layer.before_batch_norm]
        if not self.layers:
            raise UserError("REPAIR found no linear or convolutional layer that computes hidden units in this model.")
        missing = next((layer for layer in self.layers if layer.bias is None), None)
        if missing is not None:
            raise UserError(
                f"REPAIR folds its correction into each layer's bias, but {missing.weight!r} "
                "has none: "
                "use a model with biases, or leave --repair off."
            )
        self.buffers = start.buffers
        self.goal_start = {layer.node: self._statistics(start, layer) for layer in self.layers}
        self.goal_end = {layer.node: self._statistics(end, layer) for layer in self.layers}

    def _statistics(self, network: Network, layer: Layer) -> tuple[torch.Tensor, torch.Tensor]:
        moments = ChannelMoments()
        for outputs in self.traced.activations(network, [layer.node], stop=layer.node):
            moments.add(outputs[layer.node], layer.axis)
        mean, var = moments.mean_var()
        return mean, var.sqrt()

    def __call__(self, theta: torch.Tensor, t: float) -> torch.Tensor:
        """θ with every hidden layer's output rescaled to the interpolated endpoint statistics."""
        theta = theta.clone()
        slices = self.traced.objective.layout.slices
        for layer in self.layers:
            mean, std = self._statistics(Network(theta, self.buffers), layer)
            (mean_a, std_a), (mean_b, std_b) = (
                self.goal_start[layer.node],
                self.goal_end[layer.node],
            )
            goal_mean, goal_std = torch.lerp(mean_a, mean_b, t), torch.lerp(std_a, std_b, t)
            alive = std > 0  # a constant unit has no spread to rescale: leave it as it is
            scale = torch.where(alive, goal_std / std.clamp_min(1e-300), torch.ones_like(std))
            shift = torch.where(alive, goal_mean - mean * scale, torch.zeros_like(std))
            weight = theta[slices[layer.weight]]
            rows = weight.numel() // len(scale)
            theta[slices[layer.weight]] = (weight.view(len(scale), rows) * scale[:, None].to(weight)).reshape(-1)
            bias = theta[slices[layer.bias]]  # type: ignore[index]
            theta[slices[layer.bias]] = bias * scale.to(bias) + shift.to(bias)  # type: ignore[index]
        return theta
