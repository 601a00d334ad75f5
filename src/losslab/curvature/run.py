"""``losslab hessian`` as one shape: `HessianConfig` (validated once) → `run` → `HessianResult`.

`run` owns what the command does: it builds the curvature operator at θ (the Hessian
or the generalized Gauss–Newton matrix, ``matrix``), computes the pieces asked for in
an order that respects what depends on what (the saddle index reuses the eigenpairs
and the density; sharpness reuses λmax), saves each finished piece in the store's
chunks and loads the saved ones on a rerun, so a run that crashed resumes with the same
numbers. The command line builds the same config and calls the same function.

Pieces that depend on nothing (eigenpairs, trace, density, per-layer) may run on an
executor (`losslab.parallel`); the two that reuse them run here afterwards.

>>> import torch
>>> from losslab import Objective
>>> X = torch.randn(50, 3, dtype=torch.float64)
>>> obj = Objective(torch.nn.Linear(3, 1, bias=False), "mse", (X, torch.zeros(50, 1)), dtype="float64")
>>> result = run(obj, HessianConfig(top=3))
>>> H = X.T @ X / 50  # the Hessian of ½‖Xw − y‖²/n is XᵀX/n
>>> torch.allclose(torch.as_tensor(result.top.eigenvalues), torch.linalg.eigvalsh(H).flip(0), rtol=1e-8)
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from losslab._config import RecordedConfig
from losslab.curvature.cost import estimate_curvature
from losslab.curvature.density import SpectralDensity, slq
from losslab.curvature.lanczos import Eigenpairs, extreme_eigenpairs
from losslab.curvature.operators import MATRICES, matrix_operator
from losslab.curvature.per_layer import LayerCurvature, per_layer
from losslab.curvature.saddle import SaddleIndex, saddle_index
from losslab.curvature.sharpness import Sharpness, sharpness
from losslab.curvature.subsamples import SubsampleSpread, headline, subsample_spread
from losslab.curvature.trace import TraceEstimate, auto_trace, hutchinson, hutchpp, xtrace
from losslab.errors import UserError, check_choice, check_float, check_int
from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work
from losslab.parallel import run_pieces
from losslab.store import Chunks, Executor, RunDir, register_result
from losslab.store.serialize import decode, encode

__all__ = ["TRACE_METHODS", "HessianConfig", "HessianResult", "estimate", "run"]

TRACE_METHODS = {"auto": auto_trace, "hutchpp": hutchpp, "hutchinson": hutchinson, "xtrace": xtrace}
# The pieces in the order they run: the first four depend on nothing, the last two reuse them.
PIECES = ("eigen", "trace", "density", "layers", "saddle", "sharpness")
_INDEPENDENT = 4


class _HasObjective(Protocol):
    def objective(self, **kwargs: Any) -> Objective: ...


@dataclass
class HessianConfig(RecordedConfig):
    """What ``losslab hessian`` computes at θ. Every estimator's own defaults are kept."""

    top: int = 5  # λmax and its four neighbours: tens of products on a trained network
    bottom: int = 0  # the most negative pairs converge slowly (edge of the bulk): ask for them
    trace: bool = False
    density: bool = False
    saddle: bool = False  # implies density and ≥ 5 bottom pairs (the index reads both)
    sharpness: bool = False  # implies top ≥ 1 (λmax is part of it)
    per_layer: bool = False
    matrix: str = "hessian"  # 'ggn': the positive semi-definite Gauss–Newton part (Schraudolph 2002)
    tol: float = 1e-5  # relative residual ‖Hv − λv‖ ≤ tol·‖H‖: safe at float32 (see lanczos)
    max_hvps: int | None = None  # None: 40·k + 400 products, the Lanczos default
    trace_method: str = "auto"  # Hutchinson, or Hutch++ (Meyer et al. 2021) where its sketch pays
    trace_tol: float = 1e-2  # stop once the standard error is ≤ 1 % of |trace|
    trace_max_hvps: int = 1000
    starts: int = 4  # random starts of the density: its error bar needs at least two
    steps: int = 48  # Lanczos steps per start (Ghorbani et al. 2019 use 80 on far larger nets)
    tau: float | None = None  # saddle threshold; None: 1e-3·λmax
    eps: float = 1e-3  # box size of ε-sharpness (Keskar et al. 2017)
    rho: float = 0.1  # radius of adaptive sharpness (Kwon et al. 2021, ℓ2)
    sigma: float = 0.01  # noise scale of average-case sharpness
    seed: int = 0  # every random start and probe
    # On a subsample (``--rows``): λmax and the trace on this many disjoint subsamples, mean ± std.
    # None: 3 on a subsample (the fewest whose standard deviation has two degrees of freedom), else 1.
    subsamples: int | None = None
    compare_full: bool = False  # also λmax and the trace on every row, beside the subsamples'
    # GiB the products may hold (None: the Objective's 1 GiB). Enough for the gradient graph of every
    # row makes each product one backward pass ('reuse'); less rebuilds it per batch per product.
    memory_gib: float | None = None

    def __post_init__(self) -> None:
        for name in ("top", "bottom"):
            check_int(getattr(self, name), name, "hessian", low=0)
        check_choice(self.matrix, "matrix", "hessian", MATRICES)
        check_float(self.tol, "tol", "hessian", low=0.0, high=1.0, low_open=True)
        if self.max_hvps is not None:
            check_int(self.max_hvps, "max_hvps", "hessian", low=1)
        check_choice(self.trace_method, "trace_method", "hessian", TRACE_METHODS)
        check_float(self.trace_tol, "trace_tol", "hessian", low=0.0, high=1.0, low_open=True)
        check_int(self.trace_max_hvps, "trace_max_hvps", "hessian", low=2)
        check_int(self.starts, "starts", "hessian", low=2)
        check_int(self.steps, "steps", "hessian", low=2)
        if self.tau is not None:
            check_float(self.tau, "tau", "hessian", low=0.0)
        for name in ("eps", "rho", "sigma"):
            check_float(getattr(self, name), name, "hessian", low=0.0, low_open=True)
        check_int(self.seed, "seed", "hessian")
        if self.subsamples is not None:
            check_int(self.subsamples, "subsamples", "hessian", low=1)
        if self.memory_gib is not None:
            check_float(self.memory_gib, "memory_gib", "hessian", low=0.0, low_open=True)
        if self.saddle:
            self.top, self.bottom, self.density = max(self.top, 1), max(self.bottom, 5), True
        if self.sharpness:
            self.top = max(self.top, 1)
        if not self.pieces:
            raise UserError(
                "Nothing to compute: ask for top or bottom eigenpairs (--top K, --bottom K), trace, density, "
                "saddle, sharpness or per_layer (--trace, --density, --saddle, --sharpness, --per-layer)."
            )

    @property
    def pieces(self) -> list[str]:
        """The pieces this config computes, in the order `run` computes them."""
        wanted = {
            "eigen": self.top + self.bottom > 0,
            "trace": self.trace,
            "density": self.density,
            "layers": self.per_layer,
            "saddle": self.saddle,
            "sharpness": self.sharpness,
        }
        return [name for name in PIECES if wanted[name]]


