"""The runner of ``losslab train``: one seed or a seed ensemble, sharpness tracking, checkpoints.

The command line and Python call the same function, so ``losslab train`` and

    run(objective, TrainRun(TrainConfig(...)), store=RunDir.create(...))

give identical arrays. The runner decides what to train (one run or a vmapped
ensemble), attaches the λmax tracker, and, given a run directory, saves the weights a
later command loads: ``model.pt`` and ``init.pt`` for one run, ``seed-K.pt`` per member.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch

from losslab.errors import UserError, check_int
from losslab.models import save_checkpoint
from losslab.objective import Objective
from losslab.train.config import TrainConfig
from losslab.train.trainer import init_thetas, train, train_ensemble

__all__ = ["TrainOutput", "TrainRun", "initial_thetas", "run"]


class _SetupLike(Protocol):
    """What the runner reads from a command's `losslab.cli.common.Setup`."""

    checkpoint: str | None

    @property
    def model_spec(self) -> str: ...

    def objective(self) -> Objective: ...


@dataclass(frozen=True)
class TrainRun:
    """What ``losslab train`` does beyond one `TrainConfig`."""

    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: int = 1  # members: seeds train.seed, train.seed + 1, …, trained together in one vmapped program
    track_sharpness: int | None = None  # λmax every K steps (edge of stability); one member only

    def __post_init__(self) -> None:
        check_int(self.seeds, "seeds", "train", low=1)
        if self.track_sharpness is not None:
            check_int(self.track_sharpness, "track_sharpness", "train", low=1)
            if self.seeds > 1:
                raise UserError("--track-sharpness follows one run: drop --seeds or set it to 1.")

    @property
    def member_seeds(self) -> list[int]:
        return list(range(self.train.seed, self.train.seed + self.seeds))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainOutput:
    """The runner's results by name ('train' and 'sharpness', or 'ensemble') and the run's summary."""

    results: dict[str, Any]
    summary: dict[str, Any]


def initial_thetas(objective: Objective, config: TrainRun, *, model: str | None = None) -> torch.Tensor | None:
    """The members' starting points [K, D] of an ensemble (None for one seed).

    With a zoo or user ``model`` spec, member k's model is built with its own seed (as
    ``losslab train --seeds K`` does); without one (a checkpoint, or an objective that
    knows no builder) every member starts at the objective's θ.
    """
    if config.seeds == 1:
        return None
    if model is None:
        return objective.theta0.expand(config.seeds, -1).clone()
    return init_thetas(model, config.member_seeds, objective)


def run(
    source: Objective | _SetupLike,
    config: TrainRun | TrainConfig | None = None,
    *,
    store: Any = None,
    thetas: torch.Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainOutput:
    """Train as ``losslab train`` does; with ``store`` (a `losslab.store.RunDir`), save its checkpoints.

    ``source`` is an `Objective` or a command's setup (its objective is built here).
    ``thetas`` [K, D] are the ensemble's starting points (default: `initial_thetas`).
    Results are not saved into ``store``: the caller decides (the CLI's ``finish``).
    """
    # The tracker is an analysis (curvature sits below train in DESIGN.md's layers): import it
    # only when asked, so train itself never depends on it.
    from losslab.curvature import SharpnessTracker

    if config is None or isinstance(config, TrainConfig):
        config = TrainRun(config or TrainConfig())
    if isinstance(source, Objective):
        objective, model = source, None
    else:
        objective, model = source.objective(), None if source.checkpoint is not None else source.model_spec
    if config.seeds > 1 and thetas is None:
        thetas = initial_thetas(objective, config, model=model)
    if config.seeds == 1:
        tracker = SharpnessTracker(config.track_sharpness) if config.track_sharpness is not None else None
        result = train(objective, config.train, progress=progress, callbacks=[tracker] if tracker else [])
        results: dict[str, Any] = {"train": result}
        summary = result.summary()
        if tracker is not None:
            results["sharpness"] = tracker.result()
            summary["sharpness"] = results["sharpness"].summary()
        if store is not None:
            _save(objective, objective.state_dict(result.theta, result.buffers), store.path / "model.pt")
            _save(objective, objective.state_dict(result.theta_init), store.path / "init.pt")
        return TrainOutput(results, summary)
    seeds = config.member_seeds
    ensemble = train_ensemble(objective, config.train, thetas=thetas, seeds=seeds, progress=progress)
    if store is not None:
        for k, s in enumerate(seeds):
            _save(objective, objective.state_dict(ensemble.thetas[k]), store.path / f"seed-{s}.pt")
    return TrainOutput({"ensemble": ensemble}, ensemble.summary())


def _save(objective: Objective, state: dict[str, torch.Tensor], path: Any) -> None:
    """Save ``state`` as the objective's model would (keys, dtypes), loadable with ``weights_only``."""
    model = copy.deepcopy(objective.model).cpu()
    model.load_state_dict(state)
    save_checkpoint(model, path)
