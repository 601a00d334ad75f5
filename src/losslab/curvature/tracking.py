"""Sharpness along training, for the edge-of-stability picture (Cohen et al. 2021).

Full-batch gradient descent with step size η on a quadratic diverges along any
direction of curvature above 2/η. Cohen et al. (2021) found that λmax of the training
loss rises ("progressive sharpening") until it reaches 2/η and then hovers there (the
"edge of stability") while the loss keeps decreasing non-monotonically. For heavy-ball
momentum μ the threshold is (2 + 2μ)/η (their Appendix); for Adam the relevant
quantity is the preconditioned sharpness, which this tracker does not measure (its
threshold is NaN).

`SharpnessTracker` is a trainer callback: at step 0 and every ``every`` steps it
computes λmax of the full-batch Hessian by `lanczos`, warm-started from the previous top
eigenvector, which changes little between nearby θ, so each point costs a few products.
The summary carries the picture's two headline numbers: the first tracked step whose
λmax reaches 2/η, and the tail ratio λmax·η/2 (≈ 1 at the edge of stability).

>>> import losslab
>>> model = losslab.build_model("mlp:64-16-10", seed=0)
>>> obj = losslab.Objective(model, "cross_entropy", losslab.load_data("digits"))
>>> tracker = SharpnessTracker(every=5)
>>> config = losslab.TrainConfig(optimizer="gd", lr=0.5, steps=10)
>>> _ = losslab.train(obj, config, callbacks=[tracker])
>>> track = tracker.result()
>>> track.steps.tolist(), track.two_over_lr.tolist(), bool(track.converged.all())
([0, 5, 10], [4.0, 4.0, 4.0], True)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from losslab.curvature.lanczos import lanczos
from losslab.curvature.operators import ggn_operator, hessian_operator
from losslab.errors import UserError, check_float, check_int
from losslab.store import register_result

__all__ = ["SharpnessTrack", "SharpnessTracker"]

TRACK_MAX_HVPS = 300  # product budget of each warm-started λmax measurement


@register_result
@dataclass
class SharpnessTrack:
    """λmax along training: one entry per tracked step, and the train loss at each record.

    ``threshold`` is the stability threshold of the optimizer at that step (2/η for GD
    and SGD, (2 + 2μ)/η for momentum, NaN for Adam); ``two_over_lr`` is 2/η.

    The summary's edge-of-stability numbers (Cohen et al. 2021): ``first_crossing_step``,
    the first tracked step with λmax ≥ 2/η (None if none; the crossing lies between it
    and the tracked step before); ``tail_ratio``, the median of λmax·η/2 over the last
    quarter of the tracked points (at least one), which hovers near 1 once training is
    at the edge of stability; ``final_ratio``, λmax·η/2 at the last point. For Adam,
    whose stability is governed by the preconditioned sharpness, all three are None.
    """

    steps: np.ndarray
    lambda_max: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    lr: np.ndarray
    two_over_lr: np.ndarray
    threshold: np.ndarray
    hvps: np.ndarray
    record_steps: np.ndarray
    record_loss: np.ndarray
    optimizer: str
    operator: str
    every: int
    tol: float
    wall_seconds: float

    def summary(self) -> dict[str, Any]:
        if len(self.steps) == 0:
            return {"points": 0}
        ratio = self.lambda_max / self.threshold
        finite = np.isfinite(ratio)
        edge = self.lambda_max / self.two_over_lr  # λmax·η/2
        tail = edge[-max(1, math.ceil(len(edge) / 4)) :]
        crossed = np.flatnonzero(edge >= 1.0)
        gd_like = self.optimizer != "adam"
        return {
            "points": len(self.steps),
            "every": self.every,
            "lambda_max_final": float(self.lambda_max[-1]),
            "lambda_max_peak": float(self.lambda_max.max()),
            "threshold_final": float(self.threshold[-1]),
            "peak_over_threshold": float(ratio[finite].max()) if finite.any() else None,
            "first_crossing_step": int(self.steps[crossed[0]]) if gd_like and len(crossed) else None,
            "tail_ratio": float(np.median(tail)) if gd_like else None,
            "final_ratio": float(edge[-1]) if gd_like else None,
            "converged": int(self.converged.sum()),
            "hvps": int(self.hvps.sum()),
            "wall_seconds": round(self.wall_seconds, 3),
        }


class SharpnessTracker:
    """Trainer callback recording λmax every ``every`` steps (warm-started Lanczos).

    Parameters
    ----------
    every : steps between measurements.
    tol : relative residual target of each λmax (1e-4 resolves the approach to 2/η).
    max_hvps : product budget per measurement.
    ggn : track the largest GGN eigenvalue instead of the Hessian's.
    seed : seed of the first random start.
    start : measure at step 0 too (the initial θ), where the picture's sharpening starts.
    """

    def __init__(
        self,
        every: int = 10,
        *,
        tol: float = 1e-4,
        max_hvps: int = TRACK_MAX_HVPS,
        ggn: bool = False,
        seed: int = 0,
        start: bool = True,
    ) -> None:
        self.every = check_int(every, "every", "SharpnessTracker", low=1)
        self.tol = check_float(tol, "tol", "SharpnessTracker", low=0.0, high=1.0, low_open=True)
        self.max_hvps = check_int(max_hvps, "max_hvps", "SharpnessTracker", low=2)
        self.ggn, self.seed, self.start = ggn, seed, start
        self._vector: torch.Tensor | None = None
        self._rows: list[tuple[int, float, float, bool, float, float, int]] = []
        self._records: list[tuple[int, float]] = []
        self._optimizer = "?"
        self._seconds = 0.0

    def on_start(self, state: Any) -> None:
        """Measure λmax at the initial θ (step 0) and keep its loss."""
        if not self.start:
            return
        self.on_step(state)
        self.on_record(state)

    def on_step(self, state: Any) -> None:
        """Measure λmax at ``state.theta`` when ``state.step`` is a multiple of ``every``."""
        if state.step % self.every:
            return
        if state.theta.ndim != 1:
            raise UserError("Sharpness tracking follows one run: train a single seed (seeds=1) to track it.")
        t0 = time.perf_counter()
        config = state.config
        self._optimizer = config.optimizer
        build = ggn_operator if self.ggn else hessian_operator
        op = build(state.objective, state.theta.detach())
        # λmax along training, warm-started from the last point: the completeness restart (which
        # confirms no eigenvalue lies above it) would double the products of every tracked step.
        pair = lanczos(op, 1, tol=self.tol, max_hvps=self.max_hvps, start=self._vector, seed=self.seed, complete=False)
        self._vector = torch.as_tensor(pair.vectors[0])
        if config.optimizer in ("gd", "sgd"):
            threshold = 2.0 / state.lr
        elif config.optimizer == "momentum":
            threshold = (2.0 + 2.0 * config.momentum) / state.lr
        else:
            threshold = math.nan
        self._rows.append(
            (
                state.step,
                float(pair.eigenvalues[0]),
                float(pair.residuals[0]),
                bool(pair.converged[0]),
                float(state.lr),
                threshold,
                pair.hvps,
            )
        )
        self._seconds += time.perf_counter() - t0

    def on_record(self, state: Any) -> None:
        """Keep the full-batch train loss of each record, for the loss panel of the picture."""
        loss = state.record.get("loss")
        if loss is not None:
            self._records.append((state.step, float(np.asarray(loss).reshape(-1)[0])))

    def result(self) -> SharpnessTrack:
        """Everything measured so far, as a saveable result."""
        rows = list(zip(*self._rows, strict=True)) if self._rows else [[]] * 7
        steps, lam, res, conv, lr, threshold, hvps = (np.asarray(r) for r in rows)
        records = list(zip(*self._records, strict=True)) if self._records else [[], []]
        lr = lr.astype(np.float64)
        return SharpnessTrack(
            steps=steps.astype(np.int64),
            lambda_max=lam.astype(np.float64),
            residuals=res.astype(np.float64),
            converged=conv.astype(bool),
            lr=lr,
            two_over_lr=2.0 / lr if len(lr) else lr,
            threshold=threshold.astype(np.float64),
            hvps=hvps.astype(np.int64),
            record_steps=np.asarray(records[0], dtype=np.int64),
            record_loss=np.asarray(records[1], dtype=np.float64),
            optimizer=self._optimizer,
            operator="ggn" if self.ggn else "hessian",
            every=self.every,
            tol=self.tol,
            wall_seconds=self._seconds,
        )