@register_result
@dataclass
class HessianResult:
    """The pieces of a curvature run at one θ (None where not asked for).

    ``top``/``bottom`` are None when no pair of that end was asked for. `results` gives
    the pieces under the names a run directory saves them as.
    """

    operator: str
    dim: int
    top: Eigenpairs | None = None
    bottom: Eigenpairs | None = None
    trace: TraceEstimate | None = None
    density: SpectralDensity | None = None
    saddle: SaddleIndex | None = None
    sharpness: Sharpness | None = None
    layers: LayerCurvature | None = None
    subsamples: SubsampleSpread | None = None

    def results(self) -> dict[str, Any]:
        names = ("top", "bottom", "trace", "density", "saddle", "sharpness", "layers", "subsamples")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def warnings(self) -> list[str]:
        """One line per requested eigenpair that is not certified, saying why, and per layer trace
        that missed its error target."""
        lines = [line for pairs in (self.top, self.bottom) if pairs is not None for line in uncertified(pairs)]
        for extra in (self.layers, self.subsamples):
            lines += extra.warnings() if extra is not None else []
        return lines

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"operator": self.operator, "dim": self.dim}
        out.update({name: result.summary() for name, result in self.results().items()})
        warnings = self.warnings()
        if warnings:
            out["warnings"] = warnings
        return out


