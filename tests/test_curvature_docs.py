"""The examples in the curvature docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

MODULES = [
    "operators",
    "lanczos",
    "trace",
    "density",
    "saddle",
    "sharpness",
    "per_layer",
    "tracking",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"losslab.curvature.{name}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny examples; see the other curvature tests
    try:
        torch.manual_seed(0)  # the examples draw data with the global generator
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    finally:
        torch.set_num_threads(threads)
    assert result.attempted > 0 and result.failed == 0
