"""Random labels (Zhang et al. 2017): an overparameterized network fits anything.

A fraction p ∈ {0, 0.2, …, 1.0} of the training labels is replaced by uniformly random
labels (as in the paper, a replaced label may equal the true one by chance; the test
split stays clean). At each p an MLP trains with SGD and momentum until it classifies
every training example correctly (or the epoch budget ends), and the study records the
epochs that took, the best training accuracy reached, the test accuracy, and the
curvature of the training loss at the end: λmax by Lanczos with its residual
(`losslab.curvature.lanczos`) and tr(∇²L) by Hutchinson's estimator with its standard
error (`losslab.curvature.hutchinson`).

Published anchor: an MLP with one hidden layer of 512 units reaches ~100 % training
accuracy on fully random CIFAR-10 labels (Zhang et al. 2017, Table 1), and the time to
fit grows with the corruption level (their Fig. 1b). The full preset is that MLP on
scikit-learn digits (1,438 training rows, 38,410 parameters), SGD with momentum 0.9 and
lr 0.01 as in the paper (without its learning-rate decay). Measured there (3 seeds,
benchmarks/RESULTS.md): every p is fitted to 100 %, fully random labels included;
fitting takes 46 epochs with clean labels and 138–175 with any corruption (on this
small set the last few memorized labels dominate, so the time to fit jumps at p = 0.2
and then hardly grows); test accuracy falls from 98.2 % to 12.2 % (chance: 10 %); at the
fit λmax grows from 0.46 to 3.2–4.4 and the trace from 5.9 to ~205 with random labels.

Each p is one sweep point (a resumable chunk); ``seeds`` seeds per p train together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from losslab.curvature import hessian_operator, hutchinson, lanczos
from losslab.curvature.cost import estimate_curvature
from losslab.data import Dataset, load_data
from losslab.errors import UserError, check_each, check_float, check_int
from losslab.models import build_model
from losslab.objective import Objective
from losslab.objective.cost import Estimate
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study, subset
from losslab.train import TrainConfig, init_thetas, train_ensemble
from losslab.train.cost import estimate_training

__all__ = ["RandomLabelsConfig", "RandomLabelsPoint", "RandomLabelsResult", "random_labels"]


@dataclass(frozen=True)
class RandomLabelsConfig:
    """A sweep over the fraction of randomized training labels."""

    data: str = "digits"
    model: str = "mlp:64-512-10"  # one hidden layer of 512 units: Zhang et al.'s MLP
    fractions: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    train_size: int | None = None  # None: every training row
    optimizer: str = "momentum"  # Zhang et al.: SGD with momentum 0.9
    lr: float = 0.01  # Zhang et al.'s initial rate (their per-epoch decay is left out)
    batch_size: int = 64
    epochs: int = 1000  # budget; a seed stops at 100 % training accuracy
    seeds: int = 3  # seeds per fraction, trained together
    lanczos_tol: float = 1e-4  # relative residual of λmax
    trace_tol: float = 0.03  # Hutchinson stops at this relative standard error …
    trace_hvps: int = 300  # … or after this many products
    seed: int = 0  # label noise, subset, initialization and batch order

    def __post_init__(self) -> None:
        owner = "the random-labels study"
        check_each(self.fractions, "fractions", owner, "fraction", "0,0.5,1", check_float, low=0.0, high=1.0)
        check_int(self.seeds, "seeds", owner, low=1)
        check_int(self.epochs, "epochs", owner, low=1)
        if self.train_size is not None:
            check_int(self.train_size, "train_size", owner, low=2)
        check_float(self.lanczos_tol, "lanczos_tol", owner, low=0.0, high=1.0, low_open=True)
        check_float(self.trace_tol, "trace_tol", owner, low=0.0, high=1.0, low_open=True)
        check_int(self.trace_hvps, "trace_hvps", owner, low=2)


@register_result
@dataclass
class RandomLabelsResult:
    """Per fraction p ([F]) and seed ([F, S]); NaN where a value does not exist.

    ``epochs_to_fit`` is the first epoch with 100 % training accuracy (NaN when the budget
    ran out first; ``best_train_accuracy`` then says how close it came). ``lambda_max``
    comes with ``lambda_max_error`` (min(residual, residual²/gap), a bound on its distance
    to an eigenvalue) and ``trace`` with ``trace_stderr`` (one standard error), both of
    the training-loss Hessian at the final θ. ``accuracy_curve`` [F, R] is the mean
    training accuracy over seeds at ``curve_epochs`` [R] (NaN after every seed stopped).
    """

    fractions: np.ndarray
    epochs_to_fit: np.ndarray
    best_train_accuracy: np.ndarray
    train_accuracy: np.ndarray
    train_loss: np.ndarray
    test_accuracy: np.ndarray
    lambda_max: np.ndarray
    lambda_max_error: np.ndarray
    trace: np.ndarray
    trace_stderr: np.ndarray
    hvps: np.ndarray
    thetas: np.ndarray  # [F, S, D] final parameters
    curve_epochs: np.ndarray
    accuracy_curve: np.ndarray
    n_train: int
    params: int
    config: dict[str, Any]

    def mean(self, field: str) -> np.ndarray:
        """The seed mean [F] of a per-seed field (NaN when any seed lacks the value)."""
        return np.asarray(getattr(self, field)).mean(1)

    def summary(self) -> dict[str, Any]:
        rounded = lambda a: [None if not np.isfinite(v) else round(float(v), 6) for v in a]  # noqa: E731
        full = [i for i, p in enumerate(self.fractions) if p == 1.0]
        return {
            "fractions": [float(p) for p in self.fractions],
            "epochs_to_fit": rounded(self.mean("epochs_to_fit")),
            "best_train_accuracy": rounded(self.best_train_accuracy.min(1)),
            "test_accuracy": rounded(self.mean("test_accuracy")),
            "lambda_max": rounded(self.mean("lambda_max")),
            "trace": rounded(self.mean("trace")),
            "fits_random_labels": bool(self.best_train_accuracy[full[0]].min() == 1.0) if full else None,
            "n_train": self.n_train,
            "params": self.params,
        }


@register_result
@dataclass
class RandomLabelsPoint:
    """One fraction of the sweep: every per-seed field of `RandomLabelsResult` without the fraction axis."""

    epochs_to_fit: np.ndarray
    best_train_accuracy: np.ndarray
    train_accuracy: np.ndarray
    train_loss: np.ndarray
    test_accuracy: np.ndarray
    lambda_max: np.ndarray
    lambda_max_error: np.ndarray
    trace: np.ndarray
    trace_stderr: np.ndarray
    hvps: np.ndarray
    thetas: np.ndarray
    accuracy_curve: np.ndarray
    params: int


def _fit_epochs(history: dict[str, np.ndarray]) -> np.ndarray:
    """The first recorded epoch with every training example right, per seed (NaN if never)."""
    fitted = history["accuracy"] >= 1.0  # [records, S]; accuracy counts exactly, so 1.0 means all
    return np.where(fitted.any(0), history["epoch"][fitted.argmax(0)], np.nan)


def _setup(config: RandomLabelsConfig) -> tuple[Dataset, list[int], TrainConfig]:
    """The clean training data, the seeds, and the run of every fraction (stops at 100 %)."""
    clean = load_data(config.data)
    if clean.task != "classification":
        raise UserError(f"Random labels need class labels; {config.data!r} is a regression task.")
    if config.train_size is not None and config.train_size < clean.n_train:
        clean = subset(clean, config.train_size, config.seed)
    seeds = [config.seed + s for s in range(config.seeds)]
    per_epoch = TrainConfig(batch_size=config.batch_size).steps_per_epoch(clean.n_train)
    # One record per epoch (the trainer's default thins records on long runs): the epoch
    # of the fit is exact, and the stop at 100 % is checked every epoch.
    train_config = TrainConfig.of(
        config, "optimizer", "lr", "batch_size", "epochs", "seed", target_accuracy=1.0, record_every=per_epoch
    )
    return clean, seeds, train_config


def _estimate(config: RandomLabelsConfig, context: StudyContext) -> Estimate:
    """Each fraction's ensemble training (bounded: it stops at 100 %) and curvature per seed."""
    clean, seeds, train_config = _setup(config)
    objective = Objective(
        build_model(config.model, seed=seeds[0]), "cross_entropy", clean, device=context.device, dtype=context.dtype
    )
    thetas = init_thetas(config.model, seeds, objective)
    training = estimate_training(objective, train_config, thetas=thetas, seeds=seeds)
    curvature = estimate_curvature(
        objective.curvature_at(objective.theta0), top=1, trace="hutchinson", trace_max_hvps=config.trace_hvps
    )
    # The labels change what is learnt, not what a step or a product costs: one timing serves all p.
    fractions = len(config.fractions)
    estimate = Estimate("study random-labels", [])
    estimate.include(training, f"{fractions} fractions", times=fractions)
    estimate.include(curvature, f"curvature of {fractions} × {len(seeds)} solutions", times=fractions * len(seeds))
    return estimate


