"""ResNet scale, side by side with the peers: top eigenvalue, trace and an 11×11 plane.

    python benchmarks/scale.py [--n 2048] [--model resnet20] [--device cpu|cuda] [--peers DIR]

The work: ``resnet20`` (He et al. 2016; batch norm in eval mode, its running statistics
estimated by one train-mode pass, its scales and shifts perturbed as after training) on ``n``
Fashion-MNIST training images, float32, at seeded weights (the same for every method). Each
part runs in a fresh process so its peak resident memory is its own, one after another with
the same thread count (``--threads``) and the same allocator setting (``--huge-pages``:
transparent huge pages for large tensors, losslab's default; peers get it too); each reports
wall and CPU seconds (CPU time is the fairer ratio on a shared machine). The parent prints one JSON line.

PyHessian keeps the gradient graph of all n rows (one backward per product); losslab does
the same ('reuse') when that graph fits its memory budget, else rebuilds it per batch. The
uncertified losslab parts run with ``--memory-budget`` GiB (default 16: they then hold the
whole graph, as PyHessian does: equal memory); the certified top-1 (and the truth) keep
losslab's default 1 GiB budget, since their float64 reference products need memory beside
the float32 graph: they show what bounded memory and a certificate cost.

- top-1 eigenvalue: PyHessian's power iteration (``hessian(...).eigenvalues(top_n=1)``, its
  defaults) against two losslab Lanczos runs (`curvature.extreme_eigenpairs`): the default
  (tol 1e-3, completeness check, residuals measured, float64 reference product: certified)
  and one at equal accuracy (tol 1e-2, the Lanczos bound only, no completeness check: its own
  error estimate min(r, r²/δ) must be at or below the peer's measured error). The truth is a
  certified Lanczos run to a residual of 1e-4·|λ| (a symmetric matrix has an eigenvalue within
  the residual of every Ritz value); each method's relative error against it is reported.
- trace: PyHessian's Hutchinson (``.trace()``, its defaults) gives an estimate and its
  standard error; losslab's Hutchinson, its default ``auto_trace`` (Hutchinson, or Hutch++
  where the sketch pays; the JSON says which and why) and Hutch++ are then asked for the same
  standard error (equal error).
- plane: loss-landscapes' ``random_plane(..., steps=11, normalization='filter')`` vs
  ``surface.plane`` on filter-normalized directions (Li et al. 2018), 121 points each; and the
  peer once more with a metric that reads the rows in losslab's batch size
  (``peer_plane_batched``), which separates what the batch size buys from the rest.

Two parts run only alone: ``--part ab_products`` (one product of losslab and of PyHessian,
alternating in one process, with the allocator's page faults) and ``--part batch_sizes``
(forward and product seconds per rows per batch: the sweep behind the automatic CPU batch,
`objective.CPU_BATCH_BYTES`).

The peers are installed in the benchmark's own directory, never in the project's
environment, without their dependencies (they would pull a CUDA torch):
``pip install --no-deps --target DIR PyHessian loss-landscapes``; pass ``--peers DIR``.
A part whose peer is not importable is reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _common import emit, peak_memory, sync

PARTS = ("losslab_top1", "losslab_top1_equal", "pyhessian_top1", "truth_top1", "pyhessian_trace",
         "losslab_trace", "losslab_hutchpp", "losslab_auto", "losslab_plane", "peer_plane", "peer_plane_batched",
         "ab_products", "batch_sizes")  # fmt: skip


def _setup(args: argparse.Namespace) -> tuple[Any, torch.Tensor, torch.Tensor]:
    from losslab import build_model, load_data

    data = load_data(f"fashion-mnist:n={args.n},test_n=0,seed=0")
    model = build_model(args.model, seed=0).to(args.device)
    X, y = data.X_train.to(args.device), data.y_train.to(args.device)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():  # running statistics = the data's (cumulative average)
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None
            # Batch-norm scales and shifts as after training: loss-landscapes' filter normalization
            # divides by each tensor's norm and fails (ZeroDivisionError) on the zero shifts of an init.
            with torch.no_grad():
                module.weight.copy_(1 + 0.2 * (torch.rand(module.weight.shape, generator=generator) - 0.5))
                module.bias.copy_(0.05 * torch.randn(module.bias.shape, generator=generator))
    model.train()
    with torch.no_grad():
        for start in range(0, len(X), 256):
            model(X[start : start + 256])
    return model.eval(), X, y


def _objective(
    model: Any, X: torch.Tensor, y: torch.Tensor, device: str, budget_gib: float | None, **options: Any
) -> Any:
    from losslab import Objective

    extra = {} if budget_gib is None else {"memory_budget": int(budget_gib * (1 << 30))}
    return Objective(model, "cross_entropy", (X, y), device=device, **extra, **options)


def _ab_products(model: Any, X: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> dict[str, Any]:
    """Seconds of one product, losslab ('reuse') and PyHessian alternating in one process.

    Per product: CPU seconds, and the wall seconds, kernel (system) seconds and minor page
    faults, which show what the allocator costs: run it once with ``THP_MEM_ALLOC_ENABLE=0``
    and once with ``=1`` in the environment (torch reads it at start). Run alone (``--part
    ab_products``): both keep their graph of all rows, so this needs about twice PyHessian's
    memory.
    """
    import resource

    import pyhessian  # noqa: F401

    ph = sys.modules["pyhessian.hessian"]
    objective = _objective(model, X, y, args.device, args.memory_budget)
    at = objective.curvature_at(objective.theta0)
    peer = ph.hessian(model, torch.nn.CrossEntropyLoss(), data=(X, y), cuda=args.device.startswith("cuda"))
    v = torch.randn(objective.dim, generator=torch.Generator().manual_seed(0))
    vs = list(torch.split(v, [p.numel() for p in peer.params]))
    vs = [piece.reshape(p.shape).to(p) for piece, p in zip(vs, peer.params, strict=True)]
    at.hvp(v)  # the graph, built once
    measures = ("cpu_seconds", "wall_seconds", "system_seconds", "page_faults")
    times: dict[str, dict[str, list[float]]] = {m: {"losslab": [], "pyhessian": []} for m in measures}
    for _ in range(args.rounds):
        peer_product = lambda: ph.hessian_vector_product(peer.gradsH, peer.params, vs)  # noqa: E731
        for name, product in (("losslab", lambda: at.hvp(v)), ("pyhessian", peer_product)):
            sync()
            before, wall, cpu = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), time.process_time()
            product()
            sync()  # PyHessian's product returns with its kernels still queued on a GPU
            after = resource.getrusage(resource.RUSAGE_SELF)
            times["cpu_seconds"][name].append(round(time.process_time() - cpu, 3))
            times["wall_seconds"][name].append(round(time.perf_counter() - wall, 3))
            times["system_seconds"][name].append(round(after.ru_stime - before.ru_stime, 3))
            times["page_faults"][name].append(after.ru_minflt - before.ru_minflt)
    a = at.hvp(v)
    b = torch.cat([t.reshape(-1) for t in ph.hessian_vector_product(peer.gradsH, peer.params, vs)])
    huge = os.environ.get("THP_MEM_ALLOC_ENABLE")
    return {"hvp_mode": at._mode, "huge_pages": huge, **times, "relative_difference": float((a - b).norm() / b.norm())}


def _batch_sizes(model: Any, X: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> dict[str, Any]:
    """Seconds of a forward over all rows and of one 'reuse' product, per rows per batch.

    The sweep behind `objective.CPU_BATCH_BYTES` (the automatic CPU batch): for each of
    ``--batch-sizes`` (capped at n) an `Objective` with that ``batch_size`` times its loss over
    all n rows and one Hessian-vector product on the gradient graph of all n rows (built first,
    timed apart), best of ``--rounds``. Run alone (``--part batch_sizes``); the graph needs
    about 4.3 MB a row of `resnet20`.
    """
    default = _objective(model, X, y, args.device, args.memory_budget)
    automatic = default.batch_size
    v = torch.randn(default.dim, generator=torch.Generator().manual_seed(0))
    del default
    sizes = sorted({min(int(b), len(X)) for b in args.batch_sizes.split(",")} | {automatic})
    # One untimed pass first: the first graph and product of a process pay for its buffers and
    # kernels' first use (14.8 s against 2.3-2.9 s for the graph at 32 rows before this warm-up).
    warm = _objective(model, X, y, args.device, args.memory_budget, batch_size=sizes[0], hvp_mode="reuse")
    warm.curvature_at(warm.theta0).hvp(v.to(warm.theta0))
    del warm
    rows: list[dict[str, Any]] = []
    for size in sizes:
        objective = _objective(model, X, y, args.device, args.memory_budget, batch_size=size, hvp_mode="reuse")
        theta = objective.theta0
        forward = []
        for _ in range(args.rounds):
            sync()
            start = time.perf_counter()
            objective.loss(theta)
            forward.append(time.perf_counter() - start)
        at = objective.curvature_at(theta)
        sync()
        start = time.perf_counter()
        at._gradient_graph()
        sync()
        graph = time.perf_counter() - start
        product = []
        for _ in range(args.rounds):
            sync()
            start = time.perf_counter()
            at.hvp(v.to(theta))
            sync()
            product.append(time.perf_counter() - start)
        rows.append({"rows_per_batch": size, "forward_seconds": round(min(forward), 3),
                     "graph_seconds": round(graph, 3), "product_seconds": round(min(product), 3)})  # fmt: skip
        del at, objective
    return {"automatic_rows_per_batch": automatic, "rows": len(X), "sweep": rows}


class _BatchedLoss:
    """A loss-landscapes metric (any callable of its model wrapper) that reads the rows in batches."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, rows: int) -> None:
        self.X, self.y, self.rows = X, y, rows

    def __call__(self, model_wrapper: Any) -> float:
        batches = zip(self.X.split(self.rows), self.y.split(self.rows), strict=True)
        total = sum(F.cross_entropy(model_wrapper.forward(x), t, reduction="sum") for x, t in batches)
        return float(total) / len(self.X)


