"""The surface and interpolate analyses as one shape: config (validated once) → `run` → result.

`run(setup_or_objective, SurfaceConfig(...))` owns what ``losslab surface`` does: it
resolves the points and runs the config names (``toward``, ``pca_from``, ``dirs_from``),
makes or reloads the directions, projects a training trajectory, picks the axes (a
PCA axis spans the trajectory), refuses a grid over its `Budget`, and evaluates the
grid in resumable pieces (saved to ``store`` when given, run on ``executor``).
`run(..., InterpolateConfig(...))` is ``losslab interpolate``. The command line builds
the same config and calls the same function, so the two give identical arrays.

The first argument is an `Objective` (the center is its θ₀) or a command's setup
(anything with ``objective()``, ``build_model(checkpoint=...)``, ``model_spec``, ``seed``
and ``checkpoint``, such as ``losslab.cli.common.Setup``); only a setup can build the
seeded initialization that ``'init'`` names when no ``init.pt`` is at hand.

>>> import torch
>>> from losslab import Objective
>>> X = torch.randn(30, 2, dtype=torch.float64)
>>> y = X @ torch.tensor([[1.0], [-2.0]], dtype=torch.float64)
>>> obj = Objective(torch.nn.Linear(2, 1), "mse", (X, y), dtype="float64")
>>> grid = run(obj, SurfaceConfig(dirs="random", steps=5))  # cell [2, 2] is θ itself
>>> grid.loss.shape, bool(grid.loss[2, 2] == obj.loss(obj.theta0))
((5, 5), True)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from losslab._config import RecordedConfig
from losslab.errors import UserError, check_choice, check_int
from losslab.models import build_model, load_checkpoint
from losslab.objective import Objective
from losslab.objective.cost import Budget, Estimate, Work, seconds_per_point
from losslab.parallel import LocalExecutor
from losslab.store import Chunks, Executor, RunDir, load
from losslab.surface.directions import DIRECTION_KINDS, Directions, make_directions
from losslab.surface.interpolation import Interpolation, interpolate
from losslab.surface.slices import Line, Surface, axis, line, plane, plane_key
from losslab.surface.trajectory import Trajectory, fit_range, project
from losslab.train import TrainResult

__all__ = ["InterpolateConfig", "SurfaceConfig", "estimate", "run", "setup_inputs"]

Range = tuple[float, float]
SPLITS = ("train", "test")


class SetupLike(Protocol):
    """What the runners need of a command's setup (`losslab.cli.common.Setup` is one)."""

    checkpoint: str | None
    seed: int

    @property
    def model_spec(self) -> str: ...

    def objective(self) -> Objective: ...

    def build_model(self, seed: int | None = None, checkpoint: str | None = None) -> Any: ...


Source = Objective | SetupLike
Store = RunDir | str | Path | None


def _range(value: Any, name: str, owner: str) -> Range | None:
    if value is None:
        return None
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise UserError(f"The '{name}' parameter of {owner} must be a pair (min, max). Got {value!r}.") from None
    values = axis(lo, hi, 2, owner=owner, name=name)  # min < max, both finite
    return float(values[0]), float(values[-1])


def _budget(value: Any, owner: str) -> Budget | None:
    if isinstance(value, dict):  # a config read back from run.json
        value = Budget(**value)
    if value is not None and not isinstance(value, Budget):
        raise UserError(f"The 'budget' parameter of {owner} must be a Budget or None. Got {value!r}.")
    return value


