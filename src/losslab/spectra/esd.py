"""Weight matrices of a model, their empirical spectral densities, and the Marchenko–Pastur law.

The ESD of a layer is the set of eigenvalues of X = WᵀW (the squared singular values of W),
as in Martin & Mahoney (2021). Convolution kernels [out, in, k…] are reshaped to
[out, in·k…] by default (``conv="flatten"``: one matrix per layer, the receptive field as
input features); ``conv="slices"`` instead takes the k… matrices W[:, :, i…] of shape
[out, in] and pools their eigenvalues, which is weightwatcher's default treatment of Conv2D.

Marchenko & Pastur (1967): for an N×M matrix with i.i.d. entries of variance σ², N ≥ M, the
M eigenvalues of WᵀW/N converge in distribution to the density

    ρ(λ) = √((λ₊ − λ)(λ − λ₋)) / (2π σ² y λ),   λ± = σ²(1 ± √y)²,   y = M/N ≤ 1.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from losslab.errors import UserError, check_choice

__all__ = ["CONV_MODES", "esd", "marchenko_pastur_cdf", "marchenko_pastur_edges", "weight_matrices"]

CONV_MODES = ("flatten", "slices")


def weight_matrices(
    source: nn.Module | dict[str, torch.Tensor], *, conv: str = "flatten", min_size: int = 2
) -> dict[str, list[np.ndarray]]:
    """Every weight matrix of a model (or state_dict): name → list of 2-D float64 arrays.

    Tensors with fewer than two dimensions (biases, norms) are skipped, as are matrices whose
    smaller side is below ``min_size``. A Linear weight gives one [out, in] matrix; a
    convolution gives one [out, in·k…] matrix (``conv="flatten"``) or one [out, in] matrix per
    kernel position (``conv="slices"``).
    """
    check_choice(conv, "conv", "spectra", CONV_MODES)
    state = dict(source.named_parameters()) if isinstance(source, nn.Module) else dict(source)
    out: dict[str, list[np.ndarray]] = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor) or value.ndim < 2 or not value.is_floating_point():
            continue
        if "norm" in name.lower() or name.endswith(("running_mean", "running_var")):
            continue
        W = value.detach().to("cpu", torch.float64)
        if W.ndim == 2:
            mats = [W.numpy()]
        elif conv == "flatten":
            mats = [W.reshape(W.shape[0], -1).numpy()]
        else:
            positions = W.reshape(W.shape[0], W.shape[1], -1)
            mats = [positions[:, :, i].numpy() for i in range(positions.shape[2])]
        if min(mats[0].shape) < min_size:
            continue
        out[name] = mats
    if not out:
        raise UserError("The model has no weight matrix to analyse: give a model with Linear or Conv layers.")
    return out


def esd(matrices: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Eigenvalues of WᵀW (ascending), pooled over ``matrices``: the min(N, M) squared singular values each."""
    mats = [matrices] if isinstance(matrices, np.ndarray) else matrices
    values = [np.linalg.svd(np.asarray(W, dtype=np.float64), compute_uv=False) ** 2 for W in mats]
    return np.sort(np.concatenate(values))


def marchenko_pastur_edges(sigma2: float, ratio: float) -> tuple[float, float]:
    """(λ₋, λ₊) of the MP law for WᵀW/N, entries of variance σ², ratio y = min(N, M)/max(N, M)."""
    root = np.sqrt(ratio)
    return sigma2 * (1 - root) ** 2, sigma2 * (1 + root) ** 2


def marchenko_pastur_cdf(x: np.ndarray, sigma2: float, ratio: float, grid: int = 4001) -> np.ndarray:
    """The MP distribution function at ``x`` (the nonzero eigenvalues of WᵀW/max(N, M)).

    Numerical integral of the density on a grid in θ with λ = c + r cos θ, which removes
    the square-root singularities at both edges: ρ(λ) dλ = r² sin²θ / (2π σ² y λ) dθ.
    """
    if not 0 < ratio <= 1:
        raise UserError(f"The Marchenko–Pastur ratio must be in (0, 1]. Got {ratio}.")
    low, high = marchenko_pastur_edges(sigma2, ratio)
    c, r = (high + low) / 2, (high - low) / 2
    theta = np.linspace(np.pi, 0.0, grid)  # λ from low to high
    lam = c + r * np.cos(theta)
    # At y = 1 the lower edge is λ = 0 = c − r, where r² sin²θ/λ = r(1 − cos θ) → 2r: use the limit
    # there instead of a 0/0 that rounding turns into anything.
    safe = lam > 1e-12 * high
    limit = 2 * r / (2 * np.pi * sigma2 * ratio)
    dens = np.where(safe, (r * np.sin(theta)) ** 2 / (2 * np.pi * sigma2 * ratio * np.where(safe, lam, 1.0)), limit)
    steps = 0.5 * (dens[1:] + dens[:-1]) * np.abs(np.diff(theta))
    cdf = np.concatenate([[0.0], np.cumsum(steps)])
    cdf /= cdf[-1]  # the trapezoid rule misses ~1e-7 of mass; normalize so the CDF ends at 1
    return np.interp(np.asarray(x, dtype=np.float64), lam, cdf, left=0.0, right=1.0)