def run_part(part: str, args: argparse.Namespace) -> dict[str, Any]:
    model, X, y = _setup(args)
    start = time.perf_counter()
    cpu0 = time.process_time()
    if part == "ab_products":
        return _ab_products(model, X, y, args)
    if part == "batch_sizes":
        return _batch_sizes(model, X, y, args)
    if part.startswith("losslab_") and part != "losslab_plane" or part == "truth_top1":
        from losslab import curvature

        # The certified runs add float64 reference products beside the float32 graph: they keep the
        # default 1 GiB budget (bounded memory), so both fit in memory together.
        budget = None if part in ("losslab_top1", "truth_top1") else args.memory_budget
        objective = _objective(model, X, y, args.device, budget)
        theta = objective.theta0
        sync()
        start, cpu0 = time.perf_counter(), time.process_time()
        H = curvature.hessian_operator(objective, theta)
        out = {"hvp_mode": objective.curvature_at(theta)._mode}
        if part in ("losslab_trace", "losslab_hutchpp", "losslab_auto"):
            method = {"losslab_trace": curvature.hutchinson, "losslab_hutchpp": curvature.hutchpp}.get(
                part, curvature.auto_trace
            )
            block = {"block": 4} if part == "losslab_trace" else {}
            estimate = method(H, tol=1e-12, atol=args.trace_stderr, max_hvps=2000, **block)  # atol decides
            out |= {"trace": estimate.estimate, "stderr": estimate.stderr, "products": H.count}
            out |= {"method": estimate.method, "choice": estimate.choice} if estimate.choice else {}
        else:
            tol = {"truth_top1": 1e-4, "losslab_top1_equal": 1e-2}.get(part, 1e-3)
            fast = {"certify": False, "complete": False} if part == "losslab_top1_equal" else {}
            top, _ = curvature.extreme_eigenpairs(H, top=1, bottom=0, tol=tol, max_hvps=400, **fast)
            out |= {"eigenvalue": float(top.eigenvalues[0]), "residual": float(top.residuals[0]),
                    "error_estimate": float(top.error_estimates[0]), "certified": top.all_certified,
                    "products": H.count, "reference_products": top.reference_hvps}  # fmt: skip
    elif part in ("pyhessian_top1", "pyhessian_trace"):
        import pyhessian  # noqa: F401  (the package's __init__ shadows the module name with the class)

        ph = sys.modules["pyhessian.hessian"]

        counted = {"products": 0}
        original = ph.hessian_vector_product

        def counting(*a: Any, **k: Any) -> Any:
            counted["products"] += 1
            return original(*a, **k)

        ph.hessian_vector_product = counting
        criterion = torch.nn.CrossEntropyLoss()
        sync()
        start, cpu0 = time.perf_counter(), time.process_time()
        H = ph.hessian(model, criterion, data=(X, y), cuda=args.device.startswith("cuda"))
        if part == "pyhessian_top1":
            values, _ = H.eigenvalues(top_n=1)
            out = {"eigenvalue": float(values[0]), **counted}
        else:
            samples = np.asarray(H.trace(), dtype=float)
            out = {
                "trace": float(samples.mean()),
                "stderr": float(samples.std(ddof=1) / np.sqrt(len(samples))),
                **counted,
            }
    elif part == "losslab_plane":
        from losslab import surface

        objective = _objective(model, X, y, args.device, args.memory_budget)
        sync()
        start, cpu0 = time.perf_counter(), time.process_time()
        dirs = surface.make_directions(objective.layout, objective.theta0, "filter", seed=0)
        grid = surface.axis(-1.0, 1.0, args.steps)
        result = surface.plane(objective, objective.theta0, dirs, grid, grid)
        out = {"points": int(result.loss.size), "path": getattr(result, "path", None)}
    else:  # peer_plane, peer_plane_batched
        import loss_landscapes
        import loss_landscapes.metrics

        metric, out = loss_landscapes.metrics.Loss(F.cross_entropy, X, y), {}
        if part == "peer_plane_batched":  # the peer given losslab's rows per batch: what is left is the method
            rows = _objective(model, X, y, args.device, args.memory_budget).batch_size
            metric = _BatchedLoss(X, y, rows)
            out = {"rows_per_batch": rows}
        sync()
        start, cpu0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            values = loss_landscapes.random_plane(model, metric, distance=1, steps=args.steps,
                                                  normalization="filter", deepcopy_model=True)  # fmt: skip
        out["points"] = int(np.asarray(values).size)
    sync()
    out["seconds"] = round(time.perf_counter() - start, 3)
    out["cpu_seconds"] = round(time.process_time() - cpu0, 3)
    return out


