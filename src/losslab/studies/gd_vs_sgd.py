"""Full-batch gradient descent versus SGD: where each ends, how sharp it is, whether they connect.

One network and dataset, one initialization, trained with full-batch GD at several
step sizes η and with SGD at several batch sizes B and step sizes, all for the same
number of steps. For each run: final train loss and accuracy, test accuracy, λmax of
the full-batch training-loss Hessian at the end (Lanczos with its residual bound,
`losslab.curvature.lanczos`) and its ratio to the stability threshold 2/η, and for
every SGD run the loss barrier on the straight line to the GD solution with the same η
(or the first GD run when none has it; `losslab.connectivity.connect`, no alignment:
every run starts from the same θ₀, so no permutation separates them). For GD, λmax
along training (`losslab.curvature.SharpnessTracker`) with the 2/η line.

What the literature says (Cohen et al. 2021): under full-batch GD the sharpness rises
("progressive sharpening") until it reaches 2/η, then hovers just above it ("the edge
of stability") while the loss keeps falling non-monotonically; SGD with small batches
ends at sharpness well below 2/η, and a larger η/B means flatter (Jastrzębski et al.
2019). Normalization, which the thresholds depend on: losslab's ``mse`` is
L = (1/n) Σᵢ ½‖f(xᵢ) − yᵢ‖² with one-hot targets, the same 0.5·Σ/n as Cohen et al.

The default setting (the full preset) is a tanh MLP 64-64-10 on all 1,438 scikit-learn
digits training rows with MSE (Cohen et al. use tanh and ReLU MLPs on a 5,000-example
CIFAR-10 subset with MSE), GD at η ∈ {0.1, 0.2, 0.4, 1.0} and SGD at η ∈ {0.1, 0.4} with
B ∈ {16, 64, 256}, 4,000 steps each. Measured (benchmarks/RESULTS.md): GD's sharpness rises
from 3.4 and settles at 2/η — λmax·η/2 over the last quarter of training is 1.00, 1.03 and
1.10 for η = 0.2, 0.4 and 1.0 — while at η = 0.1 it is still rising (×2.8, to 9.7 of the
20 it would need) when the budget ends; SGD at η = 0.4 ends at λmax·η/2 = 0.73, 0.96 and
1.02 for B = 16, 64 and 256 (GD: 1.05; at η = 0.1: 0.40, 0.46, 0.48 against GD's 0.48),
and the train-loss barrier to GD's solution is 0.079, 0.011 and 0 for those batches
(0 for every B at η = 0.1): small-batch SGD with a large step ends in a flatter place
of its own; everything else ends in GD's basin.

Every run is one sweep point, and every barrier another (resumable chunks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from losslab.connectivity import connect
from losslab.curvature import SharpnessTracker, hessian_operator, lanczos
from losslab.curvature.cost import estimate_curvature
from losslab.curvature.tracking import TRACK_MAX_HVPS
from losslab.errors import UserError, check_float, check_int
from losslab.objective.cost import Estimate, Work, seconds_per_point
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study, study_objective
from losslab.train import TrainConfig, train
from losslab.train.cost import estimate_training

__all__ = ["GdVsSgdConfig", "GdVsSgdLine", "GdVsSgdResult", "GdVsSgdRun", "gd_vs_sgd"]


@dataclass(frozen=True)
class GdVsSgdConfig:
    """GD at ``gd_lrs``; SGD at every pair of ``sgd_lrs`` × ``batch_sizes``; ``steps`` each."""

    data: str = "digits"
    model: str = "mlp:64-64-10,act=tanh"  # Cohen et al. study tanh and ReLU MLPs
    loss: str = "mse"  # ½‖f − y‖² averaged over examples: Cohen et al.'s normalization
    train_size: int | None = None  # None: every training row
    gd_lrs: tuple[float, ...] = (0.1, 0.2, 0.4, 1.0)  # 2/η = 20, 10, 5, 2
    sgd_lrs: tuple[float, ...] = (0.1, 0.4)
    batch_sizes: tuple[int, ...] = (16, 64, 256)
    steps: int = 4000  # the same number of updates for every run
    track_every: int = 25  # GD steps between λmax measurements (and metric records of every run)
    lanczos_tol: float = 1e-4  # relative residual of every λmax
    points: int = 11  # positions on each GD–SGD line, both ends included
    seed: int = 0  # the initialization every run shares, and the SGD batch order

    def __post_init__(self) -> None:
        owner = "the gd-vs-sgd study"
        if not self.gd_lrs:
            raise UserError("The gd-vs-sgd study needs at least one GD step size: use gd_lrs=0.1,0.4.")
        for lr in (*self.gd_lrs, *self.sgd_lrs):
            check_float(lr, "gd_lrs/sgd_lrs", owner, low=0.0, low_open=True)
        for b in self.batch_sizes:
            check_int(b, "batch_sizes", owner, low=1)
        if bool(self.sgd_lrs) != bool(self.batch_sizes):
            raise UserError("SGD runs need both sgd_lrs and batch_sizes (or neither, for GD alone).")
        check_int(self.steps, "steps", owner, low=1)
        check_int(self.track_every, "track_every", owner, low=1)
        check_float(self.lanczos_tol, "lanczos_tol", owner, low=0.0, high=1.0, low_open=True)
        check_int(self.points, "points", owner, low=2)

    def runs(self) -> list[tuple[str, float, int | None]]:
        """(optimizer, η, batch size) of every run: GD first, then SGD by η, then B."""
        return [("gd", lr, None) for lr in self.gd_lrs] + [
            ("sgd", lr, b) for lr in self.sgd_lrs for b in self.batch_sizes
        ]


@register_result
@dataclass
class GdVsSgdResult:
    """One entry per run ([R], GD runs first); GD sharpness tracks [G, T] at ``track_steps`` [T].

    ``ratio`` is λmax/(2/η) = λmax·η/2 (1 is the stability threshold of GD on a
    quadratic); ``lambda_max_error`` bounds the distance of λmax to an eigenvalue.
    ``barrier`` [R] is the train-loss barrier ('linear' definition) on the line from the
    GD run ``reference[r]`` to run r (NaN for GD runs), ``barrier_curve`` [R, points] the
    train loss along it. ``loss_curve`` [R, records] is the full-batch train loss at
    ``record_steps`` (NaN after a run diverged).
    """

    optimizer: list[str]
    lr: np.ndarray
    batch_size: np.ndarray  # n for GD
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    lambda_max: np.ndarray
    lambda_max_error: np.ndarray
    ratio: np.ndarray
    stopped: list[str]
    reference: np.ndarray
    barrier: np.ndarray
    t: np.ndarray
    barrier_curve: np.ndarray
    record_steps: np.ndarray
    loss_curve: np.ndarray
    track_steps: np.ndarray
    sharpness: np.ndarray
    sharpness_residual: np.ndarray
    thetas: np.ndarray  # [R, D] final parameters
    n_train: int
    config: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        runs = []
        for r, opt in enumerate(self.optimizer):
            runs.append(
                {
                    "optimizer": opt,
                    "lr": float(self.lr[r]),
                    "batch_size": int(self.batch_size[r]),
                    "train_loss": float(self.train_loss[r]),
                    "test_accuracy": float(self.test_accuracy[r]),
                    "lambda_max": float(self.lambda_max[r]),
                    "lambda_max_over_2_over_lr": float(self.ratio[r]),
                    "barrier_to_gd": None if not np.isfinite(self.barrier[r]) else float(self.barrier[r]),
                    "stopped": self.stopped[r],
                }
            )
        gd = [r for r, opt in enumerate(self.optimizer) if opt == "gd"]
        tail = max(1, self.sharpness.shape[1] // 4)  # the last quarter of training
        late = [self.sharpness[g, -tail:][np.isfinite(self.sharpness[g, -tail:])] for g in range(len(gd))]
        return {
            "runs": runs,
            "gd_final_sharpness_over_2_over_lr": [  # None where the run diverged before the last quarter
                float(v.mean() * self.lr[r] / 2) if len(v) else None for v, r in zip(late, gd, strict=True)
            ],
            "n_train": self.n_train,
            "mse_normalization": "L = (1/n) sum_i 0.5 ||f(x_i) - y_i||^2 (Cohen et al. 2021: 0.5*sum/n)",
        }


def _train_config(config: GdVsSgdConfig, optimizer: str, lr: float, batch: int | None) -> TrainConfig:
    return TrainConfig(
        optimizer=optimizer,
        lr=lr,
        batch_size=batch,
        steps=config.steps,
        record_every=config.track_every,
        snapshot_every=config.steps,
        seed=config.seed,
    )


def _estimate(config: GdVsSgdConfig, context: StudyContext) -> Estimate:
    """Every run's training and final λmax, GD's sharpness tracking, and the barrier lines."""
    objective = study_objective(config, context)
    at = objective.curvature_at(objective.theta0)
    final = estimate_curvature(at, top=1)
    tracking = estimate_curvature(at, top=1, max_hvps=TRACK_MAX_HVPS)
    tracks = config.steps // config.track_every
    estimate = Estimate("study gd-vs-sgd", [])
    for optimizer, lr, batch in config.runs():
        label = f"{optimizer} η = {lr:g}" + ("" if batch is None else f" B = {batch}")
        estimate.include(estimate_training(objective, _train_config(config, optimizer, lr, batch)), label)
        if optimizer == "gd":
            estimate.include(tracking, f"{label}, λmax tracked {tracks} times", times=tracks)
    runs = len(config.runs())
    estimate.include(final, f"final λmax of {runs} runs", times=runs)
    lines = sum(optimizer == "sgd" for optimizer, _, _ in config.runs()) * config.points
    estimate.work.append(
        Work("barrier lines: train loss at points", lines, lines, seconds_per_point(objective, at.theta))
    )
    return estimate


@register_result
@dataclass
class GdVsSgdRun:
    """One training run of the sweep: where it ended, its curves, and λmax there."""

    theta: np.ndarray
    loss_curve: np.ndarray  # [records], NaN after a run stopped
    sharpness: np.ndarray  # [tracks] λmax along a GD run (NaN for SGD runs)
    sharpness_residual: np.ndarray
    lambda_max: float
    lambda_max_error: float
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    stopped: str


@register_result
@dataclass
class GdVsSgdLine:
    """The train loss along the line from a GD solution to an SGD solution, and its barrier."""

    curve: np.ndarray
    barrier: float


@register_study(
    "gd-vs-sgd",
    "Full-batch GD vs SGD: final loss, test accuracy, lambda_max vs 2/lr, barrier, GD sharpness along training.",
    GdVsSgdConfig,
    quick=GdVsSgdConfig(gd_lrs=(0.4, 1.0), sgd_lrs=(0.4,), batch_sizes=(16, 128), steps=600, track_every=20),
    full=GdVsSgdConfig(),
    estimate=_estimate,
    demo="GD vs SGD: sharpness against 2/eta and the barrier between their solutions",
)
def gd_vs_sgd(config: GdVsSgdConfig, context: StudyContext) -> GdVsSgdResult:
    """Run every GD and SGD run, then the barriers (see the module docstring)."""
    objective = study_objective(config, context)
    data = objective.dataset
    runs = config.runs()
    records = _train_config(config, *runs[0]).record_count(objective.n)  # every run records alike
    tracks = config.steps // config.track_every

    def run_point(i: int) -> GdVsSgdRun:
        optimizer, lr, batch = runs[i]
        train_config = _train_config(config, optimizer, lr, batch)
        tracker = SharpnessTracker(every=config.track_every, tol=config.lanczos_tol, seed=config.seed, start=False)
        try:
            result = train(objective, train_config, callbacks=[tracker] if optimizer == "gd" else [])
        except UserError as err:  # the tracker's products overflowed on the way to divergence
            raise UserError(f"The {optimizer} run at lr={lr:g} diverged ({err}): lower that step size.") from None
        if result.stopped == "diverged":  # no curvature at a point where the loss blew up
            lam, err = np.nan, np.nan
        else:
            top = lanczos(
                hessian_operator(objective, torch.as_tensor(result.theta)), 1, tol=config.lanczos_tol, seed=config.seed
            )
            lam, err = top.eigenvalues[0], top.error_estimates[0]
        curve = np.full(records, np.nan)
        curve[: len(result.history["loss"])] = result.history["loss"]
        track = tracker.result()
        sharp, resid = np.full(tracks, np.nan), np.full(tracks, np.nan)
        sharp[: len(track.lambda_max)], resid[: len(track.residuals)] = track.lambda_max, track.residuals
        final = result.final
        return GdVsSgdRun(
            theta=result.theta,
            loss_curve=curve,
            sharpness=sharp,
            sharpness_residual=resid,
            lambda_max=float(lam),
            lambda_max_error=float(err),
            train_loss=float(final["loss"]),
            train_accuracy=float(final.get("accuracy", np.nan)),
            test_accuracy=float(final.get("test_accuracy", np.nan)),
            stopped=str(result.stopped),
        )

    key = asdict(config)
    points = context.sweep("gd-vs-sgd", key, len(runs), run_point)
    gd_index = {lr: r for r, (opt, lr, _) in enumerate(runs) if opt == "gd"}
    sgd = [r for r, (opt, _, _) in enumerate(runs) if opt == "sgd"]
    reference = np.array([-1 if opt == "gd" else gd_index.get(lr, 0) for opt, lr, _ in runs], dtype=np.int64)

    def barrier_point(j: int) -> GdVsSgdLine:
        r = sgd[j]
        if "diverged" in (points[r].stopped, points[reference[r]].stopped):
            return GdVsSgdLine(np.full(config.points, np.nan), np.nan)
        link = connect(
            objective,
            torch.as_tensor(points[reference[r]].theta),
            torch.as_tensor(points[r].theta),
            align="none",
            points=config.points,
            test=False,
        )
        naive = link.paths["naive"]
        return GdVsSgdLine(naive.values["train_loss"], naive.barrier("train_loss").height)

    links = context.sweep("gd-vs-sgd-barriers", key, len(sgd), barrier_point)
    barrier = np.full(len(runs), np.nan)
    barrier_curve = np.full((len(runs), config.points), np.nan)
    for j, r in enumerate(sgd):
        barrier[r], barrier_curve[r] = links[j].barrier, links[j].curve
    lr = np.array([lr for _, lr, _ in runs], dtype=np.float64)
    per_run = lambda name: np.array([getattr(p, name) for p in points])  # noqa: E731
    lam = per_run("lambda_max")
    gd_rows = [r for r, (opt, _, _) in enumerate(runs) if opt == "gd"]
    return GdVsSgdResult(
        optimizer=[opt for opt, _, _ in runs],
        lr=lr,
        batch_size=np.array([data.n_train if b is None else min(b, data.n_train) for _, _, b in runs], dtype=np.int64),
        train_loss=per_run("train_loss"),
        train_accuracy=per_run("train_accuracy"),
        test_accuracy=per_run("test_accuracy"),
        lambda_max=lam,
        lambda_max_error=per_run("lambda_max_error"),
        ratio=lam * lr / 2,
        stopped=[p.stopped for p in points],
        reference=reference,
        barrier=barrier,
        t=np.linspace(0.0, 1.0, config.points),
        barrier_curve=barrier_curve,
        record_steps=np.minimum(np.arange(records) * config.track_every, config.steps),
        loss_curve=np.stack([p.loss_curve for p in points]),
        track_steps=np.arange(1, tracks + 1) * config.track_every,
        sharpness=np.stack([points[r].sharpness for r in gd_rows]),
        sharpness_residual=np.stack([points[r].sharpness_residual for r in gd_rows]),
        thetas=np.stack([p.theta for p in points]),
        n_train=data.n_train,
        config=asdict(config),
    )
