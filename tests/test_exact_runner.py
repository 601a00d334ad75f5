"""Every ``losslab exact`` command is config → runner → print: the CLI and Python give identical results."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.errors import UserError
from losslab.exact import (
    PerceptronConfig,
    Relu2Config,
    ScalingConfig,
    ThreeNodeConfig,
    mixed_instance,
    run,
    run_perceptron,
    run_relu2,
    run_scaling,
    run_three_node,
)

runner = CliRunner()

# Fields that are wall-clock measurements: the same work takes different times twice.
_TIMES = {"seconds", "brute_seconds", "milp_seconds", "spent_seconds", "wall_seconds", "history"}


def _cli(tmp_path: Path, *args: object) -> object:
    out = tmp_path / "run"
    result = runner.invoke(app, ["exact", *map(str, args), "--out", str(out), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return load(out).result


def _assert_same(a: object, b: object, path: str = "result") -> None:
    """Field by field, arrays bit for bit, nested results recursively; times skipped."""
    assert type(a) is type(b), path
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            if f.name not in _TIMES:
                _assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            if k not in _TIMES:
                _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def test_perceptron_cli_equals_python(tmp_path: Path) -> None:
    cli = _cli(tmp_path, "perceptron", "--data", "xor")
    python = run_perceptron("xor", PerceptronConfig())
    _assert_same(cli, python)
    assert python.fewest is not None and python.fewest.errors == 1


def test_three_node_cli_equals_python(tmp_path: Path) -> None:
    cli = _cli(
        tmp_path,
        "three-node",
        "--elements",
        6,
        "--subsets",
        9,
        "--seed",
        1,
        "--solvable",
        "--fewest-errors",
        "--relax-seeds",
        3,
    )
    instance = mixed_instance(6, 9, sizes=3, seed=1, kind="solvable")
    python = run_three_node(instance, ThreeNodeConfig(fewest_errors=True, relax_seeds=3))
    _assert_same(cli, python)
    assert python.decision.trainable and python.relaxation is not None


def test_three_node_user_instance_cli_equals_python(tmp_path: Path) -> None:
    path = tmp_path / "triangle.json"
    path.write_text(json.dumps({"elements": 4, "subsets": [[0, 1], [1, 2], [0, 2], [0, 1, 3]]}))
    cli = _cli(tmp_path, "three-node", "--data", path, "--relax-seeds", 0)
    python = run_three_node(str(path), ThreeNodeConfig(relax_seeds=0))
    _assert_same(cli, python)
    assert python.core.tolist() == [0, 1, 2] and python.core_check == "exhaustive"


def test_relu2_cli_equals_python(tmp_path: Path) -> None:
    cli = _cli(tmp_path, "relu2", "--data", "spirals:n=16", "--lam", "1e-2", "--sgd-seeds", 2, "--steps", 40)
    python = run_relu2("spirals:n=16", Relu2Config(lam=1e-2, sgd_seeds=2, steps=40))
    _assert_same(cli, python)
    assert python.certified and python.sgd is not None and python.sgd.below_bound == 0


def test_scaling_cli_equals_python(tmp_path: Path) -> None:
    cli = _cli(tmp_path, "scaling", "--start", 4, "--stop", 6, "--seeds", 1, "--budget", 100)
    python = run_scaling(None, ScalingConfig(start=4, stop=6, seeds=1, budget=100))
    _assert_same(cli, python)
    assert python.stopped == "complete" and python.elements.tolist() == [4, 5, 6]


def test_run_dispatches_on_the_config_type() -> None:
    assert run("xor", PerceptronConfig(fewest_errors=False)).separable is False
    with pytest.raises(UserError, match="takes a PerceptronConfig"):
        run("xor", {"fewest_errors": True})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PerceptronConfig(time_limit=0), "The 'time_limit' parameter of exact perceptron must be"),
        (lambda: PerceptronConfig(weight_bound="huge"), "The 'weight_bound' parameter of exact perceptron must be"),
        (lambda: ThreeNodeConfig(relax_seeds=-1), "The 'relax_seeds' parameter of exact three-node must be an int ≥ 0"),
        (lambda: ThreeNodeConfig(device="tpu"), "'device' parameter"),
        (lambda: Relu2Config(lam=0), "The 'lam' parameter of exact relu2 must be a finite number > 0.0"),
        (lambda: Relu2Config(patterns="some"), "'all' or 'sampled:N'"),
        (lambda: Relu2Config(optimizer="lbfgs"), "The 'optimizer' parameter of train must be one of"),
        (lambda: Relu2Config(width=0), "The 'width' parameter of exact relu2 must be an int ≥ 1"),
        (lambda: ScalingConfig(stop=3), "The 'stop' parameter of exact scaling must be an int ≥ 4"),
        (lambda: ScalingConfig(ratios=(1.0, -2.0)), "The 'ratios' parameter of exact scaling"),
        (lambda: ScalingConfig(kind="hard"), "The 'kind' parameter of exact scaling must be one of"),
    ],
)
def test_configs_validate_once_with_the_template(make, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("perceptron", "--time-limit", 0), "The 'time_limit' parameter of exact perceptron must be"),
        (("relu2", "--lam", 0), "The 'lam' parameter of exact relu2 must be"),
        (("scaling", "--ratios", "1,-2", "--sweep", "subsets"), "The 'ratios' parameter of exact scaling"),
        (("three-node", "--relax-seeds", -1), "The 'relax_seeds' parameter of exact three-node"),
    ],
)
def test_cli_prints_the_config_error(tmp_path: Path, args: tuple, message: str) -> None:
    result = runner.invoke(app, ["exact", *map(str, args), "--out", str(tmp_path / "x")], catch_exceptions=False)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "x").exists()


# The README's Python equivalents of each command, exactly as printed there (see notes/exact.md).
README_SNIPPETS = [
    """
from losslab.exact import PerceptronConfig, run_perceptron

result = run_perceptron("xor", PerceptronConfig(fewest_errors=True))  # losslab exact perceptron --data xor
print(result.summary())
""",
    """
from losslab.exact import ThreeNodeConfig, mixed_instance, run_three_node

# losslab exact three-node --elements 6 --subsets 8 --seed 0 --solvable --relax-seeds 4
instance = mixed_instance(6, 8, sizes=3, seed=0, kind="solvable")
result = run_three_node(instance, ThreeNodeConfig(relax_seeds=4))
print(result.summary()["splitting"])

# losslab exact three-node --data instance.json  (the same dict as a JSON file)
result = run_three_node({"elements": 4, "subsets": [[0, 1], [1, 2], [0, 2], [1, 3]]}, ThreeNodeConfig(relax_seeds=0))
print(result.summary()["proof"])  # the triangle {0,1},{1,2},{0,2}: no colouring splits it
""",
    """
from losslab.exact import Relu2Config, run_relu2

# losslab exact relu2 --data spirals:n=40 --lam 1e-3 --sgd-seeds 4 --steps 500
result = run_relu2("spirals:n=40", Relu2Config(lam=1e-3, sgd_seeds=4, steps=500))
print(result.certified, result.optimum, result.sgd.summary()["gap_median"])
""",
    """
from losslab.exact import ScalingConfig, run_scaling

# losslab exact scaling --budget 5 --seeds 1
result = run_scaling(None, ScalingConfig(budget=5, seeds=1))
print(result.summary()["largest_certified"])
""",
]


@pytest.mark.parametrize("snippet", README_SNIPPETS, ids=["perceptron", "three-node", "relu2", "scaling"])
def test_readme_snippets_run_as_is(snippet: str, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(snippet, "<README>", "exec"), {})
    assert capsys.readouterr().out.strip()
