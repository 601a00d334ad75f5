"""losslab asks torch for huge pages before torch starts, and only then; the user's choice wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SHOW = "import os; {first}; print(os.environ.get('THP_MEM_ALLOC_ENABLE'), losslab.environment()['huge_pages'])"


@pytest.mark.parametrize(
    ("first", "preset", "seen"),
    [
        ("import losslab", None, "1 True"),  # torch starts inside losslab's import: huge pages on
        ("import losslab", "0", "0 False"),  # the user turned them off
        ("import torch; import losslab", None, "None None"),  # too late to take effect: left alone, unknown
    ],
)
def test_huge_pages_are_asked_for_only_before_torch_starts(first: str, preset: str | None, seen: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if preset is not None:
        env["THP_MEM_ALLOC_ENABLE"] = preset
    out = subprocess.run(
        [sys.executable, "-c", SHOW.format(first=first)], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == seen
