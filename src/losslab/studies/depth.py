"""Depth and skip connections: deeper plain networks train worse, residual twins do not.

Plain and residual MLPs of one width (``deep:N,width=W,residual=0|1``, `losslab.models`)
at several depths N, K seeds each, trained together (a seed ensemble) with the same
recipe. Per depth and architecture: the train loss along training, the steps until it
first falls to ``target_loss``, the final train loss and test accuracy, the fraction of
seeds that train at all (final loss below ``trains_below``·ln C, C classes: better than
the uniform guess by a margin), the full-batch gradient norm of every layer at
initialization (vanishing or exploding gradients, Glorot & Bengio 2010), and the extreme
Hessian eigenvalues λmax and λmin (one Krylov space, `extreme_eigenpairs`) at
initialization and at the end. The plain net and its residual twin have the same
parameter shapes (the skip adds no weights), so depth, not size, is what changes.

Then the comparison of Li et al. (2018, Fig. 5 and 7) for the deepest depth at which
both twins have a seed that did not diverge (a diverged θ has no finite Hessian; the
full preset's residual nets diverge at depth 32): a 2-D slice of the train loss around
that seed's final θ (seed 0 unless it diverged) along two filter-normalized Gaussian
directions (the same draw for both twins, normalized to each θ's filters), and on a
coarser grid of the same plane the convexity map |λmin/λmax| of the Hessian at each
point (small: locally convex; near 1: strongly non-convex).

What the literature says: without skip connections the loss surface of deep networks
turns chaotic and training degrades as depth grows, with skips it stays smooth and
nearly convex around the minimizer (Li et al. 2018, ResNet-56/110 vs their no-short
versions on CIFAR-10); deeper plain networks have higher training error (He et al. 2016,
Fig. 1). A λmin/λmax near zero at the end is the sign of a minimum; Li et al. shade
their maps by this ratio. The saddle index (share of negative eigenvalues) is not
measured here: λmin/λmax from the same Krylov space is the cheap part of it.

Every (depth, architecture) is one sweep point, and each twin's plane another.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from losslab.curvature import extreme_eigenpairs, hessian_operator
from losslab.curvature.cost import estimate_curvature
from losslab.data import load_data
from losslab.errors import UserError, check_each, check_float, check_int
from losslab.models import build_model
from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work, seconds_per_point
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study, subset
from losslab.surface import axis, plane, random_directions
from losslab.train import TrainConfig, check_training, init_thetas, train_ensemble
from losslab.train.cost import estimate_training

__all__ = ["DepthConfig", "DepthPlane", "DepthPoint", "DepthResult", "convexity_map", "depth", "layer_grad_norms"]


@dataclass(frozen=True)
class DepthConfig:
    """Plain and residual MLPs at each of ``depths``, ``seeds`` seeds each, one training recipe."""

    data: str = "mnist1d"  # the MNIST-1D benchmark of Greydanus (2020): hard enough for depth to matter
    train_size: int | None = None  # None: every training row
    depths: tuple[int, ...] = (2, 4, 8, 16, 32)  # hidden layers of width `width`
    width: int = 32
    act: str = "relu"
    seeds: int = 4  # seed k (from `seed`) initializes member k and orders its batches
    optimizer: str = "sgd"
    lr: float = 0.05
    batch_size: int | None = 64
    steps: int = 3000
    record_every: int = 50  # steps between full-batch loss records (the resolution of steps-to-target)
    target_loss: float = 0.5  # steps to the first record at or below this train loss
    trains_below: float = 0.9  # a seed "trains at all" when its final loss is below this × ln C
    lanczos_tol: float = 1e-3  # relative residual of λmax and λmin
    max_hvps: int = 400  # product budget of each eigenvalue pair
    grid: int = 21  # loss-plane points per axis (Li et al.: 51)
    convexity_grid: int = 5  # convexity-map points per axis, on the same [-extent, extent]² plane
    extent: float = 1.0  # the plane spans θ + [-extent, extent]·d₁ + [-extent, extent]·d₂ (Li et al.: 1)
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "the depth study"
        check_each(self.depths, "depths", owner, "depth", "2,8,32", low=1)
        if len(set(self.depths)) != len(self.depths):
            raise UserError(f"The depths of the depth study must differ. Got {self.depths}.")
        check_int(self.width, "width", owner, low=1)
        check_int(self.seeds, "seeds", owner, low=1)
        check_training(self, owner)
        if self.train_size is not None:
            check_int(self.train_size, "train_size", owner, low=1)
        check_float(self.trains_below, "trains_below", owner, low=0.0, high=1.0, low_open=True)
        check_float(self.lanczos_tol, "lanczos_tol", owner, low=0.0, high=1.0, low_open=True)
        check_int(self.max_hvps, "max_hvps", owner, low=10)
        check_int(self.grid, "grid", owner, low=2)
        check_int(self.convexity_grid, "convexity_grid", owner, low=1)
        check_float(self.extent, "extent", owner, low=0.0, low_open=True)

    def runs(self) -> list[tuple[int, bool]]:
        """(depth, residual) of every sweep point: by depth, the plain net before its residual twin."""
        return [(d, r) for d in self.depths for r in (False, True)]

    def model(self, depth: int, residual: bool, fan_in: int, fan_out: int) -> str:
        return f"deep:{depth},width={self.width},in={fan_in},out={fan_out},act={self.act},residual={int(residual)}"

    def train_config(self) -> TrainConfig:
        return TrainConfig.of(self, "optimizer", "lr", "batch_size", "steps", "record_every", "seed")


def layer_grad_norms(objective: Objective, theta: torch.Tensor) -> tuple[list[str], np.ndarray]:
    """‖∂L/∂θ_layer‖ of the full-batch loss for each layer (`ParamLayout.groups`: weight and bias together)."""
    grad = objective.grad(theta)
    groups = objective.layout.groups()
    return list(groups), np.array([float(grad[where].norm()) for where in groups.values()])


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


def _setup(config: DepthConfig, context: StudyContext) -> tuple[Any, list[int]]:
    data = load_data(config.data)
    if config.train_size is not None and config.train_size < data.n_train:
        data = subset(data, config.train_size, config.seed)
    if data.task != "classification":
        raise UserError(f"The depth study needs classification data: {config.data!r} is a regression task.")
    return data, [config.seed + k for k in range(config.seeds)]


def _objective(config: DepthConfig, data: Any, depth: int, residual: bool, device: str, dtype: str) -> Objective:
    spec = config.model(depth, residual, int(np.prod(data.input_shape)), data.output_dim)
    return Objective(build_model(spec, seed=config.seed), "cross_entropy", data, device=device, dtype=dtype)


def _run_point(
    config: DepthConfig, data: Any, seeds: list[int], depth: int, residual: bool, device: str, dtype: str
) -> DepthPoint:
    objective = _objective(config, data, depth, residual, device, dtype)
    spec = config.model(depth, residual, int(np.prod(data.input_shape)), data.output_dim)
    thetas = init_thetas(spec, seeds, objective)
    layers, _ = layer_grad_norms(objective, thetas[0])
    grads = np.stack([layer_grad_norms(objective, t)[1] for t in thetas])
    loss_init = np.array([float(objective.loss(t)) for t in thetas])
    init = [_extremes(objective, t, config) for t in thetas]
    result = train_ensemble(objective, config.train_config(), thetas=thetas, seeds=seeds)
    curve = np.asarray(result.history["loss"], dtype=np.float64).reshape(-1, len(seeds))
    steps = np.asarray(result.history["step"], dtype=np.float64)
    below = curve <= config.target_loss
    first = np.where(below.any(axis=0), steps[np.argmax(below, axis=0)], np.nan)
    ends = []
    for k, theta in enumerate(torch.as_tensor(result.thetas)):
        ends.append(_extremes(objective, theta, config) if result.stopped[k] != "diverged" else (np.nan, np.nan))
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
        test_accuracy=np.asarray(result.history["test_accuracy"][-1], dtype=np.float64).reshape(-1),
        steps_to_target=first,
        lambda_max_init=np.array([v[0] for v in init]),
        lambda_min_init=np.array([v[1] for v in init]),
        lambda_max_end=np.array([v[0] for v in ends]),
        lambda_min_end=np.array([v[1] for v in ends]),
        theta_end=result.thetas,
        stopped=list(result.stopped),
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
    theta = objective.as_theta(torch.as_tensor(point.theta_end[member]))
    # One Gaussian draw for both twins (their layouts are identical), each normalized to its own θ's filters.
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
    """Per point: the ensemble's training and 2K eigenvalue pairs; per plane: its grid and convexity map."""
    data, seeds = _setup(config, context)
    estimate = Estimate("study depth", [])
    deepest = max(config.depths)
    for depth, residual in config.runs():
        objective = _objective(config, data, depth, residual, context.device, context.dtype)
        spec = config.model(depth, residual, int(np.prod(data.input_shape)), data.output_dim)
        thetas = init_thetas(spec, seeds, objective)
        label = f"depth {depth} {'residual' if residual else 'plain'}"
        estimate.include(estimate_training(objective, config.train_config(), thetas=thetas, seeds=seeds), label)
        pair = estimate_curvature(objective.curvature_at(thetas[0]), top=1, bottom=1, max_hvps=config.max_hvps)
        estimate.include(pair, f"{label}: λmax and λmin at init and end", times=2 * len(seeds))
        if depth == deepest:
            points = config.grid**2
            estimate.work.append(
                Work(f"{label}: loss plane", points, points, seconds_per_point(objective, thetas[0], accuracy=False))
            )
            estimate.include(pair, f"{label}: convexity map", times=config.convexity_grid**2)
    return estimate


@register_study(
    "depth",
    "Plain vs residual MLPs over depth: trainability, per-layer gradients at init, curvature, Li et al. planes.",
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
    demo="Depth: plain vs residual MLPs, gradients at init and the loss planes of Li et al.",
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