@dataclass
class SurfaceConfig(RecordedConfig):
    """What ``losslab surface`` computes: a plane (or a line, ``line=True``) through θ.

    Cell [i, j] of the grid is L(θ + a_i d₁ + b_j d₂) (see `plane`). How the loss is
    drawn (``--scale``) is not part of the analysis: the report takes it.
    """

    dirs: str = "filter"  # Li et al. 2018: filter normalization makes slices of different networks comparable
    steps: int = 51  # odd, so the default symmetric axis holds 0 (θ itself) exactly
    range: Range | None = None  # None: (-1, 1), or for a PCA axis the trajectory's extent plus 15 %
    y_steps: int | None = None  # None: as many as `steps`
    y_range: Range | None = None  # None: `range`'s (or the trajectory's for a PCA axis)
    split: str = "train"  # 'test': the test split too, on the same grid
    line: bool = False  # a 1-D slice along d₁ only
    seed: int = 0  # the Gaussian draws of the directions
    include_bias: bool = False  # False is Li et al.'s ignore='biasbn': biases and norm parameters stay fixed
    orthogonalize: bool = False  # Gram–Schmidt d₂ against d₁; off by default, as in Li et al.
    toward: str | None = None  # a checkpoint, train run or 'init': d₁ = that point − θ
    pca_from: str | None = None  # a train run: PCA directions of its trajectory, which is drawn on the plane
    dirs_from: str | None = None  # an earlier surface run: its directions (and center, when its checkpoint is used)
    rows_per_chunk: int | None = None  # grid rows per resumable piece; None: ≈256 points
    budget: Budget | None = field(default_factory=Budget)  # None: run a grid of any predicted size

    def __post_init__(self) -> None:
        check_choice(self.dirs, "dirs", "surface", DIRECTION_KINDS)
        check_choice(self.split, "split", "surface", SPLITS)
        check_int(self.steps, "steps", "surface", low=2)
        if self.y_steps is not None:
            check_int(self.y_steps, "y_steps", "surface", low=2)
        self.range = _range(self.range, "range", "surface")
        self.y_range = _range(self.y_range, "y_range", "surface")
        check_int(self.seed, "seed", "surface")
        if self.rows_per_chunk is not None:
            check_int(self.rows_per_chunk, "rows_per_chunk", "surface", low=1)
        for name in ("toward", "pca_from", "dirs_from"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, str(value))
        if self.dirs == "pca" and self.pca_from is None:
            raise UserError(
                "The 'dirs' parameter of surface is 'pca', which needs a trajectory: give pca_from "
                "(--pca-from TRAIN_RUN, the --out of losslab train)."
            )
        self.budget = _budget(self.budget, "surface")


@dataclass
class InterpolateConfig(RecordedConfig):
    """What ``losslab interpolate`` computes: L((1 − α) θ_start + α θ_end), θ_end the objective's θ₀."""

    start: str = "init"  # --from: a checkpoint, a train run, or 'init' (the end's run's init.pt, else the seeded init)
    end: str | None = None  # --to: the end point's name in the result; None: the setup's checkpoint
    steps: int = 51  # α in steps of 0.02 on [0, 1]: fine enough to see a bump of a few percent of the path
    range: Range = (0.0, 1.0)  # α = 0 is the start, α = 1 the end; wider shows the loss beyond both
    split: str = "train"

    def __post_init__(self) -> None:
        check_int(self.steps, "steps", "interpolate", low=2)
        self.range = _range(self.range, "range", "interpolate")  # type: ignore[assignment]
        if self.range is None:
            raise UserError("The 'range' parameter of interpolate must be a pair (min, max). Got None.")
        check_choice(self.split, "split", "interpolate", SPLITS)
        self.start = str(self.start)
        self.end = None if self.end is None else str(self.end)


# ---------------------------------------------------------------------- inputs
def setup_inputs(
    config: SurfaceConfig,
    *,
    model: str | None = None,
    data: str | None = None,
    checkpoint: str | None = None,
    loss: str | None = None,
) -> dict[str, Any]:
    """The model, data, checkpoint and loss of a surface run: those given, else ``dirs_from``'s.

    An earlier surface run brings its model, data, loss and checkpoint (the checkpoint
    carries batch-norm buffers); with ``pca_from`` and no checkpoint, the train run's
    final model is the center. ``data`` None means not given (then 'digits').
    """
    if config.dirs_from is not None:
        earlier = _earlier_surface(config.dirs_from)[1]
        model = model or earlier.get("model")
        data = data or earlier.get("data")
        loss = loss or earlier.get("loss")
        checkpoint = checkpoint or earlier.get("checkpoint")
    if config.pca_from is not None:
        _train_run(config.pca_from, "pca_from")  # before its model.pt is looked for: say what the run is
        checkpoint = checkpoint or config.pca_from
    return {"model": model, "data": data or "digits", "checkpoint": checkpoint, "loss": loss}


def _objective(source: Source) -> Objective:
    return source if isinstance(source, Objective) else source.objective()


def _checkpoint_run(source: Source) -> Path | None:
    """The run directory whose model.pt the setup loaded (None for a plain file or an Objective)."""
    checkpoint = getattr(source, "checkpoint", None) if not isinstance(source, Objective) else None
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    if path.is_dir():
        return path
    return path.parent if path.name == "model.pt" and (path.parent / "run.json").is_file() else None


def _train_run(path: str, name: str) -> TrainResult:
    run = load(path)
    if not isinstance(run.result, TrainResult):
        kind = f"a {run.command}" if run.result is not None else "an empty"
        raise UserError(
            f"The '{name}' parameter needs a train run directory with one seed; {path!r} holds {kind} run: "
            "give the --out of 'losslab train'."
        )
    return run.result


def _earlier_surface(path: str) -> tuple[Surface, dict[str, Any]]:
    earlier = load(path)
    if not isinstance(earlier.result, Surface):
        raise UserError(f"The 'dirs_from' parameter needs a surface run; {path!r} is a {earlier.command} run.")
    return earlier.result, earlier.manifest.get("config", {})


