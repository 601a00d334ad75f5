"""Align network B to network A by permuting B's hidden units, then prove nothing else changed.

`align` picks the permutations (weight or activation matching), applies them to B's
parameters and buffers, and always checks that the permuted B computes the same outputs
as B on a batch of the data. A spec that misses a tensor, or a derivation rule that is
wrong for some model, then fails loudly instead of producing a barrier of a different
network.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from losslab.connectivity.activation_matching import activation_matching
from losslab.connectivity.graph import TracedNetwork
from losslab.connectivity.network import Network, as_network
from losslab.connectivity.permutation_spec import PermutationSpec, SpecLike
from losslab.connectivity.weight_matching import weight_matching
from losslab.errors import UserError, check_choice, check_int
from losslab.objective import Objective
from losslab.store import register_result

__all__ = [
    "ALIGN_METHODS",
    "Alignment",
    "align",
    "check_function",
    "permute_network",
    "resolve_spec",
]

ALIGN_METHODS = ("weight", "activation")


@register_result
@dataclass
class Alignment:
    """B aligned to A: the permutations, the permuted network, what it cost and the function check.

    ``perms[g][i]`` is the unit of B that becomes unit i; ``theta``/``buffers`` are the
    permuted B; ``max_output_change`` is max |f(x; πB) − f(x; B)| on the checked batch,
    which is at most ``tolerance``. ``cosine_before``/``after`` compare θ_A and θ_B.
    """

    method: str
    spec: dict[str, Any]
    perms: dict[str, np.ndarray]
    theta: np.ndarray
    buffers: dict[str, np.ndarray]
    sweeps: int
    seconds: float
    cosine_before: float
    cosine_after: float
    max_output_change: float
    tolerance: float

    def network(self, objective: Objective) -> Network:
        """The aligned B as a `Network` of ``objective``."""
        buffers = {k: torch.as_tensor(v) for k, v in self.buffers.items()}
        return as_network(objective, torch.as_tensor(self.theta), buffers, name="the aligned network")

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "groups": len(self.perms),
            "seconds": round(self.seconds, 4),
            "sweeps": self.sweeps,
            "cosine_before": self.cosine_before,
            "cosine_after": self.cosine_after,
            "max_output_change": self.max_output_change,
            "moved_units": int(sum(int((p != np.arange(len(p))).sum()) for p in self.perms.values())),
        }


def resolve_spec(
    objective: Objective, spec: SpecLike | None, traced: TracedNetwork | None = None
) -> tuple[PermutationSpec, TracedNetwork | None]:
    """The spec to use (derived when ``spec`` is None) and the traced graph when the model traces.

    A user spec is checked against the derived one where the model is derivable: it
    must cover every hidden dimension the derivation finds.
    """
    if spec is None:
        traced = traced or TracedNetwork(objective)
        return traced.derived(), traced
    chosen = PermutationSpec.of(spec)
    chosen.sizes({**objective.layout.unflatten(objective.theta0), **objective.buffers})
    if traced is None:
        try:
            traced = TracedNetwork(objective)
        except UserError:  # an untraceable model with a user spec: weight matching still works
            traced = None
    if traced is not None and traced.spec is not None:
        chosen.covers(traced.spec)
    return chosen, traced


def permute_network(
    objective: Objective, spec: PermutationSpec, network: Network, perms: dict[str, torch.Tensor]
) -> Network:
    """``network`` with every group's hidden units reordered (parameters and buffers alike)."""
    state = spec.apply(network.state(objective), perms)
    return Network(objective.layout.flatten(state).clone(), {k: state[k] for k in network.buffers})


def check_function(objective: Objective, before: Network, after: Network, *, rows: int = 256) -> tuple[float, float]:
    """max |f(x; after) − f(x; before)| over the first ``rows`` data rows, and the tolerance.

    Permuting hidden units reorders the terms of the sums inside each layer and nothing
    else, so the outputs agree to accumulated round-off: 1e-4 (float32; the bound the
    Objective's determinism check uses) or 1e-10 (float64) times 1 + max |f|. A wrong
    permutation changes outputs by O(1). Raises a `UserError` when the check fails.
    """
    X = objective.X[:rows]
    f0 = objective.forward(before.theta, X, buffers=before.buffers)
    f1 = objective.forward(after.theta, X, buffers=after.buffers)
    change = float((f1 - f0).abs().max())
    tolerance = (1e-4 if objective.dtype == torch.float32 else 1e-10) * (1.0 + float(f0.abs().max()))
    if not change <= tolerance:
        raise UserError(
            f"The permuted network computes a different function (max |Δ output| = {change:.3g} "
            f"> {tolerance:.3g} on a data batch): the permutation spec misses an axis that reads "
            "or writes these hidden units; pass a spec that lists every such axis "
            "(losslab.connectivity.PermutationSpec)."
        )
    return change, tolerance


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-300))


def align(
    objective: Objective,
    a: Any,
    b: Any,
    *,
    method: str = "weight",
    spec: SpecLike | None = None,
    seed: int = 0,
    max_sweeps: int = 100,
    traced: TracedNetwork | None = None,
    check_rows: int = 256,
) -> Alignment:
    """Permute the hidden units of ``b`` to match ``a``; check that ``b``'s function is unchanged.

    ``a`` and ``b`` are networks of ``objective``'s architecture (`Network`, module,
    state_dict or θ). ``method``: 'weight' (Ainsworth et al. 2023, seeded by ``seed``)
    or 'activation' (correlations on ``objective``'s data). ``spec``: derived from the
    model when None (see `losslab.connectivity.derive_spec`).
    """
    check_choice(method, "method", "align", ALIGN_METHODS)
    check_int(check_rows, "check_rows", "align", low=1)
    net_a, net_b = (
        as_network(objective, a, name="network A"),
        as_network(objective, b, name="network B"),
    )
    chosen, traced = resolve_spec(objective, spec, traced)
    start = time.perf_counter()
    if method == "weight":
        match = weight_matching(
            chosen,
            net_a.state(objective),
            net_b.state(objective),
            params=objective.layout.names,
            seed=seed,
            max_sweeps=max_sweeps,
        )
        perms, sweeps = match.perms, match.sweeps
    else:
        if traced is None:
            raise UserError("Activation matching needs a model torch.fx can trace: use method='weight' with a spec.")
        perms, sweeps = activation_matching(traced, chosen, net_a, net_b), 1
    seconds = time.perf_counter() - start
    aligned = permute_network(objective, chosen, net_b, perms)
    change, tolerance = check_function(objective, net_b, aligned, rows=check_rows)
    return Alignment(
        method=method,
        spec=chosen.to_dict(),
        perms={g: p.cpu().numpy() for g, p in perms.items()},
        theta=aligned.theta.cpu().numpy().copy(),
        buffers={k: v.cpu().numpy().copy() for k, v in aligned.buffers.items()},
        sweeps=sweeps,
        seconds=seconds,
        cosine_before=_cosine(net_a.theta, net_b.theta),
        cosine_after=_cosine(net_a.theta, aligned.theta),
        max_output_change=change,
        tolerance=tolerance,
    )
