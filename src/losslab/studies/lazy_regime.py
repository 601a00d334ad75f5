"""The lazy regime: wider networks move their weights and their tangent kernel less.

For each width n of a one-hidden-layer network in the NTK parametrization (Jacot et al.
2018), f(x) = α · (v · σ(W x/√d + β b)/√n + β c) with every weight N(0, 1), trained by
full-batch gradient descent on the MSE L = (1/m) Σ ½(f(xᵢ) − yᵢ)² for T steps:

- the relative kernel change ‖Θ_t − Θ_0‖_F/‖Θ_0‖_F on the training rows, at tracked steps;
- the relative weight change ‖θ_t − θ_0‖/‖θ_0‖;
- the gap between the trained network's test predictions and those of the network
  linearized at θ_0 after the same T steps (Lee et al. 2019, eq. 9 in discrete time):

      f_lin(x) = f_0(x) − Θ_0(x, X) Θ_0⁻¹ (I − (I − ηΘ_0/m)^T) (f_0(X) − Y),

  evaluated through the eigenvectors of Θ_0 so that no inverse is formed.

Anchor (Jacot et al. 2018; Lee et al. 2019, Theorem 2.1): under this parametrization both
changes fall as n^(-1/2) — for one hidden layer ‖θ_t − θ_0‖ = O(1) while ‖θ_0‖ ~ √(n(d+2)),
and sup_t ‖Θ_t − Θ_0‖_F = O(n^(-1/2)) — and the gap to the linearized model vanishes with
width. The study fits the slope of log(change) on log(width) by least squares over all
(width, seed) points and reports it with its standard error. ``output_scale`` α is Chizat
et al. (2019)'s knob: the step is divided by α² so the function-space dynamics of the
linearized model do not depend on α, while the relative weight change falls as 1/α
(lazier training at larger output scale).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from losslab.data import load_data
from losslab.errors import UserError, check_choice, check_float, check_int
from losslab.ntk.kernel import choose_method, ntk
from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work, seconds_per_grad
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study, subset
from losslab.train import TrainConfig, train

__all__ = ["LazyPoint", "LazyRegimeConfig", "LazyRegimeResult", "NTKMLP", "lazy_regime", "log_log_slope"]

_ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "erf": None}


class NTKMLP(nn.Module):
    """One hidden layer in the NTK parametrization: α(v·σ(Wx/√d + βb)/√n + βc), weights N(0, 1).

    The 1/√fan_in factors sit in the forward pass, not the initialization, so gradient
    descent with a width-independent step has a width-independent kernel limit (Jacot et al. 2018).
    """

    def __init__(self, d: int, width: int, out: int = 1, *, act: str = "relu", beta: float = 0.1, scale: float = 1.0):
        super().__init__()
        self.hidden = nn.Linear(d, width)
        self.readout = nn.Linear(width, out)
        for layer in (self.hidden, self.readout):
            nn.init.normal_(layer.weight)
            nn.init.normal_(layer.bias)
        self.act = act
        self.beta, self.scale = beta, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        pre = nn.functional.linear(x, self.hidden.weight) / math.sqrt(x.shape[1]) + self.beta * self.hidden.bias
        h = torch.erf(pre) if self.act == "erf" else _ACTS[self.act]()(pre)
        n = h.shape[1]
        return self.scale * (
            nn.functional.linear(h, self.readout.weight) / math.sqrt(n) + self.beta * self.readout.bias
        )


@dataclass(frozen=True)
class LazyRegimeConfig:
    """Widths × seeds, each network trained by full-batch GD for ``steps`` steps."""

    data: str = "teacher:n=250,d=10"  # regression with scalar targets: Θ is [m, m], cheap at any width
    train_size: int | None = None  # None: every training row
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096)  # four octaves for the slope
    seeds: tuple[int, ...] = (0, 1, 2, 3)  # initializations per width (the slope's error comes from them)
    act: str = "relu"  # relu | tanh | erf
    lr: float = 1.0  # GD step before the α² division; the NTK scale keeps it width-independent
    steps: int = 500  # GD steps; the train loss falls by orders of magnitude well before this
    tracks: int = 5  # steps at which the kernel change is measured (0 and T included)
    output_scale: float = 1.0  # α (Chizat et al. 2019): larger is lazier; the step is divided by α²
    beta: float = 0.1  # bias scale of the NTK parametrization (Jacot et al. use 0.1)

    def __post_init__(self) -> None:
        owner = "the lazy-regime study"
        if len(self.widths) < 2:
            raise UserError("The lazy-regime study needs at least two widths for a slope: use widths=64,256.")
        for w in self.widths:
            check_int(w, "widths", owner, low=1)
        if not self.seeds:
            raise UserError("The lazy-regime study needs at least one seed: use seeds=0.")
        check_choice(self.act, "act", owner, _ACTS)
        check_float(self.lr, "lr", owner, low=0.0, low_open=True)
        check_int(self.steps, "steps", owner, low=1)
        check_int(self.tracks, "tracks", owner, low=1, high=self.steps)
        check_float(self.output_scale, "output_scale", owner, low=0.0, low_open=True)
        check_float(self.beta, "beta", owner, low=0.0)


@register_result
@dataclass
class LazyPoint:
    """One (width, seed): changes at ``steps`` [tracks+1], and the end state against the linearized model."""

    steps: np.ndarray
    kernel_change: np.ndarray
    weight_change: np.ndarray
    train_loss: float
    test_loss: float
    test_loss_linear: float
    prediction_gap: float
    lambda_max: float
    lr_limit: float


@register_result
@dataclass
class LazyRegimeResult:
    """Arrays [W, S] (width × seed) or [W, S, tracks+1]; slopes of log(change) on log(width).

    ``prediction_gap`` is RMS(f_T − f_lin)/RMS(f_T − f_0) on the test rows: 0 means the
    network is its linearization. ``lr_limit`` is 2m/λ_max(Θ_0), GD's stability bound in function space.
    """

    widths: np.ndarray
    seeds: np.ndarray
    steps: np.ndarray
    kernel_change: np.ndarray
    weight_change: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    test_loss_linear: np.ndarray
    prediction_gap: np.ndarray
    lambda_max: np.ndarray
    lr_limit: np.ndarray
    slopes: dict[str, list[float]]
    n_train: int
    config: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        final = {
            "kernel_change": self.kernel_change[:, :, -1],
            "weight_change": self.weight_change[:, :, -1],
            "prediction_gap": self.prediction_gap,
        }
        return {
            "widths": self.widths.tolist(),
            **{f"{k}_mean": v.mean(axis=1).tolist() for k, v in final.items()},
            "train_loss_mean": self.train_loss.mean(axis=1).tolist(),
            "slopes": {k: {"slope": v[0], "stderr": v[1]} for k, v in self.slopes.items()},
            "anchor": "kernel and weight changes ~ width^-0.5 under the NTK parametrization (Lee et al. 2019)",
            "n_train": self.n_train,
        }


def log_log_slope(widths: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of log(values) on log(widths) over every point, and its standard error."""
    x = np.log(np.repeat(widths[:, None], values.shape[1], axis=1)).ravel()
    y = np.log(np.asarray(values, dtype=np.float64)).ravel()
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    A = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    if len(x) == 2:  # a line through two points: no residual to estimate the error from
        return float(coef[0]), float("nan")
    resid = y - A @ coef
    sigma2 = resid @ resid / (len(x) - 2)
    cov = sigma2 * np.linalg.inv(A.T @ A)
    return float(coef[0]), float(np.sqrt(cov[0, 0]))


