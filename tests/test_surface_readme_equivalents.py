"""The README's Python equivalents of ``losslab surface``, ``interpolate`` and ``hessian`` run as-is
and give the commands' arrays (the snippet below is the README block, verbatim)."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")

SNIPPET = """\
import losslab
from losslab import curvature, surface

# A small MLP trained for a few epochs and saved, as `losslab train` saves model.pt.
data = losslab.load_data("digits")
model = losslab.build_model("mlp:64-32-10", seed=0)
start = losslab.Objective(model, "cross_entropy", data)
fit = losslab.train(start, losslab.TrainConfig(epochs=5))
model.load_state_dict(start.state_dict(start.as_theta(fit.theta)))
losslab.save_checkpoint(model, "mlp.pt")
objective = losslab.Objective(model, "cross_entropy", data)  # every runner works at its θ₀: the trained point

# losslab surface --model mlp:64-32-10 --checkpoint mlp.pt --dirs filter --steps 21 --split both
plane = surface.run(objective, surface.SurfaceConfig(dirs="filter", steps=21, split="test"))  # test: train and test
print(plane.summary()["loss_center"], plane.test_loss.shape)

# losslab interpolate --model mlp:64-32-10 --from init --to mlp.pt --steps 21
# ('init' is the seeded initialization, which the command rebuilds from --model; here it is a file)
losslab.save_checkpoint(losslab.build_model("mlp:64-32-10", seed=0), "init.pt")
mli = surface.run(objective, surface.InterpolateConfig(start="init.pt", steps=21))
print(mli.monotone, mli.bump)

# losslab hessian --model mlp:64-32-10 --checkpoint mlp.pt --top 5 --bottom 3 --trace --density --saddle
config = curvature.HessianConfig(top=5, bottom=3, trace=True, density=True, saddle=True)
spectrum = curvature.run(objective, config)
print(spectrum.summary()["saddle"], spectrum.warnings())  # a warning names each pair that is not certified
"""


def _commands() -> list[list[str]]:
    """The command lines the snippet's comments give, in order."""
    return [shlex.split(line[2:])[1:] for line in SNIPPET.splitlines() if line.startswith("# losslab ")]


def test_the_python_equivalents_give_the_commands_arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    exec(compile(SNIPPET, "README.md", "exec"), namespace)
    surface_args, interpolate_args, hessian_args = _commands()
    runner = CliRunner()
    runs = {}
    for name, args in (("surface", surface_args), ("interpolate", interpolate_args), ("hessian", hessian_args)):
        result = runner.invoke(app, [*args, "--out", str(tmp_path / name), "--json"], catch_exceptions=False)
        assert result.exit_code == 0, (args, result.stderr)
        runs[name] = load(tmp_path / name)
    plane, mli, spectrum = namespace["plane"], namespace["mli"], namespace["spectrum"]
    for field in ("a", "b", "loss", "accuracy", "test_loss", "test_accuracy"):
        np.testing.assert_array_equal(getattr(plane, field), getattr(runs["surface"].result, field), err_msg=field)
    np.testing.assert_array_equal(mli.loss, runs["interpolate"].result.loss)
    for name, piece in spectrum.results().items():
        theirs = runs["hessian"][name]
        for field, value in vars(piece).items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, getattr(theirs, field), err_msg=f"{name}.{field}")
