"""Activation matching (Ainsworth et al. 2023, §3.1; Li et al. 2016 before them).

Match hidden units by what they compute rather than by their weights: run both networks
on the same data, and for each group pair unit i of A with the unit of B whose
activations correlate most with it,

    max_π  Σ_i corr(z_i^A, z_{π(i)}^B),

one linear assignment per group. Activations are taken where the next layer reads the
group's units (after the nonlinearity; for a residual stream, at every point the stream
is read, correlations summed). Convolutional feature maps count every position as an
observation, also where a layer reads them flattened (C channels of H·W positions as
C·H·W features). Each unit's activations depend on B's own weights only, not on how other
groups are permuted, so the groups are independent. Units that never vary on the data
(dead ReLUs) correlate with nothing and are paired arbitrarily among themselves: the
data cannot tell them apart.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from losslab.connectivity.graph import Probe, TracedNetwork
from losslab.connectivity.network import Network
from losslab.connectivity.permutation_spec import PermutationSpec
from losslab.errors import UserError

__all__ = ["activation_matching", "correlations"]


class _Cross:
    """Running sums for the correlation matrix between A's and B's units at one probe."""

    def __init__(self) -> None:
        self.count = 0
        self.sums: list[torch.Tensor] = []

    def add(self, za: torch.Tensor, zb: torch.Tensor) -> None:
        za, zb = za.double(), zb.double()
        parts = [za.sum(0), zb.sum(0), za.square().sum(0), zb.square().sum(0), za.T @ zb]
        self.sums = parts if not self.sums else [s + p for s, p in zip(self.sums, parts, strict=True)]
        self.count += len(za)

    def correlation(self) -> torch.Tensor:
        sa, sb, saa, sbb, sab = (s / self.count for s in self.sums)
        std_a = (saa - sa.square()).clamp_min(0).sqrt()
        std_b = (sbb - sb.square()).clamp_min(0).sqrt()
        cov = sab - sa[:, None] * sb[None, :]
        scale = std_a[:, None] * std_b[None, :]
        # A unit that never varies (a dead ReLU) correlates with nothing: 0.
        return torch.where(scale > 0, cov / scale.clamp_min(1e-300), torch.zeros_like(cov))


def _probes(traced: TracedNetwork, spec: PermutationSpec) -> dict[str, list[Probe]]:
    """Each group of ``spec`` with the places its units can be observed (via the derived spec)."""
    derived = traced.derived() if traced.spec is None else traced.spec
    home = {(a.name, a.axis): g for g, axes in derived.groups.items() for a in axes}
    out: dict[str, list[Probe]] = {}
    for group, axes in spec.groups.items():
        found = next((home[(a.name, a.axis)] for a in axes if (a.name, a.axis) in home), None)
        probes = traced.probes.get(found, []) if found is not None else []
        if not probes:
            raise UserError(
                f"Activation matching finds no activations for group {group!r} of the "
                "permutation spec: use weight matching (align='weight') for this model."
            )
        out[group] = probes
    return out


def correlations(
    traced: TracedNetwork,
    spec: PermutationSpec,
    a: Network,
    b: Network,
    X: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """corr(z_i^A, z_j^B) [units, units] per group, summed over its probes, on the data ``X``."""
    probes = _probes(traced, spec)
    nodes = list({p.node: None for ps in probes.values() for p in ps})
    cross = {p: _Cross() for ps in probes.values() for p in ps}
    for za, zb in zip(traced.activations(a, nodes, X=X), traced.activations(b, nodes, X=X), strict=True):
        for probe, acc in cross.items():
            acc.add(probe.observations(za[probe.node]), probe.observations(zb[probe.node]))
    return {g: sum(cross[p].correlation() for p in ps) for g, ps in probes.items()}  # type: ignore[misc]


def activation_matching(
    traced: TracedNetwork,
    spec: PermutationSpec,
    a: Network,
    b: Network,
    X: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Permutations per group maximizing Σ corr (aligned unit i is unit ``perms[g][i]`` of B)."""
    out = {}
    for group, corr in correlations(traced, spec, a, b, X).items():
        _, cols = linear_sum_assignment(corr.cpu().numpy(), maximize=True)
        out[group] = torch.as_tensor(cols, dtype=torch.long)
    return out
