"""One config and one runner per ``losslab exact`` command: the CLI and Python call the same code.

Each config is a frozen dataclass validated once in ``__post_init__`` (the one message
template of `losslab.errors`); each runner takes the inputs (data, an instance, or
nothing) and the config and returns the result the command saves:

    run_perceptron(data, PerceptronConfig())      → PerceptronResult
    run_three_node(instance, ThreeNodeConfig())   → ThreeNodeResult
    run_relu2(data, Relu2Config())                → Relu2Result (with .sgd)
    run_scaling(None, ScalingConfig())            → ScalingResult

``data`` is a spec string (``xor``, ``spirals:n=40``, ``file.py:fn``), a `Dataset` or
``(X, y)`` arrays; ``instance`` a `SetSplittingInstance`, a spec for `load_instance`
or a dict ``{"elements": n, "subsets": [...]}``. `run` dispatches on the config's type.
``store`` (a run directory) makes the scaling sweep resumable; ``executor`` is accepted
for the common shape, but exact work runs in this process: the scaling study's wall
times are its measurement, and seed ensembles are already batched with vmap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from losslab.data import Dataset, load_data
from losslab.data.set_splitting import KINDS, SetSplittingInstance
from losslab.errors import UserError, check_choice, check_float, check_int
from losslab.exact.instances import _coerce, load_instance, unsplittable_core
from losslab.exact.perceptron import PerceptronResult, perceptron
from losslab.exact.relu2 import Relu2Result, parse_patterns, relu2_optimum
from losslab.exact.scaling import SWEEPS, ScalingResult, element_sizes, subset_sizes, three_node_scaling
from losslab.exact.sgd_gap import RELAXATION_CONFIG, RELU2_CONFIG, relu2_sgd_gap, three_node_relaxation
from losslab.exact.three_node import ThreeNodeResult, certify_three_node
from losslab.objective import resolve_device, resolve_dtype
from losslab.objective.cost import Estimate, Work
from losslab.train import TrainConfig

__all__ = [
    "PerceptronConfig",
    "Relu2Config",
    "ScalingConfig",
    "ThreeNodeConfig",
    "estimate",
    "run",
    "run_perceptron",
    "run_relu2",
    "run_scaling",
    "run_three_node",
]

Progress = Callable[[int, int], None] | None


def _check_weight_bound(value: Any, owner: str, *, theorem: bool = False) -> None:
    words = ("auto", "theorem") if theorem else ("auto",)
    if isinstance(value, str):
        if value not in words:
            raise UserError(
                f"The 'weight_bound' parameter of {owner} must be {' or '.join(map(repr, words))} or a number > 0. "
                f"Got {value!r}."
            )
        return
    check_float(value, "weight_bound", owner, low=0.0, low_open=True)


def _arrays(data: Dataset | str | tuple[Any, Any]) -> tuple[np.ndarray, np.ndarray, Dataset | None]:
    """(X [n, d] float64, y, the Dataset when there is one) from any accepted form of data."""
    if isinstance(data, str):
        data = load_data(data)
    if isinstance(data, Dataset):
        X, y = data.split("train")
        return X.flatten(1).double().cpu().numpy(), y.cpu().numpy(), data
    X, y = data
    X, y = (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v) for v in (X, y))
    return np.asarray(X, dtype=np.float64).reshape(len(X), -1), y, None


# ----------------------------------------------------------------------- perceptron
@dataclass(frozen=True)
class PerceptronConfig:
    """Separability of two-class data, and (optionally) the fewest-errors unit."""

    fewest_errors: bool = True  # the MILP is cheap at the sizes an LP certificate is readable
    weight_bound: float | str = "auto"  # 'auto': the Cramer–Hadamard bound, exact for 0/1 data
    time_limit: float = 60.0  # seconds for HiGHS; a stop without proof is an error, never a number

    def __post_init__(self) -> None:
        owner = "exact perceptron"
        _check_weight_bound(self.weight_bound, owner)
        check_float(self.time_limit, "time_limit", owner, low=0.0, low_open=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_perceptron(
    data: Dataset | str | tuple[Any, Any],
    config: PerceptronConfig | None = None,
    *,
    store: Any = None,
    executor: Any = None,
    progress: Progress = None,
) -> PerceptronResult:
    """`perceptron` on the training split of ``data`` with ``config``'s settings."""
    config = config or PerceptronConfig()
    X, y, _ = _arrays(data)
    return perceptron(X, y, fewest=config.fewest_errors, weight_bound=config.weight_bound, time_limit=config.time_limit)


