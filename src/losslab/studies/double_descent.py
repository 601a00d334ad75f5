"""Width, overparameterization and double descent.

An MLP with two hidden layers of width h on MNIST-1D with 15 % of the training labels
replaced by random ones (the MNIST-1D authors' setting, Greydanus & Kobak 2020/2024),
trained with SGD and momentum long enough to interpolate where it can. Against h:
train and test error, the interpolation threshold (the smallest width reaching zero
training error), the test-error peak near it (Belkin et al. 2019; Nakkiran et al.
2020), and how optimization gets easier with width (steps to reach a loss target).
Published anchor for this setting: the test-error peak near h ≈ 50–60, where training
error first reaches zero.

Each width is one sweep point (a resumable chunk); ``seeds`` seeds per width train
together as a seed ensemble and the curves are their mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from losslab.data import Dataset, load_data
from losslab.errors import UserError
from losslab.models import build_model
from losslab.objective import Objective
from losslab.objective.cost import Estimate
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study, subset
from losslab.train import TrainConfig, init_thetas, train_ensemble
from losslab.train.cost import estimate_training

__all__ = ["DoubleDescentConfig", "DoubleDescentPoint", "DoubleDescentResult", "double_descent"]


@dataclass(frozen=True)
class DoubleDescentConfig:
    """A width sweep. ``model`` is a zoo spec with ``{h}`` where the width goes."""

    data: str = "mnist1d"
    label_noise: float = 0.15  # the MNIST-1D authors' noise level
    model: str = "mlp:40-{h}-{h}-10"  # two hidden layers of width h
    widths: tuple[int, ...] = (4, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 128, 192, 256, 384)
    train_size: int | None = None  # None: all 4,000 MNIST-1D training rows
    optimizer: str = "momentum"
    lr: float = 0.02  # stable for every width in the sweep with momentum 0.9
    batch_size: int = 128
    epochs: int = 1500  # long enough for the wide nets to interpolate the noisy labels
    seeds: int = 2  # seeds per width, trained together
    loss_target: float = 0.1  # "steps to reach the target" measures ease of optimization
    seed: int = 0

    def __post_init__(self) -> None:
        if "{h}" not in self.model:
            raise UserError(
                "The double-descent model must contain '{h}' where the width goes, as in "
                f"'mlp:40-{{h}}-{{h}}-10'. Got {self.model!r}."
            )
        if not self.widths or min(self.widths) < 1:
            raise UserError("The double-descent widths must be positive integers.")


@register_result
@dataclass
class DoubleDescentResult:
    """Errors are 1 − accuracy, averaged over seeds ([W] arrays; ``*_per_seed`` are [W, S])."""

    widths: np.ndarray
    params: np.ndarray
    train_error: np.ndarray
    test_error: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    steps_to_target: np.ndarray  # NaN where the target was not reached
    train_error_per_seed: np.ndarray
    test_error_per_seed: np.ndarray
    interpolation_threshold: int | None  # smallest width with zero mean training error
    peak_width: int
    n_train: int
    config: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        best = int(np.argmin(self.test_error))
        return {
            "interpolation_threshold": self.interpolation_threshold,
            "test_error_peak_width": self.peak_width,
            "test_error_at_peak": float(self.test_error[list(self.widths).index(self.peak_width)]),
            "best_width": int(self.widths[best]),
            "best_test_error": float(self.test_error[best]),
            # the test *loss* peaks more sharply than the error (Nakkiran et al. 2020 show both)
            "test_loss_peak_width": int(self.widths[int(np.argmax(self.test_loss))]),
            "n_train": self.n_train,
            "params_at_threshold": None
            if self.interpolation_threshold is None
            else int(self.params[list(self.widths).index(self.interpolation_threshold)]),
        }


@register_result
@dataclass
class DoubleDescentPoint:
    """One width of the sweep: the final values of each seed ([S]) and the model's size."""

    params: int
    steps_to_target: np.ndarray  # NaN where a seed did not reach the target
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray


