"""Blocks of Hessian-vector products: looped against batched, per scheme, on a ResNet and the digits MLP.

    python benchmarks/blocks.py [--n 256] [--block 4] [--repeats 2] [--device cpu|cuda]

`losslab.objective.objective.BLOCK_PATHS` says how a block of k vectors goes through one
product call in each scheme: looped (k calls) or batched (one call: ``is_grads_batched`` for
a backward pass through the kept graph, ``torch.vmap`` for forward-over-reverse). This
measures both ways for each scheme, in one process, on

- ``resnet20`` (batch norm in eval mode, set up as in `benchmarks/scale.py`) on ``n``
  Fashion-MNIST images, and
- the digits MLP ``mlp:64-100-100-10`` on all 1,797 rows,

as seconds per vector (best of ``--repeats``), with the largest difference between the two
ways relative to the product's norm. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import scale
import torch
from _common import emit

from losslab import Objective, build_model, load_data


def _best(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> tuple[float, Any]:
    fn()
    best, out = float("inf"), None
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best, out


def _workload(objective: Objective, args: argparse.Namespace, sync: Callable[[], None]) -> dict[str, Any]:
    theta = objective.theta0.detach().requires_grad_(True)
    X, y = objective.rows(slice(0, objective.n))
    V = torch.randn(args.block, objective.dim, generator=torch.Generator().manual_seed(0)).to(theta)
    (grad,) = torch.autograd.grad(objective._loss_sum(theta, X, y), theta, create_graph=True)

    def reuse_loop() -> torch.Tensor:
        return torch.stack([torch.autograd.grad(grad, theta, v, retain_graph=True)[0] for v in V])

    def reuse_batched() -> torch.Tensor:
        return torch.autograd.grad(grad, theta, V, retain_graph=True, is_grads_batched=True)[0]

    point = objective.theta0.detach()
    grad_fn = torch.func.grad(lambda t: objective._loss_sum(t, X, y))

    def forward_loop() -> torch.Tensor:
        return torch.stack([torch.func.jvp(grad_fn, (point,), (v,))[1] for v in V])

    def forward_batched() -> torch.Tensor:
        return torch.vmap(lambda v: torch.func.jvp(grad_fn, (point,), (v,))[1])(V)

    out: dict[str, Any] = {"parameters": objective.dim, "rows": objective.n, "block": args.block}
    for scheme, loop, batched in (("reuse", reuse_loop, reuse_batched), ("forward", forward_loop, forward_batched)):
        t_loop, a = _best(loop, args.repeats, sync)
        t_batched, b = _best(batched, args.repeats, sync)
        out[scheme] = {
            "looped_s_per_vector": round(t_loop / args.block, 4),
            "batched_s_per_vector": round(t_batched / args.block, 4),
            "batched_speedup": round(t_loop / t_batched, 2),
            "relative_difference": float((a - b).norm() / a.norm()),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--block", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    setup = argparse.Namespace(n=args.n, model="resnet20", device=args.device, steps=11)
    model, X, y = scale._setup(setup)
    resnet = Objective(model, "cross_entropy", (X, y), device=device)
    digits = load_data("digits")
    Xd = torch.cat([digits.X_train, digits.X_test])
    yd = torch.cat([digits.y_train, digits.y_test])
    mlp = Objective(build_model("mlp:64-100-100-10", seed=0), "cross_entropy", (Xd, yd), device=device)
    from losslab.objective.objective import BLOCK_PATHS

    emit("blocks", {"resnet20": _workload(resnet, args, sync), "digits_mlp": _workload(mlp, args, sync),
                    "auto_paths": dict(BLOCK_PATHS)})  # fmt: skip


if __name__ == "__main__":
    main()
