"""The networks whose global optima `losslab.exact` certifies, as trainable zoo models.

- ``three_node:d``: the Blum–Rivest network relaxed for gradient descent: two sigmoid
  units feeding a product, p(x) = σ(z₁) σ(z₂) with z = W x + b, a soft AND. It returns
  the logit log(p / (1 − p)) so the ``bce`` loss applies; `SoftAndNet.threshold_outputs`
  evaluates the hard network (1[z₁ > 0 and z₂ > 0]) with the same weights.
- ``relu2:d-m``: f(x) = Σ_j (w_j·x + b_j)_+ α_j, m ReLU units and a linear output with no
  bias, the architecture of the convex program of Pilanci & Ergen (2020).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from losslab._loading import reject_unknown
from losslab.errors import UserError
from losslab.models.zoo import register_model

__all__ = ["SoftAndNet", "TwoLayerReLU"]


class SoftAndNet(nn.Module):
    """Two sigmoid units and a soft AND: the logit of σ(z₁)σ(z₂), computed without cancellation.

    log p = log σ(z₁) + log σ(z₂) and 1 − p = σ(−z₁) + σ(z₁)σ(−z₂), a sum of positive
    terms, so both logs stay accurate when p is near 0 or 1.
    """

    def __init__(self, fan_in: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(fan_in, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.hidden(x.flatten(1))
        log_sig = -F.softplus(-z)  # log σ(z)
        log_sig_neg = -F.softplus(z)  # log σ(−z)
        log_p = log_sig.sum(1)
        log_q = torch.logaddexp(log_sig_neg[:, 0], log_sig[:, 0] + log_sig_neg[:, 1])
        return (log_p - log_q)[:, None]

    def threshold_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The hard 3-node network with these weights: True iff both units are positive."""
        return (self.hidden(x.flatten(1)) > 0).all(1)


class TwoLayerReLU(nn.Sequential):
    """Linear(d, m) → ReLU → Linear(m, 1, bias=False): θ = (W₁, b₁, α)."""

    def __init__(self, fan_in: int, width: int) -> None:
        super().__init__(nn.Linear(fan_in, width), nn.ReLU(), nn.Linear(width, 1, bias=False))


def _ints(text: str | None, count: int, spec: str, example: str) -> list[int]:
    try:
        values = [int(v) for v in (text or "").split("-")]
    except ValueError:
        values = []
    if len(values) != count or min(values) < 1:
        raise UserError(f"The model spec {spec!r} must be written like {example!r}.")
    return values


@register_model("three_node", "three_node:12")
def _three_node(positional: str | None, options: dict[str, str], spec: str) -> nn.Module:
    (fan_in,) = _ints(positional, 1, spec, "three_node:12")
    reject_unknown(options, "three_node", [])
    return SoftAndNet(fan_in)


@register_model("relu2", "relu2:3-24")
def _relu2(positional: str | None, options: dict[str, str], spec: str) -> nn.Module:
    fan_in, width = _ints(positional, 2, spec, "relu2:3-24")
    reject_unknown(options, "relu2", [])
    return TwoLayerReLU(fan_in, width)
