"""Activation patterns of one ReLU layer: the cells of a hyperplane arrangement.

A hidden ReLU unit with weights u ∈ R^r acts on the data X ∈ R^{n×r} through the
pattern D(u) = diag(1[X u ≥ 0]). The patterns are the cells of the central
arrangement of the n hyperplanes {u : x_k · u = 0}; in general position there are
exactly

    2 Σ_{k=0}^{r−1} C(n−1, k)

of them (Cover 1965; Pilanci & Ergen 2020 bound this by 2r(e(n−1)/r)^r), and never
more. `activation_patterns` enumerates every cell exactly; `sample_patterns` draws
patterns of Gaussian u, the sampled mode of Pilanci & Ergen for larger r.

Enumeration, by extreme rays. With rank(X) = r every cell is a pointed cone with an
extreme ray q, on which r − 1 independent hyperplanes vanish. For each (r−1)-subset
of rows we take the ray q spanning its null space; the cells touching q agree with
sign(X q) on the rows with x·q ≠ 0 and, on the rows Z through q, follow the cells of
the arrangement of Z inside q^⊥ (one dimension lower; recursion). In general position
Z is the subset itself and its cells are all 2^{r−1} sign choices. Cells come in
antipodal pairs (u and −u), so each ray is visited in one direction only.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from losslab.errors import UserError, check_int

__all__ = ["activation_patterns", "pattern_count_bound", "sample_patterns"]

# Relative tolerance for "x · q = 0": floating-point data in general position sit
# ~1e-3 or more away from zero after normalization, while exact incidences (grids,
# duplicated points, Boolean data) give round-off of order 1e-16.
_ZERO = 1e-10
_RAYS_PER_CHUNK = 20_000  # bounds the [rays · 2^(r−1), n] block held at once (≈ 16 MB at n = 100)


def pattern_count_bound(n: int, rank: int) -> int:
    """2 Σ_{k<r} C(n−1, k): cells of n hyperplanes through 0 ∈ R^r in general position.

    An upper bound for any n hyperplanes of rank r (Cover 1965).

    >>> pattern_count_bound(100, 4)  # 100 points in 3-D with a bias column
    323600
    """
    if n == 0:
        return 1
    return 2 * sum(math.comb(n - 1, k) for k in range(rank))


def _row_space(A: np.ndarray) -> np.ndarray:
    """A in an orthonormal basis of its row space ([m, rank]); the patterns are unchanged."""
    _, S, Vt = np.linalg.svd(A, full_matrices=False)
    rank = int((S > _ZERO * S[0]).sum()) if len(S) and S[0] > 0 else 0
    return A @ Vt[:rank].T


def _null_rays(sub: np.ndarray) -> np.ndarray:
    """For each [r−1, r] block, a vector spanning its null space (0 if the rows are dependent).

    The generalized cross product: q_j = (−1)^j det(block without column j).
    """
    count, k, r = sub.shape
    q = np.empty((count, r))
    for j in range(r):
        cols = [c for c in range(r) if c != j]
        q[:, j] = (-1) ** j * np.linalg.det(sub[:, :, cols])
    return q


def _cells(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every cell of the central arrangement with normals A [m, k] (nonzero rows), and its facets.

    Returns (cells, facets), both bool [P, m]: cells[i, l] says x_l · u > 0 in cell i;
    facets[i, l] says hyperplane l carries a facet of cell i. A facet contains an extreme
    ray of the cell, and at a ray in general position the cell is locally an orthant
    bounded by all r − 1 hyperplanes through it, so the facets of a cell are the union of
    the hyperplanes through its extreme rays (through degenerate rays: the facets of
    the local cell, by the same recursion).
    """
    A = _row_space(A)
    m, r = A.shape
    if r == 1:
        pos = A[:, 0] > 0
        return np.stack([pos, ~pos]), np.ones((2, m), dtype=bool)
    norms = np.linalg.norm(A, axis=1)
    combos = np.array(list(itertools.combinations(range(m), r - 1)), dtype=np.int64)
    signs = np.array(list(itertools.product((False, True), repeat=r - 1)))  # [2^(r−1), r−1]
    packed: list[np.ndarray] = []
    packed_facets: list[np.ndarray] = []
    degenerate: dict[bytes, np.ndarray] = {}
    for start in range(0, len(combos), _RAYS_PER_CHUNK):
        block = combos[start : start + _RAYS_PER_CHUNK]
        q = _null_rays(A[block])
        size = np.linalg.norm(q, axis=1)
        keep = size > _ZERO * np.prod(norms[block], axis=1)  # dependent rows span no ray
        block, q = block[keep], q[keep] / size[keep, None]
        values = q @ A.T  # [rays, m]
        zero = np.abs(values) <= _ZERO * norms[None, :]
        generic = zero.sum(1) == r - 1
        base = values[generic] > 0
        rows = block[generic]
        # Every sign choice on the r − 1 rows through the ray: [rays, 2^(r−1), m].
        cells = np.repeat(base[:, None, :], len(signs), axis=1)
        cells[
            np.arange(len(rows))[:, None, None],
            np.arange(len(signs))[None, :, None],
            rows[:, None, :],
        ] = signs[None]
        packed.append(np.packbits(cells.reshape(-1, m), axis=1))
        packed_facets.append(np.repeat(np.packbits(zero[generic], axis=1), len(signs), axis=0))
        for ray, z in zip(q[~generic], zero[~generic], strict=True):
            key = np.packbits(np.concatenate([z, ray @ A.T > 0])).tobytes()
            degenerate.setdefault(key, ray)
    for ray in degenerate.values():
        values = A @ ray
        through = np.abs(values) <= _ZERO * norms
        basis = np.linalg.svd(ray[None, :])[2][1:].T  # orthonormal basis of ray^⊥, [r, r−1]
        local, local_facets = _cells(A[through] @ basis)
        cells = np.repeat((values > 0)[None, :], len(local), axis=0)
        cells[:, through] = local
        facets = np.zeros_like(cells)
        facets[:, through] = local_facets
        packed.append(np.packbits(cells, axis=1))
        packed_facets.append(np.packbits(facets, axis=1))
    cells = np.concatenate(packed)
    facets = np.concatenate(packed_facets)
    valid = np.packbits(np.ones(m, dtype=bool))  # complement the m pattern bits, not the padding
    # The antipodal cell (−u) has the complementary pattern and the same facets.
    cells, facets = _merge_rows(np.concatenate([cells, cells ^ valid]), np.concatenate([facets, facets]))
    unpack = lambda bits: np.unpackbits(bits, axis=1, count=m).astype(bool)  # noqa: E731
    return unpack(cells), unpack(facets)


