"""Restarts and local minima: K seeds of one architecture, and how their solutions differ.

The folklore says multiple restarts are needed because gradient descent gets stuck in
bad local minima. This study trains K seeds of one architecture together (a seed
ensemble, `losslab.train.train_ensemble`) and reports the distribution of final train
loss and test accuracy, how many runs reach the target loss, the full-batch gradient
norm where each run ended, and how distinct the solutions are: the loss barrier on the
straight line between pairs of solutions, before and after permuting the hidden units
of one to match the other (`losslab.connectivity.connect`; Entezari et al. 2022,
Ainsworth et al. 2023). Two solutions in the same basin up to permutation have no
barrier after alignment; two solutions in different minima keep one.

Three problems ship, two where bad outcomes are known to occur and one where they are not:

- ``xor``: the 2-2-1 network on the four XOR points, tanh hidden units, a logistic output
  (``bce``), full-batch GD. About a third of the seeds stall at train loss (ln 2)/2 ≈ 0.347
  with two of the four points at p = ½, and stay there for any practical budget (measured:
  20 of 64 seeds at 2,000 and at 20,000 steps; sigmoid units behave alike but are slower
  and noisier). Hamey (1998) proved that the sigmoid 2-2-1 XOR network with MSE has no
  strict local minima, so these stalls are plateaus and minima at infinity (saturated
  units), not isolated minima; for a practitioner the effect is the same.
- ``teacher``: a student of the teacher's width (4 ReLU units, 10 Gaussian inputs, 500
  points, MSE, full-batch Adam). The realizable problem has global minima of zero loss,
  which a few seeds reach (≤ 1e-9). Most stop at a few repeated loss levels (1e-4 – 3.5e-2)
  where the gradient is small and the Hessian nearly positive semidefinite (measured on
  the full preset: λmin ≥ −2e-3·λmax; 20,000 further Adam steps at a tenth of the rate
  leave the loss where it was): spurious minima, or saddles too flat to leave, of a
  student of the teacher's width, the phenomenon Safran & Shamir (2018) established for
  two-layer ReLU networks. Theirs is the population loss with unit output weights and no
  biases, where spurious minima appear from 6 units on; here (finite sample, trained
  output layer, biases) they appear with 4. Dead units are not the cause: 1 of the 52
  stuck students of the full preset has a unit that never turns on.
- ``digits``: the MLP 64-32-10 on scikit-learn digits with SGD: every seed reaches the
  target and their test accuracies agree within about a point; barriers shrink
  after alignment.

A user problem (``model`` and/or ``data`` set) takes the digits problem's settings with
those replaced. Every problem is one sweep point (a resumable chunk) holding the
ensemble and the barriers of its pairs. Alignment permutes hidden units only: the sign
symmetry of tanh units (w, b, a) → (−w, −b, −a) is not undone, so an aligned barrier
between XOR solutions can stay high although the two compute related functions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from itertools import combinations
from typing import Any

import numpy as np
import torch

from losslab.connectivity import ALIGN_METHODS, connect
from losslab.data import load_data
from losslab.errors import UserError, check_choice, check_float, check_int
from losslab.models import build_model
from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work, best_seconds, seconds_per_grad
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study
from losslab.train import OPTIMIZERS, TrainConfig, init_thetas, train_ensemble
from losslab.train.cost import estimate_training

__all__ = ["PROBLEMS", "RestartProblem", "RestartsConfig", "RestartsProblemResult", "RestartsResult", "restarts"]


@dataclass(frozen=True)
class RestartProblem:
    """One architecture, data and training recipe whose restarts the study compares."""

    model: str
    data: str
    loss: str
    optimizer: str
    lr: float
    batch_size: int | None  # None: full batch
    steps: int
    target_loss: float  # a run "succeeds" when its final train loss is at most this
    note: str


PROBLEMS: dict[str, RestartProblem] = {
    "xor": RestartProblem(
        "mlp:2-2-1,act=tanh",
        "xor",
        "bce",
        "gd",
        1.0,
        None,
        2000,
        0.05,
        "XOR 2-2-1, tanh, logistic output: stalls at (ln 2)/2 with two points at p = 1/2",
    ),
    "teacher": RestartProblem(
        "mlp:10-4-1",
        "teacher:n=500,d=10,hidden=4",
        "mse",
        "adam",
        0.03,
        None,
        3000,
        1e-6,
        "student of the teacher's width (4 ReLU units): spurious minima (Safran & Shamir 2018)",
    ),
    "digits": RestartProblem(
        "mlp:64-32-10",
        "digits",
        "cross_entropy",
        "sgd",
        0.1,
        64,
        1150,
        0.1,
        "digits MLP with SGD: every restart reaches the target",
    ),
}


@dataclass(frozen=True)
class RestartsConfig:
    """K restarts of each problem. Training settings left None take each problem's own."""

    problems: tuple[str, ...] = ("xor", "teacher", "digits")  # names in PROBLEMS
    seeds: int = 64  # restarts per problem, trained together
    model: str | None = None  # with or without `data`: one user problem instead of `problems`
    data: str | None = None  # with or without `model`: one user problem instead of `problems`
    loss: str = "cross_entropy"  # the user problem's loss
    optimizer: str | None = None
    lr: float | None = None
    batch_size: int | None = None  # None: the problem's own (full batch for xor and teacher; optimizer=gd forces it)
    steps: int | None = None
    budget: float = 1.0  # multiplies each problem's own step budget (the quick preset halves it)
    target_loss: float | None = None
    max_pairs: int = 40  # pairs of restarts whose barriers are measured (seeded choice)
    points: int = 17  # positions on each line, both ends included
    align: str = "weight"  # weight matching (Ainsworth et al. 2023) or 'activation'
    seed: int = 0  # restart k uses seed + k for its initialization and batch order

    def __post_init__(self) -> None:
        owner = "the restarts study"
        if self.model is None and self.data is None:
            if not self.problems:
                raise UserError("The restarts study needs at least one problem: use problems=xor,teacher,digits.")
            for name in self.problems:
                if name not in PROBLEMS:
                    raise UserError(f"The restarts study has no problem {name!r}: use one of {', '.join(PROBLEMS)}.")
        check_int(self.seeds, "seeds", owner, low=2)
        check_int(self.max_pairs, "max_pairs", owner, low=0)
        check_int(self.points, "points", owner, low=2)
        check_choice(self.align, "align", owner, ALIGN_METHODS)
        if self.optimizer is not None:
            check_choice(self.optimizer, "optimizer", owner, OPTIMIZERS)
        if self.lr is not None:
            check_float(self.lr, "lr", owner, low=0.0, low_open=True)
        if self.batch_size is not None:
            check_int(self.batch_size, "batch_size", owner, low=1)
        if self.steps is not None:
            check_int(self.steps, "steps", owner, low=1)
        if self.target_loss is not None:
            check_float(self.target_loss, "target_loss", owner, low=0.0)
        check_float(self.budget, "budget", owner, low=0.0, low_open=True)

    def resolved(self) -> dict[str, RestartProblem]:
        """The problems to run, by name, with this config's overrides applied."""
        if self.model is not None or self.data is not None:
            base = PROBLEMS["digits"]
            problems = {
                "custom": replace(
                    base,
                    model=self.model or base.model,
                    data=self.data or base.data,
                    loss=self.loss,
                    note="user problem",
                )
            }
        else:
            problems = {name: PROBLEMS[name] for name in self.problems}
        overrides = {
            key: getattr(self, key)
            for key in ("optimizer", "lr", "batch_size", "steps", "target_loss")
            if getattr(self, key) is not None
        }
        if self.steps is None:  # the budget scales each problem's own step count, never an explicit one
            problems = {name: replace(p, steps=max(1, round(p.steps * self.budget))) for name, p in problems.items()}
        return {name: replace(p, **overrides) for name, p in problems.items()}


