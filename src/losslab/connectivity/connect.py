"""Connect two networks: the naive path, the path after alignment, REPAIR, and a trained curve.

`connect` is what ``losslab connect`` runs: the straight line from A to B, then (with
alignment) from A to B with its hidden units permuted to match A, optionally REPAIRed,
and optionally a Bézier curve or polygonal chain with a trained bend between A and the
(aligned) B. Each path is evaluated on train and test loss and error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
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
from losslab.connectivity.network import as_network
from losslab.connectivity.paths import PATH_KINDS, CurveFit, Path, fit_curve
from losslab.connectivity.permutation_spec import SpecLike
from losslab.connectivity.repair import Repair, check_repairable
from losslab.errors import check_choice, check_int
from losslab.objective import Objective
from losslab.store import register_result
from losslab.train import TrainConfig

__all__ = ["ConnectResult", "connect"]

_NAMES = {"weight": "weight-matched", "activation": "activation-matched"}


@register_result
@dataclass
class ConnectResult:
    """The paths between two networks: ``paths`` has 'naive', 'aligned', 'repair', 'curve'."""

    paths: dict[str, PathEvaluation]
    alignment: Alignment | None
    curve: CurveFit | None
    config: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        naive = self.paths["naive"]
        out: dict[str, Any] = {
            "a": {k: float(v[0]) for k, v in naive.values.items()},
            "b": {k: float(v[-1]) for k, v in naive.values.items()},
        }
        for key, evaluation in self.paths.items():
            out[key] = evaluation.summary()
        if self.alignment is not None:
            out["alignment"] = self.alignment.summary()
        if self.curve is not None:
            out["curve_fit"] = self.curve.summary()
        return out


def connect(
    objective: Objective,
    a: Any,
    b: Any,
    *,
    align: str = "weight",
    repair: bool = False,
    path: str = "line",
    points: int = 25,
    spec: SpecLike | None = None,
    bn_reset: bool = True,
    test: Objective | bool | None = True,
    seed: int = 0,
    curve_config: TrainConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ConnectResult:
    """Barriers between networks ``a`` and ``b`` of ``objective``'s model, before/after alignment.

    ``align``: 'none', 'weight' or 'activation'; ``repair``: REPAIR the aligned line
    (Jordan et al. 2023); ``path``: also train a 'bezier' or 'chain' curve to the
    (aligned) B; ``points`` ≥ 2 evenly spaced positions with both endpoints;
    ``bn_reset``: re-estimate batch-norm statistics at each point.
    """
    check_choice(align, "align", "connect", ("none", *ALIGN_METHODS))
    check_choice(path, "path", "connect", PATH_KINDS)
    check_int(points, "points", "connect", low=2)
    if repair:
        check_repairable(objective)
    net_a = as_network(objective, a, name="network A")
    net_b = as_network(objective, b, name="network B")
    config = {
        "align": align,
        "repair": repair,
        "path": path,
        "points": points,
        "bn_reset": bn_reset,
        "seed": seed,
        "spec": "derived" if spec is None else "user",
    }
    evaluate = functools.partial(
        evaluate_path, objective, points=points, test=test, bn_reset=bn_reset, progress=progress
    )
    paths = {"naive": evaluate(Path("line", net_a, net_b), label="naive line")}
    alignment, end, traced = None, net_b, None
    if align != "none":
        chosen, traced = resolve_spec(objective, spec)
        alignment = align_networks(objective, net_a, net_b, method=align, spec=chosen, seed=seed, traced=traced)
        end = alignment.network(objective)
        paths["aligned"] = evaluate(Path("line", net_a, end), label=f"{_NAMES[align]} line")
    if repair:
        traced = traced or TracedNetwork(objective)
        name = f"{_NAMES[align]} line + REPAIR" if align != "none" else "line + REPAIR"
        paths["repair"] = evaluate(Path("line", net_a, end), label=name, repair=Repair(traced, net_a, end))
    fit = None
    if path != "line":
        fit = fit_curve(objective, net_a, end, kind=path, config=curve_config)
        name = f"{path} curve" + (f" to the {_NAMES[align]} B" if align != "none" else "")
        paths["curve"] = evaluate(fit.path(net_a, end), label=name)
    return ConnectResult(paths, alignment, fit, config)
