"""Instability analysis (Frankle et al. 2020): when does training become stable to SGD noise?

Train one network to step k, then train two copies of it onward for the rest of the
budget with different batch orders (different SGD noise), and measure the barrier on
the line between the two results. A network is *stable* at k when that barrier is ≈ 0:
from k on, SGD noise no longer decides which linearly connected region training ends
in. Frankle et al. report the test-error barrier above the mean of the endpoints (the
'mean' definition); every definition and curve is kept.

Each k is one resumable chunk; the parent run to max(k) is deterministic and recomputed
on resume. The copies restart the learning-rate schedule (exact for the constant
schedule, the default); their optimizer state (momentum, Adam moments) starts at zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from losslab.connectivity.barriers import barrier
from losslab.connectivity.evaluation import evaluate_path
from losslab.connectivity.network import Network, has_batch_norm
from losslab.connectivity.paths import Path
from losslab.errors import UserError, check_int
from losslab.objective import Objective
from losslab.store import Chunks, Executor, register_result
from losslab.train import TrainConfig, TrainState, train, train_ensemble

__all__ = ["InstabilityResult", "default_ks", "instability"]


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


def instability(
    objective: Objective,
    config: TrainConfig | None = None,
    ks: Sequence[int] | None = None,
    *,
    theta: torch.Tensor | None = None,
    seeds: Sequence[int] = (1, 2),
    points: int = 11,
    test: Objective | bool | None = True,
    bn_reset: bool = True,
    chunks: Chunks | None = None,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> InstabilityResult:
    """Barrier between two copies trained from step k with batch orders ``seeds``, for k in ``ks``.

    The parent run starts at ``theta`` (default: the objective's weights) with
    ``config`` (its ``seed`` is the parent's batch order); ``ks`` defaults to `default_ks`.
    """
    config = config or TrainConfig()
    total = config.total_steps(objective.n)
    ks = default_ks(total) if ks is None else sorted({check_int(k, "ks", "instability", low=0) for k in ks})
    if not ks or ks[-1] >= total:
        raise UserError(
            f"The split steps ks must lie in [0, {total}) for a budget of {total} steps: "
            "lower them or raise --steps/--epochs."
        )
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

    def piece(i: int) -> dict[str, np.ndarray]:
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
        evaluation = evaluate_path(objective, Path("line", *copies), points=points, test=test, bn_reset=bn_reset)
        return {"t": evaluation.t, **evaluation.values}

    if chunks is not None:
        parts = chunks.map(piece, len(ks), executor=executor, progress=progress)
    else:
        parts = []
        for i in range(len(ks)):
            parts.append(piece(i))
            if progress is not None:
                progress(i + 1, len(ks))
    curves = {k: np.stack([p[k] for p in parts]) for k in parts[0] if k != "t"}
    return InstabilityResult(
        np.asarray(ks, dtype=np.int64),
        total,
        parts[0]["t"],
        curves,
        seeds,
        {**config.to_dict(), "points": points, "bn_reset": bn_reset},
    )
