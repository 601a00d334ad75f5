"""Surfaces on models that are not Sequential MLPs: every many-point path against the obvious loop.

    python benchmarks/surface_general.py [--steps 7] [--repeats 2] [--threads N] [--device cpu|cuda]

Issue 17 §3: the fused plan covers Sequential MLPs only; every other model goes through the
general path of `Objective.metrics_many`. Workloads (seeded initializations, eval mode, the
train split's loss and accuracy at steps × steps points of a filter-normalized plane):

- ``cnn1d:channels=25,length=40,classes=10`` on MNIST-1D (4,000 rows; 5,210 parameters);
- ``resnet20:width=4`` with batch norm on ``digits:images=true`` (1,438 rows of 1×8×8);
- ``transformer:dim=16,heads=2,layers=1,length=40,classes=10`` on MNIST-1D (1,000 rows).

Methods, alternating within each repetition, each the best of ``--repeats`` in wall and CPU time:

- ``plane``: `losslab.surface.plane` with ``many_mode='auto'`` (the path it picks is reported);
- ``loop`` and ``vmap``: the same plane with the path forced;
- ``compiled``: the obvious loop with the module under ``torch.compile`` (its compile time
  is reported apart: a one-time cost per process and shape);
- ``obvious``: one point at a time, ``vector_to_parameters`` into the module, a forward pass
  over all rows, ``F.cross_entropy`` and the argmax accuracy.

Values of every path agree with the obvious loop (the largest difference is reported).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from _common import emit
from torch.nn.utils import vector_to_parameters

from losslab import Objective, build_model, load_data
from losslab.surface import axis, make_directions, plane

WORKLOADS = (
    ("cnn1d:channels=25,length=40,classes=10", "mnist1d", None),
    ("resnet20:width=4", "digits:images=true", None),
    ("transformer:dim=16,heads=2,layers=1,length=40,classes=10", "mnist1d", 1000),
)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float, Any]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _workload(spec: str, data: str, rows: int | None, args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    dataset = load_data(data)
    X, y = dataset.X_train[:rows].to(device), dataset.y_train[:rows].to(device)
    model = build_model(spec, seed=0).to(device).eval()
    objectives = {mode: Objective(model, "cross_entropy", (X, y), device=device, many_mode=mode)
                  for mode in ("auto", "loop", "vmap")}  # fmt: skip
    base = objectives["auto"]
    dirs = make_directions(base.layout, base.theta0, "filter", seed=0)
    grid = axis(-1.0, 1.0, args.steps)
    d1, d2 = dirs.tensors(base.theta0)
    a = torch.as_tensor(grid, dtype=base.theta0.dtype, device=device)
    points = (base.theta0 + a[:, None, None] * d1 + a[None, :, None] * d2).reshape(-1, base.dim)
    probe = build_model(spec, seed=0).to(device).eval()

    def obvious(module: torch.nn.Module) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            out = []
            with torch.no_grad():
                for theta in points:
                    vector_to_parameters(theta, probe.parameters())
                    logits = module(X)
                    out.append(torch.stack([F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()]))
            return torch.stack(out)

        return run

    compile_wall, compile_cpu, compiled = _timed(lambda: torch.compile(probe), device)
    first = _timed(lambda: obvious(compiled)(), device)  # the first call compiles
    methods: dict[str, Callable[[], Any]] = {
        "obvious": obvious(probe),
        "compiled": obvious(compiled),
        **{name: (lambda o=objectives[mode]: plane(o, o.theta0, dirs, grid, grid))
           for name, mode in (("plane", "auto"), ("loop", "loop"), ("vmap", "vmap"))},
    }  # fmt: skip
    for fn in methods.values():  # warm-up
        fn()
    best: dict[str, list[float]] = {name: [float("inf"), float("inf")] for name in methods}
    outputs: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            wall, cpu, outputs[name] = _timed(fn, device)
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
    reference = outputs["obvious"][:, 0].double()
    figures: dict[str, Any] = {"parameters": base.dim, "rows": len(y), "points": len(points), "path": base.many_path,
                               "compile_seconds": round(compile_wall + first[0], 2)}  # fmt: skip
    for name in methods:
        out = outputs[name]
        values = out[:, 0] if isinstance(out, torch.Tensor) else torch.as_tensor(out.loss).reshape(-1)
        wall, cpu = best[name]
        figures[name] = {
            "points_per_s": round(len(points) / wall, 1),
            "cpu_points_per_s": round(len(points) / cpu, 1),
            "max_abs_diff": float((values.double().cpu() - reference.cpu()).abs().max()),
        }
    for name in ("plane", "loop", "vmap", "compiled"):
        figures[name]["x_obvious_cpu"] = round(best["obvious"][1] / best[name][1], 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    emit("surface_general", {spec: _workload(spec, data, rows, args) for spec, data, rows in WORKLOADS})


if __name__ == "__main__":
    main()