@register_result
@dataclass
class RestartsProblemResult:
    """K restarts of one problem: per-seed finals ([K]) and barriers between ``pairs`` ([P, 2]).

    ``barrier_naive``/``barrier_aligned`` [P] are train-loss barriers on the straight line
    (the 'linear' definition: the excess over the line between the endpoint losses);
    ``curve_naive``/``curve_aligned`` [P, points] are the train losses along those lines.
    Accuracies and test values are NaN where they do not apply.
    """

    name: str
    problem: dict[str, Any]
    seeds: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    grad_norm: np.ndarray  # ‖∇L‖ on the full training set at the final θ
    thetas: np.ndarray  # [K, D] final parameters
    steps: np.ndarray
    reached: np.ndarray  # train_loss ≤ target_loss
    target_loss: float
    pairs: np.ndarray
    t: np.ndarray
    barrier_naive: np.ndarray
    barrier_aligned: np.ndarray
    curve_naive: np.ndarray
    curve_aligned: np.ndarray

    def summary(self) -> dict[str, Any]:
        finite = lambda a: a[np.isfinite(a)]  # noqa: E731
        out: dict[str, Any] = {
            "seeds": len(self.seeds),
            "reached_target": int(self.reached.sum()),
            "target_loss": self.target_loss,
            "train_loss_median": float(np.median(self.train_loss)),
            "train_loss_min": float(self.train_loss.min()),
            "train_loss_max": float(self.train_loss.max()),
        }
        if np.isfinite(self.test_accuracy).any():
            acc = finite(self.test_accuracy)
            out.update(
                test_accuracy_mean=float(acc.mean()),
                test_accuracy_std=float(acc.std()),
                test_accuracy_min=float(acc.min()),
                test_accuracy_max=float(acc.max()),
            )
        elif np.isfinite(self.train_accuracy).any():
            out["train_accuracy_mean"] = float(finite(self.train_accuracy).mean())
        if len(self.pairs):
            out.update(
                pairs=len(self.pairs),
                barrier_naive_median=float(np.nanmedian(self.barrier_naive)),
                barrier_aligned_median=float(np.nanmedian(self.barrier_aligned)),
            )
        return out


