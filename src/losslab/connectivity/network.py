"""A network as connectivity sees it: the flat parameters θ and the buffers that go with them.

Two trained networks of one architecture share the `Objective` (model, loss, data) but
not their buffers: with batch norm each carries its own running statistics. Every
function in `losslab.connectivity` therefore takes its endpoints as a `Network`, or as
anything `as_network` turns into one (a module, a state_dict, or θ alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from losslab.errors import UserError
from losslab.objective import Objective

__all__ = ["Network", "as_network", "has_batch_norm"]


@dataclass(frozen=True)
class Network:
    """Flat parameters ``theta`` [D] and the ``buffers`` (batch-norm statistics) of one network."""

    theta: torch.Tensor
    buffers: dict[str, torch.Tensor]

    def state(self, objective: Objective) -> dict[str, torch.Tensor]:
        """Parameters (views of θ) and buffers by name, as ``model.state_dict()`` lays them out."""
        return {**objective.layout.unflatten(self.theta), **self.buffers}


def as_network(
    objective: Objective,
    network: Network | torch.Tensor | np.ndarray | nn.Module | dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor] | None = None,
    *,
    name: str = "network",
) -> Network:
    """A `Network` on ``objective``'s device and dtype.

    A module or state_dict brings its own buffers; a bare θ takes ``buffers`` or, when
    none are given, the objective's (those of the model it was built with).
    """
    if isinstance(network, Network):
        theta, own = network.theta, network.buffers
    elif isinstance(network, (nn.Module, dict)):
        state = dict(network.state_dict() if isinstance(network, nn.Module) else network)
        _same_layout(objective, state, name)
        theta, own = state, {k: v for k, v in state.items() if k in objective.buffers}
    else:
        theta, own = torch.as_tensor(network), {}
    chosen: dict[str, Any] = {**objective.buffers, **own, **(buffers or {})}
    # θ is checked against the buffers it will travel with: a trained θ given with its own
    # result.buffers is right, the same θ with the objective's untouched statistics is not.
    theta = objective.with_buffers(chosen).as_theta(theta, name).detach().clone()
    cast = {}
    for key in objective.buffers:
        value = torch.as_tensor(chosen[key])
        if value.shape != objective.buffers[key].shape:
            raise UserError(
                f"The buffer {key!r} of {name} has shape {tuple(value.shape)} but the model's has "
                f"{tuple(objective.buffers[key].shape)}: pass buffers of the same architecture."
            )
        dtype = objective.dtype if value.is_floating_point() else value.dtype
        cast[key] = value.detach().to(objective.device, dtype).clone()
    return Network(theta, cast)


def _same_layout(objective: Objective, state: dict[str, Any], name: str) -> None:
    """Fail on the first parameter that is missing or shaped differently from the model's."""
    for key, shape in zip(objective.layout.names, objective.layout.shapes, strict=True):
        if key not in state:
            raise UserError(
                f"{name} is of another architecture: the first differing key is {key!r} (missing). "
                "Pass networks of the objective's model."
            )
        if tuple(state[key].shape) != tuple(shape):
            raise UserError(
                f"{name} is of another architecture: the first differing key is {key!r} (shape "
                f"{tuple(state[key].shape)}, the model's {tuple(shape)}). "
                "Pass networks of the objective's model."
            )


def has_batch_norm(model: nn.Module) -> bool:
    """True when the model holds a batch-norm layer (whose statistics depend on θ)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
