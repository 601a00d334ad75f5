"""The instrumented trainer: GD, SGD, momentum, Adam; one seed or a vmapped seed ensemble."""

from losslab.train.config import OPTIMIZERS, SCHEDULES, TrainConfig, check_training
from losslab.train.optim import FlatOptimizer
from losslab.train.runner import TrainOutput, TrainRun, initial_thetas, run
from losslab.train.trainer import (
    Callback,
    EnsembleResult,
    TrainResult,
    TrainState,
    init_thetas,
    train,
    train_ensemble,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Callback",
    "EnsembleResult",
    "FlatOptimizer",
    "TrainConfig",
    "TrainOutput",
    "TrainResult",
    "TrainRun",
    "TrainState",
    "init_thetas",
    "initial_thetas",
    "check_training",
    "run",
    "train",
    "train_ensemble",
]
