"""1-D and 2-D slices of the loss surface: L(θ + α d) and L(θ + a d₁ + b d₂).

Every value is the `Objective`'s loss (and accuracy) at the stated point, evaluated in
blocks of points by `Objective.metrics_many` on the fastest path the device offers;
nothing reloads weights into a module. The axes are closed: ``axis(lo, hi, steps)``
holds ``lo`` and ``hi`` exactly (the values stored are the values used), and grid cell
``[i, j]`` is the point θ + a_i d₁ + b_j d₂ — row i follows d₁, column j follows d₂ —
formed in the objective's dtype as (θ + a_i d₁) + b_j d₂.

A 2-D grid is split into pieces of whole rows. With a `Chunks` store each piece is saved
the moment it finishes and a rerun loads the saved ones, so a run killed mid-grid
resumes and ends bit-identical to an uninterrupted run (a piece is a deterministic
function of its rows); an executor (`losslab.parallel`) may run the pieces elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from losslab.errors import UserError, check_float, check_int
from losslab.objective import Objective
from losslab.parallel import run_pieces
from losslab.store import Chunks, Executor, register_result
from losslab.surface.directions import Directions
from losslab.surface.points import metrics
from losslab.surface.trajectory import Trajectory

__all__ = ["Line", "Surface", "axis", "line", "plane", "plane_key"]

_PIECE_POINTS = 256  # points per resumable piece: ~0.1 s on 2 CPU cores, far above Ray's per-task cost


def axis(lo: float, hi: float, steps: int, *, owner: str = "surface", name: str = "range") -> np.ndarray:
    """``steps`` equally spaced values from ``lo`` to ``hi``, both included exactly (float64).

    A value within round-off of 0 (|v| ≤ 8ε·max(|lo|, |hi|)) is set to exactly 0, so a
    grid whose range spans 0 at a step boundary holds θ itself.
    """
    check_int(steps, "steps", owner, low=2)
    lo = check_float(lo, f"{name} minimum", owner)
    hi = check_float(hi, f"{name} maximum", owner)
    if lo >= hi:
        raise UserError(f"The '{name}' parameter of {owner} must have min < max. Got [{lo:g}, {hi:g}].")
    values = np.linspace(lo, hi, steps, dtype=np.float64)
    values[0], values[-1] = lo, hi  # linspace already does this; the contract is worth stating
    values[np.abs(values) <= 8 * np.finfo(np.float64).eps * max(abs(lo), abs(hi))] = 0.0
    return values


def _check_test(objective: Objective, test: Objective | None) -> None:
    if test is not None and (
        test.dim != objective.dim or test.dtype != objective.dtype or test.device != objective.device
    ):
        raise UserError("The test objective must share model, dtype and device: use objective.on(split='test').")


# ---------------------------------------------------------------------- 1-D
@register_result
@dataclass
class Line:
    """A 1-D slice L(θ + α d): ``alphas`` [S], ``loss`` [S], optionally accuracy and test split."""

    alphas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray | None
    test_loss: np.ndarray | None
    test_accuracy: np.ndarray | None
    theta: np.ndarray
    directions: Directions
    seconds: float

    def summary(self) -> dict[str, Any]:
        i = int(np.nanargmin(self.loss))
        out: dict[str, Any] = {
            "steps": len(self.alphas),
            "loss_min": float(self.loss[i]),
            "alpha_min": float(self.alphas[i]),
            "loss_max": float(np.nanmax(self.loss)),
        }
        zero = np.flatnonzero(self.alphas == 0.0)
        if len(zero):
            out["loss_center"] = float(self.loss[zero[0]])
        if self.test_loss is not None:
            out["test_loss_min"] = float(np.nanmin(self.test_loss))
        return out


def line(
    objective: Objective,
    theta: torch.Tensor,
    directions: Directions | torch.Tensor,
    alphas: np.ndarray,
    *,
    test: Objective | None = None,
) -> Line:
    """L(θ + α d) at each α of ``alphas`` (use `axis` for a closed range).

    ``directions`` is a `Directions` (its d₁ is used) or a [D] tensor. Point k is formed
    as θ + α_k d, a few at a time inside ``objective.memory_budget`` (`losslab.surface.points`).
    """
    theta = objective.as_theta(theta)
    if not isinstance(directions, Directions):
        directions = Directions(_np(objective.as_theta(directions, "the direction")), None, ["given"])
    d, _ = directions.tensors(theta)
    _check_test(objective, test)
    alphas = np.asarray(alphas, dtype=np.float64)
    a = torch.as_tensor(alphas).to(theta.device, theta.dtype)

    def fill(s: int, e: int, out: torch.Tensor) -> None:
        torch.addr(theta.expand(e - s, -1), a[s:e], d, out=out)

    span = torch.stack([theta, d]), torch.stack([torch.ones_like(a), a], dim=1)
    start = time.perf_counter()
    out = metrics(objective, test, len(a), fill, span=span)
    return Line(
        alphas,
        out["loss"],
        out.get("accuracy"),
        out.get("test_loss"),
        out.get("test_accuracy"),
        _np(theta),
        directions,
        time.perf_counter() - start,
    )


# ---------------------------------------------------------------------- 2-D
@register_result
@dataclass
class Surface:
    """A 2-D slice L(θ + a d₁ + b d₂) on the grid ``a`` × ``b``.

    ``loss[i, j]`` (and ``accuracy``, ``test_loss``, ``test_accuracy`` when measured) is
    the value at (a[i], b[j]). ``theta`` and ``directions`` recompute or extend it;
    ``trajectory`` is a training trajectory projected onto the plane (or None).
    ``points_per_second`` counts the points evaluated by this call (not loaded pieces).
    How figures draw the loss is the report's choice (`losslab.report.surface.loss_scale`).
    """

    a: np.ndarray
    b: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray | None
    test_loss: np.ndarray | None
    test_accuracy: np.ndarray | None
    theta: np.ndarray
    directions: Directions
    trajectory: Trajectory | None
    seconds: float
    points_evaluated: int
    path: str

    @property
    def points_per_second(self) -> float:
        return self.points_evaluated / self.seconds if self.seconds > 0 else float("nan")

    def at(self, i: int, j: int) -> torch.Tensor:
        """The parameter point of cell [i, j], formed exactly as the grid formed it."""
        theta = torch.as_tensor(self.theta)
        d1, d2 = self.directions.tensors(theta)
        assert d2 is not None
        a = torch.tensor(self.a[i], dtype=theta.dtype)
        b = torch.tensor(self.b[j], dtype=theta.dtype)
        return torch.addr((theta + a * d1)[None], b[None], d2)[0]

    def summary(self) -> dict[str, Any]:
        i, j = np.unravel_index(int(np.nanargmin(self.loss)), self.loss.shape)
        out: dict[str, Any] = {
            "grid": f"{len(self.a)}x{len(self.b)}",
            "dirs": "/".join(self.directions.kind),
            "loss_min": float(self.loss[i, j]),
            "argmin": [float(self.a[i]), float(self.b[j])],
            "loss_max": float(np.nanmax(self.loss)),
        }
        zi, zj = np.flatnonzero(self.a == 0.0), np.flatnonzero(self.b == 0.0)
        if len(zi) and len(zj):
            out["loss_center"] = float(self.loss[zi[0], zj[0]])
            if self.accuracy is not None:
                out["accuracy_center"] = float(self.accuracy[zi[0], zj[0]])
        if self.test_loss is not None:
            out["test_loss_min"] = float(np.nanmin(self.test_loss))
        if self.directions.explained_variance is not None:
            out["explained_variance"] = [round(v, 6) for v in self.directions.explained_variance]
        if self.trajectory is not None:
            out["trajectory_max_residual"] = float(np.max(self.trajectory.residual))
        out["points_per_second"] = round(self.points_per_second, 1)
        return out


def plane_key(
    objective: Objective,
    theta: torch.Tensor,
    directions: Directions,
    a: np.ndarray,
    b: np.ndarray,
    *,
    test: Objective | None = None,
    rows_per_chunk: int | None = None,
) -> dict[str, Any]:
    """What a resumable grid depends on: pieces saved under another key are discarded."""
    theta = objective.as_theta(theta)
    digest = lambda arr: hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]  # noqa: E731
    return {
        "grid": "plane-v1",
        "theta": digest(_np(theta)),
        "directions": directions.fingerprint(),
        "a": digest(np.asarray(a, dtype=np.float64)),
        "b": digest(np.asarray(b, dtype=np.float64)),
        "rows": len(a),
        "cols": len(b),
        "rows_per_chunk": _rows_per_piece(objective, len(a), len(b), rows_per_chunk),
        "data": [objective.dataset.name, objective.split, objective.n],
        "test": None if test is None else [test.dataset.name, test.split, test.n],
        "dtype": str(objective.dtype),
        "device": objective.device.type,
        "loss": objective.loss_fn.name,
    }


def _rows_per_piece(objective: Objective, rows: int, cols: int, rows_per_chunk: int | None) -> int:
    if rows_per_chunk is not None:
        return check_int(rows_per_chunk, "rows_per_chunk", "plane", low=1)
    return max(1, min(rows, math.ceil(_PIECE_POINTS / cols)))


def plane(
    objective: Objective,
    theta: torch.Tensor,
    directions: Directions,
    a: np.ndarray,
    b: np.ndarray,
    *,
    test: Objective | None = None,
    chunks: Chunks | str | Path | None = None,
    executor: Executor | None = None,
    rows_per_chunk: int | None = None,
    trajectory: Trajectory | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Surface:
    """L(θ + a_i d₁ + b_j d₂) and accuracy (with ``test``, on the test split too) on the grid a × b.

    Memory rule: points are formed a few at a time inside ``objective.memory_budget``
    (`losslab.surface.points`), never as one [len(a)·len(b), D] block, so a plane of any
    size runs in bounded memory with or without ``chunks``. With ``chunks`` (a `Chunks`
    store keyed by `plane_key`, or a directory to make one in) the grid is evaluated in
    pieces of ``rows_per_chunk`` rows (default: ≈256 points), each saved when done and
    loaded on a rerun; with ``executor`` the pieces run there.
    """
    theta = objective.as_theta(theta)
    d1, d2 = directions.tensors(theta)
    if d2 is None:
        raise UserError("A 2-D surface needs two directions: make them with count=2, or use line() for 1-D.")
    _check_test(objective, test)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1 or len(a) < 2 or len(b) < 2:
        raise UserError("The grid axes a and b must be 1-D with at least 2 values each: build them with axis().")
    a_t = torch.as_tensor(a).to(theta.device, theta.dtype)
    b_t = torch.as_tensor(b).to(theta.device, theta.dtype)
    nb = len(b)
    ones = torch.ones(len(a) * nb, dtype=theta.dtype, device=theta.device)
    span = torch.stack([theta, d1, d2]), torch.stack([ones, a_t.repeat_interleave(nb), b_t.repeat(len(a))], dim=1)

    def rows_block(rows: range) -> dict[str, np.ndarray]:
        """Metrics of whole grid rows; cell [i, j] is formed as (θ + a_i d₁) + b_j d₂."""
        first = rows.start * nb

        def fill(s: int, e: int, out: torch.Tensor) -> None:
            s, e = s + first, e + first
            for i in range(s // nb, (e - 1) // nb + 1):  # the rows this block touches
                j0, j1 = max(s, i * nb) - i * nb, min(e, (i + 1) * nb) - i * nb
                dest = out[i * nb + j0 - s : i * nb + j1 - s]
                torch.addr((theta + a_t[i] * d1).expand(j1 - j0, -1), b_t[j0:j1], d2, out=dest)

        piece = span[0], span[1][first : first + len(rows) * nb]
        out = metrics(objective, test, len(rows) * nb, fill, span=piece)
        return {k: v.reshape(len(rows), nb) for k, v in out.items()}

    step = _rows_per_piece(objective, len(a), len(b), rows_per_chunk)
    pieces = [range(s, min(s + step, len(a))) for s in range(0, len(a), step)]
    start = time.perf_counter()
    if chunks is None and executor is None:
        results, computed = [rows_block(range(len(a)))], len(a) * len(b)
    elif chunks is None:
        done = dict(run_pieces(lambda index: rows_block(pieces[index]), range(len(pieces)), executor))
        results, computed = [done[i] for i in range(len(pieces))], len(a) * len(b)
    else:
        key = plane_key(objective, theta, directions, a, b, test=test, rows_per_chunk=rows_per_chunk)
        store = chunks if isinstance(chunks, Chunks) else Chunks(chunks, key)
        if store.key != json.loads(json.dumps(key, default=str)):
            raise ValueError("These chunks belong to another grid: key them with plane_key(...) of this call.")
        computed = sum(len(pieces[i]) * len(b) for i in range(len(pieces)) if not store.done(i))
        results = store.map(
            lambda index: rows_block(pieces[index]),
            len(pieces),
            executor=executor,
            progress=progress,
        )
    seconds = time.perf_counter() - start
    grid = {k: np.concatenate([r[k] for r in results]) for k in results[0]}
    return Surface(
        a,
        b,
        grid["loss"],
        grid.get("accuracy"),
        grid.get("test_loss"),
        grid.get("test_accuracy"),
        _np(theta),
        directions,
        trajectory,
        seconds,
        computed,
        objective.many_path,
    )


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()
