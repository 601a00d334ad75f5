"""losslab: measure why a neural network is hard or easy to train.

Everything is a function of the `Objective`, the empirical risk L(θ) of a model, a
loss and data over one flat parameter vector θ.

>>> import losslab
>>> data = losslab.load_data("digits")
>>> objective = losslab.Objective(losslab.build_model("mlp:64-32-10", seed=0), "cross_entropy", data)
>>> result = losslab.train(objective, losslab.TrainConfig(epochs=3))
>>> result.final["accuracy"] > 0.8
True
"""

from losslab import _allocator  # noqa: F401  (before torch: huge pages for large CPU tensors)
from losslab._version import __version__
from losslab.data import Dataset, load_data
from losslab.errors import UserError
from losslab.models import build_model, load_checkpoint, save_checkpoint
from losslab.objective import Objective
from losslab.store import Run, environment, load
from losslab.train import EnsembleResult, TrainConfig, TrainResult, init_thetas, train, train_ensemble

__all__ = [
    "Dataset",
    "EnsembleResult",
    "Objective",
    "Run",
    "TrainConfig",
    "TrainResult",
    "UserError",
    "__version__",
    "build_model",
    "environment",
    "init_thetas",
    "load",
    "load_checkpoint",
    "load_data",
    "save_checkpoint",
    "train",
    "train_ensemble",
]
