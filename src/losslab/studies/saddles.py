"""Saddles along training (Dauphin et al. 2014): plateaus are saddle points, not local minima.

Dauphin et al. argue that in high dimensions the critical points with high loss are
overwhelmingly saddles, whose index (the fraction of negative Hessian eigenvalues)
grows with the loss, and that the long plateaus of training are spent near them. This
study follows one training run and, at checkpoints taken from the trainer's snapshots,
measures the full-batch loss and gradient norm, λmin and λmax of the Hessian (Lanczos
with residuals), and the saddle index with its confidence interval and a certified
count of negative eigenvalues (`losslab.curvature.saddle_index`).

A checkpoint is marked a *plateau* when it is an approximate strict saddle in the
sense of Ge et al. (2015): a small gradient, ‖∇L‖ ≤ ``plateau_grad``·max‖∇L‖ along the
run, and strong negative curvature, λmin ≤ −``plateau_curvature``·λmax, certified (the
Lanczos λmin is an upper bound on the smallest eigenvalue, by interlacing). Late in
training the gradient is small too, but the negative curvature left is a percent of
λmax or less, so the end of a run is not marked.

The default setting starts a tanh MLP 64-32-32-10 on scikit-learn digits from its
initialization scaled by ``init_scale`` = 0.01, close to θ = 0, which is a saddle of
the cross-entropy (every hidden unit is silent there and the output layer only sees
the class priors). Full-batch GD stalls at loss ≈ ln 10 for hundreds of steps, escapes
along the negative-curvature directions, and can pause again at lower saddles while the
classes are learned in stages (Saxe et al. 2014 describe these stage-wise plateaus in
deep linear networks). Measured on the full preset (benchmarks/RESULTS.md): the loss
stays at 2.301 (the class-prior entropy, ≈ ln 10) for 600 steps; checkpoints 25–575 are
plateaus (‖∇L‖ down to 1e-4, |λmin|/λmax ≈ 0.22, every one a certified saddle); past the
escape |λmin|/λmax falls to 0.007 at the end. The SLQ saddle index is only mildly higher on
the plateau (0.18 against 0.14 elsewhere): near θ = 0 most of the spectrum sits within τ
of zero, so the index says less than λmin does here.

The run is one resumable chunk; each checkpoint is another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from losslab.curvature import hessian_operator, saddle_index
from losslab.curvature.cost import estimate_curvature
from losslab.errors import UserError, check_float, check_int
from losslab.objective.cost import Estimate, Work, seconds_per_grad, seconds_per_point
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study, study_objective
from losslab.train import OPTIMIZERS, TrainConfig, train
from losslab.train.cost import estimate_training

__all__ = ["SaddlesCheckpoint", "SaddlesConfig", "SaddlesResult", "SaddlesTrajectory", "saddles"]


@dataclass(frozen=True)
class SaddlesConfig:
    """One run, measured at ``checkpoints`` evenly spaced snapshots (and the start)."""

    data: str = "digits"
    model: str = "mlp:64-32-32-10,act=tanh"
    loss: str = "cross_entropy"
    train_size: int | None = None  # None: every training row
    init_scale: float = 0.01  # θ₀ × this: start near the saddle at θ = 0
    optimizer: str = "gd"  # full batch: plateaus are not blurred by minibatch noise
    lr: float = 0.5
    batch_size: int | None = None  # SGD/momentum/Adam only
    steps: int = 1500
    checkpoints: int = 60
    tau: float | None = None  # eigenvalues below −tau are negative; None: 1e-3·λmax (the curvature layer's default)
    bottom: int = 5  # bottom Lanczos pairs that certify and count negative eigenvalues
    plateau_grad: float = 0.05  # "small gradient": ‖∇L‖ ≤ this × the largest along the run
    plateau_curvature: float = 0.05  # "negative curvature present": λmin ≤ −this × λmax (late in training: ~0.01)
    seed: int = 0  # initialization, batch order, Lanczos and SLQ starts

    def __post_init__(self) -> None:
        owner = "the saddles study"
        check_float(self.init_scale, "init_scale", owner, low=0.0, low_open=True)
        check_float(self.lr, "lr", owner, low=0.0, low_open=True)
        if self.optimizer not in OPTIMIZERS:
            raise UserError(
                f"The 'optimizer' parameter of {owner} must be one of {', '.join(OPTIMIZERS)}. Got {self.optimizer!r}."
            )
        check_int(self.steps, "steps", owner, low=1)
        check_int(self.checkpoints, "checkpoints", owner, low=1, high=self.steps)
        if self.tau is not None:
            check_float(self.tau, "tau", owner, low=0.0)
        check_int(self.bottom, "bottom", owner, low=1)
        check_float(self.plateau_grad, "plateau_grad", owner, low=0.0, high=1.0)
        check_float(self.plateau_curvature, "plateau_curvature", owner, low=0.0)


@register_result
@dataclass
class SaddlesResult:
    """Measurements at checkpoint ``steps`` [C]; the loss at every record in ``record_*`` [R].

    ``index`` is the saddle index (fraction of eigenvalues below −``tau``) by stochastic
    Lanczos quadrature with its interval [``index_low``, ``index_high``]; ``count_lower``
    negative eigenvalues are certified; ``ratio`` = |λmin|/λmax; ``verdict`` is the
    curvature layer's 'saddle', 'minimum' or 'undecided'. ``plateau`` marks approximate
    strict saddles (see the module docstring).
    """

    steps: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    grad_norm: np.ndarray
    lambda_min: np.ndarray
    lambda_min_residual: np.ndarray
    lambda_max: np.ndarray
    ratio: np.ndarray
    index: np.ndarray
    index_low: np.ndarray
    index_high: np.ndarray
    count_lower: np.ndarray
    tau: np.ndarray
    verdict: list[str]
    plateau: np.ndarray
    hvps: np.ndarray
    record_steps: np.ndarray
    record_loss: np.ndarray
    snapshots: np.ndarray  # [C, D] θ at each checkpoint (float32, as the trainer keeps them)
    params: int
    config: dict[str, Any]

    def plateau_spans(self) -> list[tuple[int, int]]:
        """Runs of consecutive plateau checkpoints as (first step, last step)."""
        spans: list[tuple[int, int]] = []
        for i in np.flatnonzero(self.plateau):
            if spans and i > 0 and self.plateau[i - 1]:
                spans[-1] = (spans[-1][0], int(self.steps[i]))
            else:
                spans.append((int(self.steps[i]), int(self.steps[i])))
        return spans

    def summary(self) -> dict[str, Any]:
        on = self.plateau
        mean = lambda a, m: float(a[m].mean()) if m.any() else None  # noqa: E731
        return {
            "checkpoints": len(self.steps),
            "plateau_checkpoints": int(on.sum()),
            "plateaus": [list(span) for span in self.plateau_spans()],
            "saddles_certified": int((self.count_lower > 0).sum()),
            "index_on_plateaus": mean(self.index, on),
            "index_elsewhere": mean(self.index, ~on),
            "loss_on_plateaus": mean(self.loss, on),
            "ratio_on_plateaus": mean(self.ratio, on),
            "ratio_at_end": float(self.ratio[-1]),
            "final_loss": float(self.loss[-1]),
            "params": self.params,
        }


@register_result
@dataclass
class SaddlesTrajectory:
    """The one training run: θ at each checkpoint and the loss at every record."""

    snapshots: np.ndarray
    snapshot_steps: np.ndarray
    record_steps: np.ndarray
    record_loss: np.ndarray


@register_result
@dataclass
class SaddlesCheckpoint:
    """What one checkpoint measured (the per-checkpoint fields of `SaddlesResult`, one value each)."""

    loss: float
    grad_norm: float
    accuracy: float  # NaN for regression
    lambda_min: float
    lambda_min_residual: float
    lambda_max: float
    ratio: float
    index: float
    index_low: float
    index_high: float
    tau: float
    count_lower: int
    hvps: int
    verdict: str


def _train_config(config: SaddlesConfig) -> TrainConfig:
    every = config.steps // config.checkpoints
    return TrainConfig.of(
        config, "optimizer", "lr", "batch_size", "steps", "seed", record_every=max(1, every // 5), snapshot_every=every
    )


def _estimate(config: SaddlesConfig, context: StudyContext) -> Estimate:
    """The run, then at every checkpoint: loss and gradient, Lanczos ends, the density (`saddle_index`)."""
    objective = study_objective(config, context)
    checkpoints = _train_config(config).snapshot_count(objective.n)
    theta = objective.theta0 * config.init_scale
    at = objective.curvature_at(theta)
    point = estimate_curvature(at, top=1, bottom=config.bottom, density=(4, min(48, objective.dim)))
    unit = seconds_per_grad(objective, theta) + seconds_per_point(objective, theta)
    point.work.insert(0, Work("loss, gradient and accuracy", 1, 1, unit))
    estimate = Estimate("study saddles", [])
    estimate.include(estimate_training(objective, _train_config(config), test=False), "the run")
    estimate.include(point, f"{checkpoints} checkpoints", times=checkpoints)
    return estimate


@register_study(
    "saddles",
    "Along one run: loss, gradient norm, lambda_min/max and the saddle index at checkpoints; plateaus marked.",
    SaddlesConfig,
    quick=SaddlesConfig(init_scale=0.02, train_size=600, steps=600, checkpoints=20),
    full=SaddlesConfig(),
    estimate=_estimate,
    demo="Saddles along training (Dauphin et al. 2014)",
)
def saddles(config: SaddlesConfig, context: StudyContext) -> SaddlesResult:
    """Train once, then measure the curvature at every checkpoint (see the module docstring)."""
    objective = study_objective(config, context)
    key = asdict(config)

    def run(_: int) -> SaddlesTrajectory:
        result = train(objective, _train_config(config), theta=objective.theta0 * config.init_scale, test=False)
        if result.stopped == "diverged":
            raise UserError(f"The saddles run diverged at step {result.steps} (lr={config.lr:g}): lower lr.")
        return SaddlesTrajectory(
            snapshots=result.snapshots,
            snapshot_steps=result.snapshot_steps,
            record_steps=result.history["step"],
            record_loss=result.history["loss"],
        )

    (trajectory,) = context.sweep("saddles-run", key, 1, run)
    snapshots = trajectory.snapshots

    def checkpoint(i: int) -> SaddlesCheckpoint:
        theta = objective.as_theta(torch.as_tensor(snapshots[i]))
        value, grad = objective.value_and_grad(theta)
        accuracy = objective.metrics(theta)["accuracy"]
        index = saddle_index(hessian_operator(objective, theta), tau=config.tau, k=config.bottom, seed=config.seed)
        return SaddlesCheckpoint(
            loss=float(value),
            grad_norm=float(grad.norm()),
            accuracy=np.nan if accuracy is None else float(accuracy),
            lambda_min=float(index.lambda_min),
            lambda_min_residual=float(index.lambda_min_residual),
            lambda_max=float(index.lambda_max),
            ratio=float(index.ratio),
            index=float(index.fraction),
            index_low=float(index.fraction_low),
            index_high=float(index.fraction_high),
            tau=float(index.tau),
            count_lower=int(index.count_lower),
            hvps=int(index.hvps),
            verdict=str(index.verdict),
        )

    points = context.sweep("saddles", key, len(snapshots), checkpoint)
    measured = {f.name: np.array([getattr(p, f.name) for p in points]) for f in fields(SaddlesCheckpoint)}
    loss, grad_norm, lam_min, lam_max = (measured[k] for k in ("loss", "grad_norm", "lambda_min", "lambda_max"))
    # The Lanczos λmin is an upper bound on the smallest eigenvalue (interlacing), so
    # λmin ≤ −c·λmax certifies that much negative curvature.
    plateau = (grad_norm <= config.plateau_grad * np.nanmax(grad_norm)) & (
        lam_min <= -config.plateau_curvature * lam_max
    )
    return SaddlesResult(
        **{k: v for k, v in measured.items() if k != "verdict"},
        verdict=[p.verdict for p in points],
        steps=trajectory.snapshot_steps,
        plateau=plateau,
        record_steps=trajectory.record_steps,
        record_loss=trajectory.record_loss,
        snapshots=snapshots,
        params=objective.dim,
        config=asdict(config),
    )