@register_result
@dataclass
class RestartsResult:
    """One `RestartsProblemResult` per problem, in the order they ran."""

    problems: list[RestartsProblemResult]
    config: dict[str, Any]

    def problem(self, name: str) -> RestartsProblemResult:
        for p in self.problems:
            if p.name == name:
                return p
        raise KeyError(name)

    def summary(self) -> dict[str, Any]:
        return {p.name: p.summary() for p in self.problems}


def choose_pairs(k: int, max_pairs: int, seed: int) -> np.ndarray:
    """All pairs i < j of k restarts, or a seeded sample of ``max_pairs`` of them (sorted) [P, 2]."""
    every = np.array(list(combinations(range(k), 2)), dtype=np.int64).reshape(-1, 2)
    if len(every) <= max_pairs:
        return every
    keep = np.sort(np.random.default_rng(seed).choice(len(every), size=max_pairs, replace=False))
    return every[keep]


def _setup(
    problem: RestartProblem, config: RestartsConfig, device: str, dtype: str
) -> tuple[Objective, list[int], TrainConfig]:
    """The problem's objective, the restarts' seeds and their (shared) training run."""
    data = load_data(problem.data)
    objective = Objective(build_model(problem.model, seed=config.seed), problem.loss, data, device=device, dtype=dtype)
    seeds = [config.seed + k for k in range(config.seeds)]
    train_config = TrainConfig.of(
        problem, "optimizer", "lr", "batch_size", "steps", record_every=problem.steps, seed=config.seed
    )
    return objective, seeds, train_config


