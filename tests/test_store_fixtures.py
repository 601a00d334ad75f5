"""The shared `one_thread` fixture (tests/conftest.py) is in force for a module that opts in."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


def test_one_thread_is_in_force() -> None:
    assert torch.get_num_threads() == 1
