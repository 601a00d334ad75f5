"""Datasets that need no network, and user data given as ``module:function``."""

from losslab.data.builtin import DATASETS, digits, load_data, mnist1d, spirals, teacher, xor
from losslab.data.dataset import Dataset, as_dataset

__all__ = [
    "DATASETS",
    "Dataset",
    "as_dataset",
    "digits",
    "load_data",
    "mnist1d",
    "spirals",
    "teacher",
    "xor",
]
