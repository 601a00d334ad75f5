"""Magnitude pruning and lottery tickets with rewinding, and the instability that predicts them.

Train a dense network for T steps from θ_0 (the batch order of ``seed``), keeping θ_k
at each rewind step k. Then, at each kept fraction q of the weight matrices:

- *one-shot magnitude pruning* (Han et al. 2015): mask m = the largest-|θ_T| q, per
  ``scope`` 'global' (all matrices together) or 'layer' (each matrix keeps q); the
  accuracy of θ_T ⊙ m without retraining;
- *lottery tickets with rewinding* (Frankle & Carbin 2019; Frankle et al. 2020): train
  θ_k ⊙ m for T − k steps with the mask held; k = 0 is the original lottery ticket;
- *random re-initialization*: the same mask on a fresh initialization (model seed
  ``seed + 1000``), trained T steps;
- *random mask*: a random mask with m's per-layer counts on θ_0, trained T steps;
- *iterative magnitude pruning* (IMP): prune to each q in turn (largest first), each
  round retrained from θ_k ⊙ m, and pruned from the previous round's trained weights;
- *instability of the sparse network* (Frankle et al. 2020): two copies of θ_k ⊙ m
  (global mask) trained T − k steps with batch orders ``seed + 1`` and ``seed + 2``;
  the test-error barrier on the line between them (above the endpoints' mean). A
  small barrier (≤ 2 %) is when rewinding to k gives a ticket that matches the dense
  net (Frankle et al.'s observation).

Every run started from θ_k (tickets, IMP rounds, instability copies) continues the
dense run's learning-rate schedule from step k (``schedule='cosine'``; the default
constant schedule is the same at every step), as Frankle et al. (2020) rewind the
schedule with the weights; re-initialized and random-mask runs start it at 0.

Both presets train a digits MLP that is already stable at k = 0, so rewinding cannot
matter there. A setting that is unstable at initialization (dense barrier ≈ 5 % at
k = 0, ≤ 2 % from k ≈ 156 of 790 steps; about 10 min on one core, benchmarks/RESULTS.md):

    losslab study lottery --model mlp:784-300-100-10 --data fashion-mnist:n=5000,test_n=2000 \
        --set lr=0.1 --set schedule=cosine --set epochs=10 --set ks=0,20,78,156,312 \
        --set keeps=0.512,0.262,0.134,0.069,0.035,0.018,0.009 --set points=7

Masked training multiplies the gradient by the mask (`losslab.train.pruning`), which
keeps pruned weights at exactly 0; every point counts the pruned entries that are not
0 and the masks whose kept count differs from round(q · N) (per layer or overall): the
result's ``invariants()`` must all be 0. Every (scope, q) and every IMP chain
(scope, k) is a resumable sweep point; the dense run is deterministic and recomputed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from losslab.connectivity import Network, Path, barrier, evaluate_path
from losslab.data import load_data
from losslab.errors import UserError, check_choice, check_each, check_float, check_int
from losslab.models import build_model
from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work, seconds_per_point
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study, subset
from losslab.train import TrainConfig, TrainState, check_training, train
from losslab.train.cost import estimate_training
from losslab.train.pruning import (
    SCOPES,
    kept_counts,
    magnitude_mask,
    mask_violations,
    prunable,
    pruned_nonzeros,
    random_mask_like,
    train_masked,
)

__all__ = ["LotteryConfig", "LotteryImpPoint", "LotteryPoint", "LotteryResult", "lottery"]

_REINIT_OFFSET = 1000  # model seed of the random re-initialization: far from the seeds a user sweeps


@dataclass(frozen=True)
class LotteryConfig:
    """The dense run, the kept fractions, the rewind steps and the pruning scopes."""

    model: str = "mlp:64-64-10"
    data: str = "digits"
    train_size: int | None = None  # None: every training row
    optimizer: str = "momentum"  # plain SGD leaves the quick preset's dense net under-trained (~92 %)
    lr: float = 0.05  # heavy ball 0.9: effective step 0.5, stable for the zoo MLPs
    momentum: float = 0.9  # used by 'momentum' only
    schedule: str = "constant"  # or cosine over the dense run's T steps; a run rewound to k continues it from k
    batch_size: int | None = 64
    epochs: int = 4  # the budget T of the dense run and of every retraining
    keeps: tuple[float, ...] = (0.5, 0.2, 0.1, 0.05)  # fractions of the weight matrices kept
    ks: tuple[int, ...] = (0, 4, 23)  # rewind steps (0: the original lottery ticket)
    scopes: tuple[str, ...] = SCOPES
    points: int = 7  # positions on the line between the two copies of the instability analysis
    seed: int = 0  # model initialization and the dense run's batch order

    def __post_init__(self) -> None:
        owner = "lottery"
        check_training(self, owner)
        check_each(
            self.keeps, "keeps", owner, "kept fraction", "0.2,0.05", check_float, low=0.0, high=1.0, low_open=True
        )
        check_each(self.ks, "ks", owner, "rewind step", "0,4", low=0)
        if not self.scopes:
            raise UserError("The 'scopes' parameter of lottery must list 'global', 'layer' or both. Got none.")
        for scope in self.scopes:
            check_choice(scope, "scopes", owner, SCOPES)
        check_int(self.points, "points", owner, low=2)
        if self.train_size is not None:
            check_int(self.train_size, "train_size", owner, low=2)

    def train_config(self) -> TrainConfig:
        return TrainConfig.of(self, "optimizer", "lr", "momentum", "schedule", "batch_size", "epochs", "seed")

    def objective(self, device: str = "cpu", dtype: str = "float32", seed: int | None = None) -> Objective:
        """The model initialized with ``seed`` (default: the config's) on the (subset) training data."""
        data = load_data(self.data)
        if self.train_size is not None and self.train_size < data.n_train:
            data = subset(data, self.train_size, self.seed)
        if data.task != "classification":
            raise UserError(f"The lottery study measures accuracy: {self.data!r} is not a classification dataset.")
        model = build_model(self.model, seed=self.seed if seed is None else seed)
        return Objective(model, "cross_entropy", data, device=device, dtype=dtype)

    @property
    def sorted_keeps(self) -> list[float]:
        return sorted(set(self.keeps), reverse=True)

    def rewind_steps(self, total: int) -> list[int]:
        ks = sorted(set(self.ks))
        if ks[-1] >= total:
            raise UserError(
                f"The rewind steps ks must lie in [0, {total}) for a budget of {total} steps: "
                "lower them or raise epochs."
            )
        return ks


@register_result
@dataclass
class LotteryPoint:
    """One (scope, kept fraction): pruned, ticket (per rewind step), re-init and random-mask accuracies."""

    pruned: float  # test accuracy of θ_T ⊙ m, no retraining
    ticket: np.ndarray  # [K] test accuracy of the ticket rewound to ks[i]
    reinit: float
    random_mask: float
    barrier: np.ndarray  # [K] test-error barrier of the sparse copies split at ks[i] (NaN: not measured)
    kept: int  # kept prunable entries
    mask_violations: int  # kept-count mismatch summed over layers (layer) or overall (global)
    nonzero_pruned: int  # pruned entries not exactly 0 after training, over every run of the point
    diverged: int  # runs that stopped on a non-finite loss or gradient


@register_result
@dataclass
class LotteryImpPoint:
    """One IMP chain (scope, rewind step): test accuracy after each round, at each kept fraction."""

    accuracy: np.ndarray  # [Q]
    mask_violations: int
    nonzero_pruned: int
    diverged: int


@register_result
@dataclass
class LotteryResult:
    """Accuracy vs kept fraction for every scheme; arrays are [S, Q(, K)] over scopes, keeps, ks."""

    scopes: list[str]
    keeps: np.ndarray
    ks: np.ndarray
    total_steps: int
    prunable: int
    dense: float  # test accuracy of the dense run
    dense_barrier: np.ndarray  # [K] test-error barrier of dense copies split at ks[i]
    pruned: np.ndarray
    ticket: np.ndarray
    reinit: np.ndarray
    random_mask: np.ndarray
    imp: np.ndarray  # [S, K, Q]
    barrier: np.ndarray  # [S, Q, K]
    checks: dict[str, int]
    config: dict[str, Any]

    def invariants(self) -> dict[str, int]:
        """Violation counts (all must be 0): masks off their requested sparsity, pruned weights ≠ 0."""
        return dict(self.checks)

    def matches_dense(self, tolerance: float = 0.01) -> np.ndarray:
        """[S, Q, K] whether the ticket's test accuracy is within ``tolerance`` of the dense run's."""
        return self.ticket >= self.dense - tolerance

    def lowest_matching_keep(self, scope: str = "global", tolerance: float = 0.01) -> dict[str, float | None]:
        """Per scheme, the smallest kept fraction whose accuracy stays within ``tolerance`` of dense."""
        s = self.scopes.index(scope)
        schemes = {
            "ticket_best_k": self.ticket[s].max(axis=1),
            "ticket_k0": self.ticket[s, :, 0],
            "reinit": self.reinit[s],
            "random_mask": self.random_mask[s],
            "pruned_no_retraining": self.pruned[s],
        }
        out: dict[str, float | None] = {}
        for name, acc in schemes.items():
            ok = acc >= self.dense - tolerance
            out[name] = float(self.keeps[ok].min()) if ok.any() else None
        return out

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "keeps": [float(q) for q in self.keeps],
            "ks": [int(k) for k in self.ks],
            "dense_test_accuracy": round(self.dense, 4),
            "dense_barrier": [round(float(b), 4) for b in self.dense_barrier],
            "invariants": self.invariants(),
        }
        for s, scope in enumerate(self.scopes):
            out[scope] = {
                "pruned": [round(float(v), 4) for v in self.pruned[s]],
                "ticket": [[round(float(v), 4) for v in row] for row in self.ticket[s]],
                "reinit": [round(float(v), 4) for v in self.reinit[s]],
                "random_mask": [round(float(v), 4) for v in self.random_mask[s]],
                "imp": [[round(float(v), 4) for v in row] for row in self.imp[s]],
                "lowest_matching_keep": self.lowest_matching_keep(scope),
            }
            if scope == "global":
                out[scope]["barrier"] = [[round(float(v), 4) for v in row] for row in self.barrier[s]]
        return out


