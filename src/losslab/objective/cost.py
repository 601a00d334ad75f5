"""What a long command will cost, measured on this machine before it runs.

Peer tools start a 101×101 surface or a 1,000-product trace with no idea of how long it
will take. An `Estimate` times the unit of work (the loss at one parameter point, a
gradient, a Hessian-vector product, an optimizer step) with the user's model, data,
dtype and device, and multiplies it by the number of units the command will spend. Where
that number is only bounded (Lanczos stops when its residuals converge, training when it
reaches its target) the estimate gives the bound and says so, rather than guess.

>>> import torch
>>> from torch import nn
>>> X = torch.randn(40, 3, dtype=torch.float64); y = torch.randn(40, 1, dtype=torch.float64)
>>> obj = Objective(nn.Linear(3, 1).double(), "mse", (X, y))
>>> work = Work("grid points", 2601, 2601, seconds_per_point(obj, obj.theta0))
>>> est = Estimate("surface", [work])
>>> est.seconds == est.bound_seconds > 0
True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from losslab.errors import UserError
from losslab.objective.objective import CurvatureAt, Objective

__all__ = [
    "Budget",
    "Estimate",
    "Work",
    "best_seconds",
    "seconds_per_grad",
    "seconds_per_hvp",
    "seconds_per_point",
]


@dataclass(frozen=True)
class Work:
    """``count`` units of one kind of work (``bound`` at most), each taking ``unit_seconds``.

    ``count`` is None where only the bound is known before the run (a stopping rule decides).
    """

    what: str
    count: int | None
    bound: int
    unit_seconds: float

    @property
    def seconds(self) -> float | None:
        return None if self.count is None else self.count * self.unit_seconds

    @property
    def bound_seconds(self) -> float:
        return self.bound * self.unit_seconds


@dataclass
class Estimate:
    """The work a command will do and its predicted wall time (compute only, no figures).

    ``seconds`` counts the work whose amount is known; ``bound_seconds`` assumes every
    stopping rule runs to its budget. They are equal when every count is known.
    ``memory_bytes`` is the peak memory of the results the command holds (0: not estimated).
    """

    command: str
    work: list[Work]
    notes: list[str] = field(default_factory=list)
    memory_bytes: int = 0
    workers: int = 1  # with --ray: the cluster's CPUs; the times below assume one process

    def on_workers(self, workers: int) -> Estimate:
        """This estimate on a cluster of ``workers`` CPUs (the work split evenly: a best case)."""
        return replace(self, workers=max(1, workers))

    @property
    def seconds(self) -> float:
        return sum(w.seconds or 0.0 for w in self.work)

    @property
    def bound_seconds(self) -> float:
        return sum(w.bound_seconds for w in self.work)

    def include(self, other: Estimate, label: str, times: int = 1) -> None:
        """Add ``times`` × ``other``'s work, each line prefixed with ``label``, and its new notes."""
        self.work += [
            replace(
                w,
                what=f"{label}: {w.what}",
                count=None if w.count is None else times * w.count,
                bound=times * w.bound,
            )
            for w in other.work
        ]
        self.notes += [note for note in other.notes if note not in self.notes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "seconds": self.seconds,
            "bound_seconds": self.bound_seconds,
            "work": [
                {"what": w.what, "count": w.count, "bound": w.bound, "unit_seconds": w.unit_seconds} for w in self.work
            ],
            "notes": self.notes,
            "memory_bytes": self.memory_bytes,
            "workers": self.workers,
            # the work split evenly over the workers: no run is faster (a piece runs on one worker)
            "seconds_at_best": self.seconds / self.workers,
            "bound_seconds_at_best": self.bound_seconds / self.workers,
        }


@dataclass(frozen=True)
class Budget:
    """What a run may cost before it starts: peak memory of its results and predicted compute time.

    A command whose own `Estimate` exceeds either is refused before anything is written
    (``losslab surface --steps 100000`` would take thousands of hours and hold ~80 GB);
    ``budget=None`` in a config (``--no-budget`` on the command line) runs it anyway.
    """

    memory_gib: float = 8.0  # results held at once: what a laptop spares beside the model and data
    hours: float = 24.0  # a day of compute: anything longer should be asked for on purpose

    def check(self, estimate: Estimate, what: str) -> None:
        """Raise a `UserError` naming the budget when ``estimate`` exceeds it."""
        fix = "ask for less, or pass --no-budget (budget=None in Python) to run it anyway"
        need = estimate.memory_bytes / 2**30
        if need > self.memory_gib:
            raise UserError(
                f"The {what} would hold {need:,.3g} GiB of results, more than the budget of "
                f"{self.memory_gib:g} GiB: {fix}."
            )
        if estimate.bound_seconds > self.hours * 3600:
            raise UserError(
                f"The {what} is predicted to take {estimate.bound_seconds / 3600:,.3g} h here, more than the "
                f"budget of {self.hours:g} h: {fix}."
            )


def best_seconds(fn: Callable[[], object], device: torch.device, repeats: int = 3, budget: float = 0.05) -> float:
    """The fastest of at least ``repeats`` timed calls of ``fn`` after one untimed warm-up call.

    Cheap calls are repeated until ``budget`` seconds have been timed (at most 100 calls):
    a few milliseconds are at the mercy of thread wake-ups. The minimum, not the mean: on
    a shared machine the slower runs measure the neighbours.
    """
    fn()
    best, spent, calls = float("inf"), 0.0, 0
    while calls < repeats or (spent < budget and calls < 100):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        best, spent, calls = min(best, elapsed), spent + elapsed, calls + 1
    return best


def seconds_per_point(
    objective: Objective, theta: torch.Tensor, *, accuracy: bool = True, repeats: int = 3, budget: float = 0.05
) -> float:
    """Seconds per parameter point of `Objective.metrics_many` on the path it takes here.

    Times one block of as many points as the path evaluates at once (so the per-point
    figure includes its batching gain) at small random offsets from ``theta``;
    ``repeats`` and ``budget`` as in `best_seconds` (one repeat and no budget suffice for
    a check against an hours-sized limit).
    """
    path = objective.many_path
    points = 1 if path == "loop" else max(1, min(objective._points_per_chunk(path), 64))
    g = torch.Generator().manual_seed(0)
    offsets = 1e-3 * torch.randn(points, objective.dim, generator=g, dtype=torch.float64)
    block = theta.detach() + offsets.to(theta.device, theta.dtype)
    fn = lambda: objective.metrics_many(block, accuracy=accuracy)  # noqa: E731
    return best_seconds(fn, objective.device, repeats=repeats, budget=budget) / points


def seconds_per_grad(objective: Objective, theta: torch.Tensor) -> float:
    """Seconds per full-data loss and gradient at ``theta``."""
    return best_seconds(lambda: objective.value_and_grad(theta), objective.device)


def seconds_per_hvp(at: CurvatureAt, *, ggn: bool = False) -> float:
    """Seconds per Hessian- (or GGN-) vector product at a point whose gradient graph is built."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(at.objective.dim, generator=g, dtype=torch.float64).to(at.theta.device, at.theta.dtype)
    product = at.ggn if ggn else at.hvp
    return best_seconds(lambda: product(v), at.objective.device)
