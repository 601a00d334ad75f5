"""Minimum-error training: hard even to be approximately right (Judd 1988; Blum & Rivest 1992).

Training the 3-node network (two threshold units and an AND) to zero errors is
NP-complete, and the fewest-errors problem is at least as hard. This study measures
both sides of that on seeded set-splitting instances with planted label noise
(`losslab.exact.min_error`): a solvable instance on n elements and round(ratio·n)
subsets, with a fraction ``noise`` of its 1 + n + m point labels flipped.

With ``family='teacher'`` the same number of points are drawn at random from
{0, 1}^dims instead and labelled by a random 3-node teacher before the same flips: on
the Blum–Rivest points the network absorbs almost every flip (the optimum stays 0 or
1, `losslab.exact.min_error`), while in a low dimension each flip tends to cost an error
and the MILP's time grows quickly with the number of points.

- The certified optimum: the fewest errors any 3-node network makes, from the MILP
  with per-point error indicators, with HiGHS's proven lower bound (a gap of 0 is a
  certificate; a time limit leaves a stated gap).
- Gradient training of the same network relaxed to sigmoids (``three_node:d``, soft AND,
  BCE; `losslab.exact.three_node_relaxation`) from ``relax_seeds`` seeds, each thresholded
  back to the hard network: the best and the median of the seeds' error counts.
- The solver's time against n, instance after instance, until the solver's time budget
  is spent or an instance ends without a proof: where that happens is the wall of
  NP-hardness on these instances. The budget counts MILP seconds only (they are the
  measurement); the relaxation and the brute force are a fixed amount of work per
  instance, timed and reported beside it.

Checks carried in the result, each counted (0 is the only right value): the planted
splitting's network makes exactly the flipped count of errors, so the optimum is at most
that ('above_planted', on certified optima; a time-limited incumbent is only an upper
bound, and the summary's ``open_gaps`` then give the best network known: the best of the
incumbent, the seeds and the planted one); no seed beats a certified optimum ('seeds_below_optimum'); the
brute-force enumeration of `brute_force_min_errors` agrees wherever an instance has at
most ``brute_force_points`` points ('brute_disagreements').

Instances run one at a time, in order, because their solver times are the measurement;
each is a chunk of the run, so a killed study resumes with the times it recorded.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from losslab.data import set_splitting_instance
from losslab.errors import check_choice, check_each, check_float, check_int
from losslab.exact import (
    RELAXATION_CONFIG,
    brute_force_min_errors,
    min_errors,
    noisy_points,
    teacher_points,
    three_node_relaxation,
)
from losslab.exact.min_error import BRUTE_FORCE_POINTS
from losslab.exact.solver import SolverError
from losslab.models import build_model
from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work
from losslab.store import Chunks, register_result
from losslab.studies.base import StudyContext, register_study
from losslab.train import TrainConfig, init_thetas
from losslab.train.cost import estimate_training

__all__ = ["FAMILIES", "MinErrorConfig", "MinErrorStudyResult", "min_error"]

FAMILIES = ("set-splitting", "teacher")


@dataclass(frozen=True)
class MinErrorConfig:
    """Instances at each n in ``elements`` (``instances`` seeds each), solved in order within ``budget``."""

    elements: tuple[int, ...] = (5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128)
    family: str = "set-splitting"  # or 'teacher': as many points (1 + n + m), random in {0,1}^dims, teacher labels
    dims: int = 6  # the teacher family's dimension: well below the points, so flipped labels cost errors
    ratio: float = 1.5  # subsets per element; solvable instances of 3-subsets exist at this density
    noise: float = 0.2  # fraction of the 1 + n + m point labels flipped (most flips are absorbed: see RESULTS)
    instances: int = 3  # instances per n (seeds seed, seed + 1, …)
    relax_seeds: int = 16  # gradient-training seeds per instance
    relax_steps: int = 1000  # Adam steps of the relaxation (RELAXATION_CONFIG fits or stalls within 1,000)
    instance_time_limit: float = 60.0  # seconds per MILP; a stop leaves a gap and ends the sweep
    budget: float = 600.0  # MILP seconds for the whole sweep: it stops once they are spent
    brute_force_points: int = 14  # the brute-force reference runs on instances with at most this many points
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "the min-error study"
        check_each(self.elements, "elements", owner, "ground-set size", "5,6,8", low=5)
        check_choice(self.family, "family", owner, FAMILIES)
        check_int(self.dims, "dims", owner, low=1)
        check_float(self.ratio, "ratio", owner, low=0.0, low_open=True)
        check_float(self.noise, "noise", owner, low=0.0, high=1.0)
        check_int(self.instances, "instances", owner, low=1)
        check_int(self.relax_seeds, "relax_seeds", owner, low=1)
        check_int(self.relax_steps, "relax_steps", owner, low=1)
        check_float(self.instance_time_limit, "instance_time_limit", owner, low=0.0, low_open=True)
        check_float(self.budget, "budget", owner, low=0.0, low_open=True)
        check_int(self.brute_force_points, "brute_force_points", owner, low=0, high=BRUTE_FORCE_POINTS)
        check_int(self.seed, "seed", owner)

    def plan(self) -> list[tuple[int, int, int]]:
        """(elements, subsets, seed) of every instance, in the order they run."""
        return [
            (n, max(1, min(round(self.ratio * n), math.comb(n, 3))), self.seed + i)
            for n in self.elements
            for i in range(self.instances)
        ]


@register_result
@dataclass
class MinErrorStudyResult:
    """One entry per instance run ([R]); instances after a stop were not run (``note``).

    ``errors`` is the fewest errors found (a real network's count), ``lower_bound`` the
    proven bound, ``certified`` 1 when they meet and the bound covers all weights.
    ``flips`` is the planted noise (the planted network's error count). ``relax_best`` /
    ``relax_median`` are the hard errors of the best and median gradient seed;
    ``brute`` the brute-force optimum (−1: not run). ``spent_seconds`` is the MILP time the
    budget counts.
    """

    elements: np.ndarray
    subsets: np.ndarray
    seeds: np.ndarray
    points: np.ndarray
    flips: np.ndarray
    errors: np.ndarray
    lower_bound: np.ndarray
    certified: np.ndarray
    exact: np.ndarray
    status: list[str]
    milp_seconds: np.ndarray
    nodes: np.ndarray
    relax_best: np.ndarray
    relax_median: np.ndarray
    relax_solved: np.ndarray
    relax_seconds: np.ndarray
    brute: np.ndarray
    stopped: str
    note: str
    planned: int
    spent_seconds: float
    config: dict[str, Any]

    def checks(self) -> dict[str, int]:
        """The invariants of the module docstring, as violation counts (all must be 0)."""
        certified = self.certified == 1
        ran = self.brute >= 0
        return {  # a time-limited incumbent is only an upper bound: the planted bound binds the optimum
            "above_planted": int((certified & (self.errors > self.flips)).sum()),
            "seeds_below_optimum": int((certified & (self.relax_best < self.errors)).sum()),
            "brute_disagreements": int((ran & (self.brute != self.errors)).sum()),
            "bound_above_errors": int((self.lower_bound > self.errors).sum()),
        }

    def summary(self) -> dict[str, Any]:
        by_n = []
        for n in np.unique(self.elements):
            pick = self.elements == n
            by_n.append(
                {
                    "elements": int(n),
                    "instances": int(pick.sum()),
                    "certified": int(self.certified[pick].sum()),
                    "optimum_mean": float(self.errors[pick].mean()),
                    "best_of_seeds_mean": float(self.relax_best[pick].mean()),
                    "seeds_at_optimum": float(self.relax_solved[pick].mean()),
                    "milp_seconds_max": float(self.milp_seconds[pick].max()),
                }
            )
        certified = self.certified == 1
        # Where a MILP stopped early, the best network known is the best of its incumbent, the
        # gradient seeds and the planted one (each a real network's error count).
        best_known = np.minimum(np.minimum(self.errors, self.relax_best), self.flips)
        open_rows = [
            {
                "elements": int(self.elements[i]),
                "points": int(self.points[i]),
                "lower_bound": int(self.lower_bound[i]),
                "best_known": int(best_known[i]),
            }
            for i in np.flatnonzero(~certified)
        ]
        return {
            "instances": int(len(self.elements)),
            "planned": self.planned,
            "stopped": self.stopped,
            "note": self.note,
            "milp_seconds_spent": round(self.spent_seconds, 3),
            "largest_certified_elements": int(self.elements[certified].max()) if certified.any() else None,
            "seeds_worse_than_optimum": int((certified & (self.relax_best > self.errors)).sum()),
            "open_gaps": open_rows,
            "checks": self.checks(),
            "by_elements": by_n,
        }


def _instance(config: MinErrorConfig, n: int, m: int, seed: int, time_limit: float, device: str) -> dict[str, Any]:
    points = 1 + n + m
    flips = round(config.noise * points)
    if config.family == "set-splitting":
        X, y, _ = noisy_points(set_splitting_instance(n, m, seed=seed, kind="solvable"), flips, seed=seed)
    else:
        X, y, _ = teacher_points(config.dims, points, flips, seed=seed)
    fit = min_errors(X, y, time_limit=time_limit)
    relaxation = three_node_relaxation(
        X,
        y,
        trainable=fit.errors == 0,
        seeds=config.relax_seeds,
        config=_relax_config(config),
        device=device,
        first_seed=seed,
    )
    brute, brute_seconds = -1, 0.0
    if points <= config.brute_force_points:
        start = time.perf_counter()
        brute = brute_force_min_errors(X, y)
        brute_seconds = time.perf_counter() - start
    return {
        "elements": n,
        "subsets": m,
        "seed": seed,
        "points": points,
        "flips": flips,
        "errors": fit.errors,
        "lower_bound": fit.lower_bound,
        "certified": int(fit.certified),
        "exact": int(fit.exact),
        "status": fit.status,
        "milp_seconds": fit.seconds,
        "nodes": fit.nodes,
        "relax_best": int(relaxation.hard_errors.min()),
        "relax_median": float(np.median(relaxation.hard_errors)),
        "relax_solved": float(np.mean(relaxation.hard_errors == fit.errors)),
        "relax_seconds": relaxation.seconds,
        "brute": brute,
        "brute_seconds": brute_seconds,
    }


def _relax_config(config: MinErrorConfig) -> TrainConfig:
    return replace(RELAXATION_CONFIG, steps=config.relax_steps, record_every=max(1, config.relax_steps // 20))


def _estimate(config: MinErrorConfig, context: StudyContext) -> Estimate:
    """Relaxation steps timed on the largest instance (a bound for the others); MILPs bounded by their limits.

    The MILP's time is what the study measures, so only its bound is known: each instance
    may run to ``instance_time_limit``, and the whole study stops at ``budget``.
    """
    plan = config.plan()
    n, m, seed = plan[-1]
    X, y = set_splitting_instance(n, m, seed=seed, kind="solvable").points()
    spec = f"three_node:{n}"
    data = (torch.tensor(X), torch.tensor(y, dtype=torch.long))
    objective = Objective(build_model(spec), "bce", data, dtype="float64", device=context.device)
    seeds = list(range(seed, seed + config.relax_seeds))
    relax = estimate_training(
        objective, _relax_config(config), thetas=init_thetas(spec, seeds, objective), seeds=seeds, test=False
    )
    estimate = Estimate("study min-error", [])
    estimate.include(relax, f"relaxation of each of {len(plan)} instances (timed at n = {n})", times=len(plan))
    estimate.work.append(Work("MILPs (each up to instance_time_limit)", None, len(plan), config.instance_time_limit))
    estimate.notes.append(
        f"the sweep stops once its MILPs have spent {config.budget:g} s, or at the first MILP that ends "
        "without a proof; the relaxation's steps are fixed work per instance"
    )
    return estimate


# The per-instance columns of `MinErrorStudyResult` named as in each instance's row.
_INT_COLUMNS = (
    "elements",
    "subsets",
    "points",
    "flips",
    "errors",
    "lower_bound",
    "certified",
    "exact",
    "nodes",
    "relax_best",
    "brute",
)
_FLOAT_COLUMNS = ("milp_seconds", "relax_median", "relax_solved", "relax_seconds")


@register_study(
    "min-error",
    "Fewest errors of the 3-node network: certified MILP optimum vs gradient-trained seeds vs n, until a budget.",
    MinErrorConfig,
    quick=MinErrorConfig(
        elements=(5, 6, 8),
        instances=2,
        relax_seeds=4,
        relax_steps=200,
        instance_time_limit=20.0,
        budget=120.0,
    ),
    full=MinErrorConfig(),
    estimate=_estimate,
)
def min_error(config: MinErrorConfig, context: StudyContext) -> MinErrorStudyResult:
    """Run the instances of ``config.plan()`` in order until the budget or a solver stop (module docstring)."""
    plan = config.plan()
    chunks = Chunks(context.directory / "min-error", asdict(config)) if context.directory is not None else None
    rows: list[dict[str, Any]] = []
    spent, stopped, note = 0.0, "complete", f"all {len(plan)} instances run"
    for index, (n, m, seed) in enumerate(plan):
        if spent >= config.budget:
            stopped = "budget"
            note = (
                f"MILP budget of {config.budget:g} s spent after {index} of {len(plan)} instances; "
                f"n = {n} (seed {seed}) and the rest were not run"
            )
            break
        if chunks is not None and chunks.done(index):
            row = {k: v.item() if v.ndim == 0 else v for k, v in chunks.load(index).items()}
        else:
            time_limit = max(0.5, min(config.instance_time_limit, config.budget - spent))
            try:
                row = _instance(config, n, m, seed, time_limit, context.device)
            except SolverError as err:  # not even one network within the limit: nothing to record
                stopped = "time_limit"
                note = f"the MILP found no network at n = {n} (seed {seed}) within {time_limit:.1f} s ({err.status})"
                break
            if chunks is not None:
                chunks.save(index, {k: np.asarray(v) for k, v in row.items()})
        rows.append(row)
        spent += float(row["milp_seconds"])
        if context.progress is not None:
            context.progress(index + 1, len(plan))
        if row["lower_bound"] < row["errors"]:
            stopped = "time_limit"
            note = (
                f"the MILP stopped without a proof at n = {n} (seed {seed}) after {row['milp_seconds']:.1f} s "
                f"with {row['lower_bound']} ≤ min errors ≤ {row['errors']}: larger instances were not run"
            )
            break
    column = lambda key, dtype: np.array([row[key] for row in rows], dtype=dtype)  # noqa: E731
    return MinErrorStudyResult(
        **{key: column(key, np.int64) for key in _INT_COLUMNS},
        **{key: column(key, np.float64) for key in _FLOAT_COLUMNS},
        seeds=column("seed", np.int64),
        status=[str(row["status"]) for row in rows],
        stopped=stopped,
        note=note,
        planned=len(plan),
        spent_seconds=spent,
        config=asdict(config),
    )