class _Rewinds:
    def __init__(self, steps: set[int]) -> None:
        self.steps = steps
        self.taken: dict[int, torch.Tensor] = {}

    def on_step(self, state: TrainState) -> None:
        if state.step in self.steps:
            self.taken[state.step] = state.theta.detach().clone()


def _accuracy(objective: Objective, theta: torch.Tensor) -> float:
    test = objective.test_objective(True)
    if test is None:
        raise UserError("The lottery study measures test accuracy: the dataset has no test split.")
    return float(test.metrics(theta)["accuracy"])


def _test_error_barrier(
    objective: Objective,
    train_config: TrainConfig,
    start: torch.Tensor,
    mask: torch.Tensor,
    steps: int,
    seeds: list[int],
    points: int,
    start_step: int,
) -> tuple[float, int, int]:
    """(barrier, nonzero pruned entries, diverged runs) of two masked copies from ``start`` (step ``start_step``)."""
    child = replace(train_config, steps=steps)
    copies, nonzero, diverged = [], 0, 0
    for seed in seeds:
        theta, bad = train_masked(objective, replace(child, seed=seed), mask, start, start_step=start_step)
        copies.append(Network(theta, {}))
        nonzero += pruned_nonzeros(theta, mask)
        diverged += bad
    line = evaluate_path(objective, Path("line", *copies), points=points, test=True, bn_reset=False)
    return barrier(line.t, line.values["test_error"], "mean").height, nonzero, diverged


