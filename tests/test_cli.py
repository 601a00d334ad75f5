"""The command line through Typer's runner: exit codes, --json, and every bad input the issue lists."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.models import build_model, save_checkpoint

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_version_and_info() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("losslab 0.")
    info = invoke("info", "--json")
    facts = json.loads(info.stdout)
    assert info.exit_code == 0 and facts["threads"] >= 1 and "torch" in facts


def test_the_cli_needs_only_the_declared_dependencies() -> None:
    # click arrives here only through ray (a test extra); a plain install has typer's own copy.
    code = "import sys; sys.modules['click'] = None; from losslab.cli import app; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_train_writes_a_complete_reloadable_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke("train", "--data", "digits", "--model", "mlp:64-32-10", "--epochs", "3", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)  # one JSON object, nothing else on stdout
    assert payload["status"] == "complete" and payload["result"]["train_accuracy"] > 0.8
    for name in ("run.json", "report.html", "model.pt", "init.pt", "results/train.npz", "figures/train-training.png"):
        assert (out / name).is_file(), name
    run = load(out)
    assert run.manifest["config"]["model"] == "mlp:64-32-10" and run.manifest["seeds"] == {"seeds": [0]}
    assert run.result.snapshots.shape[0] == 4
    state = torch.load(out / "model.pt", weights_only=True)
    assert set(state) == {"1.weight", "1.bias", "3.weight", "3.bias"}
    shown = invoke("show", out)
    assert shown.exit_code == 0 and "train_accuracy" in shown.stdout


def test_train_a_seed_ensemble_and_reuse_a_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "ens"
    result = invoke(
        "train", "--data", "xor", "--seeds", "3", "--epochs", "5", "--batch-size", "0", "--out", out, "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["result"]["members"] == 3
    assert sorted(p.name for p in out.glob("seed-*.pt")) == ["seed-0.pt", "seed-1.pt", "seed-2.pt"]
    again = invoke(
        "train",
        "--checkpoint",
        out / "seed-1.pt",
        "--data",
        "xor",
        "--epochs",
        "1",
        "--out",
        tmp_path / "more",
        "--json",
    )
    assert again.exit_code == 0, again.stderr


def test_a_run_directory_is_a_checkpoint(tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert invoke("train", "--data", "spirals", "--epochs", "1", "--out", first, "--json").exit_code == 0
    second = invoke("train", "--checkpoint", first, "--epochs", "1", "--out", tmp_path / "second", "--json")
    assert second.exit_code == 0, second.stderr
    config = load(tmp_path / "second").manifest["config"]
    assert config["data"] == "spirals" and config["checkpoint"].endswith("model.pt")


@pytest.fixture
def user_files(tmp_path: Path) -> Path:
    (tmp_path / "user.py").write_text(
        textwrap.dedent("""
        import torch
        def data():
            return torch.randn(12, 3), torch.randint(2, (12,))
        def not_data():
            return {"x": 1}
        def model():
            return torch.nn.Linear(3, 2)
        def nan_model():
            layer = torch.nn.Linear(3, 2)
            with torch.no_grad():
                layer.weight.fill_(float("nan"))
            return layer
        class Noisy(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(3, 2)
            def forward(self, x):
                return self.lin(x + torch.randn_like(x))
        def noisy():
            return Noisy()
    """)
    )
    return tmp_path


def bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    user = tmp / "user.py"
    save_checkpoint(build_model("mlp:64-20-10"), tmp / "other.pt")
    (tmp / "complete").mkdir()
    (tmp / "damaged").mkdir()
    (tmp / "damaged" / "run.json").write_text("{")
    return [
        (["train", "--model", f"{tmp / 'missing.py'}:model"], "does not exist"),
        (["train", "--data", f"{user}:nothing"], "has no function 'nothing'"),
        (["train", "--data", f"{user}:not_data"], "must be a tuple (X, y)"),
        (["train", "--model", f"{user}:data", "--data", f"{user}:data"], "not a torch.nn.Module"),
        (["train", "--model", "mlp:64-32-3"], "outputs 3 logits but the targets contain class 9"),
        (
            ["train", "--model", "mlp:64-32-10", "--checkpoint", str(tmp / "other.pt")],
            "for another architecture: '1.weight'",
        ),
        (["train", "--model", f"{user}:nan_model", "--data", f"{user}:data"], "not finite"),
        (["train", "--model", f"{user}:noisy", "--data", f"{user}:data"], "different outputs twice"),
        (["train", "--model", "resnet50"], "Unknown model 'resnet50'"),
        (["train", "--optimizer", "lbfgs"], "'optimizer' parameter of train must be one of"),
        (["train", "--dtype", "float16"], "'dtype' parameter"),
        (["train", "--device", "cuda"] if not torch.cuda.is_available() else ["train", "--device", "tpu"], "device"),
        (["train", "--out", "/proc/losslab/run"], "Cannot write to --out"),
        (["show", str(tmp / "damaged")], "run.json of"),
        (["show", str(tmp / "nowhere")], "no run.json"),
    ]


def test_every_bad_input_is_one_line_exit_2_and_leaves_nothing(user_files: Path, tmp_path: Path) -> None:
    for args, message in bad_inputs(tmp_path):
        out = tmp_path / "out-should-not-exist"
        full = [*args, "--epochs", "1"] if args[0] == "train" else args
        if args[0] == "train" and "--out" not in args:
            full += ["--out", str(out)]
        result = invoke(*full)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("losslab: error: "), (args, result.stderr)
        assert message in lines[0], (args, lines[0])
        assert "Traceback" not in result.stderr
        assert not out.exists(), args


def test_a_complete_run_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", "xor", "--epochs", "1", "--out", out, "--json"]
    assert invoke(*args).exit_code == 0
    refused = invoke(*args)
    assert refused.exit_code == 2 and "pass --force" in refused.stderr
    assert load(out).status == "complete"  # untouched
    assert invoke(*args, "--force").exit_code == 0


def test_internal_failures_exit_1_and_are_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import losslab.cli.train as train_module

    def explode(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(train_module, "train", explode)
    result = invoke("train", "--data", "xor", "--out", tmp_path / "run")
    assert result.exit_code == 1 and "internal error: RuntimeError: simulated crash" in result.stderr
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["status"] == "failed" and "simulated crash" in manifest["error"]
    monkeypatch.setenv("LOSSLAB_DEBUG", "1")
    with pytest.raises(RuntimeError):
        runner.invoke(app, ["train", "--data", "xor", "--out", str(tmp_path / "run2")], catch_exceptions=False)