def uncertified(pairs: Eigenpairs) -> list[str]:
    """Why each pair of ``pairs`` that is not certified is not (empty when all are).

    A pair is certified where the result's own ``certified`` flags say so (per pair, or one
    flag for all), with its ``reason`` (or per-pair ``reasons``); results that carry no
    such flags fall back on ``converged`` (its residual met ``tol``·‖H‖).
    """
    flags = getattr(pairs, "certified", None)
    flags = np.broadcast_to(np.asarray(pairs.converged if flags is None else flags, dtype=bool), pairs.converged.shape)
    reasons = getattr(pairs, "reasons", None)
    reasons = getattr(pairs, "reason", None) if reasons is None else reasons
    lines = []
    for i in np.flatnonzero(~flags):
        reason = reasons[i] if isinstance(reasons, (list, tuple, np.ndarray)) else reasons
        if not reason:
            relative = float(pairs.residuals[i]) / pairs.norm_estimate if pairs.norm_estimate > 0 else float("inf")
            reason = (
                f"relative residual {relative:.2g} > tol {pairs.tol:g} after {pairs.hvps} products "
                "(raise max_hvps, or loosen tol)"
            )
        lines.append(
            f"{pairs.which} eigenpair {i + 1} of {len(flags)} (λ = {float(pairs.eigenvalues[i]):.6g}) "
            f"is not certified: {reason}"
        )
    return lines


def _objective(source: Objective | _HasObjective, config: HessianConfig) -> Objective:
    """``source`` itself, or the objective a setup builds, within ``config.memory_gib`` when given."""
    if isinstance(source, Objective):
        return source
    if config.memory_gib is None:
        return source.objective()
    return source.objective(memory_budget=int(config.memory_gib * (1 << 30)))


def _check_dim(config: HessianConfig, dim: int) -> None:
    if config.top + config.bottom > dim:
        raise UserError(
            f"The 'top' ({config.top}) and 'bottom' ({config.bottom}) parameters of hessian ask for "
            f"{config.top + config.bottom} eigenpairs but the model has {dim} parameters: ask for at most {dim}."
        )


def estimate(source: Objective | _HasObjective, config: HessianConfig) -> Estimate:
    """The products, gradients and points `run` would spend on ``config``, timed here."""
    objective = _objective(source, config)
    _check_dim(config, objective.dim)
    est = estimate_curvature(
        objective.curvature_at(objective.theta0),
        top=config.top,
        bottom=config.bottom,
        max_hvps=config.max_hvps,
        trace=config.trace_method if config.trace else None,
        trace_max_hvps=config.trace_max_hvps,
        density=(config.starts, min(config.steps, objective.dim)) if config.density else None,
        sharpness=config.sharpness,
        per_layer=config.per_layer,
        ggn=config.matrix == "ggn",
    )
    count = _spread_count(objective, config)
    repeats = max(count - 1, 0) + (1 if count and config.compare_full else 0)
    if repeats:
        per = (config.max_hvps or 440) * bool(config.top) + config.trace_max_hvps * config.trace
        unit = next((w.unit_seconds for w in est.work if "products" in w.what), 0.0)
        what = f"products, λmax and trace on {repeats} more row sets (subsamples, all rows; stop when converged)"
        est.work.append(Work(what, None, repeats * per, unit))  # all rows cost more per product: a lower bound
    return est


