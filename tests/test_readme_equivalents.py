"""Every command has its Python equivalent in the README (a ``# losslab COMMAND`` line in a Python
block, which tests/test_readme.py runs), and the NTK and spectra equivalents give the commands' arrays.

The equivalents of train, surface, interpolate, hessian, connect, instability, the studies and
exact are compared with their commands in their own test modules (test_train_runner,
test_surface_readme_equivalents, test_connectivity_runner, test_studies_*, test_exact_runner).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

import losslab
from losslab.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
PYTHON = [body for lang, body in re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S) if lang == "python"]


def _commands() -> set[str]:
    """Every command path of the CLI: 'hessian', 'exact relu2', … and 'study' for every study.

    The studies share one equivalent, ``STUDIES[name].run(config, context)``, with the
    config from ``STUDIES[name].config(preset, **settings)`` as ``--quick --set`` builds it.
    """
    root = typer.main.get_command(app)
    names = set()
    for name, command in root.commands.items():
        sub = getattr(command, "commands", None)
        names.update(f"{name} {s}" for s in sub) if sub and name != "study" else names.add(name)
    return names


def _equivalents() -> dict[str, str]:
    """Command path → the README Python block that holds its ``# losslab …`` line."""
    found = {}
    for body in PYTHON:
        for line in body.splitlines():
            match = re.match(r"\s*# losslab (\S+)(?: (\S+))?", line)
            if match:
                first, second = match.groups()
                found[first] = body
                if second:
                    found[f"{first} {second}"] = body
    return found


def test_every_command_has_a_python_equivalent() -> None:
    missing = sorted(_commands() - set(_equivalents()))
    assert not missing, f"commands without a '# losslab …' Python equivalent in the README: {missing}"


def _command_line(body: str, command: str) -> list[str]:
    line = next(line for line in body.splitlines() if line.startswith(f"# losslab {command} "))
    return shlex.split(line[2:].split(": ")[0].split("  (")[0])[1:]


def test_ntk_and_spectra_equivalents_give_the_commands_arrays(tmp_path: Path) -> None:
    body = _equivalents()["ntk"]
    assert body is _equivalents()["spectra"]
    namespace: dict = {"__name__": "readme"}
    exec(compile(body, "README.md", "exec"), namespace)
    runner = CliRunner()
    for command in ("ntk", "spectra"):
        args = _command_line(body, command)
        result = runner.invoke(app, [*args, "--out", str(tmp_path / command), "--json"], catch_exceptions=False)
        assert result.exit_code == 0, (args, result.stderr)
    cli_kernel = losslab.load(tmp_path / "ntk").result
    np.testing.assert_array_equal(namespace["zoo_kernel"].kernel, cli_kernel.kernel)
    np.testing.assert_array_equal(namespace["zoo_kernel"].eigenvalues, cli_kernel.eigenvalues)
    mine, theirs = namespace["zoo_spectra"].layers, losslab.load(tmp_path / "spectra").result.layers
    assert [layer.name for layer in mine] == [layer.name for layer in theirs]
    for a, b in zip(mine, theirs):
        np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues, err_msg=a.name)
        assert (a.fit.alpha, a.fit.alpha_low, a.fit.alpha_high, a.fit.p_value) == (
            b.fit.alpha,
            b.fit.alpha_low,
            b.fit.alpha_high,
            b.fit.p_value,
        ), a.name
