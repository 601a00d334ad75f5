"""Barrier before and after alignment as a function of width (Entezari et al. 2022).

Entezari et al. conjecture that, once permutation symmetry is taken into account,
solutions found by SGD have no barrier between them, and observe that the barrier after
alignment falls with width while the naive barrier does not. This study trains two seeds
of an MLP at each width (together, as a seed ensemble), and measures the barrier on the
line between them naively and after each alignment method, with the alignment time.
Each width is one resumable sweep point (a `WidthPoint`). `width_study` runs it on any
`Dataset`; the registered study ``width-barriers`` takes its data by name.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from losslab.connectivity import ALIGN_METHODS, Network, Path, PathEvaluation, align, barrier, evaluate_path
from losslab.data import Dataset, load_data
from losslab.errors import UserError, check_choice, check_each, check_int
from losslab.models import build_model
from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work, best_seconds, seconds_per_point
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study, subset
from losslab.train import TrainConfig, check_training, init_thetas, train_ensemble
from losslab.train.cost import estimate_training

__all__ = ["WidthBarriersConfig", "WidthPoint", "WidthResult", "width_barriers", "width_study"]


@register_result
@dataclass
class WidthResult:
    """``curves[method][curve]`` [W, P] along the line between two seeds at each of ``widths``.

    ``method`` is 'none' (naive), 'weight' or 'activation'; ``align_seconds[method]`` [W]
    is the time the alignment took; ``models`` are the zoo specs trained.
    """

    widths: np.ndarray
    models: list[str]
    t: np.ndarray
    curves: dict[str, dict[str, np.ndarray]]
    align_seconds: dict[str, np.ndarray]
    config: dict[str, Any]

    def barrier(self, method: str = "none", curve: str = "train_loss", definition: str = "linear") -> np.ndarray:
        """The barrier [W] at each width."""
        return np.array([barrier(self.t, row, definition).height for row in self.curves[method][curve]])

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"widths": [int(w) for w in self.widths]}
        for method, curves in self.curves.items():
            out[method] = {f"{c}_barrier": [round(float(v), 6) for v in self.barrier(method, c)] for c in curves}
            if method in self.align_seconds:
                out[method]["align_seconds"] = [round(float(s), 4) for s in self.align_seconds[method]]
        return out


@register_result
@dataclass
class WidthPoint:
    """One width: the line between the two seeds per method, and how long each alignment took."""

    paths: dict[str, PathEvaluation]
    align_seconds: dict[str, float]


def _models(data: Dataset, widths: Sequence[int], depth: int, act: str) -> list[str]:
    fan_in = int(np.prod(data.input_shape))
    return [f"mlp:{fan_in}-{'-'.join([str(w)] * depth)}-{data.output_dim},act={act}" for w in widths]


def width_study(
    data: Dataset,
    widths: Sequence[int] = (32, 128, 512),
    *,
    depth: int = 2,
    act: str = "relu",
    loss: str = "cross_entropy",
    config: TrainConfig | None = None,
    seeds: Sequence[int] = (0, 1),
    methods: Sequence[str] = ("none", "weight", "activation"),
    points: int = 25,
    dtype: str | None = None,
    device: str | None = None,
    context: StudyContext | None = None,
    key: dict[str, Any] | None = None,
) -> WidthResult:
    """Train ``mlp:in-w-…-w-out`` (``depth`` hidden layers) from two seeds per width; barriers.

    Seed s gives both the initialization and the batch order of its member. ``context``
    stores each width as a resumable chunk; ``key`` must then name the data (the study
    passes its config).
    """
    widths = [check_int(w, "widths", "width_study", low=1) for w in widths]
    check_int(depth, "depth", "width_study", low=1)
    for method in methods:
        check_choice(method, "methods", "width_study", ("none", *ALIGN_METHODS))
    if len(set(seeds)) != 2 or len(seeds) != 2:
        raise UserError(f"The width study needs two different seeds. Got {list(seeds)}.")
    if not widths:
        raise UserError("The width study needs at least one width.")
    check_int(points, "points", "width_study", low=2)
    config = config or TrainConfig()
    models = _models(data, widths, depth, act)

    def piece(i: int) -> WidthPoint:
        spec = models[i]
        objective = Objective(build_model(spec, seed=seeds[0]), loss, data, dtype=dtype, device=device)
        ensemble = train_ensemble(
            objective,
            config,
            thetas=init_thetas(spec, seeds, objective),
            seeds=list(seeds),
            test=False,
        )
        a, b = (Network(objective.as_theta(th), objective.buffers) for th in ensemble.thetas)
        paths, seconds = {}, {}
        for method in methods:
            end = b
            if method != "none":
                start = time.perf_counter()
                end = align(objective, a, b, method=method).network(objective)
                seconds[method] = time.perf_counter() - start
            paths[method] = evaluate_path(objective, Path("line", a, end), points=points, label=method)
        return WidthPoint(paths, seconds)

    recorded = {**config.to_dict(), "depth": depth, "act": act, "seeds": list(seeds), "points": points}
    sweep_key = {**recorded, "models": models, "loss": loss, "methods": list(methods), "data": key}
    lines = (context or StudyContext()).sweep("width", sweep_key, len(widths), piece)
    curves = {
        m: {c: np.stack([p.paths[m].values[c] for p in lines]) for c in lines[0].paths[m].values} for m in methods
    }
    seconds = {m: np.array([p.align_seconds[m] for p in lines]) for m in methods if m != "none"}
    first = lines[0].paths[methods[0]]
    return WidthResult(np.asarray(widths, dtype=np.int64), models, first.t, curves, seconds, recorded)


@dataclass(frozen=True)
class WidthBarriersConfig:
    """Two seeds of an MLP per width, trained together, and the barriers between them."""

    data: str = "digits"
    widths: tuple[int, ...] = (32, 128, 512)  # two decades: Entezari et al.'s trend shows across them
    depth: int = 2  # hidden layers, each of the sweep's width
    act: str = "relu"
    loss: str = "cross_entropy"
    train_size: int | None = None  # None: every training row
    optimizer: str = "sgd"
    lr: float = 0.1  # stable for the zoo MLPs with cross-entropy at every width here
    batch_size: int = 64
    epochs: int = 20  # the digits MLPs reach ~97 % test accuracy (benchmarks/connectivity.py)
    methods: tuple[str, ...] = ("none", "weight", "activation")  # 'none' is the naive line
    points: int = 25  # positions on each line, both ends included
    seed: int = 0  # the two members use seed and seed + 1 (initialization and batch order)

    def __post_init__(self) -> None:
        owner = "the width-barriers study"
        check_each(self.widths, "widths", owner, "width", "32,128,512", low=1)
        check_int(self.depth, "depth", owner, low=1)
        for method in self.methods:
            check_choice(method, "methods", owner, ("none", *ALIGN_METHODS))
        check_int(self.points, "points", owner, low=2)
        check_training(self, owner)
        if self.train_size is not None:
            check_int(self.train_size, "train_size", owner, low=2)

    def train_config(self) -> TrainConfig:
        return TrainConfig.of(self, "optimizer", "lr", "batch_size", "epochs")

    def dataset(self) -> Dataset:
        data = load_data(self.data)
        if self.train_size is not None and self.train_size < data.n_train:
            data = subset(data, self.train_size, self.seed)
        return data


def _estimate(config: WidthBarriersConfig, context: StudyContext) -> Estimate:
    """Per width: the pair's training, each alignment (timed once at initialization), each line."""
    data = config.dataset()
    seeds = [config.seed, config.seed + 1]
    estimate = Estimate("study width-barriers", [])
    for spec in _models(data, config.widths, config.depth, config.act):
        objective = Objective(
            build_model(spec, seed=seeds[0]), config.loss, data, device=context.device, dtype=context.dtype
        )
        thetas = init_thetas(spec, seeds, objective)
        estimate.include(estimate_training(objective, config.train_config(), thetas=thetas, seeds=seeds), spec)
        a, b = (Network(objective.as_theta(th), objective.buffers) for th in thetas)
        for method in config.methods:
            if method != "none":
                match = lambda o=objective, a=a, b=b, m=method: align(o, a, b, method=m)  # noqa: E731
                seconds = best_seconds(match, objective.device, repeats=1)
                estimate.work.append(Work(f"{spec}: {method} matching", 1, 1, seconds))
        test = objective.test_objective(True)
        point = seconds_per_point(objective, thetas[0]) + (seconds_per_point(test, thetas[0]) if test else 0.0)
        lines = len(config.methods) * config.points
        estimate.work.append(Work(f"{spec}: points on the lines (train and test)", lines, lines, point))
    return estimate


@register_study(
    "width-barriers",
    "Barrier between two seeds against width, naive and after permutation alignment (Entezari et al. 2022).",
    WidthBarriersConfig,
    quick=WidthBarriersConfig(widths=(8, 32, 128), epochs=5, points=11),
    full=WidthBarriersConfig(),
    estimate=_estimate,
)
def width_barriers(config: WidthBarriersConfig, context: StudyContext) -> WidthResult:
    """Run the width sweep of ``config`` (see the module docstring)."""
    return width_study(
        config.dataset(),
        config.widths,
        depth=config.depth,
        act=config.act,
        loss=config.loss,
        config=config.train_config(),
        seeds=(config.seed, config.seed + 1),
        methods=config.methods,
        points=config.points,
        dtype=context.dtype,
        device=context.device,
        context=context,
        key=asdict(config),
    )
