"""Instability analysis (Frankle et al. 2020): when does training become stable to SGD noise?

Train one network to step k, then train two copies of it onward for the rest of the
budget with different batch orders (different SGD noise), and measure the barrier on
the line between the two results. A network is *stable* at k when that barrier is ≈ 0:
from k on, SGD noise no longer decides which linearly connected region training ends
in. Frankle et al. report the test-error barrier above the mean of the endpoints (the
'mean' definition); every definition and curve is kept.

Each k is one resumable sweep point (a `PathEvaluation`); the parent run to max(k) is
deterministic and recomputed on resume. The copies restart the learning-rate schedule
(exact for the constant schedule, the default); their optimizer state (momentum, Adam
moments) starts at zero. `measure_instability` runs the analysis on any `Objective`;
the registered study ``instability`` builds the objective from its config
(``losslab instability`` and ``losslab study instability`` run it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from losslab.connectivity import Network, Path, PathEvaluation, barrier, evaluate_path, has_batch_norm
from losslab.data import load_data
from losslab.errors import UserError, check_float, check_int
from losslab.models import build_model
from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work, seconds_per_point
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study, subset
from losslab.train import TrainConfig, TrainState, check_training, train, train_ensemble
from losslab.train.cost import estimate_training

__all__ = ["InstabilityConfig", "InstabilityResult", "default_ks", "instability", "measure_instability", "split_steps"]


@dataclass(frozen=True)
class InstabilityConfig:
    """The parent run, where it splits, and the line between the two copies."""

    model: str = "mlp:64-100-100-10"  # the digits MLP of the demo (the command's default for digits)
    data: str = "digits"
    loss: str | None = None  # None: cross_entropy for class labels, mse otherwise
    label_noise: float | None = None  # fraction of training labels replaced by random ones
    train_size: int | None = None  # None: every training row
    optimizer: str = "sgd"  # SGD noise is what the analysis is about: full-batch GD has none
    lr: float = 0.1  # stable for the zoo MLPs with cross-entropy
    momentum: float = 0.9  # used by 'momentum' only
    batch_size: int | None = 64  # None: full batch, where every barrier is round-off
    epochs: int = 10  # budget of the parent and of each copy together
    steps: int | None = None  # budget in steps (overrides epochs)
    ks: tuple[int, ...] | None = None  # split steps; None: 0 and 1/64 … 1/2 of the budget (Frankle et al.)
    points: int = 11  # positions on the line between the copies, both ends included
    bn_reset: bool = True  # re-estimate batch-norm statistics at every point
    seed: int = 0  # initialization and the parent's batch order; the copies use seed + 1 and seed + 2

    def __post_init__(self) -> None:
        owner = "instability"
        check_training(self, owner)
        for k in self.ks or ():
            check_int(k, "ks", owner, low=0)
        check_int(self.points, "points", owner, low=2)
        if self.label_noise is not None:
            check_float(self.label_noise, "label_noise", owner, low=0.0, high=1.0)
        if self.train_size is not None:
            check_int(self.train_size, "train_size", owner, low=2)

    def train_config(self) -> TrainConfig:
        """The parent's run (the copies continue it with their own batch orders)."""
        return TrainConfig.of(self, "optimizer", "lr", "momentum", "batch_size", "epochs", "steps", "seed")

    @property
    def copies(self) -> list[int]:
        return [self.seed + 1, self.seed + 2]

    def objective(self, device: str = "cpu", dtype: str = "float32") -> Objective:
        """The model at its seeded initialization on the (noisy, subset) training data."""
        data = load_data(self.data, label_noise=self.label_noise)
        if self.train_size is not None and self.train_size < data.n_train:
            data = subset(data, self.train_size, self.seed)
        loss = self.loss or ("cross_entropy" if data.task == "classification" else "mse")
        return Objective(build_model(self.model, seed=self.seed), loss, data, device=device, dtype=dtype)


