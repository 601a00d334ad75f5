"""Layer spectra over training and under label noise: does α say a layer is well trained?

For each label-noise level p (``digits:label_noise=p``: that share of training labels
replaced by random ones), one MLP from the same initialization is trained with SGD; at
``tracks + 1`` points along training (initialization included) every weight matrix's ESD
is fitted with a power law (`losslab.spectra`: Clauset et al. 2009 x_min, bootstrap
interval, goodness-of-fit p-value, credibility reasons), beside train and test error.

What the literature says (Martin & Mahoney 2021): at initialization a layer is a random
matrix (Marchenko–Pastur, no heavy tail); training grows a heavy tail and α falls, with
2 ≲ α ≲ 6 for well-trained layers and smaller α for better-generalizing models of a
series; random labels, which networks memorize (Zhang et al. 2017), change the spectra.
weightwatcher's own users report the fit is fragile, so every α here carries its
interval and its reasons for being not credible; the study reports how many layers have
a credible fit, not just α.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from losslab.data import load_data
from losslab.errors import check_each, check_float, check_int
from losslab.models import build_model
from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work
from losslab.spectra.esd import esd, weight_matrices
from losslab.spectra.powerlaw import fit_power_law
from losslab.spectra.run import SpectraConfig, layer_spectra
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study, subset
from losslab.train import TrainConfig, train
from losslab.train.cost import estimate_training

__all__ = ["LayerSpectraConfig", "LayerSpectraPoint", "LayerSpectraResult", "layer_spectra_study"]


@dataclass(frozen=True)
class LayerSpectraConfig:
    """Label-noise levels, each trained for ``epochs`` with spectra at ``tracks + 1`` points."""

    data: str = "digits"
    model: str = "mlp:64-512-512-10"  # hidden 512×512: a 512-eigenvalue ESD, enough for a tail fit
    train_size: int | None = None  # None: every training row
    label_noise: tuple[float, ...] = (0.0, 0.2, 0.5, 1.0)  # 1.0: random labels
    epochs: int = 200  # long enough to memorize random labels at this width
    lr: float = 0.05  # SGD step
    batch_size: int = 32  # small batches: Martin & Mahoney's heavy tails grow with SGD noise
    tracks: int = 8  # spectra points after the initialization
    min_size: int = 20  # skip matrices with a side below this (the 10-row readout)
    bootstrap: int = 100  # resamples for α's interval
    gof: int = 50  # synthetic sets of the p-value
    seed: int = 0  # initialization, batch order, noise draws

    def __post_init__(self) -> None:
        owner = "the layer-spectra study"
        check_each(self.label_noise, "label_noise", owner, "label-noise level", "0,0.5", check_float, low=0.0, high=1.0)
        check_int(self.epochs, "epochs", owner, low=1)
        check_float(self.lr, "lr", owner, low=0.0, low_open=True)
        check_int(self.batch_size, "batch_size", owner, low=1)
        check_int(self.tracks, "tracks", owner, low=1)
        check_int(self.min_size, "min_size", owner, low=2)
        check_int(self.bootstrap, "bootstrap", owner, low=0)
        check_int(self.gof, "gof", owner, low=0)

    def spectra(self) -> SpectraConfig:
        return SpectraConfig(min_size=self.min_size, bootstrap=self.bootstrap, gof=self.gof, seed=self.seed)


@register_result
@dataclass
class LayerSpectraPoint:
    """One noise level: per track [T] and layer [L], α, its interval, credibility, the MP distance; errors [T]."""

    steps: np.ndarray
    alpha: np.ndarray
    alpha_low: np.ndarray
    alpha_high: np.ndarray
    p_value: np.ndarray
    credible: np.ndarray
    mp_ks: np.ndarray
    above_edge: np.ndarray
    train_error: np.ndarray
    test_error: np.ndarray
    layers: list[str]


@register_result
@dataclass
class LayerSpectraResult:
    """Arrays [P, T, L] (noise level × track × layer) and errors [P, T]; ``layers`` the matrix names."""

    label_noise: np.ndarray
    steps: np.ndarray
    layers: list[str]
    alpha: np.ndarray
    alpha_low: np.ndarray
    alpha_high: np.ndarray
    p_value: np.ndarray
    credible: np.ndarray
    mp_ks: np.ndarray
    above_edge: np.ndarray
    train_error: np.ndarray
    test_error: np.ndarray
    config: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        rows = []
        for i, p in enumerate(self.label_noise):
            rows.append(
                {
                    "label_noise": float(p),
                    "final_test_error": float(self.test_error[i, -1]),
                    "final_train_error": float(self.train_error[i, -1]),
                    "final_alpha": {
                        name: {
                            "alpha": float(self.alpha[i, -1, j]),
                            "interval": [float(self.alpha_low[i, -1, j]), float(self.alpha_high[i, -1, j])],
                            "credible": bool(self.credible[i, -1, j]),
                        }
                        for j, name in enumerate(self.layers)
                    },
                    "credible_fits": int(self.credible[i].sum()),
                }
            )
        return {
            "runs": rows,
            "credible_at_init": int(self.credible[:, 0].sum()),
            "fits": int(self.credible.size),
            "anchor": "init: Marchenko-Pastur, no credible tail; trained: alpha 2-6 (Martin & Mahoney 2021)",
        }


def _objective(config: LayerSpectraConfig, noise: float, context: StudyContext) -> Objective:
    data = load_data(config.data, label_noise=noise, noise_seed=config.seed)
    if config.train_size is not None and config.train_size < data.n_train:
        data = subset(data, config.train_size, config.seed)
    model = build_model(config.model, seed=config.seed)
    return Objective(model, "cross_entropy", data, device=context.device, dtype=context.dtype)


def _train_config(config: LayerSpectraConfig, n: int) -> TrainConfig:
    per_epoch = -(-n // config.batch_size)
    every = max(1, config.epochs * per_epoch // config.tracks)
    return TrainConfig.of(config, "lr", "batch_size", "epochs", "seed", record_every=every, snapshot_every=every)


def _point(config: LayerSpectraConfig, noise: float, context: StudyContext) -> LayerSpectraPoint:
    objective = _objective(config, noise, context)
    test = objective.test_objective()
    result = train(objective, _train_config(config, objective.n), test=False)
    spectra = config.spectra()
    rows: list[Any] = []
    train_error, test_error = [], []
    for theta in result.snapshots:
        theta_t = torch.as_tensor(theta, dtype=objective.dtype, device=objective.device)
        params = objective.layout.unflatten(theta_t)
        rows.append(layer_spectra(params, spectra))
        train_error.append(1.0 - float(objective.metrics(theta_t)["accuracy"]))
        test_error.append(float("nan") if test is None else 1.0 - float(test.metrics(theta_t)["accuracy"]))
    field = lambda get: np.array([[get(layer) for layer in row.layers] for row in rows])  # noqa: E731
    return LayerSpectraPoint(
        steps=np.asarray(result.snapshot_steps),
        alpha=field(lambda s: s.fit.alpha),
        alpha_low=field(lambda s: s.fit.alpha_low),
        alpha_high=field(lambda s: s.fit.alpha_high),
        p_value=field(lambda s: s.fit.p_value),
        credible=field(lambda s: s.fit.credible),
        mp_ks=field(lambda s: s.mp_ks),
        above_edge=field(lambda s: s.above_edge),
        train_error=np.array(train_error),
        test_error=np.array(test_error),
        layers=rows[0].names,
    )


def _estimate(config: LayerSpectraConfig, context: StudyContext) -> Estimate:
    """Training per noise level, and (1 + bootstrap + gof) tail fits per layer per track (one timed)."""
    import time

    objective = _objective(config, config.label_noise[0], context)
    estimate = Estimate("study layer-spectra", [])
    runs = len(config.label_noise)
    estimate.include(estimate_training(objective, _train_config(config, objective.n)), "training", times=runs)
    mats = weight_matrices(objective.model, min_size=config.min_size)
    start = time.perf_counter()
    for m in mats.values():
        fit_power_law(esd(m), min_tail=10, bootstrap=0, gof=0)
    unit = (time.perf_counter() - start) / len(mats)
    fits = runs * (config.tracks + 1) * len(mats) * (1 + config.bootstrap + config.gof)
    estimate.work.append(Work("power-law fits (x_min selection each)", fits, fits, unit))
    return estimate


@register_study(
    "layer-spectra",
    "Per-layer power-law alpha of W^T W over training and under label noise, beside test error.",
    LayerSpectraConfig,
    quick=LayerSpectraConfig(
        model="mlp:64-256-256-10", label_noise=(0.0, 1.0), epochs=8, tracks=2, bootstrap=30, gof=10
    ),
    full=LayerSpectraConfig(),
    estimate=_estimate,
    demo="Layer spectra: alpha per layer over training, clean and random labels",
)
def layer_spectra_study(config: LayerSpectraConfig, context: StudyContext) -> LayerSpectraResult:
    """One training run per label-noise level, spectra along it (see the module docstring)."""
    levels = list(config.label_noise)
    points = context.sweep("layer-spectra", asdict(config), len(levels), lambda i: _point(config, levels[i], context))
    stack = lambda name: np.stack([getattr(p, name) for p in points])  # noqa: E731
    return LayerSpectraResult(
        label_noise=np.array(levels),
        steps=points[0].steps,
        layers=points[0].layers,
        alpha=stack("alpha"),
        alpha_low=stack("alpha_low"),
        alpha_high=stack("alpha_high"),
        p_value=stack("p_value"),
        credible=stack("credible"),
        mp_ks=stack("mp_ks"),
        above_edge=stack("above_edge"),
        train_error=stack("train_error"),
        test_error=stack("test_error"),
        config=asdict(config),
    )