def _point(source: Source, objective: Objective, spec: str, name: str, run_dir: Path | None) -> torch.Tensor:
    """θ of a checkpoint, a train run, or 'init' (the run's init.pt, else the seeded initialization)."""
    if spec == "init" and run_dir is not None and (run_dir / "init.pt").is_file():
        spec = str(run_dir / "init.pt")
    elif spec == "init":
        if isinstance(source, Objective):
            raise UserError(
                f"The '{name}' parameter 'init' needs the model's seeded initialization: pass a setup, not an "
                "Objective, or give a checkpoint."
            )
        return objective.as_theta(build_model(source.model_spec, seed=source.seed), name)
    path = Path(spec)
    if path.is_dir():
        if not (path / "model.pt").is_file():
            raise UserError(f"The '{name}' parameter {spec!r} has no model.pt: give a train run or a .pt file.")
        path = path / "model.pt"
    if isinstance(source, Objective):
        model = load_checkpoint(copy.deepcopy(objective.model), path)
    else:
        model = source.build_model(checkpoint=str(path))
    return objective.as_theta(model, name)


def _chunks(store: Store, name: str, key: dict[str, Any]) -> Chunks | None:
    if store is None:
        return None
    if isinstance(store, RunDir):
        return store.chunks(name, key)
    return Chunks(Path(store) / name, key)


# ---------------------------------------------------------------------- surface
@dataclass
class _Plan:
    """Everything a surface run resolved before its first grid point."""

    objective: Objective
    test: Objective | None
    theta: torch.Tensor
    directions: Directions
    trajectory: Trajectory | None
    a: np.ndarray
    b: np.ndarray | None


def _plan(source: Source, config: SurfaceConfig) -> _Plan:
    objective = _objective(source)
    test = objective.on(split="test") if config.split == "test" else None
    saved, reuse = None, False
    if config.dirs_from is not None:
        saved, earlier = _earlier_surface(config.dirs_from)
        if saved.directions.dim != objective.dim:
            raise UserError(
                f"The 'dirs_from' run {config.dirs_from!r} holds directions of length {saved.directions.dim} "
                f"but the model has {objective.dim} parameters: use that run's model."
            )
        # Its center too, unless another point was asked for (the checkpoint it used is inherited).
        reuse = not isinstance(source, Objective) and source.checkpoint == earlier.get("checkpoint")
    train_result = _train_run(config.pca_from, "pca_from") if config.pca_from is not None else None
    trajectory_run = config.pca_from
    checkpoint_run = _checkpoint_run(source)
    if train_result is None and checkpoint_run is not None and not reuse:
        found = load(checkpoint_run).result  # a train run as the checkpoint: draw its trajectory too
        if isinstance(found, TrainResult):
            train_result, trajectory_run = found, str(checkpoint_run)
    if saved is not None:
        directions = saved.directions
        theta = objective.as_theta(saved.theta) if reuse else objective.theta0
    else:
        theta = objective.theta0
        target = _point(source, objective, config.toward, "toward", checkpoint_run) if config.toward else None
        directions = make_directions(
            objective.layout,
            theta,
            config.dirs,
            seed=config.seed,
            include_bias=config.include_bias,
            orthogonal=config.orthogonalize,
            toward=target,
            snapshots=train_result.snapshots if train_result is not None else None,
            count=1 if config.line else 2,
            toward_label=f"toward {config.toward}",
        )
    trajectory = None
    if train_result is not None and directions.d2 is not None:
        trajectory = project(
            train_result.snapshots,
            theta.cpu().numpy(),
            directions.d1,
            directions.d2,
            steps=train_result.snapshot_steps,
            objective=objective,
            source=str(trajectory_run),
        )
    elif saved is not None and reuse:
        trajectory = saved.trajectory  # same center and directions: the same projection

    def axis_range(given: Range | None, which: int) -> Range:
        if given is not None:
            return given
        if directions.kind[which] == "pca" and trajectory is not None:
            return fit_range(trajectory.coords[:, which])
        if directions.kind[which] == "pca" and train_result is not None:  # a line: d₁ alone
            d = np.asarray(directions.d1, dtype=np.float64)
            offsets = train_result.snapshots.astype(np.float64) - theta.double().cpu().numpy()
            return fit_range(offsets @ d / (d @ d))
        return (-1.0, 1.0)

    a = axis(*axis_range(config.range, 0), config.steps, name="range")
    b = None
    if not config.line:
        y_range = config.y_range or config.range or axis_range(None, 1)
        b = axis(*y_range, config.y_steps or config.steps, name="y_range")
    return _Plan(objective, test, theta, directions, trajectory, a, b)


