"""Two-layer ReLU networks with weight decay, solved to a certified global optimum.

The non-convex training problem, for a width-m network f(x) = Σ_j (x̃ · u_j)_+ α_j on
inputs with a bias column (x̃ = (x, 1)), squared loss and weight decay on both layers,

    min_{u, α}  (1/2n) ‖Σ_j (X̃ u_j)_+ α_j − y‖² + (λ/2) Σ_j (‖u_j‖² + α_j²),

has the same optimal value, for every m ≥ m*, as the convex program over the
activation patterns D_i = diag(1[X̃ u ≥ 0]) (Pilanci & Ergen 2020, Theorem 1)

    p* = min_{v_i, w_i ∈ K_i}  (1/2n) ‖Σ_i D_i X̃ (v_i − w_i) − y‖² + λ Σ_i (‖v_i‖₂ + ‖w_i‖₂),
         K_i = {v : (2D_i − I) X̃ v ≥ 0}.

A solution gives a network: each nonzero v_i becomes a unit u = v_i/√‖v_i‖ with
α = √‖v_i‖, each w_i a unit u = w_i/√‖w_i‖ with α = −√‖w_i‖; on the data
(X̃u)_+ = D_i X̃ u, and (λ/2)(‖u‖² + α²) = λ‖v_i‖, so the network's objective equals
the program's. Conversely every network maps to a feasible point with no larger
objective (AM–GM), so p* ≤ the objective of any network of any width; in particular
of every network SGD finds.

Solving it. With every pattern enumerated (`arrangement.activation_patterns`) the
program has 2·P·r variables (P = 323,600 for n = 100 points in 3-D), too many to hand
to a solver at once, but only m* ≪ P blocks are nonzero. We use column generation:
solve the program over a working set of patterns (Clarabel, an interior-point conic
solver), then price every pattern with the dual point ν = y − ŷ. The Lagrange dual
of the program (multiplied by n, β = nλ) is

    max_ν  ν·y − ½‖ν‖²   s.t.  ‖Π_{K_i}(± X̃ᵀ D_i ν)‖ ≤ β  for every pattern i,

because sup_{v ∈ K, ‖v‖ ≤ 1} ⟨g, v⟩ = ‖Π_K(g)‖ for a closed convex cone K. Patterns
that violate the constraint join the working set; when none does, the scaled point
t·ν (the best t with every constraint met) proves the lower bound
(t ν·y − ½ t²‖ν‖²)/n ≤ p*. The upper bound is the objective of the recovered network,
evaluated directly. Their difference is the certified gap. The projection norm is
bounded from above by ‖g + Aᵀμ‖ for any μ ≥ 0 (Moreau: Π_K(g) = g + Aᵀμ* with
μ* = argmin_{μ≥0} ‖g + Aᵀμ‖, A the cone's rows), so an inexact NNLS solution, or
a single half-space projection, can only make the lower bound more conservative.

With sampled patterns (``patterns='sampled:N'``) the same machinery gives the optimum
over the sampled patterns: a valid network and an upper bound on p*, not a certificate.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import nnls

from losslab.errors import UserError, check_float
from losslab.exact.arrangement import activation_patterns, sample_patterns
from losslab.exact.solver import SolverError
from losslab.store import register_result

__all__ = ["Relu2Result", "parse_patterns", "relu2_objective", "relu2_optimum", "relu2_outputs"]

# Patterns whose dual constraint is violated by more than this relative amount join
# the working set. Smaller violations only lower the certified bound by the same
# relative amount, which the gap reports.
_VIOLATION = 1e-7
_ADD_PER_ROUND = 128  # patterns added per round: 16 rounds at n = 100, d = 3 (48 took 23 rounds)
# Blocks below this fraction of the largest leave the working set (they re-enter if needed).
_KEEP = 1e-6
_SUPPORT = 1e-4  # the polishing solve keeps patterns whose blocks exceed this fraction of the largest
_ZERO_BLOCK = 1e-8  # blocks an interior-point solver leaves at ~1e-10 of the largest are zeros
_PARALLEL = 1e-9  # 1 − cos below this: two blocks are one unit split between cells sharing its direction
_MAX_ROUNDS = 500
_BATCH = 8192  # patterns re-evaluated together (bounds a [batch, n] block: 6.5 MB at n = 100)
_SWEEPS = 8  # Hildreth sweeps: enough to bring most non-violating patterns' bounds below β
_CHUNK = 16_384  # patterns priced together (bounds a [chunk, n] float64 block: 13 MB at n = 100)


@register_result
@dataclass
class Relu2Result:
    """The global optimum of a two-layer ReLU network with weight decay (or over sampled patterns).

    ``optimum`` is the objective of the recovered network (``U`` [m, d+1], first-layer
    weights with the bias last; ``alpha`` [m], output weights), evaluated directly;
    ``lower_bound`` a proven lower bound on the program over ``patterns``;
    ``certified`` says the program covered all patterns and the gap is within ``tol``;
    when it is False, ``reason`` says why. ``warnings`` lists what the caller should know
    about the problem solved (e.g. a constant input column acting as a second bias).
    ``convex_value`` is the program's value at the solver's point, ``solver_gap`` the
    solver's own primal–dual gap on the last working set.
    """

    lam: float
    patterns: str
    pattern_count: int
    working_set: int
    rounds: int
    optimum: float
    lower_bound: float
    gap: float
    tol: float
    certified: bool
    convex_value: float
    solver_status: str
    solver_gap: float
    U: np.ndarray
    alpha: np.ndarray
    seconds: float
    X: np.ndarray
    y: np.ndarray
    history: dict[str, np.ndarray] = field(default_factory=dict)
    sgd: Any = None
    reason: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        """m*: units of the recovered network (nonzero blocks, parallel ones merged).

        An interior-point solver returns a point inside the optimal face, so when the
        optimum is not unique this can exceed the sparsest optimal width (some optimum
        has at most n + 1 units, Pilanci & Ergen 2020).
        """
        return int(len(self.alpha))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scope": "global optimum (all patterns)"
            if self.patterns == "all"
            else "optimum over sampled patterns (upper bound on the global optimum)",
            "certified": self.certified,
            **({} if self.certified else {"reason": self.reason}),
            "optimum": self.optimum,
            "lower_bound": self.lower_bound,
            "gap": self.gap,
            "solver_gap": self.solver_gap,
            "width": self.width,
            "patterns": self.pattern_count,
            "working_set": self.working_set,
            "rounds": self.rounds,
            "seconds": round(self.seconds, 3),
        }
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.sgd is not None:
            out["sgd"] = self.sgd.summary()
        return out


def parse_patterns(patterns: str) -> int | None:
    """'all' → None; 'sampled:N' → N (N ≥ 1)."""
    if patterns == "all":
        return None
    head, _, count = patterns.partition(":")
    if head == "sampled" and count.isdigit() and int(count) >= 1:
        return int(count)
    raise UserError(f"The 'patterns' parameter must be 'all' or 'sampled:N' with N ≥ 1. Got {patterns!r}.")


def relu2_outputs(U: np.ndarray, alpha: np.ndarray, X: np.ndarray) -> np.ndarray:
    """f(x) = Σ_j (x̃·u_j)_+ α_j for each row of X (x̃ = (x, 1)); returns [n]."""
    Xt = np.c_[np.asarray(X, dtype=np.float64), np.ones(len(X))]
    return np.maximum(Xt @ np.asarray(U, dtype=np.float64).T, 0.0) @ np.asarray(alpha, dtype=np.float64)


def relu2_objective(U: np.ndarray, alpha: np.ndarray, X: np.ndarray, y: np.ndarray, lam: float) -> float:
    """(1/2n)‖f(X) − y‖² + (λ/2)(‖U‖² + ‖α‖²): the non-convex objective of one network."""
    residual = relu2_outputs(U, alpha, X) - np.asarray(y, dtype=np.float64).reshape(-1)
    return float(
        0.5 * residual @ residual / len(residual) + 0.5 * lam * (np.sum(np.square(U)) + np.sum(np.square(alpha)))
    )


class _Program:
    """The program over a candidate set of patterns, on the distinct rows of X̃.

    ``patterns`` and ``cones`` are bool [P, rows]: the pattern of each cell over the
    distinct rows, and the rows whose constraints cut out its cone (the facets when
    every cell is known, else every row).
    """

    def __init__(
        self,
        Xt: np.ndarray,
        y: np.ndarray,
        lam: float,
        rows: np.ndarray,
        inverse: np.ndarray,
        patterns: np.ndarray,
        cones: np.ndarray,
    ) -> None:
        self.Xt, self.y, self.lam, self.n, self.r = Xt, y, lam, len(y), Xt.shape[1]
        self.rows, self.inverse = rows, inverse
        self.beta = self.n * lam
        self.patterns = patterns
        self.row_norm2 = np.einsum("ij,ij->i", rows, rows)
        # The cone rows as CSR: cell i owns pairs ptr[i] : ptr[i+1], each a row index and a sign.
        cell, self.pair_row = np.nonzero(cones)
        self.ptr = np.r_[0, np.cumsum(np.bincount(cell, minlength=len(patterns)))]
        self.pair_sign = np.where(patterns[cell, self.pair_row], 1.0, -1.0)
        self.pair_cell = cell
        # Pricing state: g_i and an upper bound on ‖Π_{K_i}(±g_i)‖ where each pattern was last
        # evaluated.
        self.G_ref = np.zeros((len(patterns), self.r))
        self.bound_ref = np.full((len(patterns), 2), np.inf)

    def cone(self, i: int) -> np.ndarray:
        """The rows A of K_i = {v : A v ≥ 0}, [rows of the cone, r]."""
        part = slice(self.ptr[i], self.ptr[i + 1])
        return self.pair_sign[part, None] * self.rows[self.pair_row[part]]

    def masks(self, index: np.ndarray) -> np.ndarray:
        """D_i over all n rows, [len(index), n]."""
        return self.patterns[index][:, self.inverse]

    def predictions(self, index: np.ndarray, V: np.ndarray, W: np.ndarray) -> np.ndarray:
        """Σ_i D_i X̃ (v_i − w_i) over the patterns ``index``, [n]."""
        return (self.masks(index) * ((V - W) @ self.Xt.T)).sum(0)

    # ----------------------------------------------------------------- master
    def master(self, index: np.ndarray, time_limit: float) -> tuple[np.ndarray, np.ndarray, float, str, float]:
        """Solve the program over the patterns ``index`` with Clarabel.

        Returns (V, W, value, status, solver gap).
        """
        import clarabel

        S, r, n = len(index), self.r, self.n
        masks = self.masks(index).astype(np.float64)
        # F maps the stacked blocks to predictions: F[:, i r : (i+1) r] = D_i X̃.
        F = sp.csr_matrix((masks[:, :, None] * self.Xt[None, :, :]).transpose(1, 0, 2).reshape(n, S * r))
        G = sp.block_diag([sp.csr_matrix(self.cone(i)) for i in index], format="csr")
        k, nv = G.shape[0], S * r
        # x = [v (S r), w (S r), s_v (S), s_w (S), e (n)] with e = F(v − w) − y the residual:
        # minimize ½ eᵀe/n + λ Σ s  s.t.  G v ≥ 0, G w ≥ 0, ‖v_i‖ ≤ s_v,i, ‖w_i‖ ≤ s_w,i.
        total = 2 * nv + 2 * S + n
        P = sp.diags(np.r_[np.zeros(total - n), np.full(n, 1.0 / n)], format="csc")
        q = np.r_[np.zeros(2 * nv), np.full(2 * S, self.lam), np.zeros(n)]
        empty = lambda rows, cols: sp.csr_matrix((rows, cols))  # noqa: E731
        equality = sp.hstack([F, -F, empty(n, 2 * S), -sp.eye(n)])
        nonneg = sp.vstack(
            [
                sp.hstack([-G, empty(k, nv + 2 * S + n)]),
                sp.hstack([empty(k, nv), -G, empty(k, 2 * S + n)]),
            ]
        )
        # Clarabel's cones hold s = b − A x: (s_i, v_i) ∈ SOC with A = −[e_{s_i}; E_{v_i}], b = 0.
        block = np.arange(S)[:, None]
        v_cols = np.c_[2 * nv + block, block * r + np.arange(r)]
        cols = np.concatenate([v_cols, v_cols + np.r_[S, np.full(r, nv)]]).reshape(-1)
        soc = sp.csr_matrix((-np.ones(len(cols)), (np.arange(len(cols)), cols)), shape=(len(cols), total))
        A = sp.vstack([equality, nonneg, soc], format="csc")
        b = np.r_[self.y, np.zeros(2 * k + len(cols))]
        cones = [clarabel.ZeroConeT(n), clarabel.NonnegativeConeT(2 * k)] + [clarabel.SecondOrderConeT(r + 1)] * (2 * S)
        settings = clarabel.DefaultSettings()
        settings.verbose = False
        settings.time_limit = max(1.0, time_limit)
        solution = clarabel.DefaultSolver(P, q, A, b, cones, settings).solve()
        status = str(solution.status)
        if status not in ("Solved", "AlmostSolved"):
            raise SolverError(
                f"Clarabel stopped with status {status} on the two-layer ReLU program "
                f"({S} patterns): "
                "raise --time-limit or use fewer points.",
                status=status,
            )
        x = np.asarray(solution.x)
        V, W = x[:nv].reshape(S, r), x[nv : 2 * nv].reshape(S, r)
        return (
            V,
            W,
            float(solution.obj_val),
            status,
            float(abs(solution.obj_val - solution.obj_val_dual)),
        )

    # ----------------------------------------------------------------- pricing
    def price(self, nu: np.ndarray, exclude: set[int], want: int) -> tuple[float | None, list[int]]:
        """An upper bound on max_i ‖Π_{K_i}(± X̃ᵀ D_i ν)‖ and up to ``want`` violating patterns.

        Every pattern carries an upper bound from the last time it was evaluated, valid
        at the new ν because projection onto a convex cone is 1-Lipschitz:
        ‖Π(g′)‖ ≤ ‖Π(g)‖ + ‖g′ − g‖, and ‖Π(g′)‖ ≤ ‖g′‖. Patterns whose bound exceeds β are
        re-evaluated in decreasing order of their bound, in batches, with bounds that
        tighten in three stages: the projection onto the most violated half-space,
        sweeps of Hildreth's method (cyclic coordinate descent on μ ≥ 0, vectorized over
        patterns), exact NNLS. Once ``want`` violators are found the rest are left for
        later rounds and the bound returned is None (it is only complete when every
        pattern's bound is at most β or was just evaluated).
        """
        if len(self.patterns) == 0:  # only D = 0 was sampled: every constraint is 0 ≤ β
            return 0.0, []
        nu_rows = np.bincount(self.inverse, weights=nu, minlength=len(self.rows))
        G = self.patterns.astype(np.float64) @ (nu_rows[:, None] * self.rows)  # g_i = X̃ᵀ D_i ν, [P, r]
        drift = np.linalg.norm(G - self.G_ref, axis=1)
        bound = np.minimum(self.bound_ref + drift[:, None], np.linalg.norm(G, axis=1)[:, None])
        threshold = self.beta * (1 + _VIOLATION)
        todo = np.flatnonzero(bound.max(1) > threshold)
        todo = todo[np.argsort(-bound[todo].max(1), kind="stable")]
        violators: list[int] = []
        exact = 0
        for start in range(0, len(todo), _BATCH):
            if len(violators) >= want:
                break
            batch = todo[start : start + _BATCH]
            bound[batch] = np.minimum(bound[batch], self._halfspace(G[batch], batch))
            batch = batch[bound[batch].max(1) > threshold]
            if len(batch):
                bound[batch] = np.minimum(bound[batch], self._hildreth(G[batch], batch))
                batch = batch[bound[batch].max(1) > threshold]
            for i in batch:
                A = self.cone(i)
                for side, s in enumerate((1.0, -1.0)):
                    if bound[i, side] > threshold:
                        mu = np.maximum(nnls(A.T, -s * G[i], maxiter=50 * len(A))[0], 0.0)
                        bound[i, side] = min(bound[i, side], float(np.linalg.norm(s * G[i] + A.T @ mu)))
                exact += 1
                if bound[i].max() > threshold and int(i) not in exclude:
                    violators.append(int(i))
            evaluated = todo[start : start + _BATCH]
            self.G_ref[evaluated] = G[evaluated]
            self.bound_ref[evaluated] = bound[evaluated]
        else:
            return float(bound.max()), _worst(violators, bound, want)
        return None, _worst(violators, bound, want)

    def _halfspace(self, G: np.ndarray, index: np.ndarray) -> np.ndarray:
        """‖±g‖ after projecting onto the most violated half-space a_k · u ≥ 0 of all rows.

        Returns [len(index), 2].
        """
        signs = np.where(self.patterns[index], 1.0, -1.0)
        dots = signs * (G @ self.rows.T)
        norm2 = np.einsum("ij,ij->i", G, G)
        return np.stack(
            [
                np.sqrt(np.maximum(norm2 - (np.minimum(s * dots, 0.0) ** 2 / self.row_norm2).max(1), 0.0))
                for s in (1.0, -1.0)
            ],
            1,
        )

    def _hildreth(self, G: np.ndarray, index: np.ndarray) -> np.ndarray:
        """‖±g + Aᵀμ‖ after `_SWEEPS` sweeps of Hildreth's method from μ = 0: [len(index), 2].

        Each coordinate step keeps μ ≥ 0, so every iterate's norm bounds ‖Π_K(±g)‖ from above.
        Cones are padded to the most rows any of them has; padding rows are zero and inert.
        """
        counts = self.ptr[index + 1] - self.ptr[index]
        width = int(counts.max())
        slot = np.arange(width)
        valid = slot[None, :] < counts[:, None]
        pairs = np.where(valid, self.ptr[index][:, None] + slot[None, :], 0)
        a = np.where(
            valid[:, :, None],
            self.pair_sign[pairs][:, :, None] * self.rows[self.pair_row[pairs]],
            0.0,
        )
        norm2 = np.where(valid, self.row_norm2[self.pair_row[pairs]], 1.0)
        out = np.empty((len(index), 2))
        for side, s in enumerate((1.0, -1.0)):
            p = s * G
            mu = np.zeros(valid.shape)
            for _ in range(_SWEEPS):
                for j in range(width):
                    aj = a[:, j]
                    step = np.maximum(mu[:, j] - np.einsum("ij,ij->i", aj, p) / norm2[:, j], 0.0) - mu[:, j]
                    p += step[:, None] * aj
                    mu[:, j] += step
            out[:, side] = np.linalg.norm(p, axis=1)
        return out

    def lower_bound(self, nu: np.ndarray, rho: float) -> float:
        """(t ν·y − ½t²‖ν‖²)/n at the best t ∈ [0, β/ρ]: every dual constraint holds at t ν."""
        nn = float(nu @ nu)
        if nn == 0.0:
            return 0.0
        t = min(max(float(nu @ self.y) / nn, 0.0), self.beta / rho if rho > 0 else np.inf)
        return (t * float(nu @ self.y) - 0.5 * t * t * nn) / self.n


def relu2_optimum(
    X: np.ndarray,
    y: np.ndarray,
    lam: float,
    *,
    patterns: str = "all",
    seed: int = 0,
    tol: float = 1e-6,
    max_patterns: int = 1_000_000,
    time_limit: float = 300.0,
    progress: Callable[[int, int], None] | None = None,
) -> Relu2Result:
    """The certified global optimum of a two-layer ReLU network with weight decay λ.

    The method and its certificate are in the module docstring.

    Parameters
    ----------
    X, y : inputs [n, d] and real targets [n] (a bias column is appended to X).
    lam : weight decay λ > 0 (on both layers, squared: (λ/2)(‖U‖² + ‖α‖²)).
    patterns : 'all' (exact enumeration, certified) or 'sampled:N' (N Gaussian draws).
    tol : stop once (upper − lower bound) ≤ tol · upper bound.
    time_limit : seconds for the whole solve; a solve that runs out raises `SolverError`
        with the bounds it reached.
    """
    owner = "relu2"
    check_float(lam, "lam", owner, low=0.0, low_open=True)
    check_float(tol, "tol", owner, low=0.0, low_open=True)
    check_float(time_limit, "time_limit", owner, low=0.0, low_open=True)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or len(X) != len(y) or len(y) == 0:
        raise UserError(f"relu2 needs inputs X [n, d] and targets y [n]. Got {X.shape} and {y.shape}.")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise UserError("The relu2 data contain NaN or inf: clean or impute them first.")
    start = time.perf_counter()
    sampled = parse_patterns(patterns)
    notes = _constant_columns(X)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    Xt = np.c_[X, np.ones(len(X))]
    rows, inverse = np.unique(Xt, axis=0, return_inverse=True)  # duplicated points always share a sign
    if sampled is None:
        cells, cones = activation_patterns(rows, max_patterns=max_patterns, facets=True)
    else:
        cells = sample_patterns(rows, sampled, seed=seed)
        cones = np.ones_like(cells)
    keep = cells.any(1)  # D = 0 contributes nothing
    program = _Program(Xt, y, lam, rows, inverse.reshape(-1), cells[keep], cones[keep])
    working = np.zeros(0, dtype=np.int64)
    nu = y.copy()  # the dual point of the empty network: ν = y − 0
    V = W = np.zeros((0, program.r))
    value = upper = 0.5 * float(y @ y) / len(y)
    status, solver_gap, lower, rounds = "not run", 0.0, -np.inf, 0
    best = (upper, np.zeros((0, program.r)), np.zeros(0))
    history: dict[str, list[float]] = {"upper": [], "lower": [], "working_set": [], "seconds": []}
    while True:
        rho, violators = program.price(nu, set(working.tolist()), _ADD_PER_ROUND)
        if rho is not None:
            lower = max(lower, program.lower_bound(nu, rho))
        best = min(best, _network(V, W, X, y, lam), key=lambda b: (b[0], len(b[2])))
        upper = best[0]
        elapsed = time.perf_counter() - start
        for key, val in (
            ("upper", upper),
            ("lower", lower),
            ("working_set", len(working)),
            ("seconds", elapsed),
        ):
            history[key].append(float(val))
        if progress is not None:
            progress(rounds, rounds + 1)
        if upper - lower <= tol * upper or not violators:
            break
        if elapsed > time_limit or rounds >= _MAX_ROUNDS:
            raise SolverError(
                f"The two-layer ReLU program was not certified within time_limit={time_limit:g} s "
                f"(bounds {lower:.6g} ≤ optimum ≤ {upper:.6g} after {rounds} rounds): "
                "raise --time-limit.",
                status="time_limit" if elapsed > time_limit else "round_limit",
            )
        # Keep the patterns the last solve used, drop the rest (they re-enter if they price
        # out again).
        working = np.r_[working[_used(V, W, _KEEP)], violators].astype(np.int64)
        V, W, value, status, solver_gap = program.master(working, time_limit - elapsed)
        nu = y - program.predictions(working, V, W)
        rounds += 1
    # Polish: an interior-point solution spreads a unit over cells that share its direction;
    # re-solving on the clearly used patterns alone gives a sparser network, kept if it is no worse.
    support = working[_used(V, W, _SUPPORT)] if len(working) else working
    if 0 < len(support) < len(working):
        V2, W2, value2, status2, gap2 = program.master(support, max(1.0, time_limit - (time.perf_counter() - start)))
        polished = _network(V2, W2, X, y, lam)
        if polished[0] <= best[0] * (1 + tol / 10):
            best, value, status, solver_gap = polished, value2, status2, gap2
    upper, U, alpha = best
    gap = upper - lower
    certified = sampled is None and gap <= tol * upper
    reason = "" if certified else _not_certified(sampled, gap, upper, tol, solver_gap)
    if reason and sampled is None:  # sampled patterns were asked for: an upper bound is what the caller wanted
        warnings.warn(f"relu2_optimum: not certified: {reason}", UserWarning, stacklevel=2)
    return Relu2Result(
        lam=lam,
        patterns=patterns,
        pattern_count=int(keep.sum()),
        working_set=len(working),
        rounds=rounds,
        optimum=upper,
        lower_bound=lower,
        gap=gap,
        tol=tol,
        certified=certified,
        convex_value=value,
        solver_status=status,
        solver_gap=solver_gap,
        U=U,
        alpha=alpha,
        seconds=time.perf_counter() - start,
        X=X,
        y=y,
        history={k: np.asarray(v) for k, v in history.items()},
        reason=reason,
        warnings=notes,
    )


def _constant_columns(X: np.ndarray) -> list[str]:
    """A warning for each nonzero constant column of X: it would be a second bias.

    The program appends its own bias column, so a column c·1 lets the network put part
    of each unit's bias on it; the weight decay then charges that bias
    (λ/2)·b²/(1 + c²) instead of (λ/2)·b², a different (less regularized) problem. A zero
    column is harmless (its weights decay to 0), and one point has no columns to compare.
    """
    if len(X) < 2:
        return []
    constant = np.flatnonzero((X == X[:1]).all(0) & (X[0] != 0))
    return [
        f"Column {int(j)} of the relu2 inputs X is constant ({X[0, j]:g}): relu2 appends its own bias column, "
        "so this one acts as a second bias and the weight decay on the bias is weaker than stated "
        "(another problem is solved); drop that column from X."
        for j in constant
    ]


def _not_certified(sampled: int | None, gap: float, upper: float, tol: float, solver_gap: float) -> str:
    """Why a finished solve is not a certificate, in words the caller can act on."""
    if sampled is not None:
        return (
            f"only {sampled} sampled activation patterns were searched, so the optimum is an upper bound "
            "on the global one; use patterns='all' for a certificate"
        )
    relative = gap / upper if upper > 0 else float("inf")
    return (
        f"every activation pattern was priced, but the certified gap {gap:.3g} ({relative:.3g} relative) "
        f"is above tol={tol:g}; the interior-point solves stop at a relative accuracy of about 1e-8 "
        f"(last solver gap {solver_gap:.3g}), so tolerances below that are out of reach: use tol ≥ 1e-7"
    )


def _worst(violators: list[int], bound: np.ndarray, want: int) -> list[int]:
    """The ``want`` violators with the largest bounds."""
    return sorted(violators, key=lambda i: -bound[i].max())[:want]


def _used(V: np.ndarray, W: np.ndarray, relative: float) -> np.ndarray:
    """Patterns whose v or w block exceeds ``relative`` times the largest block."""
    size = np.maximum(np.linalg.norm(V, axis=1), np.linalg.norm(W, axis=1)) if len(V) else np.zeros(0)
    return size > relative * size.max() if len(size) else np.zeros(0, dtype=bool)


def _network(
    V: np.ndarray, W: np.ndarray, X: np.ndarray, y: np.ndarray, lam: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """(objective, U, α) of the network recovered from blocks.

    Each block gives u = v/√‖v‖ with α = √‖v‖ (−√‖w‖ for w).

    Blocks within round-off of zero are dropped, and parallel blocks of one sign are
    merged (v_a + v_b: one unit instead of two, with ‖v_a + v_b‖ ≤ ‖v_a‖ + ‖v_b‖).
    The objective is evaluated on the returned network itself, so it is an honest upper bound.
    """
    r = X.shape[1] + 1
    blocks = [(v, 1.0) for v in V] + [(w, -1.0) for w in W]
    scale = max([float(np.linalg.norm(b)) for b, _ in blocks] or [0.0])
    merged: list[list[Any]] = []
    for v, sign in blocks:
        size = float(np.linalg.norm(v))
        if size <= _ZERO_BLOCK * scale:
            continue
        for other in merged:
            if other[1] == sign and float(v @ other[0]) >= (1 - _PARALLEL) * size * float(np.linalg.norm(other[0])):
                other[0] = other[0] + v
                break
        else:
            merged.append([v.copy(), sign])
    if not merged:
        return 0.5 * float(y @ y) / len(y), np.zeros((0, r)), np.zeros(0)
    sizes = np.array([float(np.linalg.norm(v)) for v, _ in merged])
    U = np.array([v for v, _ in merged]) / np.sqrt(sizes)[:, None]
    alpha = np.array([s for _, s in merged]) * np.sqrt(sizes)
    return relu2_objective(U, alpha, X, y, lam), U, alpha