def _child(part: str, args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--part", part, "--n", str(args.n), "--model", args.model,
               "--device", args.device, "--steps", str(args.steps), "--threads", str(args.threads),
               "--memory-budget", str(args.memory_budget), *extra]  # fmt: skip
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    # torch's allocator reads this at start: the same for every part, peers included (losslab's
    # import sets it to 1 when torch is not yet loaded; here torch is loaded first).
    env["THP_MEM_ALLOC_ENABLE"] = "1" if args.huge_pages == "on" else "0"
    if args.peers:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), args.peers) if p)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        return {"skipped": last[:200]}
    result = json.loads(stdout.strip().splitlines()[-1])
    sys.stderr.write(f"scale: {part}: {result}\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=11)
    parser.add_argument("--peers", default=None, help="Directory holding PyHessian and loss-landscapes.")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="Torch threads of every part.")
    parser.add_argument("--memory-budget", type=float, default=16.0, help="losslab's memory budget, GiB.")
    parser.add_argument("--part", choices=PARTS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trace-stderr", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of --part ab_products and batch_sizes.")
    parser.add_argument(
        "--batch-sizes",
        default="32,75,128,192,512,1024,2048",
        help="Rows per batch that --part batch_sizes sweeps (the automatic one is added).",
    )
    parser.add_argument("--huge-pages", choices=("on", "off"), default="on",
                        help="THP_MEM_ALLOC_ENABLE of every part (peers too); on: what losslab runs with.")  # fmt: skip
    args = parser.parse_args()
    if args.part is not None:
        torch.set_num_threads(args.threads)
        out = run_part(args.part, args)
        out |= peak_memory()
        sys.stdout.write(json.dumps(out) + "\n")
        return

    figures: dict[str, Any] = {"model": args.model, "rows": args.n, "device": args.device, "dtype": "float32",
                               "threads": args.threads, "memory_budget_gib": args.memory_budget,
                               "huge_pages": args.huge_pages}  # fmt: skip
    truth = _child("truth_top1", args, [])
    figures["truth_top1"] = truth
    for part in ("pyhessian_top1", "losslab_top1_equal", "losslab_top1"):
        result = _child(part, args, [])
        if "eigenvalue" in result and "eigenvalue" in truth:
            result["relative_error"] = float(abs(result["eigenvalue"] - truth["eigenvalue"]) / abs(truth["eigenvalue"]))
        figures[part] = result
    peer_trace = _child("pyhessian_trace", args, [])
    figures["pyhessian_trace"] = peer_trace
    target = peer_trace.get("stderr")
    if target:
        for part in ("losslab_trace", "losslab_auto", "losslab_hutchpp"):
            figures[part] = _child(part, args, ["--trace-stderr", str(target)])
    for part in ("losslab_plane", "peer_plane", "peer_plane_batched"):
        figures[part] = _child(part, args, [])
    for name, ours, peer in (
        ("top1_equal_speedup", "losslab_top1_equal", "pyhessian_top1"),
        ("top1_certified_speedup", "losslab_top1", "pyhessian_top1"),
        ("trace_speedup", "losslab_trace", "pyhessian_trace"),
        ("auto_trace_speedup", "losslab_auto", "pyhessian_trace"),
        ("hutchpp_speedup", "losslab_hutchpp", "pyhessian_trace"),
        ("plane_speedup", "losslab_plane", "peer_plane"),
        ("plane_speedup_batched_peer", "losslab_plane", "peer_plane_batched"),
    ):
        a, b = figures.get(ours, {}), figures.get(peer, {})
        if "seconds" in a and "seconds" in b:
            figures[name] = {"wall": round(b["seconds"] / a["seconds"], 2),
                             "cpu": round(b["cpu_seconds"] / a["cpu_seconds"], 2)}  # fmt: skip
    emit("scale", figures)


if __name__ == "__main__":
    main()
