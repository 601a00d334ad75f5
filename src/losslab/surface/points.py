"""Metrics at the parameter points of a slice, formed chunk by chunk inside the memory budget.

Every slice (a line, a plane, an interpolation path, a projected trajectory) is a set of
P points p = Σ_m C[p, m] V_m in the span of a few vectors V (θ and the directions, or the
two ends of a path). At D = 11M parameters (ResNet-18) one grid row of 51 points is
2.2 GB, so the points are never formed as one [P, D] block: `metrics` forms at most
`points_per_block` of them at a time, into one reused buffer, and evaluates them before
forming the next. What a slice holds at once is that buffer (at most
``objective.memory_budget`` bytes, or one point when a single point is larger), the
activations `Objective.metrics_many` bounds by the same budget, and the V themselves.

The first layer of a Sequential MLP (the fused plan, `losslab.objective.plan`) is linear
in θ, so on a slice its output is Σ_m C[p, m] f₁(V_m): computed once per data batch for the
few V (not once per point) and combined per point, which removes the first layer's matrix
products from every point (`benchmarks/surface_plane.py`). The values agree with forming
each point and evaluating it to floating-point round-off.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from losslab.objective import Objective
from losslab.objective.losses import LOSSES

__all__ = ["metrics", "points_per_block"]

Fill = Callable[[int, int, torch.Tensor], None]


def points_per_block(objective: Objective) -> int:
    """Parameter points formed at once: as many as fit ``memory_budget``, at least one."""
    return max(1, objective.memory_budget // (objective.dim * objective.theta0.element_size()))


def metrics(
    objective: Objective,
    test: Objective | None,
    count: int,
    fill: Fill,
    *,
    span: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, np.ndarray]:
    """Loss (and accuracy; with ``test``, on the test split too) at ``count`` points.

    ``fill(s, e, out)`` writes points s, …, e − 1 into ``out`` [e − s, D]: each caller forms
    its points exactly as its result's docstring states. ``span`` = (V [m, D], C [count, m])
    says that point p is Σ_m C[p, m] V_m; with it a Sequential MLP takes the first-layer
    shortcut above.
    """
    per_block = points_per_block(objective)
    buffer = torch.empty(min(count, per_block), objective.dim, dtype=objective.dtype, device=objective.device)
    shortcuts = {id(obj): _FirstLayer.of(obj, span) for obj in (objective, test) if obj is not None}
    parts: list[dict[str, np.ndarray]] = []
    for s in range(0, count, per_block):
        e = min(count, s + per_block)
        block = buffer[: e - s]
        fill(s, e, block)
        out = _evaluate(objective, block, shortcuts[id(objective)], s)
        if test is not None:
            out.update({f"test_{k}": v for k, v in _evaluate(test, block, shortcuts[id(test)], s).items()})
        parts.append(out)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _evaluate(objective: Objective, block: torch.Tensor, shortcut: _FirstLayer | None, first: int) -> dict:
    out = objective.metrics_many(block) if shortcut is None else shortcut.metrics(block, first)
    return {k: v.cpu().numpy() for k, v in out.items() if v is not None}


class _FirstLayer:
    """The fused plan with the first layer's outputs f₁(V_m) on each data batch precomputed."""

    def __init__(self, objective: Objective, coefficients: torch.Tensor, outputs: list[torch.Tensor]) -> None:
        self.objective = objective
        self.coefficients = coefficients  # [P, m], in the objective's dtype (as the points are formed)
        self.outputs = outputs  # per data batch: [m, n_batch, width]
        self._buffer = outputs[0].new_empty(0)

    @classmethod
    def of(cls, objective: Objective, span: tuple[torch.Tensor, torch.Tensor] | None) -> _FirstLayer | None:
        """The shortcut, or None: not the plan path, no span, or f₁(V) over a quarter of the budget."""
        plan = objective._plan
        if span is None or plan is None or objective.many_path != "plan":
            return None
        V, C = span
        width = plan.steps[0][1][2]  # type: ignore[index]
        if len(V) * objective.n * width * objective.theta0.element_size() > objective.memory_budget // 4:
            return None
        V = V.to(objective.device, objective.dtype)
        with torch.no_grad():
            outputs = [plan.first_layer(V, X) for X, _ in objective.batches()]
        return cls(objective, C.to(objective.device, objective.dtype), outputs)

    def metrics(self, block: torch.Tensor, first: int) -> dict[str, torch.Tensor | None]:
        """What `Objective.metrics_many` gives at ``block``, the points first, first + 1, … of the slice."""
        obj, plan, fn = self.objective, self.objective._plan, self.objective.loss_fn
        assert plan is not None
        want_acc = obj.is_classification
        if fn is LOSSES["cross_entropy"]:
            both = _cross_entropy_and_correct
        else:
            sum_many = fn.sum_many or torch.vmap(fn.sum, in_dims=(0, None))
            correct_many = fn.correct_many or torch.vmap(fn.correct, in_dims=(0, None))  # type: ignore[arg-type]
            both = lambda out, y: (sum_many(out, y), correct_many(out, y) if want_acc else None)  # noqa: E731
        chunk = obj._points_per_chunk("plan")
        losses, correct = [], []
        with torch.no_grad():
            for s in range(0, len(block), chunk):
                points = block[s : s + chunk]
                c = self.coefficients[first + s : first + s + len(points)]
                total = hits = None
                for (X, y), f in zip(obj.batches(), self.outputs, strict=True):
                    # One GEMM with an inner size of m (2 or 3) writes the first layer's outputs once,
                    # into a reused buffer (see `SequentialPlan._buffer`: fresh ones fault in page by page).
                    size = len(points) * f[0].numel()
                    if self._buffer.numel() < size:
                        self._buffer = f.new_empty(size)
                    h = torch.mm(c, f.view(len(f), -1), out=self._buffer[:size].view(len(points), -1))
                    h = h.view(len(points), *f.shape[1:])
                    loss, right = both(plan.outputs(points, X, first=h), y)
                    total = loss.to(obj.dtype) if total is None else total + loss.to(obj.dtype)
                    if want_acc:
                        hits = right.to(obj.dtype) if hits is None else hits + right.to(obj.dtype)
                losses.append(total)
                correct.append(hits)
        loss = torch.cat(losses) / obj.n  # type: ignore[arg-type]
        return {"loss": loss, "accuracy": torch.cat(correct) / obj.n if want_acc else None}  # type: ignore[arg-type]


def _cross_entropy_and_correct(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_i ℓ_i and the count of correct argmaxes for logits [k, n, C], from one max per row.

    The value of the cross-entropy's max-shifted form (`losslab.objective.losses`), with its
    argmax reused for the accuracy: three passes over the logits instead of a dozen, which
    was a fifth of the time per point on the digits MLP.
    """
    top, top_class = out.max(-1, keepdim=True)
    terms = (out - top).exp_().scatter_(-1, top_class, 0.0)  # log1p of the rest keeps tiny losses exact
    picked = out.gather(-1, y.expand(out.shape[:-1]).unsqueeze(-1))
    loss = (terms.sum(-1).log1p_() + (top - picked).squeeze(-1)).sum(-1)
    return loss, (top_class.squeeze(-1) == y).sum(-1)