def _peak(widths: np.ndarray, test_error: np.ndarray, threshold: int | None) -> int:
    """The width of the test-error peak: the largest local maximum, searched up to twice the threshold.

    Past the threshold test error falls again (the second descent); below it, error
    falls with width (the first). Without a threshold the global maximum after the
    first minimum is taken.
    """
    first_min = int(np.argmin(test_error[: max(1, len(widths) // 2)]))
    upper = len(widths) if threshold is None else int(np.searchsorted(widths, 2 * threshold, side="right"))
    window = np.arange(first_min, max(first_min + 1, upper))
    return int(widths[window[np.argmax(test_error[window])]])


def _setup(config: DoubleDescentConfig) -> tuple[Dataset, list[int], TrainConfig]:
    """The noisy training data, the seeds and the training run of every width."""
    data = load_data(config.data, label_noise=config.label_noise, noise_seed=config.seed)
    if data.task != "classification":
        raise UserError(f"Double descent needs class labels; {config.data!r} is a regression task.")
    if config.train_size is not None and config.train_size < data.n_train:
        data = subset(data, config.train_size, config.seed)
    seeds = [config.seed + s for s in range(config.seeds)]
    train_config = TrainConfig.of(config, "optimizer", "lr", "batch_size", "epochs", "seed")
    return data, seeds, train_config


def _width_objective(config: DoubleDescentConfig, i: int, data: Dataset, seed: int, context: StudyContext) -> Objective:
    spec = config.model.replace("{h}", str(config.widths[i]))
    return Objective(build_model(spec, seed=seed), "cross_entropy", data, device=context.device, dtype=context.dtype)


def _estimate(config: DoubleDescentConfig, context: StudyContext) -> Estimate:
    """Each width's ensemble training, its steps timed by training a few of them here."""
    data, seeds, train_config = _setup(config)
    estimate = Estimate("study double-descent", [])
    for i, h in enumerate(config.widths):
        objective = _width_objective(config, i, data, seeds[0], context)
        thetas = init_thetas(config.model.replace("{h}", str(h)), seeds, objective)
        estimate.include(estimate_training(objective, train_config, thetas=thetas, seeds=seeds), f"h = {h}")
    return estimate


@register_study(
    "double-descent",
    "Train/test error against width on noisy MNIST-1D: interpolation threshold and the test-error peak.",
    DoubleDescentConfig,
    quick=DoubleDescentConfig(widths=(4, 8, 16, 32, 64, 128), train_size=1000, epochs=150, lr=0.05, seeds=1),
    full=DoubleDescentConfig(),
    estimate=_estimate,
    demo="Double descent: error against width on noisy MNIST-1D",
)
def double_descent(config: DoubleDescentConfig, context: StudyContext) -> DoubleDescentResult:
    """Run the width sweep (see the module docstring)."""
    data, seeds, train_config = _setup(config)

    def width_point(i: int) -> DoubleDescentPoint:
        spec = config.model.replace("{h}", str(config.widths[i]))
        objective = _width_objective(config, i, data, seeds[0], context)
        result = train_ensemble(objective, train_config, thetas=init_thetas(spec, seeds, objective), seeds=seeds)
        history = result.history
        reached = history["loss"] <= config.loss_target  # [records, S]
        first = np.where(reached.any(0), history["step"][reached.argmax(0)], np.nan)
        return DoubleDescentPoint(
            params=objective.dim,
            steps_to_target=first.astype(np.float64),
            train_loss=history["loss"][-1],
            train_accuracy=history["accuracy"][-1],
            test_loss=history["test_loss"][-1],
            test_accuracy=history["test_accuracy"][-1],
        )

    points = context.sweep("double-descent", asdict(config), len(config.widths), width_point)
    widths = np.asarray(config.widths)
    stack = lambda name: np.stack([getattr(p, name) for p in points])  # noqa: E731  [W, S]
    train_error, test_error = 1 - stack("train_accuracy"), 1 - stack("test_accuracy")
    mean_train, mean_test = train_error.mean(1), test_error.mean(1)
    zero = np.flatnonzero(mean_train == 0)
    threshold = int(widths[zero[0]]) if len(zero) else None
    steps = stack("steps_to_target")
    reached_all = np.isfinite(steps).all(1)  # a width counts only when every seed reached the target
    return DoubleDescentResult(
        widths=widths,
        params=np.array([p.params for p in points]),
        train_error=mean_train,
        test_error=mean_test,
        train_loss=stack("train_loss").mean(1),
        test_loss=stack("test_loss").mean(1),
        steps_to_target=np.where(reached_all, np.where(reached_all[:, None], steps, 0).mean(1), np.nan),
        train_error_per_seed=train_error,
        test_error_per_seed=test_error,
        interpolation_threshold=threshold,
        peak_width=_peak(widths, mean_test, threshold),
        n_train=data.n_train,
        config=asdict(config),
    )
