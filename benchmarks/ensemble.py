"""Seed ensembles: K seeds of the digits MLP trained together vs the sequential loop.

Both sides run the same training (SGD, batch 64, lr 0.1, 10 epochs, metrics on the
train and test splits every epoch) with losslab's trainer: `train_ensemble` steps all
K members in one vmapped program, the baseline calls `train` K times. The run also
checks that the two agree (max |Δθ| over members, float32 round-off).

    python benchmarks/ensemble.py [--seeds 64] [--epochs 10] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
from _common import emit

from losslab import Objective, TrainConfig, build_model, init_thetas, load_data, train, train_ensemble


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    spec = "mlp:64-100-100-10"
    objective = Objective(build_model(spec), "cross_entropy", load_data("digits"), device=args.device)
    config = TrainConfig(optimizer="sgd", lr=0.1, batch_size=args.batch_size, epochs=args.epochs)
    seeds = list(range(args.seeds))
    thetas = init_thetas(spec, seeds, objective)
    train_ensemble(objective, replace(config, epochs=1), thetas=thetas[:2], seeds=seeds[:2])  # warm-up (imports)

    start = time.perf_counter()
    ensemble = train_ensemble(objective, config, thetas=thetas, seeds=seeds)
    together = time.perf_counter() - start

    start = time.perf_counter()
    alone = [train(objective, replace(config, seed=s), theta=thetas[k]) for k, s in enumerate(seeds)]
    sequential = time.perf_counter() - start

    deviation = max(float(np.abs(ensemble.thetas[k] - r.theta).max()) for k, r in enumerate(alone))
    emit(
        "ensemble",
        {
            "seeds": args.seeds,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "device": args.device,
            "steps_per_member": int(ensemble.steps[0]),
            "ensemble_s": round(together, 3),
            "sequential_s": round(sequential, 3),
            "speedup": round(sequential / together, 2),
            "max_abs_theta_difference": deviation,
            "median_test_accuracy": float(np.median(ensemble.history["test_accuracy"][-1])),
        },
    )


if __name__ == "__main__":
    main()
