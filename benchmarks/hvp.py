"""Cost of Hessian-vector products and of many-point loss evaluation, per scheme.

Workload (issue 3): the digits MLP mlp:64-100-100-10 (17,610 parameters) on all
1,797 rows, float32. Baselines in the same run: ``torch.autograd.functional.hvp`` (the
obvious per-product call), a SciPy LinearOperator around it, one forward + two
backward passes (the floor an exact HVP can approach), and for many points the
obvious loop (``vector_to_parameters`` + forward, one point at a time). Then the float32
error of each product path against float64 plain autograd at a trained point (issue 12).

    python benchmarks/hvp.py [--device cuda]
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.sparse.linalg as sla
import torch
import torch.nn.functional as F
from _common import best_of, emit
from sklearn.datasets import load_digits
from torch.nn.utils import vector_to_parameters

from losslab import Objective, TrainConfig, build_model, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--products", type=int, default=40)
    parser.add_argument("--points", type=int, default=256)
    parser.add_argument("--no-accuracy", action="store_true", help="skip the float32 error figures")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    bunch = load_digits()
    X = torch.tensor(bunch.data, dtype=torch.float32)
    X = (X - X.mean(0)) / X.std(0).clamp_min(1e-6)
    y = torch.tensor(bunch.target)
    model = build_model("mlp:64-100-100-10", seed=0)
    g = torch.Generator().manual_seed(0)
    V = torch.randn(args.products, sum(p.numel() for p in model.parameters()), generator=g).to(device)
    figures: dict[str, float | int | str] = {"params": V.shape[1], "rows": len(X), "device": str(device)}

    for mode in ("reuse", "recompute", "forward"):
        obj = Objective(model, "cross_entropy", (X, y), device=device, hvp_mode=mode)
        at = obj.curvature_at(obj.theta0)

        def products(at=at) -> None:
            for v in V:
                at.hvp(v)
            sync()

        figures[f"hvp_ms_{mode}"] = 1e3 * best_of(products) / len(V)

    obj = Objective(model, "cross_entropy", (X, y), device=device)
    theta = obj.theta0
    Xd, yd = obj.X, obj.y
    loss_of = lambda t: F.cross_entropy(torch.func.functional_call(obj.model, obj.layout.unflatten(t), (Xd,)), yd)  # noqa: E731

    def obvious() -> None:
        for v in V[:10]:
            torch.autograd.functional.hvp(loss_of, theta, v)
        sync()

    figures["hvp_ms_autograd_functional"] = 1e3 * best_of(obvious) / 10
    op = sla.LinearOperator(
        (obj.dim, obj.dim),
        dtype=np.float32,
        matvec=lambda v: (
            torch.autograd.functional.hvp(loss_of, theta, torch.as_tensor(v, device=device).float().flatten())[1]
            .cpu()
            .numpy()
        ),
    )
    Vn = V[:10].cpu().numpy()
    figures["hvp_ms_scipy_operator"] = 1e3 * best_of(lambda: [op.matvec(v) for v in Vn]) / 10

    def forward_two_backward() -> None:
        t = theta.detach().requires_grad_(True)
        (gr,) = torch.autograd.grad(loss_of(t), t, create_graph=True)
        torch.autograd.grad(gr @ V[0], t)
        sync()

    figures["one_forward_two_backward_ms"] = 1e3 * best_of(forward_two_backward, repeats=10)
    figures["reuse_speedup_vs_autograd_functional"] = figures["hvp_ms_autograd_functional"] / figures["hvp_ms_reuse"]

    thetas = theta + 0.01 * torch.randn(args.points, obj.dim, generator=g).to(device)
    ref_model = build_model("mlp:64-100-100-10", seed=0).to(device)

    def obvious_loop() -> None:
        with torch.no_grad():
            for t in thetas:
                vector_to_parameters(t, ref_model.parameters())
                F.cross_entropy(ref_model(Xd), yd).item()

    figures["points_per_s_obvious_loop"] = args.points / best_of(obvious_loop)
    for mode in ("plan", "loop", "vmap"):
        o = Objective(model, "cross_entropy", (X, y), device=device, many_mode=mode)
        figures[f"points_per_s_{mode}"] = args.points / best_of(lambda o=o: (o.loss_many(thetas), sync()))
    for mode in ("plan", "loop", "vmap"):
        figures[f"ratio_{mode}_vs_obvious_loop"] = (
            figures[f"points_per_s_{mode}"] / figures["points_per_s_obvious_loop"]
        )
    if not args.no_accuracy:
        figures.update(accuracy(model, X, y, V[:3], device))
    emit(
        "hvp",
        {
            k: (round(v, 3) if v > 1e-2 else float(f"{v:.3g}")) if isinstance(v, float) else v
            for k, v in figures.items()
        },
    )


def accuracy(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, V: torch.Tensor, device) -> dict[str, float]:
    """float32 product error (max relative 2-norm over 3 random v) against float64 plain autograd.

    At a trained point (`losslab.train`, SGD lr 0.1, batch 64, 100 epochs: loss ≈ 2e-3), where
    confident predictions make the cross-entropy's curvature a small difference of numbers near 1.
    The bar is plain autograd: F.cross_entropy and a double ``torch.autograd.grad`` at float32.
    """
    obj = Objective(model, "cross_entropy", (X, y), device=device)
    theta = torch.as_tensor(train(obj, TrainConfig(epochs=100, lr=0.1, batch_size=64)).theta)

    def plain(dtype: torch.dtype) -> torch.Tensor:
        o = Objective(model, "cross_entropy", (X, y), dtype=dtype, device=device)
        rows = []
        for v in V:
            t = theta.to(device, dtype).requires_grad_(True)
            out = torch.func.functional_call(o.model, o.layout.unflatten(t), (o.X,))
            (g,) = torch.autograd.grad(F.cross_entropy(out, o.y), t, create_graph=True)
            rows.append(torch.autograd.grad(g, t, v.to(dtype))[0].double())
        return torch.stack(rows)

    exact = plain(torch.float64)

    def error(approx: torch.Tensor) -> float:
        return float(((approx.double() - exact).norm(dim=1) / exact.norm(dim=1)).max())

    out = {"hvp_rel_error_plain_autograd_f32": error(plain(torch.float32))}
    for mode in ("reuse", "recompute", "forward"):
        at = Objective(model, "cross_entropy", (X, y), device=device, hvp_mode=mode).curvature_at(theta)
        out[f"hvp_rel_error_{mode}_f32"] = error(at.hvp_many(V))
    return out


if __name__ == "__main__":
    main()