# ----------------------------------------------------------------------- three-node
@dataclass(frozen=True)
class ThreeNodeConfig:
    """How to certify a set-splitting instance with the 3-node network (the instance is an input)."""

    fewest_errors: bool = False  # the fewest-errors MILP is larger; the decision answers the theorem
    relax_seeds: int = 32  # seeds of gradient descent on the sigmoid relaxation (0: skip)
    weight_bound: float | str = "auto"  # 'auto': 2n for the decision (Blum–Rivest), proven bound otherwise
    time_limit: float = 60.0  # seconds per MILP
    proof: bool = True  # when no splitting exists, extract a minimal unsplittable core and check it
    device: str = "cpu"  # where the relaxation trains

    def __post_init__(self) -> None:
        owner = "exact three-node"
        check_int(self.relax_seeds, "relax_seeds", owner, low=0)
        _check_weight_bound(self.weight_bound, owner, theorem=True)
        check_float(self.time_limit, "time_limit", owner, low=0.0, low_open=True)
        resolve_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "relaxation": RELAXATION_CONFIG.to_dict() if self.relax_seeds else None}


def run_three_node(
    instance: SetSplittingInstance | str | dict[str, Any],
    config: ThreeNodeConfig | None = None,
    *,
    store: Any = None,
    executor: Any = None,
    progress: Progress = None,
) -> ThreeNodeResult:
    """The MILP decision (and fewest errors), brute force, the splitting or a checked core, the relaxation."""
    config = config or ThreeNodeConfig()
    source = ""
    if isinstance(instance, str):
        source, instance = instance, load_instance(instance)
    elif isinstance(instance, dict):
        instance = _coerce(instance, "the instance")
    if not isinstance(instance, SetSplittingInstance):
        raise UserError(
            "run_three_node needs a SetSplittingInstance, a dict {'elements': n, 'subsets': [...]} or a spec "
            f"(file.json, file.py:function). Got a {type(instance).__name__}."
        )
    result = certify_three_node(
        instance, fewest=config.fewest_errors, weight_bound=config.weight_bound, time_limit=config.time_limit
    )
    result.source = source
    if config.proof and not result.decision.trainable:
        result.core, result.core_check = unsplittable_core(instance, time_limit=config.time_limit)
    if config.relax_seeds:
        X, y = instance.points()
        result.relaxation = three_node_relaxation(
            X, y, trainable=result.decision.trainable, seeds=config.relax_seeds, device=config.device
        )
    return result