def _estimate(config: RestartsConfig, context: StudyContext) -> Estimate:
    """Per problem: the ensemble's training, a gradient per restart, and the pairs' lines.

    A pair's connection (alignment and both lines) is timed by connecting two restarts at
    their initialization: the same sizes, though a trained pair may need more matching sweeps.
    """
    estimate = Estimate("study restarts", [])
    for name, problem in config.resolved().items():
        objective, seeds, train_config = _setup(problem, config, context.device, context.dtype)
        thetas = init_thetas(problem.model, seeds, objective)
        estimate.include(estimate_training(objective, train_config, thetas=thetas, seeds=seeds), name)
        grad = seconds_per_grad(objective, thetas[0])
        pairs = len(choose_pairs(config.seeds, config.max_pairs, config.seed))
        pair = best_seconds(
            lambda objective=objective, thetas=thetas: connect(
                objective, thetas[0], thetas[1], align=config.align, points=config.points, test=False
            ),
            objective.device,
            repeats=1,
        )
        estimate.work.append(Work(f"{name}: gradient norm of each restart", len(seeds), len(seeds), grad))
        estimate.work.append(Work(f"{name}: pairs aligned and their lines evaluated", pairs, pairs, pair))
    return estimate


def _run_problem(
    name: str, problem: RestartProblem, config: RestartsConfig, device: str, dtype: str
) -> RestartsProblemResult:
    objective, seeds, train_config = _setup(problem, config, device, dtype)
    result = train_ensemble(objective, train_config, thetas=init_thetas(problem.model, seeds, objective), seeds=seeds)
    final = {
        key: np.asarray(result.history[key][-1], dtype=np.float64)
        for key in ("loss", "accuracy", "test_loss", "test_accuracy")
    }
    thetas = torch.as_tensor(result.thetas)
    finite = np.isfinite(final["loss"])
    grad_norm = np.array(
        [float(objective.grad(theta).norm()) if ok else np.nan for theta, ok in zip(thetas, finite, strict=True)]
    )
    pairs = choose_pairs(config.seeds, config.max_pairs, config.seed)
    t = np.linspace(0.0, 1.0, config.points)
    naive, aligned = np.full((len(pairs), config.points), np.nan), np.full((len(pairs), config.points), np.nan)
    bar_naive, bar_aligned = np.full(len(pairs), np.nan), np.full(len(pairs), np.nan)
    for p, (i, j) in enumerate(pairs):
        if not (finite[i] and finite[j]):
            continue  # a diverged run has no line to evaluate
        link = connect(
            objective, thetas[i], thetas[j], align=config.align, points=config.points, test=False, seed=config.seed
        )
        naive[p], aligned[p] = link.paths["naive"].values["train_loss"], link.paths["aligned"].values["train_loss"]
        bar_naive[p] = link.paths["naive"].barrier("train_loss").height
        bar_aligned[p] = link.paths["aligned"].barrier("train_loss").height
    return RestartsProblemResult(
        name=name,
        problem=asdict(problem),
        seeds=np.asarray(seeds, dtype=np.int64),
        train_loss=final["loss"],
        train_accuracy=final["accuracy"],
        test_loss=final["test_loss"],
        test_accuracy=final["test_accuracy"],
        grad_norm=grad_norm,
        thetas=result.thetas,
        steps=result.steps.astype(np.int64),
        reached=final["loss"] <= problem.target_loss,
        target_loss=problem.target_loss,
        pairs=pairs,
        t=t,
        barrier_naive=bar_naive,
        barrier_aligned=bar_aligned,
        curve_naive=naive,
        curve_aligned=aligned,
    )


@register_study(
    "restarts",
    "K restarts of XOR 2-2-1, a teacher-student ReLU net and the digits MLP: final losses and barriers.",
    RestartsConfig,
    quick=RestartsConfig(seeds=24, budget=0.5, max_pairs=10, points=9),
    full=RestartsConfig(),
    estimate=_estimate,
    demo="Restarts: XOR, teacher-student and digits seeds (local minima and plateaus)",
)
def restarts(config: RestartsConfig, context: StudyContext) -> RestartsResult:
    """Run the restarts of every problem (see the module docstring)."""
    problems = config.resolved()
    names = list(problems)
    device, dtype = context.device, context.dtype  # the pieces may be shipped to Ray workers: not the context
    results = context.sweep(
        "restarts",
        asdict(config),
        len(names),
        lambda i: _run_problem(names[i], problems[names[i]], config, device, dtype),
    )
    return RestartsResult(results, asdict(config))