def _data(config: LazyRegimeConfig) -> Any:
    data = load_data(config.data)
    if data.task != "regression":
        raise UserError(f"The lazy-regime study needs regression data (MSE). Got {config.data!r}: use teacher.")
    if config.train_size is not None and config.train_size < data.n_train:
        data = subset(data, config.train_size, 0)
    return data


def _objective(config: LazyRegimeConfig, width: int, seed: int, context: StudyContext) -> Objective:
    data = _data(config)
    torch.manual_seed(seed)
    d = int(np.prod(data.input_shape))
    model = NTKMLP(d, width, data.output_dim, act=config.act, beta=config.beta, scale=config.output_scale)
    return Objective(model, "mse", data, device=context.device, dtype=context.dtype)


def _flat(K: torch.Tensor) -> torch.Tensor:
    n1, n2, k, _ = K.shape
    return K.permute(0, 2, 1, 3).reshape(n1 * k, n2 * k)


def _point(config: LazyRegimeConfig, width: int, seed: int, context: StudyContext) -> LazyPoint:
    objective = _objective(config, width, seed, context)
    test = objective.test_objective()
    lr = config.lr / config.output_scale**2
    theta0 = objective.theta0
    K0 = _flat(ntk(objective, theta0, method="jacobian")).double()
    lam, V = torch.linalg.eigh(K0)
    m = objective.n
    lr_limit = 2 * m / float(lam[-1])
    every = max(1, config.steps // config.tracks)
    result = train(
        objective,
        TrainConfig(optimizer="gd", lr=lr, steps=config.steps, record_every=config.steps, snapshot_every=every),
        test=False,
    )
    if result.stopped == "diverged":
        raise UserError(
            f"GD diverged at width {width} (lr {lr:g}, stability bound 2m/λmax = {lr_limit:.3g}): lower lr."
        )
    snaps = torch.as_tensor(result.snapshots, dtype=objective.dtype, device=objective.device)
    norm0 = float(torch.linalg.norm(K0))
    kernel_change, weight_change = [], []
    for theta in snaps:
        Kt = _flat(ntk(objective, theta, method="jacobian")).double()
        kernel_change.append(float(torch.linalg.norm(Kt - K0)) / norm0)
        weight_change.append(float(torch.linalg.norm(theta - theta0) / torch.linalg.norm(theta0)))
    # Linearized GD after T steps (module docstring): g(λ) = (1 − (1 − ηλ/m)^T)/λ, whose λ → 0 limit is ηT/m.
    step = lr * lam / m
    with np.errstate(divide="ignore", invalid="ignore"):
        g = torch.where(
            lam.abs() > 1e-12 * lam[-1], -torch.expm1(config.steps * torch.log1p(-step)) / lam, lr * config.steps / m
        )
    Y = objective.y.reshape(m, -1).double()
    f0_train = objective.forward(theta0).reshape(m, -1).double()
    residual = (V @ (g[:, None] * (V.T @ (f0_train - Y).reshape(-1, 1)))).reshape(-1)
    theta_T = torch.as_tensor(result.theta, dtype=objective.dtype, device=objective.device)
    train_loss = float(objective.loss(theta_T))
    if test is None:
        nan = float("nan")
        return LazyPoint(
            np.asarray(result.snapshot_steps), np.array(kernel_change), np.array(weight_change),
            train_loss, nan, nan, nan, float(lam[-1]), lr_limit,
        )  # fmt: skip
    Kx = _flat(ntk(objective, theta0, test.X, objective.X, method="jacobian")).double()
    f0_test = test.forward(theta0).reshape(-1).double()
    f_lin = f0_test - Kx @ residual
    f_net = test.forward(theta_T).reshape(-1).double()
    y_test = test.y.reshape(-1).double()
    moved = torch.sqrt(torch.mean((f_net - f0_test) ** 2)).clamp_min(1e-300)
    return LazyPoint(
        steps=np.asarray(result.snapshot_steps),
        kernel_change=np.array(kernel_change),
        weight_change=np.array(weight_change),
        train_loss=train_loss,
        test_loss=float(0.5 * torch.mean((f_net - y_test) ** 2)),
        test_loss_linear=float(0.5 * torch.mean((f_lin - y_test) ** 2)),
        prediction_gap=float(torch.sqrt(torch.mean((f_net - f_lin) ** 2)) / moved),
        lambda_max=float(lam[-1]),
        lr_limit=lr_limit,
    )


def _estimate(config: LazyRegimeConfig, context: StudyContext) -> Estimate:
    """Per width: the kernels (tracks + 3 of them, timed) and the GD steps (one gradient each, timed)."""
    estimate = Estimate("study lazy-regime", [])
    seeds = len(config.seeds)
    for width in config.widths:
        objective = _objective(config, width, config.seeds[0], context)
        _, predicted = choose_method(objective, objective.theta0, objective.n, objective.n)
        kernels = (config.tracks + 3) * seeds
        estimate.work.append(Work(f"width {width}: kernels", kernels, kernels, predicted["jacobian"]))
        grad = seconds_per_grad(objective, objective.theta0)
        estimate.work.append(Work(f"width {width}: GD steps", config.steps * seeds, config.steps * seeds, grad))
    return estimate


@register_study(
    "lazy-regime",
    "NTK lazy regime: kernel and weight change vs width (slope ~ -1/2), gap to the linearized network.",
    LazyRegimeConfig,
    quick=LazyRegimeConfig(data="teacher:n=150,d=5", widths=(32, 128, 512, 2048), seeds=(0, 1), steps=200, tracks=4),
    full=LazyRegimeConfig(),
    estimate=_estimate,
    demo="Lazy regime: kernel and weight change against width under the NTK parametrization",
)
def lazy_regime(config: LazyRegimeConfig, context: StudyContext) -> LazyRegimeResult:
    """Every (width, seed) point, then the log-log slopes (see the module docstring)."""
    pairs = [(w, s) for w in config.widths for s in config.seeds]
    points = context.sweep("lazy-regime", asdict(config), len(pairs), lambda i: _point(config, *pairs[i], context))
    W, S = len(config.widths), len(config.seeds)
    grid = lambda name: np.array([getattr(p, name) for p in points]).reshape(W, S, -1).squeeze(-1)  # noqa: E731
    kernel = np.array([p.kernel_change for p in points]).reshape(W, S, -1)
    weight = np.array([p.weight_change for p in points]).reshape(W, S, -1)
    widths = np.array(config.widths, dtype=np.float64)
    gap = grid("prediction_gap")
    slopes = {
        "kernel_change": list(log_log_slope(widths, kernel[:, :, -1])),
        "weight_change": list(log_log_slope(widths, weight[:, :, -1])),
        "prediction_gap": list(log_log_slope(widths, gap)),
    }
    return LazyRegimeResult(
        widths=np.array(config.widths),
        seeds=np.array(config.seeds),
        steps=points[0].steps,
        kernel_change=kernel,
        weight_change=weight,
        train_loss=grid("train_loss"),
        test_loss=grid("test_loss"),
        test_loss_linear=grid("test_loss_linear"),
        prediction_gap=gap,
        lambda_max=grid("lambda_max"),
        lr_limit=grid("lr_limit"),
        slopes=slopes,
        n_train=_data(config).n_train,
        config=asdict(config),
    )