def _dense(
    config: LotteryConfig, context: StudyContext
) -> tuple[Objective, TrainConfig, list[int], dict[int, torch.Tensor], torch.Tensor]:
    objective = config.objective(context.device, context.dtype)
    train_config = config.train_config()
    total = train_config.total_steps(objective.n)
    ks = config.rewind_steps(total)
    rewinds = _Rewinds(set(ks))
    result = train(objective, train_config, test=False, callbacks=[rewinds])
    if result.stopped != "budget":
        raise UserError(f"The dense run stopped early ({result.stopped}): lower the learning rate.")
    rewinds.taken[0] = objective.theta0.clone()
    return objective, train_config, ks, rewinds.taken, objective.as_theta(torch.as_tensor(result.theta))


@register_study(
    "lottery",
    "Lottery tickets (Frankle & Carbin 2019; Frankle et al. 2020): magnitude pruning, rewinding, instability.",
    LotteryConfig,
    quick=LotteryConfig(),
    full=LotteryConfig(
        model="mlp:64-300-100-10",  # LeNet-300-100's shape on digits (Frankle & Carbin's MLP)
        epochs=20,
        keeps=tuple(round(0.8**j, 4) for j in range(1, 18)),  # 80 % … 2.3 %: IMP's 20 %-per-round schedule
        ks=(0, 5, 23, 92),
        points=11,
    ),
    estimate=lambda config, context: _estimate(config, context),
    demo="Lottery tickets: winning tickets vs random re-initialization as weights are pruned",
)
def lottery(config: LotteryConfig, context: StudyContext) -> LotteryResult:
    """Run the lottery-ticket study of ``config`` (see the module docstring)."""
    objective, train_config, ks, rewound, final = _dense(config, context)
    total = train_config.total_steps(objective.n)
    keeps = config.sorted_keeps
    scopes = list(config.scopes)
    seeds = [config.seed + 1, config.seed + 2]
    reinit_theta = config.objective(context.device, context.dtype, seed=config.seed + _REINIT_OFFSET).theta0
    dense = _accuracy(objective, final)

    def dense_split(i: int) -> LotteryImpPoint:
        everything = torch.ones(objective.dim, dtype=torch.bool, device=final.device)
        height, nonzero, diverged = _test_error_barrier(
            objective, train_config, rewound[ks[i]], everything, total - ks[i], seeds, config.points, ks[i]
        )
        return LotteryImpPoint(np.array([height]), 0, nonzero, diverged)

    def oneshot(i: int) -> LotteryPoint:
        scope, keep = scopes[i // len(keeps)], keeps[i % len(keeps)]
        mask = magnitude_mask(objective, final, keep, scope)
        nonzero, diverged = 0, 0

        def run(start: torch.Tensor, k: int, m: torch.Tensor) -> float:
            nonlocal nonzero, diverged
            theta, bad = train_masked(objective, replace(train_config, steps=total - k), m, start, start_step=k)
            nonzero += pruned_nonzeros(theta, m)
            diverged += bad
            return _accuracy(objective, theta)

        tickets = np.array([run(rewound[k], k, mask) for k in ks])
        reinit = run(reinit_theta, 0, mask)
        random = run(objective.theta0, 0, random_mask_like(objective, mask, config.seed + 1))
        heights = np.full(len(ks), np.nan)
        if scope == "global":
            for j, k in enumerate(ks):
                heights[j], more, bad = _test_error_barrier(
                    objective, train_config, rewound[k], mask, total - k, seeds, config.points, k
                )
                nonzero, diverged = nonzero + more, diverged + bad
        return LotteryPoint(
            pruned=_accuracy(objective, final * mask),
            ticket=tickets,
            reinit=reinit,
            random_mask=random,
            barrier=heights,
            kept=kept_counts(objective, mask)["all"],
            mask_violations=mask_violations(objective, mask, keep, scope),
            nonzero_pruned=nonzero,
            diverged=diverged,
        )

    def imp(i: int) -> LotteryImpPoint:
        scope, k = scopes[i // len(ks)], ks[i % len(ks)]
        mask, trained = None, final
        accuracy, violations, nonzero, diverged = [], 0, 0, 0
        for keep in keeps:  # largest first: each round prunes the previous round's survivors
            mask = magnitude_mask(objective, trained, keep, scope, previous=mask)
            violations += mask_violations(objective, mask, keep, scope)
            trained, bad = train_masked(
                objective, replace(train_config, steps=total - k), mask, rewound[k], start_step=k
            )
            nonzero += pruned_nonzeros(trained, mask)
            diverged += bad
            accuracy.append(_accuracy(objective, trained))
        return LotteryImpPoint(np.array(accuracy), violations, nonzero, diverged)

    key = {**asdict(config), "ks": ks, "keeps": keeps, "total": total}
    splits = context.sweep("lottery-dense", key, len(ks), dense_split)
    points = context.sweep("lottery-oneshot", key, len(scopes) * len(keeps), oneshot)
    chains = context.sweep("lottery-imp", key, len(scopes) * len(ks), imp)
    S, Q, K = len(scopes), len(keeps), len(ks)
    grid = lambda name: np.array([getattr(p, name) for p in points], dtype=np.float64).reshape(S, Q, -1).squeeze(-1)  # noqa: E731
    checks = {
        "mask_violations": sum(p.mask_violations for p in points) + sum(c.mask_violations for c in chains),
        "nonzero_pruned": sum(p.nonzero_pruned for p in points + chains + splits),
        "diverged": sum(p.diverged for p in points + chains + splits),
    }
    return LotteryResult(
        scopes=scopes,
        keeps=np.asarray(keeps, dtype=np.float64),
        ks=np.asarray(ks, dtype=np.int64),
        total_steps=total,
        prunable=sum(s.stop - s.start for s in prunable(objective).values()),
        dense=dense,
        dense_barrier=np.array([float(s.accuracy[0]) for s in splits]),
        pruned=grid("pruned"),
        ticket=np.stack([p.ticket for p in points]).reshape(S, Q, K),
        reinit=grid("reinit"),
        random_mask=grid("random_mask"),
        imp=np.stack([c.accuracy for c in chains]).reshape(S, K, Q),
        barrier=np.stack([p.barrier for p in points]).reshape(S, Q, K),
        checks=checks,
        config=asdict(config),
    )


def _estimate(config: LotteryConfig, context: StudyContext) -> Estimate:
    """The dense run, then every masked run (each costs one dense training of its length) and the lines."""
    objective = config.objective(context.device, context.dtype)
    train_config = config.train_config()
    total = train_config.total_steps(objective.n)
    ks = config.rewind_steps(total)
    S, Q = len(config.scopes), len(config.sorted_keeps)
    G = int("global" in config.scopes)
    estimate = Estimate("study lottery", [])
    estimate.include(estimate_training(objective, train_config, test=False), "dense run")
    full = estimate_training(objective, train_config, test=False)
    for k in ks:
        rewound = estimate_training(objective, replace(train_config, steps=total - k), test=False)
        # tickets (S·Q), IMP rounds (S·Q), instability copies (2 per global keep and 2 dense)
        estimate.include(rewound, f"masked runs rewound to {k}", times=2 * S * Q + 2 * G * Q + 2)
    estimate.include(full, "re-initialized and random-mask runs", times=2 * S * Q)
    test = objective.test_objective(True)
    point = seconds_per_point(objective, objective.theta0) + (
        seconds_per_point(test, objective.theta0) if test is not None else 0.0
    )
    lines = (G * Q + 1) * len(ks) * config.points
    estimate.work.append(Work("points on the lines between sparse copies (train and test)", lines, lines, point))
    return estimate
