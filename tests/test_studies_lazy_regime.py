"""The lazy-regime study: changes fall with width, step 0 is exact, the linearization, resume, figures, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.errors import UserError
from losslab.report import figures_of
from losslab.studies import STUDIES, StudyContext
from losslab.studies.lazy_regime import NTKMLP, LazyRegimeResult, log_log_slope

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"data": "teacher:n=100,d=4", "widths": (32, 256, 2048), "seeds": (0, 1), "steps": 120, "tracks": 3}


@pytest.fixture(scope="module")
def tiny() -> LazyRegimeResult:
    study = STUDIES["lazy-regime"]
    return study.run(study.config("quick", **TINY), StudyContext())


def test_changes_fall_with_width_and_start_at_zero(tiny: LazyRegimeResult) -> None:
    assert tiny.kernel_change.shape == (3, 2, 4) and tiny.steps.tolist() == [0, 40, 80, 120]
    # The step-0 snapshot is θ₀ itself: its kernel is Θ₀ to the bit, whatever the width.
    assert np.all(tiny.kernel_change[:, :, 0] == 0) and np.all(tiny.weight_change[:, :, 0] == 0)
    # Training moved every network; most of the kernel's change happens early, while the loss falls fast
    # (it need not be monotone later: at width 256 it dips by 1 % between the last two records).
    assert np.all(tiny.kernel_change[:, :, -1] > 0)
    assert np.all(tiny.kernel_change[:, :, 1] > 0.5 * tiny.kernel_change[:, :, -1])
    # Anchor (Lee et al. 2019): both changes fall roughly as width^-1/2. Over a 64× width range with
    # 2 seeds the slopes are measured to ±0.05; the weight slope is -0.47 on the quick preset, the
    # kernel's steeper (-0.8, small widths are far from the limit). Bounds: clearly negative, near -1/2.
    for name in ("kernel_change", "weight_change"):
        slope, err = tiny.slopes[name]
        assert slope + 3 * err < 0, (name, slope, err)
    assert -0.75 < tiny.slopes["weight_change"][0] < -0.3
    # The trained network approaches its linearization at θ₀ as it widens.
    gap = tiny.prediction_gap.mean(axis=1)
    assert gap[-1] < gap[0] and gap[-1] < 0.05
    # GD ran inside its stability bound 2m/λmax at every width (else the study raises).
    assert np.all(tiny.lr_limit > tiny.config["lr"])
    summary = tiny.summary()
    assert summary["widths"] == [32, 256, 2048] and "slope" in summary["slopes"]["kernel_change"]


def test_linearized_prediction_equals_gd_on_the_linear_model() -> None:
    """At a tiny width the closed form of the linearized dynamics must match GD run on f₀ + J₀(θ − θ₀)."""
    from losslab.ntk import ntk
    from losslab.studies.lazy_regime import LazyRegimeConfig, _objective, _point

    config = LazyRegimeConfig(data="teacher:n=40,d=3", widths=(4, 8), seeds=(0,), steps=30, tracks=1, lr=0.5)
    context = StudyContext(dtype="float64")
    point = _point(config, 4, 0, context)
    obj = _objective(config, 4, 0, context)
    test = obj.test_objective()
    J = torch.func.jacrev(lambda t: obj._outputs(t, obj.X).reshape(-1))(obj.theta0)
    Jx = torch.func.jacrev(lambda t: obj._outputs(t, test.X).reshape(-1))(obj.theta0)
    f0, y = obj.forward(obj.theta0).reshape(-1), obj.y.reshape(-1)
    delta = torch.zeros(obj.dim, dtype=torch.float64)
    for _ in range(30):  # GD on L = (1/m) Σ ½(f₀ + J δ − y)², the brute-force reference
        delta -= 0.5 * J.T @ (f0 + J @ delta - y) / obj.n
    f_lin = test.forward(obj.theta0).reshape(-1) + Jx @ delta
    y_test = test.y.reshape(-1)
    # Both are float64 sums of 30 steps of D = 21 products; 1e-9 relative is round-off.
    assert point.test_loss_linear == pytest.approx(float(0.5 * torch.mean((f_lin - y_test) ** 2)), rel=1e-9)
    assert ntk(obj, method="jacobian").shape == (obj.n, obj.n, 1, 1)


def test_ntk_parametrization_and_slope_fit() -> None:
    torch.manual_seed(0)
    net = NTKMLP(5, 3000, 1)
    x = torch.randn(200, 5)
    # N(0, 1) weights with 1/√fan_in in the forward pass: pre-activations have variance |x|²/d + β².
    pre = x @ net.hidden.weight.detach().T / math.sqrt(5)
    assert float(pre.var()) == pytest.approx(float((x**2).sum(1).mean() / 5), rel=0.05)
    assert float(net.hidden.weight.detach().std()) == pytest.approx(1.0, rel=0.02)
    widths = np.array([10.0, 100.0, 1000.0])
    values = np.stack([widths**-0.5 * 2, widths**-0.5 * 3], axis=1)
    slope, err = log_log_slope(widths, values)
    # Seeds with different constants: the shared slope is exact, the scatter about one intercept is error.
    assert slope == pytest.approx(-0.5, abs=1e-12) and err > 0.01
    slope, err = log_log_slope(widths, np.stack([widths**-0.5 * 2] * 2, axis=1))
    assert slope == pytest.approx(-0.5, abs=1e-12) and err < 1e-6
    slope, err = log_log_slope(widths[:2], widths[:2, None] ** -0.5)  # two points: a slope, no error
    assert slope == pytest.approx(-0.5, abs=1e-12) and math.isnan(err)
    with pytest.raises(UserError, match="two widths"):
        STUDIES["lazy-regime"].config("quick", widths=(64,))
    with pytest.raises(UserError, match="regression"):
        STUDIES["lazy-regime"].run(STUDIES["lazy-regime"].config("quick", data="digits"), StudyContext())


def test_resume_figure_and_cli(tmp_path: Path, tiny: LazyRegimeResult) -> None:
    study = STUDIES["lazy-regime"]
    config = study.config("quick", **{**TINY, "widths": (32, 256)})
    chunks = tmp_path / "chunks"
    first = study.run(config, StudyContext(directory=chunks))
    stored = sorted((chunks / "lazy-regime").glob("0*.npz"))
    assert len(stored) == 4
    for path in stored[1::2]:  # a run killed with half its points written
        path.unlink()
    again = study.run(config, StudyContext(directory=chunks))
    for name in ("kernel_change", "weight_change", "prediction_gap", "test_loss"):
        assert getattr(first, name).tobytes() == getattr(again, name).tobytes(), name
    assert [f.slug for f in figures_of(tiny)] == ["lazy-regime"]
    out = tmp_path / "run"
    args = ["study", "lazy-regime", "--quick", "--set", "widths=16,64", "--set", "seeds=0", "--set", "steps=20"]
    result = CliRunner().invoke(app, [*args, "--set", "data=teacher:n=60,d=3", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["status"] == "complete"
    assert load(out).result.widths.tolist() == [16, 64]
