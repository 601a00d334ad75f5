"""Connect two networks: the naive path, the path after alignment, REPAIR, and a trained curve.

`run(objective, a, b, ConnectConfig(...))` is what ``losslab connect`` runs: the straight
line from A to B, then (with alignment) from A to B with its hidden units permuted to
match A, optionally REPAIRed, and optionally a Bézier curve or polygonal chain with a
trained bend between A and the (aligned) B. Each path is evaluated on train and test
loss and error; `ConnectResult.summary` names each number (``barrier[path][curve][definition]``).

The config is checked once, where it is made:

>>> ConnectConfig(points=1)
Traceback (most recent call last):
...
losslab.errors.UserError: The 'points' parameter of connect must be an int ≥ 2. Got 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from losslab.connectivity.align import (
    ALIGN_METHODS,
    Alignment,
    resolve_spec,
)
from losslab.connectivity.align import (
    align as align_networks,
)
from losslab.connectivity.evaluation import PathEvaluation, evaluate_path
from losslab.connectivity.graph import TracedNetwork
from losslab.connectivity.network import as_network, has_batch_norm
from losslab.connectivity.paths import PATH_KINDS, CurveFit, Path, fit_curve
from losslab.connectivity.permutation_spec import SpecLike
from losslab.connectivity.repair import Repair, check_repairable
from losslab.connectivity.weight_matching import weight_matching
from losslab.errors import check_choice, check_int
from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work, best_seconds, seconds_per_point
from losslab.store import register_result
from losslab.train import TrainConfig
from losslab.train.cost import estimate_training

__all__ = ["ConnectConfig", "ConnectResult", "connect", "estimate", "run"]

_NAMES = {"weight": "weight-matched", "activation": "activation-matched"}

# What the summary's numbers are, stated once so a reader of ``losslab connect --json`` needs no code.
DEFINITION_TEXT = {
    "linear": "max over t of v(t) − [(1 − t)·v(0) + t·v(1)]: the excess over the line between the end values "
    "(Entezari et al. 2022)",
    "mean": "max over t of v(t) − ½[v(0) + v(1)]: the height above the mean of the ends (Frankle et al. 2020)",
    "max_endpoint": "max over t of v(t) − max(v(0), v(1)): the height above the worse end",
    "t_linear": "the position t ∈ [0, 1] (0 = A, 1 = B) where the linear barrier peaks",
}
UNITS = {
    "train_loss": "the objective's loss (mean over training examples)",
    "test_loss": "the objective's loss (mean over test examples)",
    "train_error": "fraction of training examples misclassified (1 − accuracy)",
    "test_error": "fraction of test examples misclassified (1 − accuracy)",
}


@dataclass(frozen=True)
class ConnectConfig:
    """What `run` measures between two networks; validated once, here."""

    align: str = "weight"  # weight matching: no data pass, and it removes most of the barrier (Ainsworth et al. 2023)
    repair: bool = False  # REPAIR (Jordan et al. 2023) costs a pass of statistics per point: asked for, not default
    path: str = "line"  # the straight line is what linear mode connectivity is about; curves need training
    points: int = 25  # evenly spaced with both ends: a barrier's top is located to 1/24 of the path
    bn_reset: bool = True  # interpolated batch-norm statistics are wrong in the middle (Jordan et al. 2023)
    seed: int = 0  # activation matching's data order, and nothing else
    curve: TrainConfig | None = None  # how the bend of a bezier/chain path trains; None: CURVE_CONFIG

    def __post_init__(self) -> None:
        check_choice(self.align, "align", "connect", ("none", *ALIGN_METHODS))
        check_choice(self.path, "path", "connect", PATH_KINDS)
        check_int(self.points, "points", "connect", low=2)
        check_int(self.seed, "seed", "connect")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConnectConfig:
        """The config a run recorded (``run.manifest["config"]``); keys of other layers are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("curve"), dict):
            curve = dict(values["curve"])
            curve["betas"] = tuple(curve.get("betas", TrainConfig.betas))  # JSON has no tuples
            values["curve"] = TrainConfig(**curve)
        return cls(**values)


@register_result
@dataclass
class ConnectResult:
    """The paths between two networks: ``paths`` has 'naive', 'aligned', 'repair', 'curve'."""

    paths: dict[str, PathEvaluation]
    alignment: Alignment | None
    curve: CurveFit | None
    config: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """``barrier[path][curve][definition]``, the end values, and what each number is."""
        naive = self.paths["naive"]
        out: dict[str, Any] = {
            "barrier": {key: evaluation.summary() for key, evaluation in self.paths.items()},
            "endpoints": {
                "a": {k: float(v[0]) for k, v in naive.values.items()},
                "b": {k: float(v[-1]) for k, v in naive.values.items()},
            },
            "paths": {key: evaluation.label for key, evaluation in self.paths.items()},
            "definitions": DEFINITION_TEXT,
            "units": {curve: UNITS[curve] for curve in naive.values if curve in UNITS},
        }
        if self.alignment is not None:
            out["alignment"] = self.alignment.summary()
        if self.curve is not None:
            out["curve_fit"] = self.curve.summary()
        return out