def _results_bytes(objective: Objective, test: Objective | None, points: int) -> int:
    """Peak memory of a grid's results: loss (and accuracy, for classes) on each split, held twice.

    Twice: the saved pieces and the grid they are joined into exist together once.
    """
    arrays = (2 if test is not None else 1) * (2 if objective.is_classification else 1)
    return 2 * points * arrays * objective.theta0.element_size()


def _grid_estimate(objective: Objective, test: Objective | None, theta: torch.Tensor, points: int) -> Estimate:
    """Grid points on each split, timed here, and the peak memory of their results."""
    splits = [("train", objective)] + ([("test", test)] if test is not None else [])
    work = [
        Work(
            f"grid points, {split} split ({obj.n:,} rows)",
            points,
            points,
            seconds_per_point(obj, theta, repeats=1, budget=0.0),
        )
        for split, obj in splits
    ]
    memory = _results_bytes(objective, test, points)
    notes = [
        f"Evaluated on the '{objective.many_path}' path; a resumed run skips the pieces already saved.",
        f"Peak memory of the results: {memory / 2**30:,.3g} GiB.",
    ]
    return Estimate("surface", work, notes, memory)


def estimate(source: Source, config: SurfaceConfig | InterpolateConfig) -> Estimate:
    """What `run` would spend on ``config`` (points per split, timed here), without running it."""
    objective = _objective(source)
    test = objective.on(split="test") if config.split == "test" else None
    if isinstance(config, InterpolateConfig):
        est = _grid_estimate(objective, test, objective.theta0, config.steps)
        work = [replace(w, what=w.what.replace("grid", "path")) for w in est.work]
        return replace(est, command="interpolate", work=work, notes=est.notes[1:])  # one pass: nothing resumes
    points = config.steps if config.line else config.steps * (config.y_steps or config.steps)
    return _grid_estimate(objective, test, objective.theta0, points)


def _check_budget(plan: _Plan, config: SurfaceConfig) -> None:
    if config.budget is None:
        return
    points = len(plan.a) * (1 if plan.b is None else len(plan.b))
    shape = f"line of {len(plan.a):,} points" if plan.b is None else f"grid of {len(plan.a):,}×{len(plan.b):,} points"
    memory_only = Estimate("surface", [], memory_bytes=_results_bytes(plan.objective, plan.test, points))
    config.budget.check(memory_only, f"surface {shape}")  # free to check: before timing anything
    config.budget.check(_grid_estimate(plan.objective, plan.test, plan.theta, points), f"surface {shape}")


def _run_surface(
    source: Source,
    config: SurfaceConfig,
    store: Store,
    executor: Executor | None,
    progress: Any,
) -> Surface | Line:
    plan = _plan(source, config)
    _check_budget(plan, config)
    if plan.b is None:
        return line(plan.objective, plan.theta, plan.directions, plan.a, test=plan.test)
    grid = (plan.objective, plan.theta, plan.directions, plan.a, plan.b)
    key = plane_key(*grid, test=plan.test, rows_per_chunk=config.rows_per_chunk)
    # Always in pieces of whole rows, stored or not: the pieces are what makes a run from
    # Python, a resumed run and the command line give bit-identical grids.
    return plane(
        *grid,
        test=plan.test,
        chunks=_chunks(store, "plane", key),
        executor=executor or LocalExecutor(),
        rows_per_chunk=config.rows_per_chunk,
        trajectory=plan.trajectory,
        progress=progress,
    )


def _run_interpolate(source: Source, config: InterpolateConfig) -> Interpolation:
    objective = _objective(source)
    test = objective.on(split="test") if config.split == "test" else None
    alphas = axis(*config.range, config.steps, owner="interpolate")
    theta_a = _point(source, objective, config.start, "start", _checkpoint_run(source))
    end = config.end or (getattr(source, "checkpoint", None) if not isinstance(source, Objective) else None) or "θ"
    return interpolate(objective, theta_a, objective.theta0, alphas, test=test, labels=(config.start, str(end)))


def run(
    source: Source,
    config: SurfaceConfig | InterpolateConfig,
    *,
    store: Store = None,
    executor: Executor | None = None,
    progress: Any = None,
) -> Surface | Line | Interpolation:
    """Run a surface (`SurfaceConfig`) or an interpolation (`InterpolateConfig`) on ``source``.

    ``store``: a `RunDir` (or a directory) whose chunks save each finished piece of a
    plane and are loaded again on a rerun; ``executor`` (`losslab.parallel`) runs the
    pieces; ``progress(done, total)`` is called as they finish.
    """
    if isinstance(config, InterpolateConfig):
        return _run_interpolate(source, config)
    if not isinstance(config, SurfaceConfig):
        raise TypeError(f"run() takes a SurfaceConfig or an InterpolateConfig, not {type(config).__name__}")
    return _run_surface(source, config, store, executor, progress)
