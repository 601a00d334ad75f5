"""Set-splitting instances and the Blum–Rivest points that encode them.

Set splitting (Garey & Johnson 1979, problem SP4): given a ground set {0, …, n−1} and
subsets c_1 … c_m, is there a colouring of the elements with two colours such that no
subset is monochromatic? Blum & Rivest (1992) reduce it to training a network of
three threshold units: two hidden units feeding an AND output. The points live in
{0, 1}^n:

- the origin, labelled + (y = 1);
- each unit vector e_i, labelled − (y = 0);
- the indicator vector of each subset c_j, labelled + (y = 1);

and the network classifies all of them correctly if and only if a splitting exists
(the proof is in `losslab.exact.three_node`).

Instances are seeded. ``kind='solvable'`` plants a splitting (a random colouring; only
subsets that it splits are drawn), ``kind='unsolvable'`` plants a core that no
colouring splits (the Fano plane when there is room for it, else a triangle of
pairs, which is not 2-colourable), so any instance containing it is unsolvable;
``kind='random'`` draws subsets uniformly and may be either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from losslab.data.builtin import DATASETS
from losslab.data.dataset import Dataset
from losslab.errors import UserError, check_choice, check_int

__all__ = ["FANO_PLANE", "KINDS", "SetSplittingInstance", "set_splitting", "set_splitting_instance"]

KINDS = ("random", "solvable", "unsolvable")

# The seven lines of the Fano plane: the smallest 3-uniform hypergraph that no
# 2-colouring splits (every colouring of 7 points leaves a monochromatic line).
FANO_PLANE = ((0, 1, 2), (0, 3, 4), (0, 5, 6), (1, 3, 5), (1, 4, 6), (2, 3, 6), (2, 4, 5))


@dataclass(frozen=True)
class SetSplittingInstance:
    """A set-splitting instance: ``subsets`` is a bool [m, n] incidence matrix.

    ``planted`` is a colouring (bool [n]) that splits every subset when ``kind`` is
    'solvable'; ``core`` lists the rows of a planted unsplittable core when ``kind`` is
    'unsolvable'. Both are None otherwise.
    """

    elements: int
    subsets: np.ndarray
    kind: str
    seed: int
    planted: np.ndarray | None = None
    core: np.ndarray | None = None

    @property
    def subset_count(self) -> int:
        return int(self.subsets.shape[0])

    def splits(self, colouring: np.ndarray) -> bool:
        """True when ``colouring`` (bool [n]) leaves no subset monochromatic."""
        colouring = np.asarray(colouring, dtype=bool)
        inside = self.subsets & colouring[None, :]
        outside = self.subsets & ~colouring[None, :]
        return bool((inside.any(1) & outside.any(1)).all())

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """The Blum–Rivest points: X [1 + n + m, n] in {0, 1} and labels y ∈ {0, 1} (1 = +).

        Rows are the origin, then e_0 … e_{n−1}, then the subsets' indicator vectors.
        """
        n, m = self.elements, self.subset_count
        X = np.concatenate([np.zeros((1, n)), np.eye(n), self.subsets.astype(np.float64)])
        y = np.concatenate([np.ones(1), np.zeros(n), np.ones(m)]).astype(np.int64)
        return X, y

    def dataset(self) -> Dataset:
        """The points as a two-class `Dataset` (no test split: the instance is the whole task)."""
        X, y = self.points()
        meta = {
            "elements": self.elements,
            "subsets": self.subsets.astype(np.int64).tolist(),
            "kind": self.kind,
            "seed": self.seed,
        }
        name = f"set_splitting(n={self.elements},m={self.subset_count},{self.kind},seed={self.seed})"
        return Dataset(name, torch.tensor(X, dtype=torch.float32), torch.tensor(y), num_classes=2, meta=meta)


def set_splitting_instance(
    elements: int, subsets: int, *, seed: int = 0, kind: str = "random", size: int = 3
) -> SetSplittingInstance:
    """A seeded random instance with ``subsets`` distinct subsets of ``size`` elements.

    Three-element subsets make the problem hypergraph 2-colouring of a 3-uniform
    hypergraph, which is NP-complete (Lovász 1973); ``size=2`` gives graph
    bipartiteness, which is easy. An 'unsolvable' instance with fewer than 7 elements or
    7 subsets plants a triangle of 2-element subsets instead of the Fano plane.
    """
    owner = "set_splitting"
    check_int(size, "size", owner, low=2)
    check_int(elements, "elements", owner, low=max(size, 3) if kind == "unsolvable" else size)
    check_int(subsets, "subsets", owner, low=1)
    check_int(seed, "seed", owner)
    check_choice(kind, "kind", owner, KINDS)
    rng = np.random.default_rng([seed, elements, subsets, size, KINDS.index(kind)])
    rows: list[frozenset[int]] = []
    planted = core = None
    if kind == "solvable":
        # A uniformly random colouring, redrawn until both colours occur and it splits enough
        # subsets.
        for _ in range(1000):
            planted = rng.random(elements) < 0.5
            if 0 < planted.sum() < elements and _count_split(planted, size) >= subsets:
                break
        assert planted is not None
        splits = lambda c: bool(planted[list(c)].any() and (~planted[list(c)]).any())  # noqa: E731
        available = _count_split(planted, size)
    else:
        splits = lambda c: True  # noqa: E731
        available = math.comb(elements, size)
    if kind == "unsolvable":
        chosen = rng.permutation(elements)
        if elements >= 7 and subsets >= 7 and size == 3:
            rows = [frozenset(int(chosen[i]) for i in line) for line in FANO_PLANE]
        elif subsets >= 3:
            a, b, c = (int(v) for v in chosen[:3])
            rows = [frozenset((a, b)), frozenset((b, c)), frozenset((a, c))]
        else:
            raise UserError(
                f"An unsolvable set-splitting instance needs at least 3 subsets (a triangle core). Got {subsets}."
            )
    core_size = len(rows)
    available -= sum(len(row) == size for row in rows)  # core rows already taken
    if subsets > len(rows) + available:
        raise UserError(
            f"Only {available} distinct {size}-element subsets exist for this instance, "
            "fewer than the "
            f"{subsets} asked for: ask for fewer subsets or more elements."
        )
    seen = set(rows)
    while len(rows) < subsets:
        candidate = frozenset(int(v) for v in rng.choice(elements, size, replace=False))
        if candidate not in seen and splits(candidate):
            seen.add(candidate)
            rows.append(candidate)
    order = rng.permutation(subsets)
    if kind == "unsolvable":
        core = np.flatnonzero(order < core_size)
    matrix = np.zeros((subsets, elements), dtype=bool)
    for r, index in enumerate(order):
        matrix[r, sorted(rows[index])] = True
    return SetSplittingInstance(elements, matrix, kind, seed, planted, core)


def _count_split(colouring: np.ndarray, size: int) -> int:
    """How many ``size``-subsets a colouring splits: all of them minus the monochromatic ones."""
    ones = int(colouring.sum())
    zeros = len(colouring) - ones
    return math.comb(len(colouring), size) - math.comb(ones, size) - math.comb(zeros, size)


def set_splitting(elements: int = 6, subsets: int = 9, seed: int = 0, kind: str = "random", size: int = 3) -> Dataset:
    """The Blum–Rivest points of a seeded set-splitting instance, as a two-class dataset.

    As a data spec: ``set_splitting:elements=8,subsets=12,kind=unsolvable,seed=1``.
    """
    return set_splitting_instance(elements, subsets, seed=seed, kind=kind, size=size).dataset()


DATASETS["set_splitting"] = set_splitting