def run(
    objective: Objective,
    a: Any,
    b: Any,
    config: ConnectConfig | None = None,
    *,
    spec: SpecLike | None = None,
    test: Objective | bool | None = True,
    progress: Callable[[int, int], None] | None = None,
) -> ConnectResult:
    """Barriers between networks ``a`` and ``b`` of ``objective``'s model, before/after alignment.

    The naive line A → B, then (``config.align`` ≠ 'none') A → B with B's hidden units
    permuted to match A, optionally REPAIRed (Jordan et al. 2023), and optionally a
    'bezier' or 'chain' curve with a trained bend to the (aligned) B (Garipov et al.
    2018). ``spec`` is a permutation spec (default: derived by tracing); ``test`` is True
    for the dataset's test split, an Objective, or False. Nothing here is split into
    pieces worth storing or distributing: the paths depend on the alignment, and a
    connection takes seconds, so there is no ``store`` or ``executor``.
    """
    config = config or ConnectConfig()
    if config.repair:
        check_repairable(objective)
    net_a = as_network(objective, a, name="network A")
    net_b = as_network(objective, b, name="network B")
    evaluate = functools.partial(
        evaluate_path, objective, points=config.points, test=test, bn_reset=config.bn_reset, progress=progress
    )
    paths = {"naive": evaluate(Path("line", net_a, net_b), label="naive line")}
    alignment, end, traced = None, net_b, None
    align = config.align
    if align != "none":
        chosen, traced = resolve_spec(objective, spec)
        alignment = align_networks(objective, net_a, net_b, method=align, spec=chosen, seed=config.seed, traced=traced)
        end = alignment.network(objective)
        paths["aligned"] = evaluate(Path("line", net_a, end), label=f"{_NAMES[align]} line")
    if config.repair:
        traced = traced or TracedNetwork(objective)
        name = f"{_NAMES[align]} line + REPAIR" if align != "none" else "line + REPAIR"
        paths["repair"] = evaluate(Path("line", net_a, end), label=name, repair=Repair(traced, net_a, end))
    fit = None
    if config.path != "line":
        fit = fit_curve(objective, net_a, end, kind=config.path, config=config.curve)
        name = f"{config.path} curve" + (f" to the {_NAMES[align]} B" if align != "none" else "")
        paths["curve"] = evaluate(fit.path(net_a, end), label=name)
    recorded = {**config.to_dict(), "spec": "derived" if spec is None else "user"}
    return ConnectResult(paths, alignment, fit, recorded)


def estimate(objective: Objective, config: ConnectConfig | None = None, *, spec: SpecLike | None = None) -> Estimate:
    """The work `run` would do on ``config`` (path points, alignment, curve training), timed here.

    Path points and curve steps are counts known in advance; weight matching stops when
    no permutation changes, so its sweeps are only bounded (100); REPAIR's statistics
    are not timed (about two passes over the training rows per point).
    """
    config = config or ConnectConfig()
    theta = objective.theta0
    paths = 1 + (config.align != "none") + config.repair + (config.path != "line")
    points = paths * config.points
    test = objective.test_objective(True)
    point_s = seconds_per_point(objective, theta, repeats=1, budget=0.0)
    work = [Work(f"path points, train split ({objective.n:,} rows, {paths} paths)", points, points, point_s)]
    if test is not None:
        work.append(Work(f"path points, test split ({test.n:,} rows)", points, points, seconds_per_point(test, theta)))
    if has_batch_norm(objective.model) and config.bn_reset:
        what = "batch-norm statistics re-estimated at each point (one training pass)"
        work.append(Work(what, points, points, point_s))
    notes = []
    if config.align == "weight":
        chosen, _ = resolve_spec(objective, spec)
        state = as_network(objective, theta, name="network A").state(objective)
        sweep_s = best_seconds(lambda: weight_matching(chosen, state, state, max_sweeps=1), objective.device)
        work.append(Work("weight-matching sweeps (stops when no permutation changes)", None, 100, sweep_s))
    elif config.align == "activation":
        work.append(Work("activation passes over the training rows (A and B)", 2, 2, point_s))
        notes.append("Activation matching's assignment problems are not timed (one per group, seconds at most).")
    if config.repair:
        notes.append("REPAIR's statistics are not timed: about two training passes per point of its path.")
    if config.path != "line":
        curve = estimate_training(objective, config.curve or TrainConfig(), test=False)
        est = Estimate("connect", work, notes)
        est.include(curve, f"{config.path} bend")
        return est
    return Estimate("connect", work, notes)


def connect(
    objective: Objective,
    a: Any,
    b: Any,
    *,
    spec: SpecLike | None = None,
    test: Objective | bool | None = True,
    curve_config: TrainConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> ConnectResult:
    """`run` with the `ConnectConfig` fields as keywords (``align=``, ``points=``, …).

    ``curve_config`` is the config's ``curve``.
    """
    config = ConnectConfig(**options, curve=curve_config)
    return run(objective, a, b, config, spec=spec, test=test, progress=progress)
