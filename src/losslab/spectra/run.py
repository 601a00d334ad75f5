"""``losslab spectra``: per-layer ESDs of WᵀW, Marchenko–Pastur comparison and power-law α.

config (`SpectraConfig`) → runner (`layer_spectra(model, config)`, `run(setup, config)`) →
result (`SpectraResult`, one `LayerSpectrum` per weight matrix).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from losslab.errors import check_choice, check_float, check_int
from losslab.objective.cost import Estimate, Work
from losslab.spectra.esd import CONV_MODES, esd, marchenko_pastur_cdf, marchenko_pastur_edges, weight_matrices
from losslab.spectra.powerlaw import PowerLawFit, fit_power_law
from losslab.store import register_result

__all__ = ["LayerSpectrum", "SpectraConfig", "SpectraResult", "estimate", "layer_spectra", "run"]


@dataclass(frozen=True)
class SpectraConfig:
    """How each layer's tail is fitted and how conv kernels become matrices."""

    conv: str = "flatten"  # flatten: [out, in·k·k]; slices: k·k matrices [out, in], eigenvalues pooled
    min_tail: int = 10  # fewest eigenvalues a candidate tail may hold (a 5-point 'tail' fits anything)
    bootstrap: int = 100  # resamples for the interval on α (percentile, refitting x_min each time)
    gof: int = 50  # synthetic sets of Clauset's p-value: ±0.04 at p = 0.1
    level: float = 0.9  # coverage of the bootstrap interval
    min_size: int = 10  # skip matrices with a side below this: too few eigenvalues to fit a tail
    seed: int = 0  # bootstrap and goodness-of-fit draws

    def __post_init__(self) -> None:
        check_choice(self.conv, "conv", "spectra", CONV_MODES)
        check_int(self.min_tail, "min_tail", "spectra", low=3)
        check_int(self.bootstrap, "bootstrap", "spectra", low=0)
        check_int(self.gof, "gof", "spectra", low=0)
        check_float(self.level, "level", "spectra", low=0.0, high=0.999, low_open=True)
        check_int(self.min_size, "min_size", "spectra", low=2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@register_result
@dataclass
class LayerSpectrum:
    """One weight matrix: its shape, the eigenvalues of WᵀW (ascending), the MP bulk edge of a
    random matrix with the same shape and entry variance, the KS distance of the ESD to that
    MP law, the share of eigenvalues above the edge, and the power-law fit of the tail."""

    name: str
    shape: list[int]
    eigenvalues: np.ndarray
    sigma2: float
    bulk_edge: float
    mp_ks: float
    above_edge: float
    fit: PowerLawFit

    def summary(self) -> dict[str, Any]:
        size = {"shape": self.shape, "eigenvalues": len(self.eigenvalues), "lambda_max": float(self.eigenvalues[-1])}
        edge = {"mp_bulk_edge": self.bulk_edge, "mp_ks": self.mp_ks, "above_mp_edge": self.above_edge}
        return size | edge | self.fit.summary()


@register_result
@dataclass
class SpectraResult:
    """Every weight matrix's spectrum, in model order."""

    layers: list[LayerSpectrum]
    config: dict[str, Any]

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def alpha(self) -> np.ndarray:
        return np.array([layer.fit.alpha for layer in self.layers])

    def summary(self) -> dict[str, Any]:
        credible = [layer.fit.alpha for layer in self.layers if layer.fit.credible]
        return {
            "layers": {layer.name: layer.summary() for layer in self.layers},
            "mean_alpha_credible": float(np.mean(credible)) if credible else None,
            "credible_layers": len(credible),
            "conv": self.config.get("conv"),
            "definition": "ESD of W^T W; alpha of p(lambda) ~ lambda^-alpha above x_min (Clauset et al. 2009)",
        }

    def warnings(self) -> list[str]:
        return [
            f"{layer.name}: alpha not credible: {'; '.join(layer.fit.reasons)}"
            for layer in self.layers
            if layer.fit.reasons
        ]


def spectrum_of(name: str, mats: list[np.ndarray], config: SpectraConfig) -> LayerSpectrum:
    """The ESD of WᵀW pooled over ``mats`` (same shape), its MP comparison and its power-law fit."""
    N, M = max(mats[0].shape), min(mats[0].shape)
    lam = esd(mats)
    entries = np.concatenate([W.ravel() for W in mats])
    sigma2 = float(np.var(entries))
    ratio = M / N
    _, edge = marchenko_pastur_edges(sigma2, ratio)
    scaled = lam / N  # MP describes WᵀW/N
    F = marchenko_pastur_cdf(scaled, sigma2, ratio) if sigma2 > 0 else np.zeros_like(scaled)
    n = len(lam)
    emp = np.arange(1, n + 1) / n
    ks = float(max(np.max(np.abs(emp - F)), np.max(np.abs(emp - 1 / n - F))))
    seed = config.seed + sum(map(ord, name))  # independent draws per layer, the same on every run
    fit = fit_power_law(
        lam,
        min_tail=min(config.min_tail, n),
        bootstrap=config.bootstrap,
        gof=config.gof,
        level=config.level,
        seed=seed,
        bulk_edge=edge * N,
    )
    return LayerSpectrum(
        name=name,
        shape=list(mats[0].shape) + ([len(mats)] if len(mats) > 1 else []),
        eigenvalues=lam,
        sigma2=sigma2,
        bulk_edge=float(edge * N),
        mp_ks=ks,
        above_edge=float(np.mean(lam > edge * N)),
        fit=fit,
    )


def layer_spectra(model: nn.Module | dict[str, torch.Tensor], config: SpectraConfig | None = None) -> SpectraResult:
    """Per-layer ESD, MP comparison and power-law α of a model's (or state_dict's) weight matrices."""
    config = config or SpectraConfig()
    mats = weight_matrices(model, conv=config.conv, min_size=config.min_size)
    return SpectraResult([spectrum_of(name, m, config) for name, m in mats.items()], config.to_dict())


def run(setup: Any, config: SpectraConfig, **_: Any) -> SpectraResult:
    """The spectra of the setup's model: its checkpoint, or its initialization."""
    return layer_spectra(setup.build_model(), config)


def estimate(setup: Any, config: SpectraConfig) -> Estimate:
    """One fit per layer times (1 + bootstrap + gof), timed on the first layer."""
    import time

    mats = weight_matrices(setup.build_model(), conv=config.conv, min_size=config.min_size)
    name, first = next(iter(mats.items()))
    start = time.perf_counter()
    fit_power_law(esd(first), min_tail=config.min_tail, bootstrap=0, gof=0)
    unit = time.perf_counter() - start
    fits = len(mats) * (1 + config.bootstrap + config.gof)
    return Estimate("spectra", [Work(f"power-law fits ({len(mats)} layers, timed on {name})", fits, fits, unit)])
