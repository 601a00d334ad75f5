"""How far gradient training lands from the certified answer, over many seeds.

Two comparisons, both with seed ensembles from the trainer (`losslab.train.train_ensemble`):

- Two-layer ReLU networks with weight decay: each seed's final objective
  (1/2n)‖f(X) − y‖² + (λ/2)‖θ‖² against the certified optimum p* of `relu2_optimum`.
  Every network of any width has objective ≥ p* (Pilanci & Ergen 2020), so every gap is
  ≥ 0 up to the certificate's own gap; a negative one would be a bug.
- The Blum–Rivest 3-node network relaxed to sigmoids (``three_node:d``): how often
  gradient descent on the cross-entropy of the soft AND reaches weights whose hard
  threshold network classifies every point, against the MILP's yes/no.

Normalizations. The objective's 'mse' loss is (1/n)Σ ½(f_i − y_i)², the convex
program's (1/2n)‖·‖². The trainer's ``weight_decay`` is coupled L2, g ← g + wd·θ, the
gradient of (wd/2)‖θ‖², and it acts on every parameter: W₁, b₁ and α, exactly the
(λ/2)(‖U‖² + ‖α‖²) of the program with U = [W₁ | b₁]. So ``weight_decay = λ``, and the
objective compared is evaluated afterwards, in float64, from the final θ.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from losslab.errors import UserError, check_int
from losslab.exact.relu2 import Relu2Result
from losslab.models import build_model
from losslab.objective import Objective
from losslab.store import register_result
from losslab.train import TrainConfig, TrainState, init_thetas, train_ensemble

__all__ = [
    "RELAXATION_CONFIG",
    "RELU2_CONFIG",
    "RelaxationResult",
    "SgdGapResult",
    "relu2_sgd_gap",
    "three_node_relaxation",
]

# Full-batch Adam with a cosine schedule settles each seed near a stationary point of the
# regularized objective in a few thousand steps (teacher data, n = 100, d = 3, λ = 1e-3:
# gaps 0.07–1 % after 3,000 steps); plain SGD at lr 0.5 was still 20–50 % above p* after
# 5,000. ``weight_decay`` is set to λ by `relu2_sgd_gap`.
RELU2_CONFIG = TrainConfig(optimizer="adam", lr=1e-2, batch_size=None, steps=3000, schedule="cosine", record_every=250)
# The soft AND has two units; Adam at lr 0.1 fits or stalls within a thousand full-batch steps.
RELAXATION_CONFIG = TrainConfig(
    optimizer="adam", lr=0.1, batch_size=None, steps=1000, schedule="constant", record_every=50
)


@contextmanager
def _one_thread(device: str) -> Iterator[None]:
    """Run tiny CPU models on one intra-op thread.

    Each op here touches a few thousand numbers, too few to split across threads; on a
    busy 2-core machine the split cost dominated: 8 seeds × 1,500 Adam steps of
    relu2:2-22 on 30 points took 16.4 s with 2 threads and 2.9 s with 1.
    """
    if not str(device).startswith("cpu"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@register_result
@dataclass
class SgdGapResult:
    """Gradient training of the two-layer ReLU network from many seeds, against the optimum.

    ``objectives`` [K] are the final (1/2n)‖f − y‖² + (λ/2)‖θ‖² per seed; ``gaps`` [K]
    = objectives − ``optimum``; ``below_bound`` counts seeds below the certified lower
    bound beyond round-off (it must be 0). ``thetas`` [K, D] are the final weights of
    ``relu2:d-width`` (θ = W₁, b₁, α).
    """

    seeds: np.ndarray
    objectives: np.ndarray
    gaps: np.ndarray
    optimum: float
    lower_bound: float
    certified: bool
    width: int
    fan_in: int
    below_bound: int
    thetas: np.ndarray
    config: dict[str, Any]
    seconds: float

    def network(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Seed k's network as (U [width, d+1] with the bias last, α [width])."""
        d, m = self.fan_in, self.width
        theta = self.thetas[k]
        W1, b1, alpha = theta[: m * d].reshape(m, d), theta[m * d : m * d + m], theta[m * d + m :]
        return np.c_[W1, b1], alpha

    def summary(self) -> dict[str, Any]:
        relative = self.gaps / max(abs(self.optimum), 1e-300)
        return {
            "seeds": int(len(self.seeds)),
            "width": self.width,
            "optimizer": self.config.get("optimizer"),
            "gap_median": float(np.median(self.gaps)),
            "gap_min": float(self.gaps.min()),
            "gap_max": float(self.gaps.max()),
            "relative_gap_median": float(np.median(relative)),
            "within_1e-3": float(np.mean(relative <= 1e-3)),
            "below_bound": self.below_bound,
            "seconds": round(self.seconds, 3),
        }


