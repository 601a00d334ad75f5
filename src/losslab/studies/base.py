"""What every study shares: a registry with presets, sweep points as resumable chunks.

A study is one function ``run(config, context) -> result`` plus a frozen config
dataclass with two presets: ``quick`` (about a minute on 2 cores; tests and the demo)
and ``full`` (the published setting as closely as this machine allows; benchmarks).
Independent sweep points (a label-noise level, a width, a batch size) go through
`StudyContext.sweep`, which stores each finished point as a chunk of the run, so a
killed study resumes where it stopped and gives bit-identical results. A point is a
registered result object (`losslab.store.register_result`), so the study assembles its
result from named fields, not from string-keyed arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from losslab.data import load_data
from losslab.errors import UserError
from losslab.models import build_model
from losslab.objective import Objective
from losslab.objective.cost import Estimate
from losslab.parallel import run_pieces
from losslab.store import Chunks, Executor

__all__ = ["STUDIES", "Study", "StudyContext", "register_study", "study_objective", "subset"]

Arrays = dict[str, np.ndarray]

# In every sweep's key: chunks written before points were registered objects are stale, never mixed in.
_POINT_FORMAT = "registered-result"


@dataclass
class StudyContext:
    """Where a study's pieces are stored and run, and how it reports progress.

    ``directory`` (a run directory's ``chunks/`` folder) makes sweeps resumable; None
    keeps everything in memory. ``device``/``dtype`` apply to every objective the study
    builds.
    """

    directory: Path | None = None
    executor: Executor | None = None
    progress: Callable[[int, int], None] | None = None
    device: str = "cpu"
    dtype: str = "float32"
    log: list[str] = field(default_factory=list)

    def __getstate__(self) -> dict[str, Any]:
        """What a piece shipped to a Ray worker keeps: where and how to compute, not how to dispatch.

        A piece's closure may capture the context (for ``device``/``dtype``); the executor, the
        progress callback (a progress bar cannot be pickled) and the run directory (on the
        driver's machine) stay with the driver, so a nested sweep runs in the worker's memory.
        """
        return {**self.__dict__, "executor": None, "progress": None, "directory": None}

    def sweep(self, name: str, key: dict[str, Any], count: int, fn: Callable[[int], Any]) -> list[Any]:
        """``[fn(0), …, fn(count-1)]``, each piece saved as it finishes and reused on rerun.

        A piece is a registered result object (or a dict of arrays). ``key`` must describe
        everything the pieces depend on (the config): pieces stored under another key are
        discarded, never mixed in.
        """
        if self.directory is None:
            out: dict[int, Arrays] = {}
            for i, arrays in run_pieces(fn, range(count), self.executor):
                out[i] = arrays
                if self.progress is not None:
                    self.progress(len(out), count)
            return [out[i] for i in range(count)]
        chunks = Chunks(
            self.directory / name, {**key, "device": self.device, "dtype": self.dtype, "points": _POINT_FORMAT}
        )
        return chunks.map(fn, count, executor=self.executor, progress=self.progress)


@dataclass(frozen=True)
class Study:
    """A registered study: its one-line description, presets and runner."""

    name: str
    description: str
    config_type: type
    presets: dict[str, Any]
    run: Callable[[Any, StudyContext], Any]
    estimate: Callable[[Any, StudyContext], Estimate] | None = None  # the work of `run`, timed here
    demo: str | None = None  # the title of its step in ``losslab demo`` (quick preset); None: not in the demo

    def config(self, preset: str = "full", **overrides: Any) -> Any:
        """The preset's config with non-None ``overrides`` applied (unknown keys are errors)."""
        if preset not in self.presets:
            raise UserError(f"The study {self.name!r} has no preset {preset!r}: use one of {', '.join(self.presets)}.")
        known = {f.name for f in fields(self.config_type)}
        for key in overrides:
            if key not in known:
                raise UserError(
                    f"The study {self.name!r} has no setting {key!r}: known settings are {', '.join(sorted(known))}."
                )
        return replace(self.presets[preset], **{k: v for k, v in overrides.items() if v is not None})

    def config_from_dict(self, settings: dict[str, Any]) -> Any:
        """The config a run recorded (``run.manifest["config"]["settings"]``): JSON lists become tuples again."""
        known = {f.name for f in fields(self.config_type)}
        return self.config_type(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in known}
        )


STUDIES: dict[str, Study] = {}


def register_study(
    name: str,
    description: str,
    config_type: type,
    *,
    quick: Any,
    full: Any,
    estimate: Callable[[Any, StudyContext], Estimate] | None = None,
    demo: str | None = None,
) -> Callable[[Callable[[Any, StudyContext], Any]], Callable[[Any, StudyContext], Any]]:
    """Register ``run(config, context)`` as the study ``name`` with its two presets.

    ``estimate(config, context)``, where given, counts and times the work ``run`` would do
    without doing it (``losslab study NAME --estimate``). ``demo`` titles the study's step
    in ``losslab demo``, which runs its quick preset.
    """

    def add(run: Callable[[Any, StudyContext], Any]) -> Callable[[Any, StudyContext], Any]:
        STUDIES[name] = Study(name, description, config_type, {"quick": quick, "full": full}, run, estimate, demo)
        return run

    return add


def subset(data: Any, size: int, seed: int) -> Any:
    """The first ``size`` rows of a seeded permutation of the training split (test split kept).

    Label-noise bookkeeping follows: ``corrupted`` is re-indexed into the subset.
    """
    import torch

    keep = np.sort(np.random.default_rng(seed).permutation(data.n_train)[:size])
    index = torch.as_tensor(keep)
    corrupted = torch.as_tensor(np.flatnonzero(np.isin(keep, data.corrupted.numpy())), dtype=torch.long)
    return replace(data, X_train=data.X_train[index], y_train=data.y_train[index], corrupted=corrupted)


def study_objective(config: Any, context: StudyContext) -> Objective:
    """The `Objective` of a one-network study: ``config.model`` with ``config.loss`` on
    ``config.data`` (a seeded ``config.train_size``-row subset when set), initialized with
    ``config.seed``, on the context's device and dtype."""
    data = load_data(config.data)
    if config.train_size is not None and config.train_size < data.n_train:
        data = subset(data, config.train_size, config.seed)
    model = build_model(config.model, seed=config.seed)
    return Objective(model, config.loss, data, device=context.device, dtype=context.dtype)
