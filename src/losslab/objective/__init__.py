"""The empirical risk L(θ) of a model, a loss and data, over one flat parameter vector."""

from losslab.objective.layout import ParamLayout
from losslab.objective.losses import LOSSES, Loss
from losslab.objective.objective import CurvatureAt, Objective, resolve_device, resolve_dtype

__all__ = ["LOSSES", "CurvatureAt", "Loss", "Objective", "ParamLayout", "resolve_device", "resolve_dtype"]
