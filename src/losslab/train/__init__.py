"""The instrumented trainer: GD, SGD, momentum, Adam; one seed or a vmapped seed ensemble."""

from losslab.train.config import OPTIMIZERS, SCHEDULES, TrainConfig
from losslab.train.optim import FlatOptimizer
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
    "TrainResult",
    "TrainState",
    "init_thetas",
    "train",
    "train_ensemble",
]
