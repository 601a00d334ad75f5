"""The layers below the analyses import none of them (issue 13: the import circle of 39 files).

Data flows down the layer table of DESIGN.md; `store` used to import every analysis
package (so their result types registered) and the package root (for its version),
and every analysis imports `store`. This reads the import statements of each module
below the analyses, including imports inside functions, and fails on any that reaches
an analysis package or the package root (which imports `losslab.train`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "losslab"

BELOW_THE_ANALYSES = ["store", "parallel", "data", "models", "objective"]
LOW_MODULES = ["errors.py", "_io.py", "_lockfile.py", "_loading.py", "_version.py"]
ANALYSES = {"surface", "curvature", "connectivity", "exact", "studies", "train", "report", "cli"}


def low_modules() -> list[Path]:
    files = [PACKAGE / name for name in LOW_MODULES if (PACKAGE / name).is_file()]
    for package in BELOW_THE_ANALYSES:
        files.extend(sorted((PACKAGE / package).rglob("*.py")))
    return files


def module_name(file: Path) -> str:
    parts = list(file.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(file: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``file``."""
    return imports_of(file.read_text(), module_name(file), is_package=file.name == "__init__.py")


def imports_of(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, read as the module ``module``.

    Relative imports are resolved; ``from losslab import x`` gives ``losslab.x``.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target == "losslab":
                found.extend((node.lineno, f"losslab.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, target))
    return found


def forbidden(name: str) -> str | None:
    """Why importing ``name`` from below the analyses is wrong, or None."""
    parts = name.split(".")
    if parts[0] != "losslab":
        return None
    if len(parts) == 1:
        return "the package root imports losslab.train"
    if parts[1] in ANALYSES:
        return f"losslab.{parts[1]} is an analysis package"
    if len(parts) == 2 and not (PACKAGE / parts[1]).exists() and not (PACKAGE / f"{parts[1]}.py").exists():
        return f"'{parts[1]}' comes from the package root, which imports losslab.train"
    return None


def test_the_scan_sees_the_modules_and_their_imports() -> None:
    files = low_modules()
    names = {module_name(f) for f in files}
    assert {"losslab.store.run", "losslab.store.chunks", "losslab.parallel.executor", "losslab.errors"} <= names
    assert "losslab._io" in {m for _, m in imported(PACKAGE / "store" / "chunks.py")}


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("import losslab.train", "analysis package"),
        ("from losslab import __version__", "package root"),
        ("from losslab.surface.slices import plane", "analysis package"),
        ("def f():\n    from ..curvature import lanczos", "analysis package"),
        ("from . import chunks\nfrom .. import studies", "analysis package"),
        ("import losslab", "package root"),
    ],
)
def test_the_check_catches_each_kind_of_import(source: str, reason: str) -> None:
    """The check itself can fail: each way the old store imported an analysis is caught."""
    reasons = [forbidden(name) for _, name in imports_of(source, "losslab.store.run")]
    assert any(r is not None and reason in r for r in reasons), (source, reasons)


def test_allowed_imports_pass() -> None:
    source = "from losslab.errors import UserError\nfrom . import chunks\nimport numpy\nfrom losslab import _io"
    assert [forbidden(name) for _, name in imports_of(source, "losslab.store.run")] == [None] * 4


def test_no_module_below_the_analyses_imports_an_analysis() -> None:
    problems = [
        f"{file.relative_to(SRC)}:{line} imports {name} ({why})"
        for file in low_modules()
        for line, name in imported(file)
        if (why := forbidden(name)) is not None
    ]
    assert not problems, "\n".join(problems)


LOAD_LAZILY = """
import json, sys
import losslab
assert "losslab.studies" not in sys.modules, "importing losslab must not import the studies"
run = losslab.load(sys.argv[1])
hostile = losslab.store.serialize.resolve_type
try:
    hostile("xml.dom.minidom:Node")
except KeyError:
    pass
print(json.dumps({
    "type": type(run.result).__module__ + ":" + type(run.result).__qualname__,
    "studies_imported": "losslab.studies.restarts" in sys.modules,
    "hostile_imported": "xml.dom.minidom" in sys.modules,
}))
"""


@pytest.mark.parametrize("schema", [2, 1])
def test_load_imports_a_result_type_only_when_it_meets_its_name(tmp_path: Path, schema: int) -> None:
    """A fresh process reads a study result without having imported the studies (and reads schema-1 files)."""
    import json
    import os
    import subprocess
    import sys

    from losslab.store import RunDir
    from losslab.studies.restarts import RestartsResult

    run = RunDir.create(tmp_path / "r", command="study restarts", config={})
    run.save_result("study", RestartsResult(problems=[], config={"preset": "quick"}))
    run.complete({})
    manifest = json.loads((tmp_path / "r" / "run.json").read_text())
    assert manifest["results"]["study"]["value"]["__type__"] == "losslab.studies.restarts:RestartsResult"
    if schema == 1:  # as the code before module:qualname names wrote it
        manifest["schema"] = 1
        manifest["results"]["study"]["value"]["__type__"] = "RestartsResult"
        (tmp_path / "r" / "run.json").write_text(json.dumps(manifest))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", LOAD_LAZILY, str(tmp_path / "r")], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    assert facts == {
        "type": "losslab.studies.restarts:RestartsResult",
        "studies_imported": True,
        "hostile_imported": False,  # only losslab's own modules are imported on demand
    }