@register_result
@dataclass
class InstabilityResult:
    """Barriers between two copies split from one run at each step in ``ks``.

    ``curves[curve]`` is [K, P]: the curve along the line between the two copies split
    at ``ks[i]``, at positions ``t`` [P]; its ends are the copies' final values. Each copy
    trains ``total_steps − k`` steps with batch-order seeds ``seeds``.
    """

    ks: np.ndarray
    total_steps: int
    t: np.ndarray
    curves: dict[str, np.ndarray]
    seeds: list[int]
    config: dict[str, Any]

    def barrier(self, curve: str = "test_error", definition: str = "mean") -> np.ndarray:
        """The barrier [K] at each split step (default: Frankle et al.'s test-error barrier)."""
        return np.array([barrier(self.t, row, definition).height for row in self.curves[curve]])

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ks": [int(k) for k in self.ks], "total_steps": self.total_steps}
        for curve in self.curves:
            out[f"{curve}_barrier"] = [round(float(v), 6) for v in self.barrier(curve, "mean")]
        error = next((c for c in ("test_error", "train_error") if c in self.curves), None)
        if error is not None:
            # Frankle et al. call a network stable when the error barrier is below 2 %;
            # "stable from k" asks that of k and of every later split step.
            stable = self.barrier(error, "mean") <= 0.02
            later = [i for i in range(len(stable)) if stable[i:].all()]
            out["stable_from_k"] = int(self.ks[later[0]]) if later else None
        return out


def default_ks(total: int) -> list[int]:
    """0 and the steps at 1/64, 1/32, …, 1/2 of the budget (distinct, below it)."""
    return sorted({0, *(round(total / 2**e) for e in range(1, 7))} - {total})


def split_steps(ks: Sequence[int] | None, total: int) -> list[int]:
    """The sorted, distinct split steps (default: `default_ks`), each checked to lie in [0, total)."""
    ks = default_ks(total) if ks is None else sorted({check_int(k, "ks", "instability", low=0) for k in ks})
    if not ks or ks[-1] >= total:
        raise UserError(
            f"The split steps ks must lie in [0, {total}) for a budget of {total} steps: "
            "lower them or raise --steps/--epochs."
        )
    return ks


class _Snapshots:
    """A training callback that keeps θ (and the buffers) at the chosen steps."""

    def __init__(self, steps: set[int], objective: Objective) -> None:
        self.steps, self.objective = steps, objective
        self.taken: dict[int, Network] = {}

    def on_step(self, state: TrainState) -> None:
        if state.step in self.steps:
            buffers = {k: v.clone() for k, v in self.objective.buffers.items()}
            self.taken[state.step] = Network(state.theta.detach().clone(), buffers)


def _private(objective: Objective, buffers: dict[str, torch.Tensor]) -> Objective:
    """A view whose buffers training may update without touching ``objective``'s."""
    return objective.with_buffers({k: v.clone() for k, v in buffers.items()})


