"""The 51×51 filter-normalized plane around the trained digits MLP: losslab vs loss-landscapes and the loop.

    python benchmarks/surface_plane.py [--steps 51] [--repeats 3] [--rows train|all] [--threads N]
                                       [--peers DIR] [--device cpu|cuda]

Trains the digits MLP (mlp:64-100-100-10, 20 epochs of SGD, a few seconds), draws two
filter-normalized directions (Li et al. 2018) and evaluates the steps × steps grid over
[-1, 1]² in one process, the methods alternating within each repetition:

- ``losslab.surface.plane`` (train loss and accuracy; the path it picks), in memory and
  through resumable chunks in a temporary directory (what the CLI does);
- loss-landscapes' ``random_plane(..., steps, normalization='filter')`` under
  ``torch.no_grad()`` (its loss only: less work than ours), when importable from
  ``--peers DIR`` (``pip install --no-deps --target DIR loss-landscapes``);
- the obvious loop: one point at a time, ``vector_to_parameters`` into the module, a
  forward pass over all rows, ``F.cross_entropy`` and the argmax accuracy.

``--rows all`` evaluates on all 1,797 digits (the held-out workload of issue 17) instead of
the 1,438 training rows. Each method's figure is the best of ``--repeats`` runs in wall time
and in process CPU time (on a shared machine CPU time is the steadier figure; with one
thread it is the work done), and ``first_call`` is a plane in a fresh process (before any
warm-up: what a CLI run pays). It also times a float32 matmul (2000² on CPU, 8192² on CUDA)
as the device's practical peak; a forward pass costs ≈ 2·n·W FLOPs per point (W = 17,400
weights), so fraction of peak = points/s · 2nW / peak. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys
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


def _timer(device: torch.device) -> Callable[[Callable[[], object]], tuple[float, float]]:
    def timed(fn: Callable[[], object]) -> tuple[float, float]:
        """(wall seconds, process CPU seconds) of one call."""
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - wall, time.process_time() - cpu

    return timed


def _peer(where: str | None) -> object | None:
    if where:
        sys.path.insert(0, where)
    try:
        import loss_landscapes
        import loss_landscapes.metrics  # noqa: F401
    except ImportError:
        return None
    return loss_landscapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=51)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", choices=("train", "all"), default="train")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--peers", default=None, help="Directory holding loss-landscapes.")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    timed = _timer(device)
    peer = _peer(args.peers)

    data = load_data("digits")
    if args.rows == "all":
        data = (torch.cat([data.X_train, data.X_test]), torch.cat([data.y_train, data.y_test]))
    spec = "mlp:64-100-100-10"
    objective = Objective(build_model(spec, seed=0), "cross_entropy", data, device=device)
    dirs = random_directions(objective.layout, objective.theta0, "filter", seed=0)
    a = b = axis(-1.0, 1.0, args.steps)
    points = args.steps**2
    first_call = timed(lambda: plane(objective, objective.theta0, dirs, a, b))  # a fresh process's plane
    start = time.perf_counter()
    trained = train(objective, TrainConfig(epochs=20), test=False)
    train_seconds = time.perf_counter() - start
    theta = objective.as_theta(torch.as_tensor(trained.theta))
    dirs = random_directions(objective.layout, theta, "filter", seed=0)

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

    trained_model = build_model(spec, seed=0).to(device)
    vector_to_parameters(theta, trained_model.parameters())

    def landscapes() -> None:  # its own random filter-normalized directions: the same work per point
        metric = peer.metrics.Loss(F.cross_entropy, X, y)  # type: ignore[attr-defined]
        with torch.no_grad():
            peer.random_plane(trained_model, metric, distance=1, steps=args.steps,  # type: ignore[attr-defined]
                              normalization="filter", deepcopy_model=True)  # fmt: skip

    size = 8192 if device.type == "cuda" else 2000
    A = torch.randn(size, size, device=device)
    timed(lambda: A @ A)  # warm up BLAS / cuBLAS
    methods = {"losslab": ours, "loss_landscapes": landscapes, "loop": obvious, "chunked": ours_chunked}
    if peer is None:
        del methods["loss_landscapes"]
    for fn in methods.values():
        fn()  # warm-up
    wall = {k: np.inf for k in (*methods, "matmul")}
    cpu = dict(wall)
    for _ in range(args.repeats):  # alternating, so a change of load hits every method alike
        for name, fn in (("matmul", lambda: A @ A), *methods.items()):
            w, c = timed(fn)
            wall[name], cpu[name] = min(wall[name], w), min(cpu[name], c)
    weights = sum(p.numel() for p in model.parameters() if p.ndim >= 2)
    flops_per_point = 2 * objective.n * weights
    peak = 2 * size**3 / wall["matmul"]
    rate = {k: points / v for k, v in wall.items() if k != "matmul"}
    cpu_rate = {k: points / v for k, v in cpu.items() if k != "matmul"}
    surface = result["surface"]
    figures: dict[str, object] = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "load": os.getloadavg()[0],
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
        "first_call_points_per_s": round(points / first_call[0], 1),
        "points_per_s": {k: round(v, 1) for k, v in rate.items()},
        "cpu_points_per_s": {k: round(v, 1) for k, v in cpu_rate.items()},
        "ratio_vs_loop": round(rate["losslab"] / rate["loop"], 3),
        "cpu_ratio_vs_loop": round(cpu_rate["losslab"] / cpu_rate["loop"], 3),
        "fraction_of_peak": round(rate["losslab"] * flops_per_point / peak, 3),
        "max_abs_loss_diff": float(np.max(np.abs(surface.loss - loop_loss))),  # type: ignore[attr-defined]
        "accuracy_cells_differing": int(np.sum(surface.accuracy != loop_acc)),  # type: ignore[attr-defined]
        "repeats": args.repeats,
    }
    if peer is not None:
        figures["ratio_vs_loss_landscapes"] = round(rate["losslab"] / rate["loss_landscapes"], 3)
        figures["cpu_ratio_vs_loss_landscapes"] = round(cpu_rate["losslab"] / cpu_rate["loss_landscapes"], 3)
    emit("surface_plane", figures)


if __name__ == "__main__":
    main()