def _merge_rows(packed: np.ndarray, extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a uint8 matrix (sorted), with ``extra`` OR-ed over each group of equal rows.

    Rows are compared as 64-bit words: a lexsort of a few integer keys is ~25× faster
    than ``np.unique(axis=0)`` on millions of rows.
    """
    width = packed.shape[1]
    words = np.ascontiguousarray(np.pad(packed, ((0, 0), (0, -width % 8)))).view(np.uint64)
    order = np.lexsort(words.T[::-1])
    ordered = words[order]
    starts = np.flatnonzero(np.r_[True, (ordered[1:] != ordered[:-1]).any(1)])
    rows = np.ascontiguousarray(ordered[starts]).view(np.uint8)[:, :width]
    merged = np.bitwise_or.reduceat(extra[order], starts, axis=0) if extra is not None else rows
    return rows, merged


def activation_patterns(
    X: np.ndarray, *, max_patterns: int = 1_000_000, facets: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Every activation pattern 1[X u ≥ 0] of a ReLU unit on the rows of X, as bool [P, n].

    X should carry a bias column (a column of ones): then no row is zero and every
    closed pattern is the pattern of an open cell. Refuses (a `UserError`) when the
    general-position count exceeds ``max_patterns``. With ``facets=True`` also returns
    bool [P, n] marking the rows whose hyperplanes carry a facet of each cell: the cone
    {u : (2D − I) X u ≥ 0} is cut out by those rows alone.

    >>> X = np.array([[0., 1.], [1., 1.], [2., 1.]])  # three points on a line, with bias
    >>> len(activation_patterns(X))  # 2 · (1 + 2) cells: thresholds between the points, both ways
    6
    """
    X = np.asarray(X, dtype=np.float64)
    check_int(max_patterns, "max_patterns", "activation_patterns", low=1)
    if X.ndim != 2 or len(X) == 0:
        raise UserError(f"activation_patterns needs a [n, r] matrix with n ≥ 1. Got shape {X.shape}.")
    if (np.abs(X).max(1) == 0).any():
        raise UserError("A row of X is zero, so its pattern entry is undefined: append a bias column of ones.")
    distinct = np.unique(X, axis=0)
    rank = int(np.linalg.matrix_rank(distinct))
    bound = pattern_count_bound(len(distinct), rank)
    if bound > max_patterns:
        raise UserError(
            f"{len(X)} points of rank {rank} give up to {bound:,} activation patterns, more than "
            f"max_patterns={max_patterns:,} for exact enumeration: use sampled patterns "
            "(--patterns sampled:N) or fewer points."
        )
    # Duplicated rows share a hyperplane: enumerate the distinct ones and copy the columns back.
    _, inverse = np.unique(X, axis=0, return_inverse=True)
    cells, cell_facets = _cells(distinct)
    inverse = inverse.reshape(-1)
    return (cells[:, inverse], cell_facets[:, inverse]) if facets else cells[:, inverse]


def sample_patterns(X: np.ndarray, count: int, *, seed: int = 0) -> np.ndarray:
    """The distinct patterns 1[X u ≥ 0] of ``count`` draws u ~ N(0, I) (Pilanci & Ergen 2020).

    A subset of all patterns: a convex program over it is optimal over those patterns
    only, so its value is an upper bound on the global optimum.
    """
    X = np.asarray(X, dtype=np.float64)
    check_int(count, "count", "sample_patterns", low=1)
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((X.shape[1], count))
    rows, _ = _merge_rows(np.packbits((X @ U >= 0).T, axis=1))
    return np.unpackbits(rows, axis=1, count=len(X)).astype(bool)