def measure_instability(
    objective: Objective,
    config: TrainConfig | None = None,
    ks: Sequence[int] | None = None,
    *,
    theta: torch.Tensor | None = None,
    seeds: Sequence[int] = (1, 2),
    points: int = 11,
    test: Objective | bool | None = True,
    bn_reset: bool = True,
    context: StudyContext | None = None,
    key: dict[str, Any] | None = None,
) -> InstabilityResult:
    """Barrier between two copies trained from step k with batch orders ``seeds``, for k in ``ks``.

    The parent run starts at ``theta`` (default: the objective's weights) with
    ``config`` (its ``seed`` is the parent's batch order); ``ks`` defaults to `default_ks`.
    ``context`` stores each split as a resumable chunk and runs the splits on its
    executor; ``key`` must then name what the objective is (the study passes its config).
    """
    config = config or TrainConfig()
    total = config.total_steps(objective.n)
    ks = split_steps(ks, total)
    seeds = [int(s) for s in seeds]
    if len(seeds) != 2 or seeds[0] == seeds[1]:
        raise UserError(f"Instability analysis needs two different batch-order seeds. Got {seeds}.")
    check_int(points, "points", "instability", low=2)
    bn = has_batch_norm(objective.model)
    start = Network(
        objective.as_theta(objective.theta0 if theta is None else theta).clone(),
        {k: v.clone() for k, v in objective.buffers.items()},
    )
    parent = _private(objective, start.buffers)
    snapshots = _Snapshots(set(ks), parent)
    snapshots.taken[0] = start
    if ks[-1] > 0:
        train(
            parent,
            replace(config, steps=ks[-1]),
            theta=start.theta,
            test=False,
            callbacks=[snapshots],
        )
    missing = [k for k in ks if k not in snapshots.taken]
    if missing:
        raise UserError(
            f"The parent run stopped before split step {missing[0]} (it reached its target "
            "or diverged): lower the split steps, the learning rate, or drop the target."
        )

    def piece(i: int) -> PathEvaluation:
        k = ks[i]
        split = snapshots.taken[k]
        child = replace(config, steps=total - k)
        if bn:
            copies = []
            for seed in seeds:
                view = _private(objective, split.buffers)
                result = train(view, replace(child, seed=seed), theta=split.theta, test=False)
                copies.append(Network(objective.as_theta(result.theta), view.buffers))
        else:
            ensemble = train_ensemble(
                objective,
                child,
                thetas=torch.stack([split.theta, split.theta]),
                seeds=seeds,
                test=False,
            )
            copies = [Network(objective.as_theta(th), split.buffers) for th in ensemble.thetas]
        return evaluate_path(
            objective, Path("line", *copies), points=points, test=test, bn_reset=bn_reset, label=f"split at {k}"
        )

    recorded = {**config.to_dict(), "points": points, "bn_reset": bn_reset}
    sweep_key = {**recorded, "ks": ks, "seeds": seeds, "n": objective.n, "dim": objective.dim, "objective": key}
    lines = (context or StudyContext()).sweep("instability", sweep_key, len(ks), piece)
    curves = {curve: np.stack([line.values[curve] for line in lines]) for curve in lines[0].values}
    return InstabilityResult(np.asarray(ks, dtype=np.int64), total, lines[0].t, curves, seeds, recorded)


def _estimate(config: InstabilityConfig, context: StudyContext) -> Estimate:
    """The parent run to the last split, two copies per split (trained together), each line's points."""
    objective = config.objective(context.device, context.dtype)
    train_config = config.train_config()
    total = train_config.total_steps(objective.n)
    ks = split_steps(config.ks, total)
    estimate = Estimate("study instability", [])
    if ks[-1] > 0:
        parent = estimate_training(objective, replace(train_config, steps=ks[-1]), test=False)
        estimate.include(parent, f"parent to step {ks[-1]}")
    pair = torch.stack([objective.theta0, objective.theta0])
    for k in ks:
        child = replace(train_config, steps=total - k)
        copies = estimate_training(objective, child, thetas=pair, seeds=config.copies, test=False)
        estimate.include(copies, f"split at {k}")
    test = objective.test_objective(True)
    point = seconds_per_point(objective, objective.theta0) + (
        seconds_per_point(test, objective.theta0) if test is not None else 0.0
    )
    lines = len(ks) * config.points
    estimate.work.append(Work("points on the lines between the copies (train and test)", lines, lines, point))
    return estimate


@register_study(
    "instability",
    "Instability (Frankle et al. 2020): barrier between two SGD copies split from one run at step k.",
    InstabilityConfig,
    quick=InstabilityConfig(model="mlp:64-32-10", epochs=4),
    full=InstabilityConfig(epochs=20, points=21),
    estimate=_estimate,
)
def instability(config: InstabilityConfig, context: StudyContext) -> InstabilityResult:
    """Run the instability analysis of ``config`` (see the module docstring)."""
    objective = config.objective(context.device, context.dtype)
    return measure_instability(
        objective,
        config.train_config(),
        config.ks,
        seeds=config.copies,
        points=config.points,
        bn_reset=config.bn_reset,
        context=context,
        key=asdict(config),
    )
