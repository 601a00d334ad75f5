"""Cost of streaming: the same Objective over tensors, a map-style Dataset and a DataLoader.

Workload: the digits MLP mlp:64-100-100-10 (17,610 parameters) on all 1,797 rows, float32.
The in-memory objective in 'recompute' mode is the baseline (a streamed objective never
keeps the gradient graph, since it would keep every batch's inputs); 'reuse' is the
in-memory default. Each path is timed per loss pass and per Hessian-vector product, and
its HVP is compared with the in-memory one (max relative difference, float32).

    python benchmarks/streaming.py [--batch 256]
"""

from __future__ import annotations

import argparse

import torch
from _common import best_of, emit
from sklearn.datasets import load_digits

from losslab import Objective, build_model
from losslab.data import as_dataset


class Rows(torch.utils.data.Dataset):
    """The digits rows one item at a time, as a user's Dataset would hand them out."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[i], self.y[i]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bunch = load_digits()
    X = torch.tensor(bunch.data, dtype=torch.float32)
    X = (X - X.mean(0)) / X.std(0).clamp_min(1e-6)
    y = torch.tensor(bunch.target)
    rows = Rows(X, y)
    model = build_model("mlp:64-100-100-10", seed=0)
    paths = {
        "memory_reuse": Objective(model, "cross_entropy", (X, y), batch_size=args.batch),
        "memory_recompute": Objective(model, "cross_entropy", (X, y), batch_size=args.batch, hvp_mode="recompute"),
        "dataset": Objective(model, "cross_entropy", as_dataset(rows, stream=True), batch_size=args.batch),
        "loader": Objective(model, "cross_entropy", torch.utils.data.DataLoader(rows, batch_size=args.batch)),
    }
    theta = paths["memory_reuse"].theta0
    v = torch.randn(len(theta), generator=torch.Generator().manual_seed(0))
    reference = paths["memory_recompute"].hvp(theta, v)
    out: dict[str, float | int | str] = {"rows": len(y), "dim": len(theta), "batch": args.batch}
    for name, objective in paths.items():
        at = objective.curvature_at(theta)
        out[f"{name}_loss_ms"] = 1e3 * best_of(lambda o=objective: o.loss(theta), args.repeats)
        out[f"{name}_hvp_ms"] = 1e3 * best_of(lambda a=at: a.hvp(v), args.repeats)
        out[f"{name}_hvp_rel_diff"] = float((at.hvp(v) - reference).norm() / reference.norm())
    base = out["memory_recompute_hvp_ms"]
    for name in ("dataset", "loader"):
        out[f"{name}_hvp_vs_recompute"] = out[f"{name}_hvp_ms"] / base  # type: ignore[operator]
    emit("streaming", out)


if __name__ == "__main__":
    main()
