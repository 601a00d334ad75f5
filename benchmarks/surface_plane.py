"""The 51×51 filter-normalized plane around the trained digits MLP: losslab vs the obvious loop.

    python benchmarks/surface_plane.py [--steps 51] [--repeats 3] [--device cpu|cuda]

Trains the digits MLP (mlp:64-100-100-10, 20 epochs of SGD, a few seconds), draws two
filter-normalized directions (Li et al. 2018) and evaluates train loss and accuracy on
the steps × steps grid over [-1, 1]² twice in the same process:

- the obvious loop: one point at a time, ``vector_to_parameters`` into the module, a
  forward pass over all 1,438 rows, ``F.cross_entropy`` and the argmax accuracy;
- ``losslab.surface.plane`` (``Objective.metrics_many`` on the path it picks), in memory
  and through resumable chunks in a temporary directory (what the CLI does).

It also times a float32 matmul (2000² on CPU, 8192² on CUDA) as the device's practical
peak. A forward pass costs ≈ 2·n·W FLOPs per point (W = 17,400 weights, n = 1,438
rows), so fraction of peak = points/s · 2nW / peak. Each timing is the best of
``--repeats`` interleaved runs (the machine may be shared). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import emit
from torch.nn.utils import vector_to_parameters

from losslab import Objective, TrainConfig, build_model, load_data, train
from losslab.surface import axis, plane, random_directions


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    def timed(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=51)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    timed = _timer(device)

    data = load_data("digits")
    spec = "mlp:64-100-100-10"
    objective = Objective(build_model(spec, seed=0), "cross_entropy", data, device=device)
    start = time.perf_counter()
    trained = train(objective, TrainConfig(epochs=20), test=False)
    train_seconds = time.perf_counter() - start
    theta = objective.as_theta(torch.as_tensor(trained.theta))
    dirs = random_directions(objective.layout, theta, "filter", seed=0)
    a = b = axis(-1.0, 1.0, args.steps)
    points = args.steps**2

    # The obvious loop, written as a user would: reload weights, forward, PyTorch's loss.
    model = build_model(spec, seed=0).to(device)
    X, y = objective.X, objective.y
    d1, d2 = (torch.as_tensor(d).to(device) for d in (dirs.d1, dirs.d2))
    a_t, b_t = (torch.as_tensor(v, dtype=torch.float32, device=device) for v in (a, b))
    loop_loss = np.zeros((len(a), len(b)), dtype=np.float32)
    loop_acc = np.zeros_like(loop_loss)

    def obvious() -> None:
        with torch.no_grad():
            for i in range(len(a)):
                row = theta + a_t[i] * d1
                for j in range(len(b)):
                    vector_to_parameters(row + b_t[j] * d2, model.parameters())
                    out = model(X)
                    loop_loss[i, j] = F.cross_entropy(out, y).item()
                    loop_acc[i, j] = (out.argmax(1) == y).float().mean().item()

    result: dict[str, object] = {}

    def ours() -> None:
        result["surface"] = plane(objective, theta, dirs, a, b)

    def ours_chunked() -> None:  # the CLI's path: resumable pieces saved as they finish
        with tempfile.TemporaryDirectory() as where:
            result["chunked"] = plane(objective, theta, dirs, a, b, chunks=Path(where) / "plane")

    size = 8192 if device.type == "cuda" else 2000
    A = torch.randn(size, size, device=device)
    timed(lambda: A @ A)  # warm up BLAS / cuBLAS
    ours()
    best = {"loop": np.inf, "losslab": np.inf, "chunked": np.inf, "matmul": np.inf}
    for _ in range(args.repeats):
        best["matmul"] = min(best["matmul"], timed(lambda: A @ A))
        best["loop"] = min(best["loop"], timed(obvious))
        best["losslab"] = min(best["losslab"], timed(ours))
        best["chunked"] = min(best["chunked"], timed(ours_chunked))
    weights = sum(p.numel() for p in model.parameters() if p.ndim >= 2)
    flops_per_point = 2 * objective.n * weights
    peak = 2 * size**3 / best["matmul"]
    ours_rate, loop_rate = points / best["losslab"], points / best["loop"]
    surface = result["surface"]
    emit(
        "surface_plane",
        {
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "grid": f"{args.steps}x{args.steps}",
            "model": spec,
            "params": objective.dim,
            "rows": objective.n,
            "path": surface.path,  # type: ignore[attr-defined]
            "train_seconds": round(train_seconds, 2),
            "train_accuracy": round(float(trained.final["accuracy"]), 4),
            "matmul_size": size,
            "peak_gflops": round(peak / 1e9, 1),
            "flops_per_point": flops_per_point,
            "losslab_points_per_s": round(ours_rate, 1),
            "loop_points_per_s": round(loop_rate, 1),
            "losslab_chunked_points_per_s": round(points / best["chunked"], 1),
            "ratio": round(ours_rate / loop_rate, 3),
            "fraction_of_peak": round(ours_rate * flops_per_point / peak, 3),
            "loop_fraction_of_peak": round(loop_rate * flops_per_point / peak, 3),
            "max_abs_loss_diff": float(np.max(np.abs(surface.loss - loop_loss))),  # type: ignore[attr-defined]
            "accuracy_cells_differing": int(np.sum(surface.accuracy != loop_acc)),  # type: ignore[attr-defined]
            "repeats": args.repeats,
        },
    )


if __name__ == "__main__":
    main()
