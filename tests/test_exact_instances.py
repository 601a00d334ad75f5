"""User set-splitting instances (JSON, a function), mixed subset sizes, splittings and checked proofs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from losslab.cli import app
from losslab.data import set_splitting_instance
from losslab.errors import UserError
from losslab.exact import (
    ThreeNodeConfig,
    instance_from_subsets,
    load_instance,
    mixed_instance,
    run_three_node,
    unsplittable_core,
)

runner = CliRunner()
QUICK = ThreeNodeConfig(relax_seeds=0)


def _splits(subsets: list[list[int]], colouring: tuple[bool, ...]) -> bool:
    return all(len({colouring[e] for e in s}) == 2 for s in subsets)


def _splittable(n: int, subsets: list[list[int]]) -> bool:
    """The slow obvious reference: try all 2^n colourings with plain Python sets."""
    return any(_splits(subsets, c) for c in itertools.product((False, True), repeat=n))


def _write(tmp_path: Path, elements: int, subsets: list[list[int]]) -> Path:
    path = tmp_path / "instance.json"
    path.write_text(json.dumps({"elements": elements, "subsets": subsets}))
    return path


def _cli(*args: object):
    return runner.invoke(app, ["exact", "three-node", *map(str, args)], catch_exceptions=False)


MIXED_SOLVABLE = [[0, 1, 2], [1, 3], [2, 3, 4, 5], [0, 5], [1, 4]]
# A triangle of pairs (no 2-colouring) hidden among larger subsets.
UNSOLVABLE = [[0, 1, 2, 3], [1, 4], [4, 5], [1, 5], [0, 2, 5], [2, 3]]


def test_cli_takes_a_json_instance_and_reports_the_splitting(tmp_path: Path) -> None:
    path = _write(tmp_path, 6, MIXED_SOLVABLE)
    result = _cli("--data", path, "--relax-seeds", 0, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["result"]
    assert summary["trainable"] and summary["splitting_exists"] and summary["theorem_holds"]
    assert summary["kind"] == "user" and summary["source"] == str(path) and summary["subsets"] == 5
    colouring = np.zeros(6, dtype=bool)
    colouring[summary["splitting"]["S2"]] = True
    assert sorted(summary["splitting"]["S1"] + summary["splitting"]["S2"]) == list(range(6))
    assert _splits(MIXED_SOLVABLE, tuple(colouring))


def test_cli_reports_a_checked_proof_when_no_splitting_exists(tmp_path: Path) -> None:
    path = _write(tmp_path, 6, UNSOLVABLE)
    result = _cli("--data", path, "--relax-seeds", 0, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["result"]
    assert not summary["trainable"] and summary["splitting_exists"] is False and summary["theorem_holds"]
    assert "splitting" not in summary
    proof = summary["proof"]
    assert proof["checked"] == "exhaustive"
    assert sorted(map(sorted, proof["unsplittable_subsets"])) == [[1, 4], [1, 5], [4, 5]]
    assert [UNSOLVABLE[j] for j in proof["rows"]] == proof["unsplittable_subsets"]


def test_a_python_function_gives_an_instance_of_mixed_sizes(tmp_path: Path) -> None:
    module = tmp_path / "make.py"
    module.write_text("def instance():\n    return 6, [(0, 1, 2), (1, 3), (2, 3, 4, 5), (0, 5), (1, 4)]\n")
    instance = load_instance(f"{module}:instance")
    assert instance.elements == 6 and sorted(instance.subsets.sum(1).tolist()) == [2, 2, 2, 3, 4]
    result = _cli("--data", f"{module}:instance", "--relax-seeds", 0, "--out", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["result"]["trainable"] is True


@pytest.mark.parametrize("seed", range(16))
def test_random_user_instances_agree_with_brute_force(seed: int) -> None:
    # Subsets of 2–4 elements, n to 3n of them: 9 of these 16 instances split, 7 do not.
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 8))
    draws = int(rng.integers(n, 3 * n))
    sizes = [int(rng.integers(2, min(n, 4) + 1)) for _ in range(draws)]
    subsets = {tuple(sorted(rng.choice(n, k, replace=False).tolist())) for k in sizes}
    subsets = [list(s) for s in sorted(subsets)]
    result = run_three_node({"elements": n, "subsets": subsets}, QUICK)
    expected = _splittable(n, subsets)
    assert result.decision.trainable == expected and result.agrees
    if expected:
        assert _splits(subsets, tuple(result.splitting.astype(bool)))
    else:
        core = [subsets[j] for j in result.core]
        used = sorted({e for s in core for e in s})
        renumber = {e: i for i, e in enumerate(used)}
        core = [[renumber[e] for e in s] for s in core]
        assert not _splittable(len(used), core)  # the proof holds
        for drop in range(len(core)):  # and is minimal: every proper part splits
            rest = [s for i, s in enumerate(core) if i != drop]
            assert _splittable(len(used), rest)


def test_a_one_element_subset_is_its_own_proof() -> None:
    result = run_three_node({"elements": 4, "subsets": [[0, 1], [2], [1, 3]]}, QUICK)
    assert not result.decision.trainable and result.core.tolist() == [1]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"elements": 4, "subsets": [[0, 1], []]}, "Subset 1 of the instance is empty"),
        ({"elements": 4, "subsets": [[0, 4]]}, "holds element 4, outside the ground set 0 … 3"),
        ({"elements": 4, "subsets": [[0, 1, 1]]}, "lists element 1 twice"),
        ({"elements": 4, "subsets": [[0, 1], [1, 0]]}, "Subsets 0 and 1 of the instance are the same set"),
        ({"elements": 0, "subsets": [[0]]}, "'elements' of the instance must be an int ≥ 1"),
        ({"elements": 4.0, "subsets": [[0]]}, "'elements' of the instance must be an int"),
        ({"elements": 4, "subsets": []}, "non-empty list of lists"),
        ({"elements": 4, "subsets": [["a"]]}, "holds 'a', not an element"),
        ({"elements": 4}, "lacks 'elements' or 'subsets'"),
        ({"elements": 4, "subsets": [[0, 1]], "kind": "x"}, "unknown key 'kind'"),
    ],
)
def test_damaged_instances_are_one_line_user_errors(value: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        run_three_node(value, QUICK)
    assert "\n" not in str(caught.value)


def test_damaged_files_and_functions_are_user_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"elements": 3, "subsets": [[0, 1],')
    with pytest.raises(UserError, match="is not valid JSON"):
        load_instance(str(bad))
    with pytest.raises(UserError, match="does not exist"):
        load_instance(str(tmp_path / "missing.json"))
    module = tmp_path / "broken.py"
    module.write_text("def instance():\n    raise RuntimeError('no data today')\n")
    with pytest.raises(UserError, match="raised RuntimeError: no data today"):
        load_instance(f"{module}:instance")
    module.write_text("def instance():\n    return 7\n")
    with pytest.raises(UserError, match="must be \\(elements, subsets\\)"):
        load_instance(f"{module}:instance")
    with pytest.raises(UserError, match="neither a .json file nor a function"):
        load_instance("instance.txt")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--data", "{path}", "--elements", 6), "--elements cannot be used with it"),
        (("--data", "{bad}"), "holds element 9, outside the ground set"),
        (("--size", "3,x"), "'--size' option must be subset sizes"),
        (("--time-limit", 0), "The 'time_limit' parameter of exact three-node must be a finite number > 0.0"),
    ],
)
def test_cli_refuses_bad_instances_in_one_line(tmp_path: Path, args: tuple, message: str) -> None:
    path = _write(tmp_path, 6, MIXED_SOLVABLE)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"elements": 6, "subsets": [[0, 9]]}))
    args = tuple(str(a).format(path=path, bad=bad) for a in args)
    result = _cli(*args, "--relax-seeds", 0, "--out", tmp_path / "x")
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("kind", ["random", "solvable", "unsolvable"])
@pytest.mark.parametrize("seed", range(3))
def test_mixed_sizes_are_generated_as_asked(kind: str, seed: int) -> None:
    instance = mixed_instance(7, 12, sizes=(2, 3, 4), seed=seed, kind=kind)
    sizes = instance.subsets.sum(1)
    assert set(sizes.tolist()) <= {2, 3, 4} and len(set(sizes.tolist())) >= 2
    assert len({tuple(r) for r in instance.subsets}) == 12
    subsets = [np.flatnonzero(r).tolist() for r in instance.subsets]
    if kind == "solvable":
        assert _splits(subsets, tuple(instance.planted))
    if kind == "unsolvable":
        assert not _splittable(7, subsets)
    again = mixed_instance(7, 12, sizes=(2, 3, 4), seed=seed, kind=kind)
    np.testing.assert_array_equal(instance.subsets, again.subsets)
    result = run_three_node(instance, QUICK)
    assert result.decision.trainable == _splittable(7, subsets)


def test_one_size_is_the_data_generator_itself() -> None:
    np.testing.assert_array_equal(
        mixed_instance(8, 12, sizes=(3,), seed=2, kind="solvable").subsets,
        set_splitting_instance(8, 12, seed=2, kind="solvable").subsets,
    )


def test_cli_generates_mixed_sizes(tmp_path: Path) -> None:
    result = _cli(
        "--elements",
        7,
        "--subsets",
        10,
        "--size",
        "2,3",
        "--unsolvable",
        "--relax-seeds",
        0,
        "--out",
        tmp_path / "m",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["result"]
    assert summary["trainable"] is False and summary["proof"]["checked"] == "exhaustive"


def test_core_refuses_a_splittable_instance() -> None:
    with pytest.raises(UserError, match="has a splitting"):
        unsplittable_core(instance_from_subsets(3, [[0, 1], [1, 2]]))