@register_study(
    "random-labels",
    "Fit time, test accuracy and curvature (lambda_max, trace) as training labels are randomized.",
    RandomLabelsConfig,
    quick=RandomLabelsConfig(model="mlp:64-256-10", train_size=400, epochs=300, seeds=2),
    full=RandomLabelsConfig(),
    estimate=_estimate,
    demo="Random labels (Zhang et al. 2017): fit time and curvature against the corrupted fraction",
)
def random_labels(config: RandomLabelsConfig, context: StudyContext) -> RandomLabelsResult:
    """Run the label-randomization sweep (see the module docstring)."""
    clean, seeds, train_config = _setup(config)
    records = config.epochs + 1  # the start and every epoch
    device, dtype = context.device, context.dtype  # the pieces may be shipped to Ray workers: not the context

    def fraction_point(i: int) -> RandomLabelsPoint:
        data = clean.with_label_noise(config.fractions[i], config.seed)
        objective = Objective(
            build_model(config.model, seed=seeds[0]), "cross_entropy", data, device=device, dtype=dtype
        )
        result = train_ensemble(
            objective, train_config, thetas=init_thetas(config.model, seeds, objective), seeds=seeds
        )
        history = result.history
        curvature: dict[str, list[float]] = {
            k: [] for k in ("lambda_max", "lambda_max_error", "trace", "trace_stderr", "hvps")
        }
        for k, theta in enumerate(torch.as_tensor(result.thetas)):
            if result.stopped[k] == "diverged":  # no curvature where the loss blew up
                for key in curvature:
                    curvature[key].append(np.nan if key != "hvps" else 0.0)
                continue
            op = hessian_operator(objective, theta)
            top = lanczos(op, 1, tol=config.lanczos_tol, seed=config.seed + k)
            trace = hutchinson(op, tol=config.trace_tol, max_hvps=config.trace_hvps, seed=config.seed + k)
            for key, value in (
                ("lambda_max", top.eigenvalues[0]),
                ("lambda_max_error", top.error_estimates[0]),
                ("trace", trace.estimate),
                ("trace_stderr", trace.stderr),
                ("hvps", top.hvps + trace.hvps),
            ):
                curvature[key].append(float(value))
        curve = np.full(records, np.nan)
        curve[: len(history["step"])] = history["accuracy"].mean(1)
        return RandomLabelsPoint(
            epochs_to_fit=_fit_epochs(history),
            best_train_accuracy=history["accuracy"].max(0),
            train_accuracy=history["accuracy"][-1],
            train_loss=history["loss"][-1],
            test_accuracy=history["test_accuracy"][-1],
            accuracy_curve=curve,
            thetas=result.thetas,
            params=objective.dim,
            hvps=np.asarray(curvature.pop("hvps")).astype(np.int64),
            **{key: np.asarray(values) for key, values in curvature.items()},
        )

    points = context.sweep("random-labels", asdict(config), len(config.fractions), fraction_point)
    per_seed = {
        f.name: np.stack([getattr(p, f.name) for p in points]) for f in fields(RandomLabelsPoint) if f.name != "params"
    }
    return RandomLabelsResult(
        fractions=np.asarray(config.fractions, dtype=np.float64),
        curve_epochs=np.arange(records, dtype=np.float64),
        n_train=clean.n_train,
        params=points[0].params,
        config=asdict(config),
        **per_seed,
    )
