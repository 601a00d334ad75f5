"""The model zoo (short spec strings) and user models given as ``module:function``."""

from losslab.models.build import build_model, load_checkpoint, save_checkpoint
from losslab.models.threshold import SoftAndNet, TwoLayerReLU
from losslab.models.vision import VGG, CifarResNet, VisionTransformer
from losslab.models.zoo import MLP, ZOO, Conv1DNet, DeepMLP, TinyTransformer, register_model

__all__ = [
    "MLP",
    "VGG",
    "CifarResNet",
    "VisionTransformer",
    "ZOO",
    "Conv1DNet",
    "DeepMLP",
    "SoftAndNet",
    "TwoLayerReLU",
    "TinyTransformer",
    "build_model",
    "load_checkpoint",
    "register_model",
    "save_checkpoint",
]
