"""`curvature.run` with `HessianConfig`: the command's arrays, one validation, warnings for uncertified pairs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from losslab import Objective, UserError, build_model, load
from losslab.cli import app
from losslab.cli.common import Setup
from losslab.curvature import Eigenpairs, HessianConfig, HessianResult, run
from losslab.curvature.run import uncertified
from losslab.parallel import LocalExecutor

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
MODEL = "mlp:64-12-10"  # 910 parameters


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("curv-run") / "train"
    result = invoke("train", "--model", MODEL, "--epochs", "2", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    return out


def _arrays(result: object) -> dict[str, np.ndarray]:
    """Every array of a result, by field name (nested results included)."""
    out = {}
    for name, value in vars(result).items():
        if isinstance(value, np.ndarray):
            out[name] = value
        elif hasattr(value, "__dataclass_fields__"):
            out.update({f"{name}.{k}": v for k, v in _arrays(value).items()})
    return out


def test_the_runner_gives_the_command_s_arrays(trained: Path, tmp_path: Path) -> None:
    args = ["--top", 3, "--bottom", 2, "--trace", "--density", "--starts", 2, "--steps", 12, "--saddle"]
    result = invoke("hessian", "--checkpoint", trained, *args, "--out", tmp_path / "cli", "--json")
    assert result.exit_code == 0, result.stderr
    cli = load(tmp_path / "cli")
    config = HessianConfig(top=3, bottom=2, trace=True, density=True, starts=2, steps=12, saddle=True)
    python = run(Setup(checkpoint=str(trained)), config)
    assert isinstance(python, HessianResult) and set(python.results()) == set(cli.results)
    for name, piece in python.results().items():
        mine, theirs = _arrays(piece), _arrays(cli[name])
        assert mine.keys() == theirs.keys() and mine, name
        for key in mine:
            np.testing.assert_array_equal(mine[key], theirs[key], err_msg=f"{name}.{key}")
    summary = json.loads(result.stdout)["result"]
    assert summary["top"]["eigenvalues"] == python.summary()["top"]["eigenvalues"]
    recorded = cli.manifest["config"]["hessian"]
    assert HessianConfig.from_dict(recorded) == config  # the run records the config; it reads back


def test_matrix_ggn_is_the_old_ggn_flag_and_the_ggn_operator(trained: Path, tmp_path: Path) -> None:
    new = invoke("hessian", "--checkpoint", trained, "--matrix", "ggn", "--top", 2, "--out", tmp_path / "m", "--json")
    old = invoke("hessian", "--checkpoint", trained, "--ggn", "--top", 2, "--out", tmp_path / "g", "--json")
    assert new.exit_code == old.exit_code == 0, new.stderr + old.stderr
    assert "--ggn is deprecated" in old.stderr and "deprecated" not in new.stderr
    a, b = load(tmp_path / "m")["top"], load(tmp_path / "g")["top"]
    assert a.operator == b.operator == "ggn"
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
    # the GGN is positive semi-definite, the Hessian at a non-minimum need not be: different numbers
    hessian = load(tmp_path / "m").manifest["config"]["hessian"]["matrix"]
    assert hessian == "ggn"
    bad = runner.invoke(app, ["hessian", "--checkpoint", str(trained), "--matrix", "fisher"])
    assert bad.exit_code == 2 and "The 'matrix' parameter of hessian must be one of 'hessian', 'ggn'" in bad.stderr


def test_an_uncertified_pair_is_a_warning_line_and_in_the_json(trained: Path, tmp_path: Path) -> None:
    """Five products cannot converge three pairs of a 910-dimensional Hessian."""
    result = invoke("hessian", "--checkpoint", trained, "--top", 3, "--max-hvps", 5, "--out", tmp_path / "w", "--json")
    assert result.exit_code == 0, result.stderr
    top = load(tmp_path / "w")["top"]
    assert not top.converged.all()
    warnings = [line for line in result.stderr.splitlines() if line.startswith("losslab: warning:")]
    payload = json.loads(result.stdout)["result"]
    assert len(warnings) == len(payload["warnings"]) == int((~top.converged).sum())
    for line, text in zip(warnings, payload["warnings"], strict=True):
        assert line == f"losslab: warning: {text}" and "is not certified" in text and "max_hvps" in text
    converged = invoke("hessian", "--checkpoint", trained, "--top", 1, "--out", tmp_path / "c", "--json")
    assert "warning" not in converged.stderr and "warnings" not in json.loads(converged.stdout)["result"]


def test_certified_flags_win_over_converged_when_present() -> None:
    """The per-pair `certified` flags and `reason` (when Eigenpairs has them) decide the warning."""
    pairs = SimpleNamespace(
        which="bottom",
        eigenvalues=np.array([-2.0, -1.0]),
        residuals=np.array([1e-9, 1e-9]),
        converged=np.array([True, True]),
        norm_estimate=2.0,
        tol=1e-5,
        hvps=40,
        certified=np.array([True, False]),
        reason="an eigenvalue may lie between the 1st and 2nd (cluster)",
    )
    (line,) = uncertified(pairs)  # type: ignore[arg-type]
    assert line == (
        "bottom eigenpair 2 of 2 (λ = -1) is not certified: an eigenvalue may lie between the 1st and 2nd (cluster)"
    )
    pairs.certified = np.array([True, True])
    assert uncertified(pairs) == []  # type: ignore[arg-type]
    del pairs.certified, pairs.reason
    pairs.converged = np.array([False, True])
    assert "relative residual 5e-10 > tol 1e-05 after 40 products" in uncertified(pairs)[0]  # type: ignore[arg-type]


def test_an_objective_an_executor_and_a_store_give_the_same_numbers(tmp_path: Path) -> None:
    objective = Objective(build_model("mlp:4-5-3", seed=2), "cross_entropy", _tiny(), dtype="float64")
    config = HessianConfig(top=2, bottom=1, trace=True, per_layer=True, sharpness=True)
    plain = run(objective, config)
    stored = run(objective, config, store=tmp_path / "chunks", executor=LocalExecutor())
    for name, piece in plain.results().items():
        for key, value in _arrays(piece).items():
            if "seconds" not in key:
                np.testing.assert_array_equal(value, _arrays(stored.results()[name])[key], err_msg=f"{name}.{key}")
    assert len(list((tmp_path / "chunks" / "hessian").glob("*.npz"))) == len(config.pieces) == 4
    # against the dense float64 Hessian: the pairs are its extreme eigenvalues, within their own
    # error estimates (min(r, r²/gap)) plus float64 round-off of a 38 × 38 eigensolve
    dense = torch.linalg.eigvalsh(objective.hessian(objective.theta0)).numpy()
    for pairs, truth in ((plain.top, dense[::-1][:2]), (plain.bottom, dense[:1])):
        assert pairs.converged.all()
        assert np.all(np.abs(pairs.eigenvalues - truth) <= pairs.error_estimates + 1e-12), (pairs.eigenvalues, truth)
    assert plain.sharpness.lambda_max == plain.top.eigenvalues[0]  # reused, not recomputed


def _tiny():
    g = torch.Generator().manual_seed(1)
    return torch.randn(29, 4, generator=g, dtype=torch.float64), torch.randint(3, (29,), generator=g)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tol": 0.0}, "The 'tol' parameter of hessian must be a finite number with 0.0 < value ≤ 1.0. Got 0.0."),
        ({"top": -1}, "The 'top' parameter of hessian must be an int ≥ 0. Got -1."),
        ({"starts": 1}, "The 'starts' parameter of hessian must be an int ≥ 2. Got 1."),
        ({"trace_method": "exact"}, "The 'trace_method' parameter of hessian must be one of"),
        ({"matrix": "fisher"}, "The 'matrix' parameter of hessian must be one of 'hessian', 'ggn'"),
        ({"rho": 0.0}, "The 'rho' parameter of hessian must be a finite number > 0.0. Got 0.0."),
        ({"top": 0}, "Nothing to compute"),
    ],
)
def test_hessian_config_validates_once_with_the_template(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError) as caught:
        HessianConfig(**kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_saddle_and_sharpness_imply_what_they_read() -> None:
    config = HessianConfig(top=0, saddle=True)
    assert (config.top, config.bottom, config.density) == (1, 5, True)
    assert config.pieces == ["eigen", "density", "saddle"]
    assert HessianConfig(**config.to_dict()) == config  # idempotent: a recorded config reads back the same
    assert HessianConfig(top=0, sharpness=True).top == 1


def test_too_many_pairs_for_the_model_is_refused_before_any_product() -> None:
    objective = Objective(build_model("mlp:4-5-3", seed=2), "cross_entropy", _tiny(), dtype="float64")
    with pytest.raises(UserError, match=f"ask for at most {objective.dim}"):
        run(objective, HessianConfig(top=objective.dim, bottom=1))
    assert isinstance(run(objective, HessianConfig(top=1)).top, Eigenpairs)


def test_docstring_example() -> None:
    import doctest
    import importlib

    module = importlib.import_module("losslab.curvature.run")  # `losslab.curvature.run` is the function
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_memory_gib_decides_the_scheme_not_the_numbers(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--memory-gib reaches the objective: too little for the graph rebuilds it per batch, same pairs."""
    modes: list[str] = []
    original = Objective.curvature_at

    def recording(self: Objective, theta: torch.Tensor, **kwargs: object):
        at = original(self, theta, **kwargs)
        modes.append(at._mode)
        return at

    monkeypatch.setattr(Objective, "curvature_at", recording)
    small, roomy = (run(Setup(checkpoint=str(trained)), HessianConfig(top=2, memory_gib=gib)) for gib in (2**-10, 4.0))
    assert modes[0] == "recompute" and modes[-1] == "reuse"
    np.testing.assert_allclose(small.top.eigenvalues, roomy.top.eigenvalues, rtol=1e-5)
    result = invoke("hessian", "--checkpoint", trained, "--top", 1, "--memory-gib", 0, "--estimate")
    assert result.exit_code == 2 and "memory_gib" in result.stderr
