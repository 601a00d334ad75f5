"""How close `--estimate` comes to the run it predicts, on the digits MLP.

    python benchmarks/estimate.py [--device cpu|cuda] [--studies NAME ...] [--quick]

For each workload the estimate is made first (what `losslab ... --estimate` prints),
then the work itself is run and timed in the same process:

- train: 100 epochs of SGD (batch 64) of ``mlp:64-100-100-10``, recorded each epoch;
- surface: the 51×51 filter-normalized plane around the trained network (train split);
- hessian: the density (4 starts × 48 Lanczos steps) — a fixed amount of work — and
  top-5 Lanczos, whose product count is only bounded before the run: the estimate's
  per-product time is compared with the run's wall time per product.

With ``--studies``, instead: each named study's estimate of its preset (full, or quick
with ``--quick``) against the study run in memory (compute only: no figures, no report).

Prints one JSON line: predicted and measured seconds and their ratio per workload.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import emit

from losslab import Objective, TrainConfig, build_model, load_data, train
from losslab.curvature import extreme_eigenpairs, hessian_operator, slq
from losslab.curvature.cost import estimate_curvature
from losslab.objective.cost import Estimate, Work, seconds_per_point
from losslab.studies import STUDIES, StudyContext
from losslab.surface import axis, plane, random_directions
from losslab.train.cost import estimate_training


def _timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--studies", nargs="+", choices=sorted(STUDIES), help="Compare study estimates instead.")
    parser.add_argument("--quick", action="store_true", help="With --studies: the quick presets.")
    args = parser.parse_args()
    if args.studies:
        studies(args.studies, "quick" if args.quick else "full", args.device)
        return
    spec = "mlp:64-100-100-10"
    objective = Objective(build_model(spec, seed=0), "cross_entropy", load_data("digits"), device=args.device)
    out: dict[str, object] = {"device": args.device, "model": spec, "params": objective.dim}

    config = TrainConfig(epochs=100)
    predicted = estimate_training(objective, config).seconds
    result: dict[str, object] = {}
    measured = _timed(lambda: result.setdefault("train", train(objective, config)))
    out["train"] = {"predicted_s": round(predicted, 3), "measured_s": round(measured, 3)}

    theta = objective.as_theta(torch.as_tensor(result["train"].theta))  # type: ignore[attr-defined]
    dirs = random_directions(objective.layout, theta, "filter", seed=0)
    a = axis(-1.0, 1.0, 51)
    predicted = Estimate("surface", [Work("points", 51 * 51, 51 * 51, seconds_per_point(objective, theta))]).seconds
    measured = _timed(lambda: plane(objective, theta, dirs, a, a))
    out["surface"] = {"predicted_s": round(predicted, 3), "measured_s": round(measured, 3)}

    at = objective.curvature_at(theta)
    predicted = estimate_curvature(at, density=(4, 48)).seconds
    at = objective.curvature_at(theta)  # a fresh point: the run builds its own gradient graph
    measured = _timed(lambda: slq(hessian_operator(objective, at), starts=4, steps=48, seed=0))
    out["density"] = {"predicted_s": round(predicted, 3), "measured_s": round(measured, 3)}

    at = objective.curvature_at(theta)
    cost = estimate_curvature(at, top=5)
    per_product = sum(w.unit_seconds for w in cost.work if w.count is None)  # product + its reorthogonalization
    at = objective.curvature_at(theta)
    op = hessian_operator(objective, at)
    measured = _timed(lambda: extreme_eigenpairs(op, 5, 0, tol=1e-5, seed=0))
    out["lanczos_top5"] = {
        "products": op.count,
        "bound_products": cost.work[1].bound,
        "predicted_bound_s": round(cost.bound_seconds, 3),
        "predicted_s_at_actual_count": round(cost.work[0].seconds + op.count * per_product, 3),  # type: ignore[operator]
        "measured_s": round(measured, 3),
    }
    for name in ("train", "surface", "density"):
        entry = out[name]
        entry["ratio"] = round(entry["predicted_s"] / entry["measured_s"], 3)  # type: ignore[index,operator]
    emit("estimate", out)


def studies(names: list[str], preset: str, device: str) -> None:
    out: dict[str, object] = {"device": device, "preset": preset}
    for name in names:
        study = STUDIES[name]
        config, context = study.config(preset), StudyContext(device=device)
        estimate = study.estimate(config, context)  # type: ignore[misc]
        measured = _timed(lambda study=study, config=config, context=context: study.run(config, context))
        out[name] = {
            "predicted_s": round(estimate.seconds, 2),
            "bound_s": round(estimate.bound_seconds, 2),
            "measured_s": round(measured, 2),
        }
    emit("estimate_studies", out)


if __name__ == "__main__":
    main()