# ----------------------------------------------------------------------- relu2
@dataclass(frozen=True)
class Relu2Config:
    """The certified optimum of a two-layer ReLU network with weight decay, and SGD's gap to it."""

    lam: float = 1e-3  # weight decay λ: (λ/2)(‖W₁‖² + ‖b₁‖² + ‖α‖²)
    patterns: str = "all"  # 'all' certifies; 'sampled:N' gives an upper bound
    tol: float = 1e-6  # certified once (upper − lower) ≤ tol · upper; Clarabel reaches ~1e-8
    max_patterns: int = 1_000_000  # refuse exact enumeration above this many patterns
    time_limit: float = 300.0  # seconds for the whole column generation
    seed: int = 0  # pattern sampling and the first gradient-training seed
    sgd_seeds: int = 32  # seeds of gradient training to compare (0: skip)
    width: int | None = None  # hidden units for gradient training; None: 2·m*
    optimizer: str = RELU2_CONFIG.optimizer  # full-batch Adam settles near a stationary point
    lr: float = RELU2_CONFIG.lr
    steps: int = RELU2_CONFIG.steps or 3000
    batch_size: int = 0  # rows per step; 0 = full batch
    device: str = "cpu"
    dtype: str = "float64"  # the gaps compared are ~1e-4 relative: float32 round-off would blur them

    def __post_init__(self) -> None:
        owner = "exact relu2"
        check_float(self.lam, "lam", owner, low=0.0, low_open=True)
        parse_patterns(self.patterns)
        check_float(self.tol, "tol", owner, low=0.0, low_open=True)
        check_int(self.max_patterns, "max_patterns", owner, low=1)
        check_float(self.time_limit, "time_limit", owner, low=0.0, low_open=True)
        check_int(self.seed, "seed", owner)
        check_int(self.sgd_seeds, "sgd_seeds", owner, low=0)
        if self.width is not None:
            check_int(self.width, "width", owner, low=1)
        check_int(self.batch_size, "batch_size", owner, low=0)
        resolve_device(self.device)
        resolve_dtype(self.dtype)
        self.train_config()  # validates optimizer, lr and steps with TrainConfig's own checks

    def train_config(self) -> TrainConfig:
        """The gradient training compared against the optimum (weight decay λ on every parameter)."""
        return TrainConfig(
            optimizer=self.optimizer,
            lr=self.lr,
            batch_size=self.batch_size or None,
            steps=self.steps,
            schedule=RELU2_CONFIG.schedule,
            record_every=max(1, self.steps // 12),
            weight_decay=self.lam,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "train": self.train_config().to_dict()}


def relu2_targets(data: Dataset | str | tuple[Any, Any]) -> tuple[np.ndarray, np.ndarray, str]:
    """(X, real targets y, what they are): two classes become ±1, regression targets stay."""
    X, y, dataset = _arrays(data)
    name = dataset.name if dataset is not None else "the data"
    if dataset is not None and dataset.task == "classification":
        if dataset.num_classes != 2 or not np.isin(y, (0, 1)).all():
            raise UserError(
                "relu2 fits one real output: give regression data with one target or two classes (fitted as ±1); "
                f"{name!r} has {dataset.num_classes} classes."
            )
        return X, 2.0 * y - 1.0, "two classes as targets ±1"
    if y.ndim == 2 and y.shape[1] != 1:
        raise UserError(f"relu2 fits one real output; {name!r} has {y.shape[1]} targets per point.")
    return X, y.reshape(-1).astype(np.float64), "regression targets"


def run_relu2(
    data: Dataset | str | tuple[Any, Any],
    config: Relu2Config | None = None,
    *,
    store: Any = None,
    executor: Any = None,
    progress: Progress = None,
) -> Relu2Result:
    """`relu2_optimum` on ``data``, then (``sgd_seeds`` > 0) `relu2_sgd_gap` against it."""
    config = config or Relu2Config()
    X, y, _ = relu2_targets(data)
    result = relu2_optimum(
        X,
        y,
        config.lam,
        patterns=config.patterns,
        seed=config.seed,
        tol=config.tol,
        max_patterns=config.max_patterns,
        time_limit=config.time_limit,
        progress=progress,
    )
    if config.sgd_seeds:
        result.sgd = relu2_sgd_gap(
            result,
            seeds=config.sgd_seeds,
            width=config.width,
            config=config.train_config(),
            device=config.device,
            dtype=config.dtype,
            first_seed=config.seed,
            progress=progress,
        )
    return result


# ----------------------------------------------------------------------- scaling
@dataclass(frozen=True)
class ScalingConfig:
    """Time to certify the 3-node network vs instance size, until a budget runs out."""

    sweep: str = "elements"  # grow n at a fixed ratio, or grow m at a fixed n
    start: int = 4  # first n of the elements sweep
    stop: int = 200  # last n of the elements sweep (if the budget lasts)
    ratio: float = 2.0  # subsets per element: ≈2 is near the splittability threshold of 3-subsets
    elements: int = 12  # n of the subsets sweep
    ratios: tuple[float, ...] = (0.5, 1, 1.5, 2, 2.5, 3, 4, 6)  # across the threshold: easy–hard–easy
    seeds: int = 3  # instances per size (seeds 0, 1, …)
    kind: str = "random"
    budget: float = 60.0  # seconds for the whole study (MILP, brute force and relaxation)
    instance_time_limit: float | None = None  # seconds per instance; None: the budget left
    relax_seeds: int = 0  # also train the sigmoid relaxation per instance (0: skip)

    def __post_init__(self) -> None:
        owner = "exact scaling"
        check_choice(self.sweep, "sweep", owner, SWEEPS)
        check_int(self.start, "start", owner, low=3)
        check_int(self.stop, "stop", owner, low=self.start)
        check_float(self.ratio, "ratio", owner, low=0.0, low_open=True)
        check_int(self.elements, "elements", owner, low=3)
        if not self.ratios:
            raise UserError("The 'ratios' parameter of exact scaling must list at least one ratio, e.g. 1,2,3.")
        for r in self.ratios:
            check_float(r, "ratios", owner, low=0.0, low_open=True)
        check_int(self.seeds, "seeds", owner, low=1)
        check_choice(self.kind, "kind", owner, KINDS)
        check_float(self.budget, "budget", owner, low=0.0, low_open=True)
        if self.instance_time_limit is not None:
            check_float(self.instance_time_limit, "instance_time_limit", owner, low=0.0, low_open=True)
        check_int(self.relax_seeds, "relax_seeds", owner, low=0)

    def sizes(self) -> list[tuple[int, int]]:
        """(elements, subsets) of every planned size, in order."""
        if self.sweep == "elements":
            return element_sizes(self.start, self.stop, self.ratio)
        return subset_sizes(self.elements, list(self.ratios))

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "sizes": self.sizes(),
            "relaxation": RELAXATION_CONFIG.to_dict() if self.relax_seeds else None,
        }


