"""``losslab train`` with user models: same command, same numbers; run directories that rebuild from
any working directory; user functions that raise are user errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app

runner = CliRunner()

USER_MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    def conv():
        # batch norm and dropout, as in the issue's CNN
        return nn.Sequential(nn.Linear(64, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Dropout(0.3), nn.Linear(24, 10))

    def small():
        return nn.Sequential(nn.Linear(64, 12), nn.Tanh(), nn.Linear(12, 10))

    def broken():
        raise RuntimeError("no such layer size")
""")


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "project"
    where.mkdir()
    (where / "models.py").write_text(USER_MODELS)
    monkeypatch.chdir(where)
    return where


def test_the_same_train_command_twice_gives_the_same_numbers(user_dir: Path) -> None:
    args = ["train", "--data", "digits", "--model", "models.py:conv", "--epochs", "2", "--json"]
    first = invoke(*args, "--out", user_dir / "a")
    second = invoke(*args, "--out", user_dir / "b")
    assert first.exit_code == 0 and second.exit_code == 0, first.stderr + second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    for key in ("train_loss", "train_accuracy", "test_loss"):
        assert a["result"][key] == b["result"][key], key
    assert load(user_dir / "a").result.theta.tobytes() == load(user_dir / "b").result.theta.tobytes()
    # The run states the modes: steps in train mode, records and analyses in eval mode, and what eval changed.
    assert a["mode"] == "eval" and a["result"]["mode"]["steps"] == "train"
    config = json.loads((user_dir / "a" / "run.json").read_text())["config"]
    assert config["mode"] == "eval"
    assert config["eval_changes"] == ["batch norm uses its running statistics in 1", "dropout p=0.3 off in 3"]
    assert config["params"]["dim"] == 64 * 24 + 24 + 2 * 24 + 24 * 10 + 10 and config["params"]["frozen"] == []
    assert a["result"]["seeds"] == {"batch_order": 0, "forward": 0}
    assert "config.mode" in (user_dir / "a" / "report.html").read_text()


def test_a_run_rebuilds_from_another_directory_and_notices_a_changed_file(
    user_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = user_dir / "run"
    trained = invoke("train", "--data", "digits", "--model", "models.py:small", "--epochs", "1", "--out", run)
    assert trained.exit_code == 0, trained.stderr
    config = json.loads((run / "run.json").read_text())["config"]
    assert config["model"] == f"{user_dir / 'models.py'}:small"
    assert config["files"]["model"]["path"] == str(user_dir / "models.py")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ok = invoke("hessian", "--checkpoint", run, "--top", "1", "--out", elsewhere / "h", "--json")
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["mode"] == "eval"  # analyses state the mode they evaluated in
    hessian_config = json.loads((elsewhere / "h" / "run.json").read_text())["config"]
    assert hessian_config["params"]["dim"] == 64 * 12 + 12 + 12 * 10 + 10 and hessian_config["eval_changes"] == []
    (user_dir / "models.py").write_text(USER_MODELS + "\n# edited\n")
    changed = invoke("hessian", "--checkpoint", run, "--top", "1", "--out", elsewhere / "h2")
    assert changed.exit_code == 2
    assert "changed since the run" in changed.stderr and "models.py" in changed.stderr
    assert len(changed.stderr.strip().splitlines()) == 1 and not (elsewhere / "h2").exists()
    (user_dir / "models.py").rename(user_dir / "moved.py")
    moved = invoke("hessian", "--checkpoint", run, "--top", "1", "--out", elsewhere / "h3")
    assert moved.exit_code == 2 and "no longer exists" in moved.stderr and "--model" in moved.stderr


def test_a_user_function_that_raises_exits_2_naming_it(user_dir: Path) -> None:
    result = invoke("train", "--data", "digits", "--model", "models.py:broken", "--epochs", "1", "--out", "x")
    assert result.exit_code == 2
    assert "models.py:broken' raised RuntimeError: no such layer size" in result.stderr
    assert "internal error" not in result.stderr and not (user_dir / "x").exists()
    (user_dir / "data.py").write_text("def bad():\n    return 1 / 0\n")
    result = invoke("train", "--data", "data.py:bad", "--epochs", "1", "--out", "y")
    assert result.exit_code == 2 and "data.py:bad' raised ZeroDivisionError: division by zero" in result.stderr


def test_unused_parameters_are_one_warning_line_and_recorded(user_dir: Path) -> None:
    (user_dir / "spare.py").write_text(
        textwrap.dedent("""
        from torch import nn

        class Spare(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Linear(64, 10)
                self.unused = nn.Linear(3, 3)

            def forward(self, x):
                return self.body(x)

        def model():
            return Spare()
    """)
    )
    result = invoke("train", "--model", "spare.py:model", "--epochs", "1", "--out", "s")
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "warning" in line]
    assert lines == [
        "losslab: warning: The model's outputs do not depend on the parameters 'unused.weight', 'unused.bias': "
        "they get no gradient and add zero eigenvalues to the Hessian. Freeze them (requires_grad_(False)) or "
        "pass params= without them."
    ]
    config = json.loads((user_dir / "s" / "run.json").read_text())["config"]
    assert config["params"]["unused"] == ["unused.weight", "unused.bias"]


def test_a_frozen_parameter_stays_in_the_checkpoint_untrained(user_dir: Path) -> None:
    import torch

    (user_dir / "frozen.py").write_text(
        textwrap.dedent("""
        import torch
        from torch import nn

        class Scaled(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Linear(64, 10)
                self.scale = nn.Parameter(torch.ones(()), requires_grad=False)

            def forward(self, x):
                return self.scale * self.body(x)

        def model():
            return Scaled()
    """)
    )
    result = invoke("train", "--model", "frozen.py:model", "--epochs", "2", "--lr", "0.5", "--out", "f")
    assert result.exit_code == 0, result.stderr
    state = torch.load(user_dir / "f" / "model.pt", weights_only=True)
    assert float(state["scale"]) == 1.0 and not torch.equal(
        state["body.weight"], torch.load(user_dir / "f" / "init.pt", weights_only=True)["body.weight"]
    )
    config = json.loads((user_dir / "f" / "run.json").read_text())["config"]
    assert config["params"]["frozen"] == ["scale"] and config["params"]["dim"] == 650
