"""Depth and skip connections: deeper plain networks train worse, residual twins do not.

Two families of twins, K seeds each, one training recipe:

- ``family="mlp"``: plain and residual MLPs of one width (``deep:N,width=W,residual=0|1``,
  `losslab.models`) with N hidden layers, the K seeds trained together (a seed ensemble).
  The plain net and its residual twin have the same parameter shapes (the skip adds no
  weights), so depth, not size, is what changes.
- ``family="resnet"``: the CIFAR ResNets of He et al. (2016, §4.2) ``resnetN`` and their
  plain twins ``resnetN-noshort`` (Li et al. 2018) with N = 6n+2 layers and base width W,
  on image data (``digits:images=true``, ``fashion-mnist``). The residual twin has a few
  more weights: the 1×1 projection shortcuts (with batch norm) where a stage changes shape.
  Batch norm: the seeds train one by one in train mode (batch statistics); every other
  number evaluates in eval mode (`Objective`), at initialization with the statistics
  re-estimated on the training data at that θ (`reestimate_batch_norm`: what train-mode
  batch norm computes on the whole training set as one batch), at the end with the
  running statistics that training accumulated (the trained network, whose loss training
  recorded); the planes keep the end's statistics fixed over the whole plane.

Per depth and architecture: Per depth and architecture: the train loss along training, the steps until it
first falls to ``target_loss``, the final train loss and test accuracy, the fraction of
seeds that train at all (final loss below ``trains_below``·ln C, C classes: better than
the uniform guess by a margin), the full-batch gradient norm of every layer at
initialization (vanishing or exploding gradients, Glorot & Bengio 2010), and at
initialization and at the end the extreme Hessian eigenvalues λmax and λmin (one Krylov
space, `extreme_eigenpairs`) and the saddle index, the fraction of eigenvalues below
−τ (τ = ``tau``, default 1e-3·λmax; `losslab.curvature.saddle_index`, as the saddles
study measures it): a stochastic Lanczos quadrature estimate with its interval (exact,
low = high, when the bottom Lanczos pairs certify the count, or when ``slq_steps`` ≥ D
makes the quadrature exact), and ``count_lower`` eigenvalues below −τ certified by
interlacing.

Then the comparison of Li et al. (2018, Fig. 5 and 7) for the deepest depth at which
both twins have a seed that did not diverge (a diverged θ has no finite Hessian; the
full preset's residual nets diverge at depth 32): a 2-D slice of the train loss around
that seed's final θ (seed 0 unless it diverged) along two filter-normalized Gaussian
directions (the same draw for both MLP twins, normalized to each θ's filters; ResNet twins'
layouts differ by the shortcuts, so their draws differ too), and on a
coarser grid of the same plane the convexity map |λmin/λmax| of the Hessian at each
point (small: locally convex; near 1: strongly non-convex).

What the literature says: without skip connections the loss surface of deep networks
turns chaotic and training degrades as depth grows, with skips it stays smooth and
nearly convex around the minimizer (Li et al. 2018, ResNet-56/110 vs their no-short
versions on CIFAR-10); deeper plain networks have higher training error (He et al. 2016,
Fig. 1). A λmin/λmax near zero at the end is the sign of a minimum; Li et al. shade
their maps by this ratio.

Every (depth, architecture) is one sweep point, and each twin's plane another.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from losslab.connectivity.batchnorm import reestimate_batch_norm
from losslab.curvature import SaddleIndex, extreme_eigenpairs, hessian_operator, saddle_index, slq
from losslab.curvature.cost import estimate_curvature
from losslab.data import load_data
from losslab.errors import UserError, check_choice, check_each, check_float, check_int
from losslab.models import build_model
from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work, seconds_per_point
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study, subset
from losslab.surface import axis, plane, random_directions
from losslab.train import TrainConfig, check_training, init_thetas, train, train_ensemble
from losslab.train.cost import estimate_training

__all__ = [
    "DepthConfig",
    "DepthPlane",
    "DepthPoint",
    "DepthResult",
    "RESNET_QUICK",
    "convexity_map",
    "depth",
    "layer_grad_norms",
    "saddle_at",
]


FAMILIES = ("mlp", "resnet")


@dataclass(frozen=True)
class DepthConfig:
    """Plain and residual twins at each of ``depths``, ``seeds`` seeds each, one training recipe."""

    data: str = "mnist1d"  # the MNIST-1D benchmark of Greydanus (2020): hard enough for depth to matter
    train_size: int | None = None  # None: every training row
    family: str = "mlp"  # 'mlp': deep:N MLPs; 'resnet': resnetN vs resnetN-noshort CNNs (image data)
    depths: tuple[int, ...] = (2, 4, 8, 16, 32)  # mlp: hidden layers of width `width`; resnet: N = 6n+2 layers
    width: int = 32  # mlp: hidden width; resnet: base width (stages of w, 2w, 4w channels)
    act: str = "relu"  # mlp only (the ResNets are ReLU nets)
    seeds: int = 4  # seed k (from `seed`) initializes member k and orders its batches
    optimizer: str = "sgd"
    lr: float = 0.05
    batch_size: int | None = 64
    steps: int = 3000
    record_every: int = 50  # steps between full-batch loss records (the resolution of steps-to-target)
    target_loss: float = 0.5  # steps to the first record at or below this train loss
    trains_below: float = 0.9  # a seed "trains at all" when its final loss is below this × ln C
    lanczos_tol: float = 1e-3  # relative residual of λmax and λmin
    max_hvps: int = 400  # product budget of each eigenvalue pair (and of the saddle index's bottom pairs)
    tau: float | None = None  # saddle index: eigenvalues below −tau count; None: 1e-3·λmax (saddle_index's default)
    bottom: int = 5  # bottom Lanczos pairs that certify and count eigenvalues below −τ
    slq_starts: int = 4  # saddle index: quadrature starts (the interval is over them)
    slq_steps: int = 48  # Lanczos steps per start (≥ D: the quadrature is exact)
    grid: int = 21  # loss-plane points per axis (Li et al.: 51)
    convexity_grid: int = 5  # convexity-map points per axis, on the same [-extent, extent]² plane
    extent: float = 1.0  # the plane spans θ + [-extent, extent]·d₁ + [-extent, extent]·d₂ (Li et al.: 1)
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "the depth study"
        check_choice(self.family, "family", owner, FAMILIES)
        check_each(self.depths, "depths", owner, "depth", "2,8,32" if self.family == "mlp" else "8,20,32", low=1)
        if len(set(self.depths)) != len(self.depths):
            raise UserError(f"The depths of the depth study must differ. Got {self.depths}.")
        if self.family == "resnet":
            bad = [d for d in self.depths if d < 8 or (d - 2) % 6]
            if bad:
                raise UserError(
                    f"The resnet family's depths are 6n+2 (8, 14, 20, 32, 44, 56, 110). Got {bad[0]}: "
                    "write depths=8,20,32."
                )
        check_int(self.width, "width", owner, low=1)
        check_int(self.seeds, "seeds", owner, low=1)
        check_training(self, owner)
        if self.train_size is not None:
            check_int(self.train_size, "train_size", owner, low=1)
        check_float(self.trains_below, "trains_below", owner, low=0.0, high=1.0, low_open=True)
        check_float(self.lanczos_tol, "lanczos_tol", owner, low=0.0, high=1.0, low_open=True)
        check_int(self.max_hvps, "max_hvps", owner, low=10)
        if self.tau is not None:
            check_float(self.tau, "tau", owner, low=0.0)
        check_int(self.bottom, "bottom", owner, low=1)
        check_int(self.slq_starts, "slq_starts", owner, low=2)  # one start has no interval
        check_int(self.slq_steps, "slq_steps", owner, low=2)
        check_int(self.grid, "grid", owner, low=2)
        check_int(self.convexity_grid, "convexity_grid", owner, low=1)
        check_float(self.extent, "extent", owner, low=0.0, low_open=True)

    def runs(self) -> list[tuple[int, bool]]:
        """(depth, residual) of every sweep point: by depth, the plain net before its residual twin."""
        return [(d, r) for d in self.depths for r in (False, True)]

    def model(self, depth: int, residual: bool, data: Any) -> str:
        """The zoo spec of one twin on ``data`` (its input shape and class count)."""
        if self.family == "resnet":
            if len(data.input_shape) != 3:
                raise UserError(
                    f"The resnet family needs image data [C, H, W]; {self.data!r} gives inputs of shape "
                    f"{tuple(data.input_shape)}: use data=digits:images=true or fashion-mnist."
                )
            name = f"resnet{depth}" + ("" if residual else "-noshort")
            return f"{name}:width={self.width},in={data.input_shape[0]},classes={data.output_dim}"
        fan_in = int(np.prod(data.input_shape))
        return (
            f"deep:{depth},width={self.width},in={fan_in},out={data.output_dim},act={self.act},residual={int(residual)}"
        )

    def train_config(self) -> TrainConfig:
        return TrainConfig.of(self, "optimizer", "lr", "batch_size", "steps", "record_every", "seed")


# The quick preset's ResNet variant (`study.config("quick", **RESNET_QUICK)`, or the same as --set options):
# digits as 8×8 images, ResNet-8 and -14 of base width 4 and their -noshort twins, 100 rows, 2 seeds, a small
# curvature budget (the Lanczos pairs are not converged: λmin is an upper bound, the count a certified lower one).
RESNET_QUICK: dict[str, Any] = {
    "family": "resnet",
    "data": "digits:images=true",
    "train_size": 100,
    "depths": (8, 14),
    "width": 4,
    "seeds": 2,
    "steps": 100,
    "batch_size": 32,
    "max_hvps": 24,
    "bottom": 2,
    "slq_starts": 2,
    "slq_steps": 10,
    "grid": 7,
    "convexity_grid": 1,
}


def layer_grad_norms(objective: Objective, theta: torch.Tensor) -> tuple[list[str], np.ndarray]:
    """‖∂L/∂θ_layer‖ of the full-batch loss for each layer (`ParamLayout.groups`: weight and bias together)."""
    grad = objective.grad(theta)
    groups = objective.layout.groups()
    return list(groups), np.array([float(grad[where].norm()) for where in groups.values()])


def saddle_at(objective: Objective, theta: torch.Tensor, config: DepthConfig) -> SaddleIndex:
    """λmax, λmin and the saddle index of the train-loss Hessian at θ (`saddle_index`, the saddles study's measure).

    One Krylov space gives λmax and the ``bottom`` smallest pairs (their residuals certify
    the count), then ``slq_starts`` quadrature starts of min(``slq_steps``, D) steps give the
    fraction and its interval.
    """
    op = hessian_operator(objective, theta)
    top, bottom = extreme_eigenpairs(
        op, 1, min(config.bottom, op.dim - 1), tol=config.lanczos_tol, max_hvps=config.max_hvps, seed=config.seed
    )
    density = slq(op, starts=config.slq_starts, steps=min(config.slq_steps, op.dim), seed=config.seed)
    return saddle_index(op, tau=config.tau, top=top, bottom=bottom, density=density, seed=config.seed)


def _extremes(objective: Objective, theta: torch.Tensor, config: DepthConfig) -> tuple[float, float]:
    """(λmax, λmin) of the train-loss Hessian at θ from one Krylov space."""
    op = hessian_operator(objective, theta)
    top, bottom = extreme_eigenpairs(
        op, 1, 1, tol=config.lanczos_tol, max_hvps=config.max_hvps, seed=config.seed, certify=False
    )
    return float(top.eigenvalues[0]), float(bottom.eigenvalues[0])


def convexity_map(
    objective: Objective,
    theta: torch.Tensor,
    d1: torch.Tensor,
    d2: torch.Tensor,
    a: np.ndarray,
    b: np.ndarray,
    config: DepthConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """λmax and λmin of the Hessian at θ + a_i d₁ + b_j d₂ [len(a), len(b)] (Li et al. 2018, Fig. 7).

    The convexity map is |λmin/λmax|: near 0 where the surface is locally convex.
    """
    lam_max, lam_min = np.zeros((len(a), len(b))), np.zeros((len(a), len(b)))
    for i, ai in enumerate(a):
        for j, bj in enumerate(b):
            point = theta + float(ai) * d1 + float(bj) * d2
            lam_max[i, j], lam_min[i, j] = _extremes(objective, point, config)
    return lam_max, lam_min


@register_result
@dataclass
class DepthPoint:
    """K seeds of one (depth, architecture): per-seed values [K], per-layer gradients [K, L]."""

    depth: int
    residual: bool
    model: str
    params: int
    layers: list[str]
    grad_norm_init: np.ndarray  # [K, L] full-batch gradient norm of each layer at initialization
    loss_init: np.ndarray
    record_steps: np.ndarray  # [records] the steps of the loss records
    loss_curve: np.ndarray  # [records, K] full-batch train loss (NaN after a member diverged)
    final_loss: np.ndarray
    test_accuracy: np.ndarray
    steps_to_target: np.ndarray  # NaN: never reached the target
    lambda_max_init: np.ndarray
    lambda_min_init: np.ndarray
    lambda_max_end: np.ndarray
    lambda_min_end: np.ndarray
    theta_end: np.ndarray  # [K, D]
    stopped: list[str]
    # The saddle index (fraction of Hessian eigenvalues below −τ) at init and end [K], its interval
    # (low = high: exact), the eigenvalues below −τ certified (interlacing) and τ; NaN / −1: diverged.
    index_init: np.ndarray = field(default_factory=lambda: np.zeros(0))
    index_init_low: np.ndarray = field(default_factory=lambda: np.zeros(0))
    index_init_high: np.ndarray = field(default_factory=lambda: np.zeros(0))
    count_lower_init: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    tau_init: np.ndarray = field(default_factory=lambda: np.zeros(0))
    index_end: np.ndarray = field(default_factory=lambda: np.zeros(0))
    index_end_low: np.ndarray = field(default_factory=lambda: np.zeros(0))
    index_end_high: np.ndarray = field(default_factory=lambda: np.zeros(0))
    count_lower_end: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    tau_end: np.ndarray = field(default_factory=lambda: np.zeros(0))
    buffers_end: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # [K, B] batch-norm statistics, flat


@register_result
@dataclass
class DepthPlane:
    """One twin's loss plane around a seed's final θ (``member``, seed 0 unless it diverged) and its convexity map."""

    residual: bool
    a: np.ndarray
    b: np.ndarray
    loss: np.ndarray  # [grid, grid]
    convexity_a: np.ndarray
    convexity_b: np.ndarray
    lambda_max: np.ndarray  # [convexity_grid, convexity_grid]
    lambda_min: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    depth: int | None = None  # the twins' depth (None: runs saved before planes could move off the deepest depth)
    member: int = 0  # the seed index whose final θ is the plane's center

    @property
    def convexity(self) -> np.ndarray:
        """|λmin/λmax| at each point of the coarse grid (Li et al. 2018, Fig. 7)."""
        return np.abs(self.lambda_min / self.lambda_max)


@register_result
@dataclass
class DepthResult:
    """Every (depth, architecture) point, plain before residual, and the deepest twins' planes."""

    points: list[DepthPoint]
    planes: list[DepthPlane]  # [plain, residual] at the deepest depth where both have a finite end ([]: none)
    record_steps: np.ndarray
    classes: int
    n_train: int
    config: dict[str, Any]

    def point(self, depth: int, residual: bool) -> DepthPoint:
        for p in self.points:
            if p.depth == depth and p.residual == residual:
                return p
        raise KeyError((depth, residual))

    def trains(self, p: DepthPoint) -> np.ndarray:
        """Which seeds of ``p`` train at all: final loss below ``trains_below``·ln C."""
        return np.nan_to_num(p.final_loss, nan=np.inf) < self.config["trains_below"] * math.log(self.classes)

    def summary(self) -> dict[str, Any]:
        rows = []
        for p in self.points:
            reached = np.isfinite(p.steps_to_target)
            rows.append(
                {
                    "depth": p.depth,
                    "residual": p.residual,
                    "params": p.params,
                    "final_loss_median": float(np.nanmedian(p.final_loss)),
                    "test_accuracy_median": float(np.nanmedian(p.test_accuracy)),
                    "fraction_trained": float(self.trains(p).mean()),
                    "fraction_reached_target": float(reached.mean()),
                    "steps_to_target_median": float(np.median(p.steps_to_target[reached])) if reached.any() else None,
                    "first_layer_grad_norm_init": float(np.median(p.grad_norm_init[:, 0])),
                    "last_layer_grad_norm_init": float(np.median(p.grad_norm_init[:, -1])),
                    "lambda_max_init": float(np.median(p.lambda_max_init)),
                    "lambda_max_end": float(np.nanmedian(p.lambda_max_end)),
                    "lambda_min_over_max_end": float(np.nanmedian(p.lambda_min_end / p.lambda_max_end)),
                    **_index_summary(p),
                }
            )
        out: dict[str, Any] = {"runs": rows, "n_train": self.n_train}
        for plane_ in self.planes:
            name = "residual" if plane_.residual else "plain"
            c = plane_.convexity
            out[f"plane_{name}"] = {
                "depth": plane_.depth,
                "member": plane_.member,
                "loss_center": float(plane_.loss[len(plane_.a) // 2, len(plane_.b) // 2]),
                "loss_max": float(np.nanmax(plane_.loss)),
                "convexity_median": float(np.nanmedian(c)),
                "convexity_max": float(np.nanmax(c)),
            }
        return out


def _index_summary(p: DepthPoint) -> dict[str, Any]:
    """Median saddle index at init and end over seeds, its widest interval, and how many seeds are exact."""
    out: dict[str, Any] = {}
    if not len(p.index_init):  # a run saved before the study measured it
        return out
    for when in ("init", "end"):
        index, low, high = (getattr(p, f"index_{when}{s}") for s in ("", "_low", "_high"))
        ok = np.isfinite(index)
        out[f"saddle_index_{when}_median"] = float(np.median(index[ok])) if ok.any() else None
        out[f"saddle_index_{when}_interval"] = [float(low[ok].min()), float(high[ok].max())] if ok.any() else None
        out[f"saddle_index_{when}_exact_seeds"] = int((low[ok] == high[ok]).sum())
        out[f"saddle_certified_seeds_{when}"] = int((getattr(p, f"count_lower_{when}") > 0).sum())
    return out


def _setup(config: DepthConfig, context: StudyContext) -> tuple[Any, list[int]]:
    data = load_data(config.data)
    if config.train_size is not None and config.train_size < data.n_train:
        data = subset(data, config.train_size, config.seed)
    if data.task != "classification":
        raise UserError(f"The depth study needs classification data: {config.data!r} is a regression task.")
    return data, [config.seed + k for k in range(config.seeds)]


def _objective(config: DepthConfig, data: Any, depth: int, residual: bool, device: str, dtype: str) -> Objective:
    spec = config.model(depth, residual, data)
    return Objective(build_model(spec, seed=config.seed), "cross_entropy", data, device=device, dtype=dtype)


def _flat_buffers(buffers: dict[str, Any]) -> np.ndarray:
    """Every buffer (batch-norm means, variances, step counts) as one float64 vector, in the model's order."""
    parts = [np.asarray(v, dtype=np.float64).reshape(-1) for v in buffers.values()]
    return np.concatenate(parts) if parts else np.zeros(0)


def _with_flat_buffers(objective: Objective, flat: np.ndarray) -> Objective:
    """``objective`` with the buffers `_flat_buffers` wrote (the identity for a model without buffers)."""
    if not objective.buffers:
        return objective
    out, start = {}, 0
    for key, value in objective.buffers.items():
        chunk = flat[start : start + value.numel()].reshape(tuple(value.shape))
        out[key] = torch.as_tensor(chunk).to(value.dtype)
        start += value.numel()
    return objective.with_buffers(out)


def _at_init(objective: Objective, theta: torch.Tensor) -> Objective:
    """The objective that evaluates θ at initialization: with batch norm, its statistics re-estimated at θ."""
    return objective.with_buffers(reestimate_batch_norm(objective, theta)) if objective.buffers else objective


def _train_members(
    config: DepthConfig, objective: Objective, inits: list[Objective], thetas: torch.Tensor, seeds: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Train every seed: (record steps, loss curve [R, K], test accuracy [K], θ_end [K, D], stopped, buffers [K, B]).

    MLPs train as one seed ensemble; batch norm is not supported by ensembles, so the ResNets
    train one by one (the same steps and batches as an ensemble member's), each from the
    statistics re-estimated at its initial θ; a run that diverged is padded with NaN.
    """
    train_config = config.train_config()
    if not objective.buffers:
        result = train_ensemble(objective, train_config, thetas=thetas, seeds=seeds)
        curve = np.asarray(result.history["loss"], dtype=np.float64).reshape(-1, len(seeds))
        accuracy = np.asarray(result.history["test_accuracy"][-1], dtype=np.float64).reshape(-1)
        steps = np.asarray(result.history["step"], dtype=np.float64)
        return steps, curve, accuracy, result.thetas, list(result.stopped), np.zeros((len(seeds), 0))
    runs = [
        train(init, replace(train_config, seed=s), theta=t) for init, t, s in zip(inits, thetas, seeds, strict=True)
    ]
    longest = max(runs, key=lambda r: len(r.history["step"]))
    steps = np.asarray(longest.history["step"], dtype=np.float64)
    curve = np.full((len(steps), len(seeds)), np.nan)
    accuracy = np.full(len(seeds), np.nan)
    for k, r in enumerate(runs):
        loss = np.asarray(r.history["loss"], dtype=np.float64)
        curve[: len(loss), k] = loss
        if r.stopped != "diverged":
            accuracy[k] = float(np.asarray(r.history["test_accuracy"], dtype=np.float64)[-1])
    thetas_end = np.stack([r.theta for r in runs])
    buffers = np.stack([_flat_buffers(r.buffers) for r in runs])
    return steps, curve, accuracy, thetas_end, [r.stopped for r in runs], buffers


def _saddle_arrays(indices: list[SaddleIndex | None], when: str) -> dict[str, np.ndarray]:
    """The `DepthPoint` fields of one time (init or end) from each seed's `SaddleIndex` (None: diverged)."""
    get = lambda name, missing: np.array([missing if s is None else getattr(s, name) for s in indices])  # noqa: E731
    return {
        f"lambda_max_{when}": get("lambda_max", np.nan).astype(np.float64),
        f"lambda_min_{when}": get("lambda_min", np.nan).astype(np.float64),
        f"index_{when}": get("fraction", np.nan).astype(np.float64),
        f"index_{when}_low": get("fraction_low", np.nan).astype(np.float64),
        f"index_{when}_high": get("fraction_high", np.nan).astype(np.float64),
        f"count_lower_{when}": get("count_lower", -1).astype(np.int64),
        f"tau_{when}": get("tau", np.nan).astype(np.float64),
    }


def _run_point(
    config: DepthConfig, data: Any, seeds: list[int], depth: int, residual: bool, device: str, dtype: str
) -> DepthPoint:
    objective = _objective(config, data, depth, residual, device, dtype)
    spec = config.model(depth, residual, data)
    thetas = init_thetas(spec, seeds, objective)
    inits = [_at_init(objective, t) for t in thetas]
    layers, _ = layer_grad_norms(objective, thetas[0])
    grads = np.stack([layer_grad_norms(o, t)[1] for o, t in zip(inits, thetas, strict=True)])
    loss_init = np.array([float(o.loss(t)) for o, t in zip(inits, thetas, strict=True)])
    init = [saddle_at(o, t, config) for o, t in zip(inits, thetas, strict=True)]
    steps, curve, accuracy, thetas_end, stopped, buffers = _train_members(config, objective, inits, thetas, seeds)
    below = curve <= config.target_loss
    first = np.where(below.any(axis=0), steps[np.argmax(below, axis=0)], np.nan)
    ends: list[SaddleIndex | None] = []
    for k, theta in enumerate(torch.as_tensor(thetas_end)):
        end = _with_flat_buffers(objective, buffers[k])
        ends.append(saddle_at(end, end.as_theta(theta), config) if stopped[k] != "diverged" else None)
    return DepthPoint(
        depth=depth,
        residual=residual,
        model=spec,
        params=objective.dim,
        layers=layers,
        grad_norm_init=grads,
        loss_init=loss_init,
        record_steps=steps.astype(np.int64),
        loss_curve=curve,
        final_loss=curve[-1].copy(),
        test_accuracy=accuracy,
        steps_to_target=first,
        theta_end=thetas_end,
        stopped=stopped,
        buffers_end=buffers,
        **_saddle_arrays(init, "init"),  # type: ignore[arg-type]
        **_saddle_arrays(ends, "end"),
    )


def _plane_axes(config: DepthConfig) -> tuple[np.ndarray, np.ndarray]:
    grid = axis(-config.extent, config.extent, config.grid, owner="the depth study", name="grid")
    if config.convexity_grid == 1:
        return grid, np.zeros(1)
    return grid, axis(-config.extent, config.extent, config.convexity_grid, owner="the depth study", name="grid")


def _plane_twins(config: DepthConfig, points: list[DepthPoint]) -> list[tuple[DepthPoint, int]]:
    """(point, seed index) of the twins whose planes are drawn: the deepest depth at which both twins have a
    seed that did not diverge (a diverged θ has no finite Hessian), each twin's first such seed; [] if none."""
    for depth in sorted(config.depths, reverse=True):
        twins = [p for p in points if p.depth == depth]
        members = [next((k for k, why in enumerate(p.stopped) if why != "diverged"), None) for p in twins]
        if all(k is not None for k in members):
            return [(p, int(k)) for p, k in zip(twins, members, strict=True)]  # type: ignore[arg-type]
    return []


def _run_plane(config: DepthConfig, data: Any, point: DepthPoint, member: int, device: str, dtype: str) -> DepthPlane:
    objective = _objective(config, data, point.depth, point.residual, device, dtype)
    if len(point.buffers_end):  # batch norm: the member's running statistics, fixed over the plane
        objective = _with_flat_buffers(objective, point.buffers_end[member])
    theta = objective.as_theta(torch.as_tensor(point.theta_end[member]))
    # One Gaussian draw for both MLP twins (their layouts are identical), each normalized to its own θ's
    # filters; a ResNet's shortcuts change its layout, so its twins' draws differ.
    directions = random_directions(objective.layout, theta, "filter", seed=config.seed, count=2)
    grid, coarse = _plane_axes(config)
    surface = plane(objective, theta, directions, grid, grid)
    d1, d2 = directions.tensors(theta)
    assert d2 is not None
    lam_max, lam_min = convexity_map(objective, theta, d1, d2, coarse, coarse, config)
    return DepthPlane(
        residual=point.residual,
        a=grid,
        b=grid,
        loss=surface.loss,
        convexity_a=coarse,
        convexity_b=coarse,
        lambda_max=lam_max,
        lambda_min=lam_min,
        d1=directions.d1,
        d2=directions.d2,
        depth=point.depth,
        member=member,
    )


def _estimate(config: DepthConfig, context: StudyContext) -> Estimate:
    """Per point: the training (an ensemble, or K runs with batch norm), at init and end of each seed λmax, the
    bottom pairs and the quadrature of the saddle index; per plane: its grid and convexity map."""
    data, seeds = _setup(config, context)
    estimate = Estimate("study depth", [])
    deepest = max(config.depths)
    for depth, residual in config.runs():
        objective = _objective(config, data, depth, residual, context.device, context.dtype)
        spec = config.model(depth, residual, data)
        thetas = init_thetas(spec, seeds, objective)
        label = f"depth {depth} {'residual' if residual else 'plain'}"
        if objective.buffers:  # batch norm: one run per seed, from statistics re-estimated at θ₀
            at = _at_init(objective, thetas[0])
            estimate.include(estimate_training(at, config.train_config()), f"{label}: each seed", times=len(seeds))
            estimate.work.append(
                Work(
                    f"{label}: batch-norm statistics at init (a forward pass per layer)",
                    len(seeds),
                    len(seeds),
                    _bn_layers(objective) * seconds_per_point(at, thetas[0], accuracy=False),
                )
            )
        else:
            at = objective
            estimate.include(estimate_training(objective, config.train_config(), thetas=thetas, seeds=seeds), label)
        dim = objective.dim
        index = estimate_curvature(
            at.curvature_at(thetas[0]),
            top=1,
            bottom=min(config.bottom, dim - 1),
            max_hvps=config.max_hvps,
            density=(config.slq_starts, min(config.slq_steps, dim)),
        )
        estimate.include(index, f"{label}: λmax, λmin and the saddle index at init and end", times=2 * len(seeds))
        if depth == deepest:
            pair = estimate_curvature(at.curvature_at(thetas[0]), top=1, bottom=1, max_hvps=config.max_hvps)
            points = config.grid**2
            estimate.work.append(
                Work(f"{label}: loss plane", points, points, seconds_per_point(at, thetas[0], accuracy=False))
            )
            estimate.include(pair, f"{label}: convexity map", times=config.convexity_grid**2)
    return estimate


def _bn_layers(objective: Objective) -> int:
    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in objective.model.modules())


@register_study(
    "depth",
    "Plain vs residual MLPs or ResNets over depth: trainability, gradients at init, curvature, saddle index, planes.",
    DepthConfig,
    quick=DepthConfig(
        data="digits",
        depths=(2, 16),
        width=16,
        seeds=3,
        lr=0.1,
        steps=300,
        record_every=20,
        max_hvps=120,
        grid=9,
        convexity_grid=3,
    ),
    full=DepthConfig(),
    estimate=_estimate,
    demo="Depth: plain vs residual MLPs, gradients at init, saddle index and the loss planes of Li et al.",
)
def depth(config: DepthConfig, context: StudyContext) -> DepthResult:
    """Train every (depth, architecture) point, then the deepest twins' planes (see the module docstring)."""
    data, seeds = _setup(config, context)
    runs = config.runs()
    device, dtype = context.device, context.dtype
    key = asdict(config)
    points = context.sweep("depth", key, len(runs), lambda i: _run_point(config, data, seeds, *runs[i], device, dtype))
    twins = _plane_twins(config, points)
    planes = context.sweep(
        "depth-planes", key, len(twins), lambda i: _run_plane(config, data, *twins[i], device, dtype)
    )
    return DepthResult(
        points=points,
        planes=planes,
        record_steps=points[0].record_steps,
        classes=data.output_dim,
        n_train=data.n_train,
        config=key,
    )
