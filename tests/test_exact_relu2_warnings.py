"""relu2 never switches silently: an uncertified answer and a doubled bias both warn and say why."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from losslab.exact import relu2_optimum


def _data(n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 1))
    return X, np.sin(2 * X[:, 0]) + 0.3 * rng.standard_normal(n)


def test_a_tolerance_below_the_solver_accuracy_warns_and_says_why() -> None:
    X, y = _data()
    with pytest.warns(UserWarning, match="not certified") as caught:
        result = relu2_optimum(X, y, 1e-2, tol=1e-12)
    assert len(caught) == 1
    assert not result.certified
    assert "tol=1e-12" in result.reason and "tol ≥ 1e-7" in result.reason
    assert result.summary()["reason"] == result.reason
    # The bounds themselves are still valid: the gap is positive and above the tolerance.
    assert result.lower_bound <= result.optimum and result.gap > 1e-12 * result.optimum


def test_a_certified_solve_is_silent_and_has_no_reason() -> None:
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = relu2_optimum(X, y, 1e-2)
    assert result.certified and result.reason == "" and "reason" not in result.summary()
    assert result.warnings == [] and "warnings" not in result.summary()


def test_sampled_patterns_say_why_without_a_python_warning() -> None:
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asking for samples is asking for an upper bound
        result = relu2_optimum(X, y, 1e-2, patterns="sampled:5", seed=0)
    assert not result.certified and "5 sampled activation patterns" in result.reason


def test_a_constant_column_is_a_second_bias_and_warns() -> None:
    X, y = _data(9, seed=1)
    with_ones = np.c_[X, np.full(len(X), 1.0)]
    with pytest.warns(UserWarning, match="Column 1 of the relu2 inputs X is constant") as caught:
        doubled = relu2_optimum(with_ones, y, 1e-2)
    assert len(caught) == 1 and len(doubled.warnings) == 1
    assert "drop that column" in doubled.summary()["warnings"][0]
    # It is another problem: the bias costs less, so the optimum is strictly lower.
    plain = relu2_optimum(X, y, 1e-2)
    assert doubled.optimum < plain.optimum * (1 - 1e-4)


def test_a_zero_column_changes_nothing_and_is_silent() -> None:
    X, y = _data(9, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        padded = relu2_optimum(np.c_[X, np.zeros(len(X))], y, 1e-2)
    plain = relu2_optimum(X, y, 1e-2)
    # Both are certified to tol = 1e-6 relative; 1e-5 covers the two solves' gaps.
    assert padded.warnings == [] and padded.optimum == pytest.approx(plain.optimum, rel=1e-5)


def test_cli_prints_a_warning_line_and_json_carries_the_reason(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from losslab.cli import app

    args = ["exact", "relu2", "--data", "spirals:n=12", "--lam", "1e-2", "--sgd-seeds", "0", "--tol", "1e-12"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r"), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("losslab: warning:")]
    assert len(lines) == 1 and "not certified" in lines[0] and "tol=1e-12" in lines[0]
    summary = json.loads(result.stdout)["result"]
    assert summary["certified"] is False and "tol=1e-12" in summary["reason"]
    assert summary["warnings"] == [lines[0].removeprefix("losslab: warning: ")]
