"""Datasets that need no network, and user data given as ``module:function``."""

from losslab.data.builtin import DATASETS, digits, load_data, mnist1d, spirals, teacher, xor
from losslab.data.dataset import Dataset, StreamDataset, as_dataset
from losslab.data.set_splitting import SetSplittingInstance, set_splitting, set_splitting_instance
from losslab.data.stream import Stream

__all__ = [
    "DATASETS",
    "Dataset",
    "SetSplittingInstance",
    "Stream",
    "StreamDataset",
    "as_dataset",
    "digits",
    "load_data",
    "mnist1d",
    "set_splitting",
    "set_splitting_instance",
    "spirals",
    "teacher",
    "xor",
]