def run_scaling(
    inputs: None = None,
    config: ScalingConfig | None = None,
    *,
    store: Any = None,
    executor: Any = None,
    progress: Progress = None,
) -> ScalingResult:
    """`three_node_scaling` over ``config.sizes()``; finished instances are chunks of ``store``."""
    config = config or ScalingConfig()
    chunks = store.chunks("scaling", config.to_dict()) if store is not None else None
    return three_node_scaling(
        config.sizes(),
        seeds=list(range(config.seeds)),
        kind=config.kind,
        sweep=config.sweep,
        budget_seconds=config.budget,
        instance_time_limit=config.instance_time_limit,
        relax_seeds=config.relax_seeds,
        chunks=chunks,
        progress=progress,
    )


_RUNNERS: dict[type, Callable[..., Any]] = {
    PerceptronConfig: run_perceptron,
    ThreeNodeConfig: run_three_node,
    Relu2Config: run_relu2,
    ScalingConfig: run_scaling,
}


def estimate(config: Any, instance: SetSplittingInstance | None = None) -> Estimate:
    """An upper bound on the solver seconds of ``config``'s command, from its time limits.

    Nothing smaller can be promised: deciding whether the 3-node network fits is NP-complete
    (Blum & Rivest 1992), and how long HiGHS takes on an instance is not predictable from
    its size. ``instance`` (three-node) sizes the unsplittable-core search.
    """
    seconds = lambda what, bound: Work(what, None, max(1, math.ceil(bound)), 1.0)  # noqa: E731
    notes = ["Solver time is bounded by the time limits only; most instances finish far sooner."]
    name = (
        "exact "
        + {
            PerceptronConfig: "perceptron",
            ThreeNodeConfig: "three-node",
            Relu2Config: "relu2",
            ScalingConfig: "scaling",
        }[type(config)]
    )
    if isinstance(config, PerceptronConfig):
        work = [seconds("solver seconds: fewest-errors MILP (the LP is not timed: milliseconds)", config.time_limit)]
        if not config.fewest_errors:
            work = []
            notes = ["One linear program: milliseconds for data of this size; nothing to bound."]
    elif isinstance(config, ThreeNodeConfig):
        calls = 1 + config.fewest_errors
        work = [seconds(f"solver seconds: {calls} MILP(s) at --time-limit each", calls * config.time_limit)]
        if config.proof and instance is not None:
            cores = instance.subset_count + 1  # the deletion filter decides one restricted instance per subset
            what = f"solver seconds: unsplittable-core search, ≤ {cores} MILPs (only when no splitting exists)"
            work.append(seconds(what, cores * config.time_limit))
        if config.relax_seeds:
            notes.append(f"The {config.relax_seeds} relaxation seeds are not included (gradient descent, seconds).")
    elif isinstance(config, Relu2Config):
        work = [seconds("solver seconds: the convex program's column generation", config.time_limit + 1)]
        notes.append("Enumerating the activation patterns comes first and is not timed (--max-patterns caps it).")
        if config.sgd_seeds:
            notes.append(
                f"The {config.sgd_seeds} gradient-training seeds are not included: their width (2·m*) is known "
                "only once the optimum is."
            )
    else:
        work = [seconds("seconds: the sweep stops once its budget is spent", config.budget)]
    return Estimate(name, work, notes)


def run(inputs: Any, config: Any, *, store: Any = None, executor: Any = None, progress: Progress = None) -> Any:
    """The runner of ``config``'s command: ``run("xor", PerceptronConfig())`` is ``losslab exact perceptron``."""
    runner = _RUNNERS.get(type(config))
    if runner is None:
        raise UserError(
            f"losslab.exact.run takes a PerceptronConfig, ThreeNodeConfig, Relu2Config or ScalingConfig. "
            f"Got a {type(config).__name__}."
        )
    return runner(inputs, config, store=store, executor=executor, progress=progress)
