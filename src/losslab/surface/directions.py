"""Directions in parameter space that span a loss-surface slice through θ.

A slice is only as meaningful as its directions. Li et al. (2018, "Visualizing the Loss
Landscape of Neural Nets") showed that plain Gaussian directions make networks with
different weight scales incomparable (ReLU networks are invariant to rescaling a layer)
and proposed *filter normalization*: draw d ~ N(0, I), then rescale every filter of d
to the norm of the same filter in θ,

    d_{l,k} ← d_{l,k} · ‖θ_{l,k}‖ / ‖d_{l,k}‖,

where a filter is one output unit: a row ``weight[k, :]`` of a linear layer, the slice
``weight[k]`` of a convolution (every parameter with two or more axes is cut along its
first axis). Biases and normalization parameters (the one-axis parameters) are set to
zero, as in Li et al.'s ``ignore='biasbn'``; with ``include_bias`` each is instead
rescaled as a whole vector to its norm in θ. *Layer normalization* uses one layer
(module) as the unit instead of one filter.

Directions from a training trajectory are the top principal components of the
snapshots relative to the final point (Li et al. 2018, §7), and a direction toward
another point is simply their difference. Everything is seeded: the Gaussian draws come
from a CPU ``torch.Generator`` in float64 and are then cast, so a seed gives the same
direction on every device and dtype.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from losslab.errors import UserError, check_choice, check_int
from losslab.objective import ParamLayout
from losslab.store import register_result

__all__ = [
    "DIRECTION_KINDS",
    "Directions",
    "filter_normalize",
    "gaussian",
    "layer_normalize",
    "make_directions",
    "orthogonalize",
    "pca_directions",
    "random_directions",
]

DIRECTION_KINDS = ("filter", "layer", "random", "pca")


@register_result
@dataclass
class Directions:
    """Two directions d₁, d₂ ∈ R^D (d₂ is None for a 1-D slice), saved with every surface.

    ``kind`` says how each was made ('filter', 'layer', 'random', 'pca', 'toward' or
    'given'); ``seed`` is the seed of the Gaussian draws; ``explained_variance`` holds,
    for PCA directions, the fraction of the trajectory's variance each component
    explains. Pass a saved `Directions` back to `plane` to recompute or extend a surface.
    """

    d1: np.ndarray
    d2: np.ndarray | None
    kind: list[str]
    seed: int | None = None
    include_bias: bool = False
    orthogonalized: bool = False
    explained_variance: list[float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.d1.shape[0])

    def tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """d₁, d₂ as tensors on ``like``'s device and dtype, their lengths checked against it."""
        out = []
        for name, d in (("d1", self.d1), ("d2", self.d2)):
            if d is None:
                out.append(None)
                continue
            d = torch.as_tensor(np.asarray(d))
            if d.shape != like.shape:
                raise UserError(
                    f"The direction {name} has {tuple(d.shape)} entries but the model has "
                    f"{like.shape[0]} parameters: make directions for this model."
                )
            out.append(d.to(like.device, like.dtype))
        return out[0], out[1]

    def fingerprint(self) -> str:
        """A short hash of the directions' values (what a resumable grid is keyed on)."""
        h = hashlib.sha256()
        for d in (self.d1, self.d2):
            if d is not None:
                h.update(np.ascontiguousarray(d).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "/".join(self.kind),
            "seed": self.seed,
            "norm_d1": float(np.linalg.norm(self.d1)),
        }
        if self.d2 is not None:
            out["norm_d2"] = float(np.linalg.norm(self.d2))
            out["cosine"] = cosine(self.d1, self.d2)
        if self.explained_variance is not None:
            out["explained_variance"] = self.explained_variance
        return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """cos ∠(a, b), in float64 (0 when either is zero)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = float(np.linalg.norm(a64) * np.linalg.norm(b64))
    return float(a64 @ b64) / denom if denom > 0 else 0.0


def gaussian(dim: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """d ~ N(0, I_D) drawn in float64 on the CPU from ``generator``, cast to ``like``."""
    return torch.randn(dim, generator=generator, dtype=torch.float64).to(like.device, like.dtype)


def _units(layout: ParamLayout, unit: str) -> list[tuple[str, list[slice], tuple[int, ...]]]:
    """The normalization units of θ: (kind, slices, rows) with kind 'weight' or 'vector'.

    'filter': each parameter with ≥ 2 axes is one unit cut into ``shape[0]`` rows;
    'layer': the ≥ 2-axis parameters of one module form one unit. One-axis parameters
    (biases, normalization scales and shifts) are always units of their own ('vector').
    """
    slices = layout.slices
    shapes = dict(zip(layout.names, layout.shapes, strict=True))
    units: list[tuple[str, list[slice], tuple[int, ...]]] = []
    if unit == "filter":
        for name in layout.names:
            shape = tuple(shapes[name])
            kind = "weight" if len(shape) >= 2 else "vector"
            units.append((kind, [slices[name]], (shape[0],) if kind == "weight" else (1,)))
        return units
    owners: dict[str, list[slice]] = {}
    for name in layout.names:
        shape = tuple(shapes[name])
        if len(shape) >= 2:
            owner = name.rsplit(".", 1)[0] if "." in name else name
            owners.setdefault(owner, []).append(slices[name])
        else:
            units.append(("vector", [slices[name]], (1,)))
    units.extend(("weight", parts, (1,)) for parts in owners.values())
    return units


def _normalize(
    d: torch.Tensor, theta: torch.Tensor, layout: ParamLayout, unit: str, include_bias: bool
) -> torch.Tensor:
    if d.shape != theta.shape or d.shape != (layout.dim,):
        raise UserError(
            f"The direction has {tuple(d.shape)} entries and θ {tuple(theta.shape)}, but the model "
            f"has {layout.dim} parameters: pass vectors of length {layout.dim}."
        )
    # Norms in float64: a float32 filter of 10⁴ entries would otherwise carry ~1e-5 error.
    d64, t64 = d.to(torch.float64), theta.to(torch.float64)
    out = torch.zeros_like(d64)
    for kind, parts, (rows,) in _units(layout, unit):
        if kind == "vector" and not include_bias:
            continue  # Li et al.: biases and batch-norm parameters stay at zero
        dv = torch.cat([d64[s] for s in parts]).view(rows, -1)
        tv = torch.cat([t64[s] for s in parts]).view(rows, -1)
        d_norm = dv.norm(dim=1, keepdim=True)
        # A zero row of d (possible only by construction) stays zero rather than NaN.
        scaled = torch.where(d_norm > 0, dv * (tv.norm(dim=1, keepdim=True) / d_norm.clamp_min(1e-300)), 0.0)
        start = 0
        flat = scaled.reshape(-1)
        for s in parts:
            size = s.stop - s.start
            out[s] = flat[start : start + size]
            start += size
    return out.to(d.dtype)


def filter_normalize(
    d: torch.Tensor, theta: torch.Tensor, layout: ParamLayout, *, include_bias: bool = False
) -> torch.Tensor:
    """Li et al. (2018) filter normalization: each filter of d gets the norm of that filter in θ.

    One-axis parameters become zero, or with ``include_bias`` are rescaled as whole
    vectors to their norm in θ. Filters that are zero in θ become zero in d.
    """
    return _normalize(d, theta, layout, "filter", include_bias)


def layer_normalize(
    d: torch.Tensor, theta: torch.Tensor, layout: ParamLayout, *, include_bias: bool = False
) -> torch.Tensor:
    """Layer normalization: the weights of each module in d get their joint norm in θ.

    One-axis parameters are handled as in `filter_normalize`.
    """
    return _normalize(d, theta, layout, "layer", include_bias)


def orthogonalize(d2: torch.Tensor, d1: torch.Tensor) -> torch.Tensor:
    """Gram–Schmidt: d₂ − (⟨d₂, d₁⟩ / ⟨d₁, d₁⟩) d₁, computed in float64."""
    a, b = d1.to(torch.float64), d2.to(torch.float64)
    denom = a @ a
    if denom == 0:
        return d2.clone()
    return (b - (b @ a) / denom * a).to(d2.dtype)


def random_directions(
    layout: ParamLayout,
    theta: torch.Tensor,
    kind: str = "filter",
    *,
    seed: int = 0,
    include_bias: bool = False,
    orthogonal: bool = False,
    count: int = 2,
) -> Directions:
    """``count`` (1 or 2) seeded Gaussian directions normalized by ``kind`` (filter, layer, random).

    d₁ and d₂ are consecutive draws of one generator seeded with ``seed``. With
    ``orthogonal`` d₂ is made orthogonal to d₁ after normalization (Gram–Schmidt), so
    its filter norms are then no longer exactly θ's.
    """
    check_choice(kind, "dirs", "random_directions", ("filter", "layer", "random"))
    check_int(seed, "seed", "random_directions")
    check_int(count, "count", "random_directions", low=1, high=2)
    generator = torch.Generator().manual_seed(seed)
    ds = []
    for _ in range(count):
        d = gaussian(layout.dim, generator, theta)
        if kind == "filter":
            d = filter_normalize(d, theta, layout, include_bias=include_bias)
        elif kind == "layer":
            d = layer_normalize(d, theta, layout, include_bias=include_bias)
        ds.append(d)
    if orthogonal and count == 2:
        ds[1] = orthogonalize(ds[1], ds[0])
    d2 = _np(ds[1]) if count == 2 else None
    return Directions(
        _np(ds[0]),
        d2,
        [kind] * count,
        seed=seed,
        include_bias=include_bias,
        orthogonalized=orthogonal and count == 2,
    )


def pca_directions(
    snapshots: np.ndarray | torch.Tensor, *, dim: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Top two principal components of a trajectory relative to its final point.

    With snapshots θ_0 … θ_T, the rows of M are θ_t − θ_T (t = 0 … T, the final zero
    row included, as in Li et al. 2018); M is centered column-wise and its SVD
    M = U S Vᵀ gives the components (rows of Vᵀ) and the explained variance fractions
    s_k² / Σ s². Each component's sign is chosen so that the start of training
    (θ_0 − θ_T) has a positive coordinate. Returns (pc1, pc2, [fraction1, fraction2]).

    Three snapshots are the minimum (centering removes one dimension, and two
    components are needed); a trajectory that is numerically a line is refused.
    """
    S = host_float64(snapshots)
    if S.ndim != 2:
        raise UserError(f"PCA needs snapshots as a [T, D] array. Got shape {tuple(S.shape)}.")
    if dim is not None and S.shape[1] != dim:
        raise UserError(
            f"The trajectory's snapshots have {S.shape[1]} entries but the model {dim} parameters: "
            "give the train run of this model."
        )
    if S.shape[0] < 3:
        raise UserError(
            f"A PCA of the trajectory needs at least 3 snapshots; the run has {S.shape[0]}: "
            "train with --snapshot-every smaller (or more epochs), or use --dirs filter."
        )
    M = S - S[-1]
    M = M - M.mean(0)
    _, s, Vt = torch.linalg.svd(M, full_matrices=False)
    total = float((s**2).sum())
    if total == 0 or float(s[1]) <= 1e-6 * float(s[0]):
        raise UserError(
            "The trajectory does not span two dimensions (its snapshots lie on a line), so "
            "PCA has no second direction: use --dirs filter (optionally --toward)."
        )
    start = S[0] - S[-1]
    pcs = []
    for k in range(2):
        v = Vt[k]
        side = float(start @ v)
        if side < 0 or (side == 0 and float(v[v.abs().argmax()]) < 0):
            v = -v
        pcs.append(v.numpy())
    fractions = [float(s[k] ** 2) / total for k in range(2)]
    return pcs[0], pcs[1], fractions


