"""Set-splitting instances from the user, generated ones with mixed subset sizes, and proofs.

A user instance is a JSON file ``{"elements": n, "subsets": [[0, 1, 2], [1, 3], …]}`` or a
Python function (``package.module:function`` or ``path/to/file.py:function``) returning
``(n, subsets)``, the same dict, or a `SetSplittingInstance`. Elements are 0 … n−1;
every subset must be non-empty, inside the ground set, list each element once and
differ from the other subsets. A one-element subset is allowed: no colouring splits it,
and its point e_i is then labelled both − (as a unit vector) and + (as a subset).

When no splitting exists, `unsplittable_core` extracts the proof a reader can check: a
minimal family of the subsets that no colouring splits (deletion filter: drop each
subset in turn, keep it out if the rest stays unsplittable), verified by enumerating
every colouring of the core's own elements when there are at most
`BRUTE_FORCE_LIMIT` of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from losslab._loading import is_user_spec, load_callable
from losslab.data.set_splitting import KINDS, SetSplittingInstance, set_splitting_instance
from losslab.errors import UserError, check_choice, check_int
from losslab.exact.three_node import BRUTE_FORCE_LIMIT, brute_force_splitting, train_three_node

__all__ = ["instance_from_subsets", "load_instance", "mixed_instance", "parse_sizes", "unsplittable_core"]

_CORE_BRUTE = 16  # sub-families on at most this many elements are decided by enumeration (≤ 2^15 colourings, ms)


def instance_from_subsets(elements: Any, subsets: Any, *, source: str = "the instance") -> SetSplittingInstance:
    """A validated `SetSplittingInstance` (kind 'user') from a ground-set size and a list of subsets.

    >>> instance_from_subsets(3, [[0, 1], [1, 2], [0, 2]]).splits(np.array([True, False, True]))
    False
    """
    if isinstance(elements, bool) or not isinstance(elements, (int, np.integer)) or int(elements) < 1:
        raise UserError(f"The 'elements' of {source} must be an int ≥ 1 (the ground set 0 … n−1). Got {elements!r}.")
    n = int(elements)
    if isinstance(subsets, np.ndarray) and subsets.ndim == 2 and subsets.dtype == bool:
        subsets = [np.flatnonzero(row).tolist() for row in subsets]
    if isinstance(subsets, (str, bytes)) or not isinstance(subsets, Sequence | np.ndarray) or len(subsets) == 0:
        raise UserError(
            f"The 'subsets' of {source} must be a non-empty list of lists of elements, e.g. [[0, 1, 2], [1, 3]]. "
            f"Got {subsets!r:.80}."
        )
    matrix = np.zeros((len(subsets), n), dtype=bool)
    seen: dict[frozenset[int], int] = {}
    for j, subset in enumerate(subsets):
        if isinstance(subset, (str, bytes)) or not isinstance(subset, Sequence | np.ndarray):
            raise UserError(f"Subset {j} of {source} must be a list of elements. Got {subset!r:.60}.")
        if len(subset) == 0:
            raise UserError(f"Subset {j} of {source} is empty: every subset needs at least one element; remove it.")
        for element in subset:
            if isinstance(element, bool) or not isinstance(element, (int, np.integer)):
                raise UserError(f"Subset {j} of {source} holds {element!r}, not an element: elements are ints.")
            if not 0 <= int(element) < n:
                raise UserError(
                    f"Subset {j} of {source} holds element {int(element)}, outside the ground set 0 … {n - 1} "
                    f"('elements' is {n}): fix the element or raise 'elements'."
                )
            if matrix[j, int(element)]:
                raise UserError(f"Subset {j} of {source} lists element {int(element)} twice: list each element once.")
            matrix[j, int(element)] = True
        key = frozenset(int(e) for e in subset)
        if key in seen:
            raise UserError(
                f"Subsets {seen[key]} and {j} of {source} are the same set {sorted(key)}: remove the repeat."
            )
        seen[key] = j
    return SetSplittingInstance(n, matrix, "user", 0)


def load_instance(spec: str) -> SetSplittingInstance:
    """The instance a JSON file or a Python function gives (module docstring)."""
    if spec.endswith(".json"):
        path = Path(spec)
        if not path.is_file():
            raise UserError(f"The instance file {spec!r} does not exist: check the path.")
        try:
            value = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UserError(f"The instance file {spec!r} is not valid JSON ({exc}): fix it.") from None
        return _coerce(value, f"the instance file {spec!r}")
    if is_user_spec(spec):
        fn = load_callable(spec, "instance")
        try:
            value = fn()
        except Exception as exc:  # the user's function failed: say which and how
            raise UserError(
                f"The instance function {spec!r} raised {type(exc).__name__}: {exc}. Fix that function."
            ) from exc
        return _coerce(value, f"the instance from {spec!r}")
    raise UserError(
        f"The instance {spec!r} is neither a .json file nor a function: write path/to/instance.json, "
        "path/to/file.py:function or package.module:function."
    )


def _coerce(value: Any, source: str) -> SetSplittingInstance:
    if isinstance(value, SetSplittingInstance):
        return instance_from_subsets(value.elements, value.subsets, source=source)
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"elements", "subsets"})
        if unknown or not {"elements", "subsets"} <= set(value):
            what = f"has the unknown key {unknown[0]!r}" if unknown else "lacks 'elements' or 'subsets'"
            raise UserError(
                f"{source[0].upper()}{source[1:]} {what}: give exactly "
                '{"elements": n, "subsets": [[0, 1, 2], [1, 3], ...]}.'
            )
        return instance_from_subsets(value["elements"], value["subsets"], source=source)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return instance_from_subsets(value[0], value[1], source=source)
    raise UserError(
        f"{source[0].upper()}{source[1:]} must be (elements, subsets), "
        '{"elements": n, "subsets": [...]} or a SetSplittingInstance. '
        f"Got a {type(value).__name__}."
    )


def parse_sizes(text: str | int | Sequence[int]) -> tuple[int, ...]:
    """'3' → (3,); '2,3,4' → (2, 3, 4); ints and sequences pass through (each ≥ 1, no repeats)."""
    if isinstance(text, str):
        try:
            sizes = tuple(int(part) for part in text.split(",") if part.strip())
        except ValueError:
            sizes = ()
        if not sizes:
            raise UserError(
                f"The '--size' option must be subset sizes separated by commas, e.g. 3 or 2,3,4. Got {text!r}."
            )
    else:
        sizes = (text,) if isinstance(text, int) else tuple(text)
    for size in sizes:
        check_int(size, "size", "set_splitting", low=1)
    if len(set(sizes)) != len(sizes):
        raise UserError(f"The 'size' parameter of set_splitting lists a size twice: give each once. Got {sizes}.")
    return sizes


def mixed_instance(
    elements: int, subsets: int, *, sizes: int | Sequence[int] = (3,), seed: int = 0, kind: str = "random"
) -> SetSplittingInstance:
    """A seeded instance whose subsets have the ``sizes`` given (each drawn uniformly among them).

    One size is `losslab.data.set_splitting_instance` itself (the same instance). With
    several, 'solvable' plants a colouring and keeps only subsets it splits, and
    'unsolvable' plants a triangle of pairs (not 2-colourable) before drawing the rest.
    """
    sizes = parse_sizes(sizes)
    if len(sizes) == 1:
        return set_splitting_instance(elements, subsets, seed=seed, kind=kind, size=sizes[0])
    owner = "set_splitting"
    check_choice(kind, "kind", owner, KINDS)
    check_int(elements, "elements", owner, low=max(max(sizes), 3 if kind == "unsolvable" else 1))
    check_int(subsets, "subsets", owner, low=3 if kind == "unsolvable" else 1)
    check_int(seed, "seed", owner)
    rng = np.random.default_rng([seed, elements, subsets, *sizes, KINDS.index(kind), 1])
    planted = None
    if kind == "solvable":
        planted = np.zeros(elements, dtype=bool)
        while not 0 < planted.sum() < elements:
            planted = rng.random(elements) < 0.5
        ones = int(planted.sum())
        available = sum(math.comb(elements, s) - math.comb(ones, s) - math.comb(elements - ones, s) for s in sizes)
    else:
        available = sum(math.comb(elements, s) for s in sizes)
    rows: list[frozenset[int]] = []
    if kind == "unsolvable":
        a, b, c = (int(v) for v in rng.permutation(elements)[:3])
        rows = [frozenset((a, b)), frozenset((b, c)), frozenset((a, c))]
        available -= 3 if 2 in sizes else 0
    if subsets > len(rows) + available:
        raise UserError(
            f"Only {available} distinct subsets of sizes {sizes} exist for this instance, fewer than the "
            f"{subsets} asked for: ask for fewer subsets or more elements."
        )
    seen = set(rows)
    while len(rows) < subsets:
        size = int(rng.choice(sizes))
        candidate = frozenset(int(v) for v in rng.choice(elements, size, replace=False))
        members = list(candidate)
        if candidate in seen or (planted is not None and planted[members].all() | (~planted[members]).all()):
            continue
        seen.add(candidate)
        rows.append(candidate)
    order = rng.permutation(subsets)
    matrix = np.zeros((subsets, elements), dtype=bool)
    for r, index in enumerate(order):
        matrix[r, sorted(rows[index])] = True
    core = np.flatnonzero(order < 3) if kind == "unsolvable" else None
    return SetSplittingInstance(elements, matrix, kind, seed, planted, core)


def _restricted(instance: SetSplittingInstance, rows: Sequence[int]) -> SetSplittingInstance:
    """The sub-family ``rows`` on the elements it uses (renumbered 0 … k−1)."""
    sub = instance.subsets[list(rows)]
    return SetSplittingInstance(int(sub.any(0).sum()), sub[:, sub.any(0)], "core", 0)


def _splittable(instance: SetSplittingInstance, time_limit: float) -> bool:
    if instance.elements <= _CORE_BRUTE:
        return brute_force_splitting(instance) is not None
    X, y = instance.points()
    return train_three_node(X, y, weight_bound="theorem", instance=instance, time_limit=time_limit).trainable


def unsplittable_core(instance: SetSplittingInstance, *, time_limit: float = 60.0) -> tuple[np.ndarray, str]:
    """Indices of a minimal unsplittable family of ``instance``'s subsets, and how it was checked.

    The check is 'exhaustive' (every colouring of the core's elements enumerated) when the
    core uses at most `BRUTE_FORCE_LIMIT` elements, else 'milp' (HiGHS's proof of
    infeasibility of the core's 3-node MILP). Raises `UserError` if the instance splits.
    """
    if _splittable(_restricted(instance, range(instance.subset_count)), time_limit):
        raise UserError("This set-splitting instance has a splitting, so it has no unsplittable core.")
    keep = list(range(instance.subset_count))
    for j in range(instance.subset_count):
        trial = [i for i in keep if i != j]
        if trial and not _splittable(_restricted(instance, trial), time_limit):
            keep = trial
    core = _restricted(instance, keep)
    if core.elements <= BRUTE_FORCE_LIMIT:
        if brute_force_splitting(core) is not None:
            raise AssertionError("the unsplittable core splits: the MILP and brute force disagree")
        return np.asarray(keep, dtype=np.int64), "exhaustive"
    return np.asarray(keep, dtype=np.int64), "milp"