# ---------------------------------------------------------------------- pieces
def _pack(value: Any) -> dict[str, np.ndarray]:
    """A result as the arrays of one resumable piece (its JSON spec rides along as a string)."""
    arrays: dict[str, np.ndarray] = {}
    spec = encode(value, "r", arrays)
    arrays["__spec__"] = np.asarray(json.dumps(spec))
    return arrays


def _unpack(arrays: dict[str, np.ndarray]) -> Any:
    return decode(json.loads(str(arrays["__spec__"])), arrays)


class _Memory:
    """Pieces kept in this process when no store is given (the same interface as `Chunks`)."""

    def __init__(self) -> None:
        self.pieces: dict[int, dict[str, np.ndarray]] = {}

    def map(
        self,
        fn: Callable[[int], dict[str, np.ndarray]],
        count: int,
        *,
        executor: Executor | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        missing = [i for i in range(count) if i not in self.pieces]
        results = run_pieces(fn, missing, executor)
        for index, arrays in results:
            self.pieces[index] = arrays
            if progress is not None:
                progress(len(self.pieces), count)
        return [self.pieces[i] for i in range(count)]


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def chunk_key(objective: Objective, config: HessianConfig) -> dict[str, Any]:
    """What the saved pieces depend on: pieces saved under another key are discarded."""
    return {
        "analysis": "hessian-v1",
        "config": config.to_dict(),
        "theta": _digest(objective.theta0.detach().cpu().numpy()),
        "data": [objective.dataset.name, objective.split, objective.n],
        "dtype": str(objective.dtype),
        "device": objective.device.type,
        "loss": objective.loss_fn.name,
    }


def run(
    source: Objective | _HasObjective,
    config: HessianConfig,
    *,
    store: RunDir | str | Path | None = None,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> HessianResult:
    """The pieces of ``config`` at ``source``'s θ₀ (an `Objective`, or a setup with ``objective()``).

    ``store``: a `RunDir` (or a directory) whose chunks save each finished piece and load
    it on a rerun; ``executor`` runs the independent pieces; ``progress(done, total)``.
    """
    if not isinstance(config, HessianConfig):
        raise TypeError(f"run() takes a HessianConfig, not {type(config).__name__}")
    objective = _objective(source, config)
    dim = objective.dim
    _check_dim(config, dim)
    _spread_count(objective, config)  # fail before any work on a spread that cannot be made
    steps = min(config.steps, dim)  # a Krylov space of a d × d matrix has at most d vectors
    theta = objective.theta0
    pieces = config.pieces
    done: dict[str, Any] = {}
    built: dict[str, Any] = {}

    def operator() -> tuple[Any, Any]:
        """The gradient graph at θ and the operator on it, built where the first piece runs."""
        if not built:
            built["at"] = objective.curvature_at(theta)
            built["op"] = matrix_operator(objective, built["at"], config.matrix)
        return built["at"], built["op"]

    def compute(name: str) -> Any:
        seed = config.seed
        at, op = operator()
        if name == "eigen":
            high, low = extreme_eigenpairs(
                op, config.top, config.bottom, tol=config.tol, max_hvps=config.max_hvps, seed=seed
            )
            return {"top": high, "bottom": low}
        if name == "trace":
            method = TRACE_METHODS[config.trace_method]
            return method(op, tol=config.trace_tol, max_hvps=config.trace_max_hvps, seed=seed)
        if name == "density":
            return slq(op, starts=config.starts, steps=steps, seed=seed)
        if name == "layers":
            return per_layer(objective, at, ggn=config.matrix == "ggn", trace_tol=config.trace_tol, seed=seed)
        if name == "saddle":
            pairs = done["eigen"]
            return saddle_index(
                op, tau=config.tau, density=done["density"], top=pairs["top"], bottom=pairs["bottom"], seed=seed
            )
        # λmax of sharpness is the Hessian's: the GGN's pairs cannot stand in for it.
        top = done["eigen"]["top"] if config.matrix == "hessian" else None
        return sharpness(objective, theta, eps=config.eps, rho=config.rho, sigma=config.sigma, top=top, seed=seed)

    chunks, spread_chunks = (_chunks(store, name, chunk_key(objective, config)) for name in ("hessian", "spread"))
    piece = lambda index: _pack(compute(pieces[index]))  # noqa: E731
    first = sum(name in PIECES[:_INDEPENDENT] for name in pieces)
    independent = chunks.map(piece, first, executor=executor, progress=progress)
    done.update(zip(pieces[:first], map(_unpack, independent), strict=True))
    dependent = chunks.map(piece, len(pieces), progress=progress)  # the first `first` are loaded, not redone
    done.update(zip(pieces, map(_unpack, dependent), strict=True))

    eigen = done.get("eigen", {"top": None, "bottom": None})
    spread = _spread(objective, config, eigen["top"] if config.top else None, done.get("trace"), spread_chunks)
    return HessianResult(
        config.matrix,
        dim,
        top=eigen["top"] if config.top else None,
        bottom=eigen["bottom"] if config.bottom else None,
        trace=done.get("trace"),
        density=done.get("density"),
        saddle=done.get("saddle"),
        sharpness=done.get("sharpness"),
        layers=done.get("layers"),
        subsamples=spread,
    )


def _spread_count(objective: Objective, config: HessianConfig) -> int:
    """How many subsamples the spread covers (0: no spread), or a UserError when it cannot be made."""
    count = config.subsamples if config.subsamples is not None else (3 if objective.subsampled else 1)
    if objective.subsampled is None:
        if count > 1 or config.compare_full:
            raise UserError(
                "The spread over subsamples and compare_full need a subsample: give --rows N "
                "(objective.subsample(N) in Python)."
            )
        return 0
    if count == 1 and not config.compare_full:
        return 0
    if not (config.top or config.trace):
        raise UserError("The spread over subsamples is of λmax and the trace: ask for --top 1 or more, or --trace.")
    return count


def _chunks(store: RunDir | str | Path | None, name: str, key: dict[str, Any]) -> Chunks | _Memory:
    """Where the pieces ``name`` are saved: the store's chunks, or this process's memory."""
    if store is None:
        return _Memory()
    if isinstance(store, RunDir):
        return store.chunks(name, key)
    return Chunks(Path(store) / name, key)


def _spread(
    objective: Objective,
    config: HessianConfig,
    top: Eigenpairs | None,
    trace: TraceEstimate | None,
    chunks: Chunks | _Memory,
) -> SubsampleSpread | None:
    """λmax and the trace over the subsamples `HessianConfig.subsamples` asks for (None when one)."""
    count = _spread_count(objective, config)
    if not count:
        return None
    first = {
        "lambda_max": float(top.eigenvalues[0]) if top is not None else float("nan"),
        "certified": float(top.all_certified) if top is not None else 0.0,
        "trace": trace.estimate if trace is not None else float("nan"),
        "trace_stderr": trace.stderr if trace is not None else float("nan"),
    }
    method = TRACE_METHODS[config.trace_method] if trace is not None else None

    def compute(other: Objective) -> dict[str, float]:
        return headline(
            other,
            config.matrix,
            top=top is not None,
            trace=method,
            tol=config.tol,
            max_hvps=config.max_hvps,
            trace_tol=config.trace_tol,
            trace_max_hvps=config.trace_max_hvps,
            seed=config.seed,
        )

    def map_pieces(fn: Callable[[int], dict[str, float]], n: int) -> list[dict[str, float]]:
        pack = lambda i: {k: np.asarray(v) for k, v in fn(i).items()}  # noqa: E731
        return [{k: float(v) for k, v in arrays.items()} for arrays in chunks.map(pack, n)]

    return subsample_spread(
        objective, first, count, compute, operator=config.matrix, full=config.compare_full, map_pieces=map_pieces
    )