def make_directions(
    layout: ParamLayout,
    theta: torch.Tensor,
    kind: str = "filter",
    *,
    seed: int = 0,
    include_bias: bool = False,
    orthogonal: bool = False,
    toward: torch.Tensor | None = None,
    snapshots: np.ndarray | None = None,
    count: int = 2,
    toward_label: str = "toward",
) -> Directions:
    """The directions a surface command asks for.

    ``kind`` is 'filter', 'layer', 'random' or 'pca' (needs ``snapshots``). With
    ``toward`` (a point θ'), d₁ = θ' − θ (so a = 1 is θ' exactly up to rounding) and d₂
    is the first direction of ``kind`` (for 'pca', the first principal component).
    ``count=1`` gives d₁ only (a 1-D slice).
    """
    check_choice(kind, "dirs", "surface", DIRECTION_KINDS)
    check_int(count, "count", "make_directions", low=1, high=2)
    if kind == "pca":
        if snapshots is None:
            raise UserError("--dirs pca needs a trajectory: pass --pca-from TRAIN_RUN.")
        pc1, pc2, fractions = pca_directions(snapshots, dim=layout.dim)
        cast = lambda v: _np(torch.as_tensor(v).to(theta.device, theta.dtype))  # noqa: E731
        if toward is None:
            d2 = cast(pc2) if count == 2 else None
            return Directions(cast(pc1), d2, ["pca"] * count, explained_variance=fractions[:count])
        d1 = _np(_toward(theta, toward))
        d2_t = torch.as_tensor(pc1).to(theta.device, theta.dtype)
        if orthogonal:
            d2_t = orthogonalize(d2_t, torch.as_tensor(d1).to(theta.device))
        return Directions(
            d1,
            _np(d2_t) if count == 2 else None,
            [toward_label, "pca"][:count],
            orthogonalized=orthogonal,
            explained_variance=fractions[:1],
        )
    if toward is None:
        return random_directions(
            layout,
            theta,
            kind,
            seed=seed,
            include_bias=include_bias,
            orthogonal=orthogonal,
            count=count,
        )
    d1 = _toward(theta, toward)
    if count == 1:
        return Directions(_np(d1), None, [toward_label])
    d2 = torch.as_tensor(random_directions(layout, theta, kind, seed=seed, include_bias=include_bias, count=1).d1).to(
        theta.device
    )
    if orthogonal:
        d2 = orthogonalize(d2, d1)
    return Directions(
        _np(d1),
        _np(d2),
        [toward_label, kind],
        seed=seed,
        include_bias=include_bias,
        orthogonalized=orthogonal,
    )


def _toward(theta: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if target.shape != theta.shape:
        raise UserError(
            f"The target point has {tuple(target.shape)} entries but the model {theta.shape[0]} "
            "parameters: give weights of the same architecture."
        )
    d = target.to(theta.device, theta.dtype) - theta
    if not bool(d.any()):
        raise UserError("The target point equals θ, so no direction leads to it: give another checkpoint.")
    return d


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def host_float64(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """An array or a tensor on any device, as a float64 tensor on the CPU (where the small linear algebra runs)."""
    if torch.is_tensor(x):
        return x.detach().to("cpu", torch.float64)
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)
