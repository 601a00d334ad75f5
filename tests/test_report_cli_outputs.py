"""What commands print: ``--split`` says what it computes, and ``final`` leaves out what was never measured."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from losslab.cli import app
from losslab.cli.surface import config_split
from losslab.errors import UserError
from losslab.objective import Objective
from losslab.train import TrainConfig, train


def test_split_is_train_or_both_and_test_still_means_both(capsys: pytest.CaptureFixture[str]) -> None:
    assert config_split("train", "surface") == "train"
    assert config_split("both", "surface") == "test"  # the config's 'test': the test split too
    assert capsys.readouterr().err == ""
    assert config_split("test", "surface") == "test"  # the former spelling keeps working, and says what it does
    assert capsys.readouterr().err.strip() == "note: --split test computes train and test; write --split both."
    with pytest.raises(UserError, match=r"'split' parameter of interpolate must be one of 'train', 'both'"):
        config_split("validation", "interpolate")


def test_split_both_is_documented_in_the_help() -> None:
    text = CliRunner().invoke(app, ["surface", "--help"], terminal_width=200).stdout
    assert "both: the training and the test split" in text


def test_final_leaves_out_the_test_split_when_there_is_none() -> None:
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(20, 4, generator=g), torch.randint(2, (20,), generator=g)  # (X, y): no test split
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    result = train(Objective(model, "cross_entropy", (X, y)), TrainConfig(epochs=2, batch_size=10))
    assert np.isnan(result.history["test_loss"]).all()  # the history keeps its columns
    assert "test_loss" not in result.final and "test_accuracy" not in result.final
    summary = result.summary()
    assert summary["test"] == "no test split" and "test_loss" not in summary
    assert summary["train_loss"] == result.final["loss"] and np.isfinite(summary["train_accuracy"])
    json.dumps(summary, allow_nan=False)  # nothing NaN left to print
