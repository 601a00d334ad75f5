"""Weight matching (Ainsworth et al. 2023, "Git Re-Basin", Algorithm 1).

Find permutations π of B's hidden units that make its weights as close as possible to A's:

    max_π  J(π) = Σ_ℓ ⟨W_ℓ^A, π(W_ℓ^B)⟩     (equivalently min_π Σ_ℓ ‖W_ℓ^A − π(W_ℓ^B)‖²)

over the parameters ℓ. J couples the permutations of consecutive layers, so the method
is coordinate descent: holding every other group fixed, J is linear in the permutation
P_g of one group, J = ⟨C_g, P_g⟩ with C_g = Σ_{(ℓ, axis) ∈ g} W_ℓ^A (W̃_ℓ^B)ᵀ (both moved
to put ``axis`` first and flattened), and its maximum is one linear assignment problem
(``scipy.optimize.linear_sum_assignment``). Groups are visited in a seeded random order;
sweeps repeat until none improves J. A weight whose two axes both belong to one group
(the block weights of a residual stream) makes J quadratic in P_g: there the assignment
is a proposal, kept only when the exact J increases, so J never decreases.

Buffers (batch-norm running statistics) are permuted with their group but are not part
of J: they are statistics, not weights. Everything runs in float64 on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from losslab.connectivity.permutation_spec import PermutationSpec, permute_axis
from losslab.errors import check_int

__all__ = ["Matching", "weight_matching"]


@dataclass(frozen=True)
class Matching:
    """Permutations per group (aligned unit i is unit ``perms[g][i]`` of B) and the sweeps taken."""

    perms: dict[str, torch.Tensor]
    sweeps: int


def weight_matching(
    spec: PermutationSpec,
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    *,
    params: Iterable[str] | None = None,
    seed: int = 0,
    max_sweeps: int = 100,
) -> Matching:
    """Permutations of ``b``'s hidden units maximizing Σ ⟨a, π(b)⟩ over the tensors ``params``.

    ``a`` and ``b`` map names to tensors (state_dicts); ``params`` names the tensors that
    enter J (default: every tensor the spec touches).
    """
    check_int(max_sweeps, "max_sweeps", "weight_matching", low=1)
    sizes = spec.sizes(a)
    spec.sizes(b)
    touched = {ax.name for axes in spec.groups.values() for ax in axes}
    weights = touched if params is None else touched & set(params)
    A = {k: a[k].detach().to("cpu", torch.float64) for k in weights}
    B = {k: b[k].detach().to("cpu", torch.float64) for k in weights}
    axes_of: dict[str, list[tuple[str, int, int]]] = {k: [] for k in weights}
    for group, axes in spec.groups.items():
        for ax in axes:
            if ax.name in weights:
                axes_of[ax.name].append((group, ax.axis, ax.inner))
    perms = {g: torch.arange(n) for g, n in sizes.items()}

    def permuted(name: str, skip: int | None = None) -> torch.Tensor:
        out = B[name]
        for group, axis, inner in axes_of[name]:
            if axis != skip:
                out = permute_axis(out, axis, perms[group], inner)
        return out

    def score(group: str) -> float:
        """The part of J that depends on ``group``'s permutation."""
        names = {ax.name for ax in spec.groups[group] if ax.name in weights}
        return float(sum((A[k] * permuted(k)).sum() for k in names))

    rng = np.random.default_rng(seed)
    order = list(spec.groups)
    sweeps = 0
    while sweeps < max_sweeps:
        sweeps += 1
        improved = False
        for group in rng.permutation(order):
            n = sizes[group]
            cost = torch.zeros(n, n, dtype=torch.float64)
            for ax in spec.groups[group]:
                if ax.name in weights:
                    wa = A[ax.name].movedim(ax.axis, 0).reshape(n, -1)
                    wb = permuted(ax.name, skip=ax.axis).movedim(ax.axis, 0).reshape(n, -1)
                    cost += wa @ wb.T
            _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
            proposal = torch.as_tensor(cols, dtype=torch.long)
            if torch.equal(proposal, perms[group]):
                continue
            before, previous = score(group), perms[group]
            perms[group] = proposal
            after = score(group)
            # A strict gain beyond float64 round-off of the sum; ties keep the current permutation,
            # which is what guarantees termination.
            if after > before + 1e-12 * max(1.0, abs(before)):
                improved = True
            else:
                perms[group] = previous
        if not improved:
            break
    return Matching(perms, sweeps)
