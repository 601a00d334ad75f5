"""Time to certify the 3-node network vs instance size, until a time budget runs out.

Training the network is NP-complete (Blum & Rivest 1992), so no algorithm is known whose
worst case is polynomial; this study shows what the exact MILP costs on seeded
random set-splitting instances as the ground set (or the number of subsets) grows,
beside brute-force set splitting, whose 2^(n−1) colourings are the cost of the
obvious exact method. NP-hardness is a statement about the worst case: HiGHS's
presolve and branching dispatch many random instances near the root, so the MILP
curve may rise slowly before it rises fast.

Each instance is one piece of resumable work (`losslab.store.Chunks`): a rerun loads
the finished pieces with the times they recorded and stops where the budget ran out
before. Instances run one at a time, never in parallel, because their wall times are
the measurement.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from losslab.data.set_splitting import set_splitting_instance
from losslab.errors import UserError, check_choice, check_float
from losslab.exact.sgd_gap import three_node_relaxation
from losslab.exact.solver import SolverError
from losslab.exact.three_node import BRUTE_FORCE_LIMIT, brute_force_splitting, train_three_node
from losslab.store import Chunks, register_result
from losslab.train import TrainConfig

__all__ = ["SWEEPS", "ScalingResult", "element_sizes", "subset_sizes", "three_node_scaling"]

SWEEPS = ("elements", "subsets")


@register_result
@dataclass
class ScalingResult:
    """One row per instance: size, answer, and the seconds and branch-and-bound nodes it took.

    ``trainable`` is 1/0, or −1 when the MILP stopped without a proof; ``splitting_exists``
    is 1/0 from brute force, −1 when n was too large to enumerate; ``brute_seconds`` is NaN
    then. ``stopped`` is 'complete', 'budget' (the budget ran out; ``note`` says where) or
    'time_limit' (one instance hit the per-instance limit). With ``relax_seeds`` > 0,
    ``relaxed`` is the fraction of gradient-descent seeds on the sigmoid relaxation that
    end with a zero-error network (NaN where not run).
    """

    sweep: str
    elements: np.ndarray
    subsets: np.ndarray
    seeds: np.ndarray
    kind: str
    trainable: np.ndarray
    splitting_exists: np.ndarray
    milp_seconds: np.ndarray
    brute_seconds: np.ndarray
    nodes: np.ndarray
    status: list[str]
    budget_seconds: float
    spent_seconds: float
    stopped: str
    note: str
    planned: int
    relaxed: np.ndarray = field(default_factory=lambda: np.zeros(0))
    relax_seeds: int = 0

    def summary(self) -> dict[str, Any]:
        done = self.trainable >= 0
        out: dict[str, Any] = {
            "sweep": self.sweep,
            "kind": self.kind,
            "instances": int(len(self.elements)),
            "planned": self.planned,
            "stopped": self.stopped,
            "note": self.note,
            "spent_seconds": round(self.spent_seconds, 3),
            "budget_seconds": self.budget_seconds,
            "largest_certified": {
                "elements": int(self.elements[done].max()),
                "subsets": int(self.subsets[done].max()),
            }
            if done.any()
            else None,
            "trainable_fraction": float(np.mean(self.trainable[done] == 1)) if done.any() else None,
            "theorem_disagreements": int(
                ((self.splitting_exists >= 0) & done & (self.splitting_exists != self.trainable)).sum()
            ),
        }
        if done.any():
            out["milp_seconds_max"] = float(self.milp_seconds[done].max())
        trained = (self.trainable == 1) & np.isfinite(self.relaxed) if len(self.relaxed) else done & False
        if trained.any():
            out["relaxation_solved_mean"] = float(self.relaxed[trained].mean())
        return out


def _subsets(n: int, ratio: float) -> int:
    """round(ratio·n), at least 1 and at most the C(n, 3) distinct 3-element subsets."""
    return int(min(max(1, round(ratio * n)), math.comb(n, 3)))


def element_sizes(start: int, stop: int, ratio: float) -> list[tuple[int, int]]:
    """(n, round(ratio·n)) for n = start … stop, every size up to 16 and then every fourth."""
    ns = [n for n in range(max(start, 3), stop + 1) if n <= 16 or (n - 16) % 4 == 0]
    return [(n, _subsets(n, ratio)) for n in ns]


def subset_sizes(elements: int, ratios: Sequence[float]) -> list[tuple[int, int]]:
    """(n, round(ratio·n)) per ratio: the easy–hard–easy sweep across the splitting threshold."""
    return [(elements, _subsets(elements, r)) for r in ratios]


def three_node_scaling(
    sizes: Sequence[tuple[int, int]],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    kind: str = "random",
    sweep: str = "elements",
    budget_seconds: float = 60.0,
    instance_time_limit: float | None = None,
    weight_bound: float | str = "auto",
    brute_force: bool = True,
    relax_seeds: int = 0,
    relax_config: TrainConfig | None = None,
    chunks: Chunks | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScalingResult:
    """Certify each (elements, subsets) size for each seed, in order, until the budget is spent.

    The budget counts MILP, brute-force and relaxation seconds. Each MILP may use what is
    left of the budget (or ``instance_time_limit``, if smaller); an instance that runs out
    is recorded with its status and ends the study, since larger ones would not be faster.
    ``relax_seeds`` > 0 also trains the sigmoid relaxation on each instance
    (`three_node_relaxation`) and records how often it reaches zero errors.
    """
    check_choice(sweep, "sweep", "scaling", SWEEPS)
    check_float(budget_seconds, "budget_seconds", "scaling", low=0.0, low_open=True)
    if not sizes or not seeds:
        raise UserError("The scaling study needs at least one size and one seed.")
    plan = [(int(n), int(m), int(s)) for n, m in sizes for s in seeds]
    rows: list[dict[str, Any]] = []
    spent, stopped, note = 0.0, "complete", f"all {len(plan)} instances certified"
    for index, (n, m, seed) in enumerate(plan):
        if spent >= budget_seconds:
            stopped = "budget"
            note = (
                f"budget of {budget_seconds:g} s exhausted after {index} of {len(plan)} "
                f"instances; the next (n = {n}, m = {m}, seed {seed}) and the rest were not run"
            )
            break
        if chunks is not None and chunks.done(index):
            row = {k: v.item() if v.ndim == 0 else v for k, v in chunks.load(index).items()}
        else:
            row = _certify(
                n,
                m,
                seed,
                kind,
                weight_bound,
                brute_force,
                budget_seconds - spent,
                instance_time_limit,
                relax_seeds,
                relax_config,
            )
            if chunks is not None:
                chunks.save(index, {k: np.asarray(v) for k, v in row.items()})
        rows.append(row)
        spent += (
            float(row["milp_seconds"])
            + (float(row["brute_seconds"]) if np.isfinite(row["brute_seconds"]) else 0.0)
            + float(row["relax_seconds"])
        )
        if progress is not None:
            progress(index + 1, len(plan))
        if row["trainable"] < 0:
            limited_by_budget = (
                instance_time_limit is None or budget_seconds - (spent - row["milp_seconds"]) < instance_time_limit
            )
            stopped = "budget" if limited_by_budget else "time_limit"
            note = (
                f"the MILP stopped without a proof at n = {n}, m = {m}, seed {seed} "
                f"({row['status']}, {row['milp_seconds']:.1f} s): "
                f"{'the budget ran out' if limited_by_budget else 'per-instance limit'}"
            )
            break
    column = lambda key, dtype: np.array([row[key] for row in rows], dtype=dtype)  # noqa: E731
    return ScalingResult(
        sweep,
        column("elements", np.int64),
        column("subsets", np.int64),
        column("seed", np.int64),
        kind,
        column("trainable", np.int64),
        column("splitting_exists", np.int64),
        column("milp_seconds", np.float64),
        column("brute_seconds", np.float64),
        column("nodes", np.int64),
        [str(row["status"]) for row in rows],
        float(budget_seconds),
        spent,
        stopped,
        note,
        len(plan),
        column("relaxed", np.float64),
        relax_seeds,
    )


def _certify(
    n: int,
    m: int,
    seed: int,
    kind: str,
    weight_bound: float | str,
    brute_force: bool,
    remaining: float,
    limit: float | None,
    relax_seeds: int = 0,
    relax_config: TrainConfig | None = None,
) -> dict[str, Any]:
    instance = set_splitting_instance(n, m, seed=seed, kind=kind)
    X, y = instance.points()
    time_limit = max(0.5, min(remaining, limit if limit is not None else remaining))
    row: dict[str, Any] = {"elements": n, "subsets": m, "seed": seed}
    try:
        fit = train_three_node(X, y, weight_bound=weight_bound, time_limit=time_limit, instance=instance)
        row.update(
            trainable=int(fit.trainable),
            milp_seconds=fit.seconds,
            nodes=fit.nodes,
            status="feasible" if fit.trainable else "infeasible",
        )
    except SolverError as exc:
        row.update(
            trainable=-1,
            milp_seconds=exc.seconds if exc.seconds is not None else time_limit,
            nodes=-1,
            status=exc.status,
        )
    row.update(splitting_exists=-1, brute_seconds=np.nan, relaxed=np.nan, relax_seconds=0.0)
    if relax_seeds and row["trainable"] >= 0:
        relaxation = three_node_relaxation(
            X, y, trainable=bool(row["trainable"]), seeds=relax_seeds, config=relax_config
        )
        row.update(relaxed=float(np.mean(relaxation.hard_errors == 0)), relax_seconds=relaxation.seconds)
    if brute_force and n <= BRUTE_FORCE_LIMIT:
        start = time.perf_counter()
        found = brute_force_splitting(instance)
        row.update(splitting_exists=int(found is not None), brute_seconds=time.perf_counter() - start)
    return row
