"""Curvature on seeded subsamples (``--rows``) and its spread, against dense Hessians of those rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from losslab import Objective, build_model, load
from losslab.cli import app
from losslab.curvature.run import HessianConfig, run
from losslab.data import as_dataset
from losslab.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

N, ROWS = 90, 25


def _objective(**kwargs) -> Objective:
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(N, 4, generator=g, dtype=torch.float64), torch.randint(3, (N,), generator=g)
    return Objective(build_model("mlp:4-5-3,act=tanh", seed=0), "cross_entropy", (X, y), dtype="float64", **kwargs)


def _index(seed: int, block: int) -> torch.Tensor:
    return (
        torch.randperm(N, generator=torch.Generator().manual_seed(seed))[block * ROWS : (block + 1) * ROWS]
        .sort()
        .values
    )


def test_subsamples_are_disjoint_seeded_blocks_of_the_rows() -> None:
    full = _objective()
    blocks = [full.subsample(ROWS, seed=3, index=i) for i in range(3)]
    for i, sub in enumerate(blocks):
        index = _index(3, i)
        torch.testing.assert_close(sub.X, full.X[index], rtol=0, atol=0)
        assert sub.n == ROWS and sub.subsampled[1:] == (ROWS, 3, i)
        direct = Objective(build_model("mlp:4-5-3,act=tanh", seed=0), "cross_entropy", (full.X[index], full.y[index]))
        torch.testing.assert_close(sub.hvp(sub.theta0, sub.theta0), direct.at_float64().hvp(sub.theta0, sub.theta0))
    seen = torch.cat([_index(3, i) for i in range(3)])
    assert len(set(seen.tolist())) == 3 * ROWS  # disjoint: fixed minibatches
    # a sibling drawn from a subsample comes from the same rows and permutation
    torch.testing.assert_close(blocks[0].subsample(ROWS, seed=3, index=2).X, blocks[2].X, rtol=0, atol=0)
    # the same blocks from a streamed objective
    items = torch.utils.data.TensorDataset(full.X, full.y)
    streamed = Objective(build_model("mlp:4-5-3,act=tanh", seed=0), "cross_entropy", as_dataset(items, stream=True))
    sub = streamed.at_float64().subsample(ROWS, seed=3, index=1)
    assert sub.streamed
    torch.testing.assert_close(sub.loss(sub.theta0), blocks[1].loss(sub.theta0), rtol=1e-12, atol=0)
    with pytest.raises(UserError, match="needs 100 distinct rows but .* has 90"):
        full.subsample(ROWS, index=3)


def test_spread_of_lambda_max_and_trace_matches_dense_hessians() -> None:
    full = _objective()
    sub = full.subsample(ROWS, seed=1)
    result = run(sub, HessianConfig(top=1, trace=True, trace_method="hutchpp", compare_full=True, seed=0))
    spread = result.subsamples
    assert spread is not None and spread.subsamples == 3 and spread.rows == ROWS and spread.n == N
    dense = []
    for i in range(3):
        index = _index(1, i)
        H = full.on((full.X[index], full.y[index])).hessian(full.theta0)
        dense.append((float(torch.linalg.eigvalsh(H)[-1]), float(H.trace())))
    H = full.hessian(full.theta0)
    # λmax to Lanczos's tolerance; the traces (Hutch++ estimates) within 4 of their standard errors
    np.testing.assert_allclose(spread.lambda_max, [d[0] for d in dense], rtol=1e-8)
    assert (np.abs(spread.trace - [d[1] for d in dense]) <= 4 * spread.trace_stderr).all()
    assert spread.full_lambda_max == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-8)
    assert abs(spread.full_trace - float(H.trace())) <= 4 * spread.full_trace_stderr
    summary = result.summary()["subsamples"]
    assert summary["lambda_max"]["mean"] == pytest.approx(np.mean([d[0] for d in dense]), rel=1e-8)
    assert summary["lambda_max"]["std"] == pytest.approx(np.std([d[0] for d in dense], ddof=1), rel=1e-6)
    assert summary["trace"]["std"] == pytest.approx(np.std(spread.trace, ddof=1), rel=1e-12)
    assert spread.lambda_max_certified.all()
    with pytest.raises(UserError, match="need a subsample"):
        run(full, HessianConfig(top=1, subsamples=2))
    assert run(sub, HessianConfig(top=1, subsamples=1)).subsamples is None


def test_rows_on_the_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["hessian", "--model", "mlp:64-12-10", "--rows", "200", "--top", "1", "--subsamples", "2", "--json"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "h")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["result"]
    assert summary["subsamples"]["rows"] == 200 and len(summary["subsamples"]["lambda_max"]["values"]) == 2
    run_dir = load(tmp_path / "h")
    assert run_dir.manifest["config"]["rows"] == 200 and run_dir.results["subsamples"].subsamples == 2
    surface = ["surface", "--model", "mlp:64-12-10", "--rows", "100", "--steps", "3", "--line", "--json"]
    result = runner.invoke(app, [*surface, "--out", str(tmp_path / "s")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert load(tmp_path / "s").manifest["config"]["rows"] == 100
    est = runner.invoke(app, [*args[:-1], "--compare-full", "--estimate", "--json"], catch_exceptions=False)
    work = {w["what"]: w for w in json.loads(est.stdout)["estimate"]["work"]}
    spread = next(w for what, w in work.items() if "2 more row sets" in what)  # one more subsample, all rows
    assert spread["count"] is None and spread["bound"] == 2 * 440
    bad = runner.invoke(app, ["hessian", "--model", "mlp:64-12-10", "--top", "1", "--subsamples", "2"])

    assert bad.exit_code == 2 and "need a subsample" in bad.output
    bad = runner.invoke(app, ["hessian", "--model", "mlp:64-12-10", "--rows", "0", "--top", "1"])
    assert bad.exit_code == 2 and "'rows' parameter" in bad.output
