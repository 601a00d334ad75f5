"""The Blum–Rivest 3-node network: two threshold units feeding an AND, trained exactly.

Training it is NP-complete (Blum & Rivest 1992), by reduction from set splitting. The
points of an instance (`losslab.data.set_splitting`) are the origin (+), the unit
vectors e_i (−) and the subsets' indicator vectors c_j (+), and:

    a splitting exists  ⇔  the network classifies every point correctly.

(⇐) Let unit 1 (w, b) reject some e_i's; put them in S₁ and the rest in S₂ (unit 2
rejects those, as the AND must). If a subset c ⊆ S₁ (|c| ≥ 2): the origin is + so
b > 0, each e_i in c is − so w_i ≤ −b, hence w·c + b ≤ −(|c| − 1) b < 0 and unit 1
rejects c, which is +. The same holds for S₂, so (S₁, S₂) splits every subset.
(⇒) Given a splitting (S₁, S₂), unit 1 has w_i = −2 on S₁, 2n elsewhere, b = 1, and
unit 2 the same with S₂: the origin gets 1, e_i ∈ S₁ gets −1 from unit 1, and a
subset, which meets S₂, gets at least 2n − 2(n − 1) + 1 = 3 from unit 1 (likewise
from unit 2). Every point is classified with margin 1 and |weights| ≤ 2n.

The MILP. Variables (w₁, b₁, w₂, b₂) ∈ [−M, M], and for each negative point a binary
z_k choosing the unit that rejects it:

    positives:  x̃_k·(w_j, b_j) ≥ 1                      (j = 1, 2)
    negatives:  x̃_k·(w₁, b₁) ≤ −1 + B_k z_k,   x̃_k·(w₂, b₂) ≤ −1 + B_k (1 − z_k)

with B_k = 1 + M‖x̃_k‖₁, which switches a constraint off. Swapping the units maps
solutions to solutions, so z of the first negative is fixed to 0. The fewest-errors
variant adds a binary e_k per point that switches all of its constraints off, and
minimizes Σ e_k. On what M rests: margin 1 costs nothing (rescaling); for set-splitting
instances the theorem's network has |weights| ≤ 2n, so M = 2n is exact for the
decision ('theorem'); for any 0/1 data the Cramer–Hadamard bound of
`losslab.exact.threshold` is exact for both variants (each unit solves a feasible
margin-1 system on the points it must get right). A solution is re-solved as two LPs
with its binaries fixed and checked by evaluating the network on every point.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from losslab.data.set_splitting import SetSplittingInstance
from losslab.errors import UserError, check_float, check_int
from losslab.exact.solver import SolverError, solve_milp
from losslab.exact.threshold import big_m, binary_labels, fit_unit, resolve_weight_bound
from losslab.store import register_result, summary_of

__all__ = [
    "ThreeNodeFit",
    "ThreeNodeMilp",
    "ThreeNodeResult",
    "and_outputs",
    "brute_force_splitting",
    "certify_three_node",
    "network_splitting",
    "splitting_network",
    "train_three_node",
]

BRUTE_FORCE_LIMIT = 22  # 2^21 colourings: about a second of vectorized checks


@register_result
@dataclass
class ThreeNodeFit:
    """An exact answer for the 3-node AND network on (X, y).

    ``errors`` is the number of points the returned network (``W`` [2, d], ``b`` [2])
    misclassifies, counted by evaluating it; for the decision variant it is 0 when
    ``trainable`` and None when the MILP proved that no network fits every point.
    ``exact`` says whether that proof covers all weights or only [−M, M] (``note``).
    """

    variant: str
    trainable: bool
    errors: int | None
    W: np.ndarray
    b: np.ndarray
    weight_bound: float
    exact: bool
    note: str
    nodes: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        names = ("variant", "trainable", "errors", "exact", "weight_bound", "nodes")
        return summary_of(self, *names, seconds=round(self.seconds, 4))


@register_result
@dataclass
class ThreeNodeResult:
    """A set-splitting instance certified both ways: the MILP and brute-force set splitting.

    ``subsets`` is the incidence matrix [m, n]; ``splitting`` the colouring (0/1 per
    element) read off the trained network (unit 1's rejections), or a brute-force
    splitting, or empty when none exists; ``splitting_exists`` is 1/0 from brute
    force, −1 when n was too large to enumerate; ``agrees`` says the theorem held.
    ``core`` (when no splitting exists and a proof was asked for) lists the rows of a
    minimal unsplittable family, checked as ``core_check`` says ('exhaustive' or 'milp');
    ``source`` names where a user instance came from.
    """

    elements: int
    subsets: np.ndarray
    kind: str
    seed: int
    decision: ThreeNodeFit
    splitting: np.ndarray
    splitting_exists: int
    brute_seconds: float
    agrees: bool | None
    fewest: ThreeNodeFit | None = None
    relaxation: Any = None
    core: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    core_check: str = ""
    source: str = ""

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "elements": self.elements,
            "subsets": int(len(self.subsets)),
            "kind": self.kind,
            **({"source": self.source} if self.source else {"seed": self.seed}),
            "trainable": self.decision.trainable,
            "exact": self.decision.exact,
            "milp_seconds": round(self.decision.seconds, 4),
            "nodes": self.decision.nodes,
            "splitting_exists": None if self.splitting_exists < 0 else bool(self.splitting_exists),
            "brute_seconds": round(self.brute_seconds, 4),
            "theorem_holds": self.agrees,
        }
        if len(self.splitting):
            colour = self.splitting.astype(bool)
            out["splitting"] = {"S1": np.flatnonzero(~colour).tolist(), "S2": np.flatnonzero(colour).tolist()}
        if len(self.core):
            out["proof"] = {
                "unsplittable_subsets": [np.flatnonzero(self.subsets[j]).tolist() for j in self.core],
                "rows": self.core.tolist(),
                "checked": self.core_check,
            }
        if self.fewest is not None:
            out["fewest_errors"] = self.fewest.errors
        if self.relaxation is not None:
            out["relaxation"] = self.relaxation.summary()
        return out


def and_outputs(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The network's outputs: 1 iff both units say + (w_j·x + b_j > 0), bool [n]."""
    return ((np.asarray(X, dtype=np.float64) @ np.asarray(W, dtype=np.float64).T + np.asarray(b)) > 0).all(1)


def _weight_bound(
    X: np.ndarray, requested: float | str, instance: SetSplittingInstance | None, variant: str
) -> tuple[float, bool, str]:
    if requested == "theorem" or (requested == "auto" and instance is not None and variant == "decision"):
        if instance is None or variant != "decision":
            raise UserError(
                "weight_bound='theorem' holds for the decision variant on a set-splitting "
                "instance only: "
                "use 'auto' or a number."
            )
        M = 2.0 * instance.elements
        return (
            M,
            True,
            f"exact: a consistent network exists iff one with |weights| ≤ 2n = {M:g} does (Blum–Rivest)",
        )
    return resolve_weight_bound(X, requested)


def train_three_node(
    X: np.ndarray,
    y: np.ndarray,
    *,
    fewest: bool = False,
    weight_bound: float | str = "auto",
    time_limit: float = 60.0,
    instance: SetSplittingInstance | None = None,
) -> ThreeNodeFit:
    """Decide whether the 3-node AND network fits (X, y), or (``fewest``) minimize its errors.

    ``weight_bound``: 'auto' (2n for the decision on a set-splitting ``instance``, else the
    proven bound for 0/1 data), 'theorem' (2n, decision on an instance only) or a number.
    Raises `SolverError` when HiGHS stops without a proof (e.g. at ``time_limit``).
    """
    X = np.asarray(X, dtype=np.float64)
    y = binary_labels(y, "three-node")
    check_float(time_limit, "time_limit", "three-node", low=0.0, low_open=True)
    if X.ndim != 2 or len(X) != len(y):
        raise UserError(f"three-node needs inputs X [n, d] and labels y [n]. Got {X.shape} and {y.shape}.")
    variant = "fewest" if fewest else "decision"
    M, exact, note = _weight_bound(X, weight_bound, instance, variant)
    n, d = X.shape
    program = ThreeNodeMilp(X, y, M, fewest)
    outcome = solve_milp(
        *program.arrays(), time_limit=time_limit, what=f"the 3-node {variant} MILP ({n} points in {d} dimensions)"
    )
    if outcome.x is None:
        if fewest:
            raise SolverError(
                "HiGHS called the fewest-errors MILP infeasible, which cannot be.",
                status="infeasible",
            )
        return ThreeNodeFit(
            variant,
            False,
            None,
            np.zeros((2, d)),
            np.zeros(2),
            M,
            exact,
            note,
            outcome.nodes,
            outcome.seconds,
        )
    W, b = program.network(outcome.x, variant)
    errors = int((and_outputs(X, W, b) != (y == 1)).sum())
    if errors > (round(outcome.objective or 0) if fewest else 0):
        raise SolverError(
            f"The 3-node {variant} solution misclassifies {errors} points when evaluated.",
            status="unverified",
        )
    return ThreeNodeFit(variant, errors == 0, errors, W, b, M, exact, note, outcome.nodes, outcome.seconds)


class ThreeNodeMilp:
    """The MILP of the module docstring on (X, y) with weights in [−M, M] (``fewest``: with e_k).

    Variables, in order: (w₁, b₁), (w₂, b₂), z for each negative point, e for each point.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, M: float, fewest: bool) -> None:
        self.X, self.y, self.M, self.fewest = X, y, M, fewest
        n, d = X.shape
        self.Xt = np.c_[X, np.ones(n)]
        self.pos, self.neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        self.d, self.nz, self.ne = d, len(self.neg), n if fewest else 0

    def arrays(self) -> tuple[Any, ...]:
        """(c, A, lower, upper, (lo, hi), integrality) for `solve_milp`."""
        d, nz, ne, Xt = self.d, self.nz, self.ne, self.Xt
        B = big_m(self.X, self.M)
        width = 2 * (d + 1) + nz + ne
        unit = [slice(0, d + 1), slice(d + 1, 2 * (d + 1))]
        rows, lower, upper = [], [], []

        def row(k: int, j: int, z: float = 0.0, z_index: int | None = None, e: float = 0.0) -> np.ndarray:
            r = np.zeros(width)
            r[unit[j]] = Xt[k]
            if z_index is not None:
                r[2 * (d + 1) + z_index] = z
            if self.fewest:
                r[2 * (d + 1) + nz + k] = e
            return r

        for k in self.pos:
            for j in range(2):
                rows.append(row(k, j, e=B[k]))
                lower.append(1.0)
                upper.append(np.inf)
        for t, k in enumerate(self.neg):
            rows.append(row(k, 0, z=-B[k], z_index=t, e=-B[k]))
            lower.append(-np.inf)
            upper.append(-1.0)
            rows.append(row(k, 1, z=B[k], z_index=t, e=-B[k]))
            lower.append(-np.inf)
            upper.append(-1.0 + B[k])
        A = sp.csr_matrix(np.array(rows)) if rows else sp.csr_matrix((0, width))
        c = np.r_[np.zeros(2 * (d + 1) + nz), np.ones(ne)]
        lo = np.r_[np.full(2 * (d + 1), -self.M), np.zeros(nz + ne)]
        hi = np.r_[np.full(2 * (d + 1), self.M), np.ones(nz + ne)]
        if nz:
            hi[2 * (d + 1)] = 0.0  # the units are interchangeable: unit 1 rejects the first negative
        integrality = np.r_[np.zeros(2 * (d + 1)), np.ones(nz + ne)]
        return c, A, np.array(lower), np.array(upper), (lo, hi), integrality

    def wrong(self, x: np.ndarray) -> np.ndarray:
        """The points a solution gives up on (e_k = 1), bool [n]."""
        if not self.fewest:
            return np.zeros(len(self.y), dtype=bool)
        return x[2 * (self.d + 1) + self.nz :] > 0.5

    def network(self, x: np.ndarray, variant: str) -> tuple[np.ndarray, np.ndarray]:
        """(W [2, d], b [2]) re-solved as two LPs with the binaries of ``x`` fixed.

        HiGHS's integrality tolerance could otherwise shave the margin of the units returned.
        """
        d, nz = self.d, self.nz
        z = x[2 * (d + 1) : 2 * (d + 1) + nz] > 0.5
        wrong = self.wrong(x)
        W, b = np.zeros((2, d)), np.zeros(2)
        for j, rejects in enumerate((self.neg[~z], self.neg[z])):
            keep_pos, keep_neg = self.pos[~wrong[self.pos]], rejects[~wrong[rejects]]
            fit = fit_unit(np.r_[self.Xt[keep_pos], -self.Xt[keep_neg]], self.M)
            if fit is None:
                raise SolverError(f"The 3-node {variant} solution did not re-solve as an LP.", status="unverified")
            W[j], b[j] = fit
        return W, b


def splitting_network(instance: SetSplittingInstance, colouring: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The theorem's network for a splitting: unit j has −2 on S_j, 2n elsewhere, bias 1."""
    colouring = np.asarray(colouring, dtype=bool)
    n = instance.elements
    W = np.stack([np.where(~colouring, -2.0, 2.0 * n), np.where(colouring, -2.0, 2.0 * n)])
    return W, np.ones(2)


def network_splitting(instance: SetSplittingInstance, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The colouring a consistent network defines: True for the elements unit 1 does not reject."""
    return np.asarray(W, dtype=np.float64)[0] + float(b[0]) > 0


def brute_force_splitting(instance: SetSplittingInstance) -> np.ndarray | None:
    """A splitting found by enumerating the 2^(n−1) colourings (element 0 coloured 0), or None.

    The slow obvious reference for the MILP; refuses n > `BRUTE_FORCE_LIMIT`.
    """
    n = instance.elements
    check_int(n, "elements", "brute_force_splitting", high=BRUTE_FORCE_LIMIT)
    masks = instance.subsets.astype(np.int64) @ (1 << np.arange(n, dtype=np.int64))
    full = (1 << n) - 1
    chunk = 1 << 16
    for start in range(0, 1 << (n - 1), chunk):
        colourings = np.arange(start, min(start + chunk, 1 << (n - 1)), dtype=np.int64) << 1
        inside = (colourings[:, None] & masks[None, :]) != 0
        outside = ((full ^ colourings)[:, None] & masks[None, :]) != 0
        good = np.flatnonzero((inside & outside).all(1))
        if len(good):
            return ((int(colourings[good[0]]) >> np.arange(n)) & 1).astype(bool)
    return None


def certify_three_node(
    instance: SetSplittingInstance,
    *,
    fewest: bool = False,
    weight_bound: float | str = "auto",
    time_limit: float = 60.0,
    brute_force: bool = True,
) -> ThreeNodeResult:
    """The MILP decision on an instance, checked against brute-force set splitting (n ≤ 22).

    Also checks both directions of the theorem on this instance: the trained network's
    rejections form a splitting, and the splitting's network classifies every point.
    """
    X, y = instance.points()
    decision = train_three_node(X, y, weight_bound=weight_bound, time_limit=time_limit, instance=instance)
    splitting = network_splitting(instance, decision.W, decision.b) if decision.trainable else None
    if splitting is not None and not instance.splits(splitting):
        raise SolverError(
            "The trained network's rejections do not split the instance, against the theorem: "
            "this is a bug, please report it.",
            status="unverified",
        )
    exists, brute_seconds, agrees = -1, 0.0, None
    if brute_force and instance.elements <= BRUTE_FORCE_LIMIT:
        start = time.perf_counter()
        found = brute_force_splitting(instance)
        brute_seconds = time.perf_counter() - start
        exists = int(found is not None)
        agrees = bool(exists) == decision.trainable
        if found is not None:
            W, b = splitting_network(instance, found)
            agrees = agrees and bool((and_outputs(X, W, b) == (y == 1)).all())
            splitting = splitting if splitting is not None else found
    fit = (
        train_three_node(
            X,
            y,
            fewest=True,
            weight_bound="auto" if weight_bound == "theorem" else weight_bound,
            time_limit=time_limit,
        )
        if fewest
        else None
    )
    colouring = np.zeros(0, dtype=np.int64) if splitting is None else splitting.astype(np.int64)
    return ThreeNodeResult(
        instance.elements,
        instance.subsets.astype(np.int64),
        instance.kind,
        instance.seed,
        decision,
        colouring,
        exists,
        brute_seconds,
        agrees,
        fit,
    )
