"""Connectivity: naive, weight- and activation-matched barriers vs width; path evaluation speed.

For each width w, two seeds of ``mlp:in-w-w-out`` are trained together (SGD, lr 0.1,
batch 64, 20 epochs by default) and the line between them is evaluated at 25 points,
naively and after each alignment (`losslab.studies.width_study`); the alignment
time is the wall time of `align` (tracing, matching and the function check). On digits,
also the MLP of the demo (``mlp:64-100-100-10``, seeds 0 and 1 trained together): its
naive barrier, after weight and activation matching, each with REPAIR, and along a Bézier
curve trained between the unaligned seeds (`connect`, `CURVE_CONFIG`: 20 epochs).

Baseline in the same run: the obvious way to evaluate a path — load each point into the
module with ``vector_to_parameters`` and run the data through it — against
`evaluate_path` (one [P, D] block through the Objective), at the widest model, with the
largest difference between their values.

    python benchmarks/connectivity.py [--data digits|mnist1d] [--widths 32,128,512]
        [--epochs 20] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from _common import best_of, emit

from losslab import Objective, TrainConfig, build_model, init_thetas, load_data, train_ensemble
from losslab.connectivity import Path, as_network, connect, evaluate_path
from losslab.studies import width_study


def obvious_loop(objective: Objective, spec: str, a: torch.Tensor, b: torch.Tensor, points: int) -> np.ndarray:
    model = build_model(spec).to(objective.device)
    X, y = objective.X, objective.y
    losses = []
    with torch.no_grad():
        for t in np.linspace(0, 1, points):
            torch.nn.utils.vector_to_parameters((1 - t) * a + t * b, model.parameters())
            losses.append(float(F.cross_entropy(model(X), y)))
    return np.asarray(losses)


def demo_mlp(config: TrainConfig, points: int, device: str) -> dict[str, float]:
    """Train-loss barriers of the demo's digits MLP: naive, aligned, REPAIRed, Bézier curve."""
    spec = "mlp:64-100-100-10"
    objective = Objective(build_model(spec), "cross_entropy", load_data("digits"), device=device)
    thetas = init_thetas(spec, [0, 1], objective)
    pair = train_ensemble(objective, config, thetas=thetas, seeds=[0, 1])
    out = {}
    for method in ("weight", "activation"):
        result = connect(objective, pair.thetas[0], pair.thetas[1], align=method, repair=True, points=points)
        out["naive"] = round(result.paths["naive"].barrier().height, 4)
        out[method] = round(result.paths["aligned"].barrier().height, 4)
        out[f"{method}+repair"] = round(result.paths["repair"].barrier().height, 4)
    curve = connect(objective, pair.thetas[0], pair.thetas[1], align="none", path="bezier", points=points)
    out["bezier"] = round(curve.paths["curve"].barrier().height, 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="digits")
    parser.add_argument("--widths", default="32,128,512")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--points", type=int, default=25)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data(args.data)
    widths = [int(w) for w in args.widths.split(",")]
    config = TrainConfig(optimizer="sgd", lr=0.1, batch_size=64, epochs=args.epochs)

    start = time.perf_counter()
    study = width_study(data, widths, config=config, points=args.points, device=args.device)
    study_seconds = time.perf_counter() - start
    demo = demo_mlp(config, args.points, args.device) if args.data == "digits" else None

    spec = study.models[-1]
    objective = Objective(build_model(spec, seed=0), "cross_entropy", data, device=args.device)
    a = objective.theta0
    b = objective.as_theta(build_model(spec, seed=1))
    line = Path("line", as_network(objective, a), as_network(objective, b))
    fast = best_of(lambda: evaluate_path(objective, line, points=args.points, test=False))
    slow = best_of(lambda: obvious_loop(objective, spec, a, b, args.points))
    ours = evaluate_path(objective, line, points=args.points, test=False).values["train_loss"]
    reference = obvious_loop(objective, spec, a, b, args.points)

    def rounded(values: np.ndarray) -> list[float]:
        return [round(float(v), 4) for v in values]

    curves = study.curves
    emit(
        "connectivity",
        {
            "data": args.data,
            "models": study.models,
            "epochs": args.epochs,
            "points": args.points,
            "device": args.device,
            "endpoint_test_error": [rounded(row[[0, -1]]) for row in curves["none"]["test_error"]],
            "barrier_train_loss": {m: rounded(study.barrier(m, "train_loss")) for m in curves},
            "barrier_test_error": {m: rounded(study.barrier(m, "test_error")) for m in curves},
            "align_seconds": {m: rounded(s) for m, s in study.align_seconds.items()},
            "study_seconds": round(study_seconds, 1),
            "demo_mlp_train_loss_barrier": demo,
            "path_points_per_s": round(args.points / fast, 1),
            "loop_points_per_s": round(args.points / slow, 1),
            "speedup": round(slow / fast, 2),
            "max_abs_loss_difference": float(np.abs(ours - reference).max()),
        },
    )


if __name__ == "__main__":
    main()
