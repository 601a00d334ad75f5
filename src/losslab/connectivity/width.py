"""Barrier before and after alignment as a function of width (Entezari et al. 2022).

Entezari et al. conjecture that, once permutation symmetry is taken into account,
solutions found by SGD have no barrier between them, and observe that the barrier after
alignment falls with width while the naive barrier does not. This study trains two seeds
of an MLP at each width (together, as a seed ensemble), and measures the barrier on the
line between them naively and after each alignment method, with the alignment time.
Each width is one resumable chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from losslab.connectivity.align import ALIGN_METHODS, align
from losslab.connectivity.barriers import barrier
from losslab.connectivity.evaluation import evaluate_path
from losslab.connectivity.network import Network
from losslab.connectivity.paths import Path
from losslab.data import Dataset
from losslab.errors import UserError, check_choice, check_int
from losslab.models import build_model
from losslab.objective import Objective
from losslab.store import Chunks, Executor, register_result
from losslab.train import TrainConfig, init_thetas, train_ensemble

__all__ = ["WidthResult", "width_study"]


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
    chunks: Chunks | None = None,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> WidthResult:
    """Train ``mlp:in-w-…-w-out`` (``depth`` hidden layers) from two seeds per width; barriers.

    Seed s gives both the initialization and the batch order of its member.
    """
    widths = [check_int(w, "widths", "width_study", low=1) for w in widths]
    check_int(depth, "depth", "width_study", low=1)
    for method in methods:
        check_choice(method, "methods", "width_study", ("none", *ALIGN_METHODS))
    if len(set(seeds)) != 2 or len(seeds) != 2:
        raise UserError(f"The width study needs two different seeds. Got {list(seeds)}.")
    if not widths:
        raise UserError("The width study needs at least one width.")
    config = config or TrainConfig()
    fan_in = int(np.prod(data.input_shape))
    models = [f"mlp:{fan_in}-{'-'.join([str(w)] * depth)}-{data.output_dim},act={act}" for w in widths]

    def piece(i: int) -> dict[str, np.ndarray]:
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
        out: dict[str, np.ndarray] = {}
        for method in methods:
            end, seconds = b, np.nan
            if method != "none":
                start = time.perf_counter()
                end = align(objective, a, b, method=method).network(objective)
                seconds = time.perf_counter() - start
            evaluation = evaluate_path(objective, Path("line", a, end), points=points)
            out["t"] = evaluation.t
            out[f"{method}.seconds"] = np.asarray(seconds)
            out.update({f"{method}.{curve}": v for curve, v in evaluation.values.items()})
        return out

    if chunks is not None:
        parts = chunks.map(piece, len(widths), executor=executor, progress=progress)
    else:
        parts = []
        for i in range(len(widths)):
            parts.append(piece(i))
            if progress is not None:
                progress(i + 1, len(widths))
    curves = {
        m: {
            k.split(".", 1)[1]: np.stack([p[k] for p in parts])
            for k in parts[0]
            if k.startswith(f"{m}.") and not k.endswith(".seconds")
        }
        for m in methods
    }
    seconds = {m: np.array([float(p[f"{m}.seconds"]) for p in parts]) for m in methods if m != "none"}
    return WidthResult(
        np.asarray(widths, dtype=np.int64),
        models,
        parts[0]["t"],
        curves,
        seconds,
        {**config.to_dict(), "depth": depth, "act": act, "seeds": list(seeds), "points": points},
    )