def relu2_sgd_gap(
    exact: Relu2Result,
    *,
    seeds: int = 32,
    width: int | None = None,
    config: TrainConfig | None = None,
    device: str = "cpu",
    dtype: str = "float64",
    first_seed: int = 0,
    progress: Any = None,
) -> SgdGapResult:
    """Train ``relu2:d-width`` with weight decay λ from ``seeds`` seeds on the data of ``exact``.

    ``width`` defaults to twice the recovered network's width m* (at least 2), so the
    optimum is within reach; ``config`` defaults to `RELU2_CONFIG` (its weight decay is
    replaced by λ).
    """
    check_int(seeds, "sgd_seeds", "relu2", low=1)
    X, y, lam = np.asarray(exact.X), np.asarray(exact.y), exact.lam
    n, d = X.shape
    width = max(2, 2 * exact.width) if width is None else check_int(width, "width", "relu2", low=1)
    config = replace(config or RELU2_CONFIG, weight_decay=lam)
    spec = f"relu2:{d}-{width}"
    data = (torch.tensor(X, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)[:, None])
    objective = Objective(build_model(spec), "mse", data, dtype=dtype, device=device)
    seed_list = list(range(first_seed, first_seed + seeds))
    thetas = init_thetas(spec, seed_list, objective)
    with _one_thread(device):
        ensemble = train_ensemble(objective, config, thetas=thetas, seeds=seed_list, test=False, progress=progress)
    final = torch.as_tensor(ensemble.thetas, dtype=torch.float64)
    exact_obj = Objective(build_model(spec), "mse", data, dtype="float64")
    objectives = (exact_obj.loss_many(final) + 0.5 * lam * final.square().sum(1)).numpy()
    # The certificate's lower bound is rigorous up to float64 round-off in its own sums.
    below = int((objectives < exact.lower_bound - 1e-12 * max(1.0, abs(exact.lower_bound))).sum())
    return SgdGapResult(
        np.asarray(seed_list),
        objectives,
        objectives - exact.optimum,
        exact.optimum,
        exact.lower_bound,
        exact.certified,
        width,
        d,
        below,
        final.numpy(),
        {**config.to_dict(), "dtype": dtype},
        ensemble.wall_seconds,
    )


@register_result
@dataclass
class RelaxationResult:
    """Gradient descent on the sigmoid-relaxed 3-node network from many seeds.

    ``hard_errors`` [K] are the final errors of the threshold network with each seed's
    weights; ``first_solved`` [K] the first recorded step with zero errors (−1: never);
    ``trainable`` the MILP's answer for the same points.
    """

    seeds: np.ndarray
    hard_errors: np.ndarray
    first_solved: np.ndarray
    final_loss: np.ndarray
    trainable: bool
    points: int
    config: dict[str, Any]
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {
            "seeds": int(len(self.seeds)),
            "trainable": self.trainable,
            "solved_final": float(np.mean(self.hard_errors == 0)),
            "solved_ever": float(np.mean(self.first_solved >= 0)),
            "errors_median": float(np.median(self.hard_errors)),
            "seconds": round(self.seconds, 3),
        }


class _HardErrors:
    """Callback: errors of the hard threshold network of every member at each record."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, fan_in: int) -> None:
        self.X, self.y, self.fan_in = X, y.bool(), fan_in
        self.first: np.ndarray | None = None

    def errors(self, theta: torch.Tensor) -> np.ndarray:
        d = self.fan_in
        W = theta[:, : 2 * d].reshape(-1, 2, d)
        b = theta[:, 2 * d : 2 * d + 2]
        out = (torch.einsum("nd,kjd->knj", self.X.to(theta), W) + b[:, None, :] > 0).all(2)
        return (out != self.y[None, :]).sum(1).cpu().numpy()

    def on_record(self, state: TrainState) -> None:
        wrong = self.errors(state.theta)
        if self.first is None:
            self.first = np.full(len(wrong), -1)
        self.first[(wrong == 0) & (self.first < 0)] = state.step


def three_node_relaxation(
    X: np.ndarray,
    y: np.ndarray,
    *,
    trainable: bool,
    seeds: int = 32,
    config: TrainConfig | None = None,
    device: str = "cpu",
    dtype: str = "float64",
    first_seed: int = 0,
) -> RelaxationResult:
    """Train ``three_node:d`` (soft AND, BCE) from ``seeds`` seeds; count hard errors per seed."""
    check_int(seeds, "relax_seeds", "three-node", low=1)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if not np.isin(y, (0, 1)).all():
        raise UserError("The 3-node relaxation needs labels 0/1.")
    d = X.shape[1]
    spec = f"three_node:{d}"
    data = (torch.tensor(X), torch.tensor(y, dtype=torch.long))
    objective = Objective(build_model(spec), "bce", data, dtype=dtype, device=device)
    seed_list = list(range(first_seed, first_seed + seeds))
    thetas = init_thetas(spec, seed_list, objective)
    tracker = _HardErrors(objective.X, objective.y, d)
    config = config or RELAXATION_CONFIG
    with _one_thread(device):
        ensemble = train_ensemble(objective, config, thetas=thetas, seeds=seed_list, test=False, callbacks=[tracker])
    final = torch.as_tensor(ensemble.thetas, dtype=objective.dtype, device=objective.device)
    hard = tracker.errors(final)
    first = tracker.first if tracker.first is not None else np.full(seeds, -1)
    first = np.where((first < 0) & (hard == 0), int(ensemble.steps.max()), first)
    return RelaxationResult(
        np.asarray(seed_list),
        hard,
        first,
        ensemble.history["loss"][-1],
        trainable,
        len(y),
        config.to_dict(),
        ensemble.wall_seconds,
    )
