"""Result objects ⇄ (JSON, arrays): how every result is saved and loaded again.

A result is a dataclass registered with `register_result`. Its fields may hold NumPy
arrays (saved in ``.npz``), JSON scalars, strings, lists and dicts of those, and other
registered results (nested). Loading rebuilds the same classes with the same values.

Each saved object names its type by a stable ``module:qualname``
(``"losslab.train.trainer:TrainResult"``). Loading imports that module only when it
meets the name, so the store itself imports no analysis: the analyses sit above it
and register their types when they are imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Any, TypeVar

import numpy as np

__all__ = ["RESULT_TYPES", "decode", "encode", "register_result", "resolve_type", "summary_of", "type_name"]

RESULT_TYPES: dict[str, type] = {}  # "module:qualname" → the registered class
T = TypeVar("T", bound=type)

# Files written before types were named by module (run.json schema 1) hold the bare class
# name. That set of names is closed: every type registered at the time, and where it lived.
_SCHEMA1_TYPES = {
    "Alignment": "losslab.connectivity.align:Alignment",
    "AverageSharpness": "losslab.curvature.sharpness:AverageSharpness",
    "ConnectResult": "losslab.connectivity.connect:ConnectResult",
    "CurveFit": "losslab.connectivity.paths:CurveFit",
    "Directions": "losslab.surface.directions:Directions",
    "DoubleDescentResult": "losslab.studies.double_descent:DoubleDescentResult",
    "Eigenpairs": "losslab.curvature.lanczos:Eigenpairs",
    "EnsembleResult": "losslab.train.trainer:EnsembleResult",
    "FewestErrorsResult": "losslab.exact.perceptron:FewestErrorsResult",
    "GdVsSgdResult": "losslab.studies.gd_vs_sgd:GdVsSgdResult",
    "InstabilityResult": "losslab.connectivity.instability:InstabilityResult",
    "Interpolation": "losslab.surface.interpolation:Interpolation",
    "LayerCurvature": "losslab.curvature.per_layer:LayerCurvature",
    "Line": "losslab.surface.slices:Line",
    "PathEvaluation": "losslab.connectivity.evaluation:PathEvaluation",
    "PerceptronResult": "losslab.exact.perceptron:PerceptronResult",
    "RandomLabelsResult": "losslab.studies.random_labels:RandomLabelsResult",
    "RelaxationResult": "losslab.exact.sgd_gap:RelaxationResult",
    "Relu2Result": "losslab.exact.relu2:Relu2Result",
    "RestartsProblemResult": "losslab.studies.restarts:RestartsProblemResult",
    "RestartsResult": "losslab.studies.restarts:RestartsResult",
    "SaddleIndex": "losslab.curvature.saddle:SaddleIndex",
    "SaddlesResult": "losslab.studies.saddles:SaddlesResult",
    "ScalingResult": "losslab.exact.scaling:ScalingResult",
    "SgdGapResult": "losslab.exact.sgd_gap:SgdGapResult",
    "Sharpness": "losslab.curvature.sharpness:Sharpness",
    "SharpnessTrack": "losslab.curvature.tracking:SharpnessTrack",
    "SpectralDensity": "losslab.curvature.density:SpectralDensity",
    "Surface": "losslab.surface.slices:Surface",
    "ThreeNodeFit": "losslab.exact.three_node:ThreeNodeFit",
    "ThreeNodeResult": "losslab.exact.three_node:ThreeNodeResult",
    "TraceEstimate": "losslab.curvature.trace:TraceEstimate",
    "TrainResult": "losslab.train.trainer:TrainResult",
    "Trajectory": "losslab.surface.trajectory:Trajectory",
    "WidthResult": "losslab.connectivity.width:WidthResult",
    "WorstCaseSharpness": "losslab.curvature.sharpness:WorstCaseSharpness",
}


def type_name(cls: type) -> str:
    """The stable name a result type is saved under: ``module:qualname``."""
    return f"{cls.__module__}:{cls.__qualname__}"


def register_result(cls: T) -> T:
    """Class decorator: make a dataclass saveable by the run store and loadable by `losslab.load`."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass to be registered as a result")
    RESULT_TYPES[type_name(cls)] = cls
    return cls


def resolve_type(name: str) -> type:
    """The registered class saved as ``name``, importing its module on first use.

    ``name`` is ``module:qualname``, or a bare class name from a schema-1 file. Modules
    of losslab are imported on demand; a type defined elsewhere (a user's own result)
    must be registered, by importing its module, before loading. A type that moved to
    another module is still found by its class name once registered.
    Raises KeyError (naming the type) when no registered type matches.
    """
    if name in RESULT_TYPES:
        return RESULT_TYPES[name]
    full = name if ":" in name else _SCHEMA1_TYPES.get(name, f":{name}")
    module, _, qualname = full.partition(":")
    if full in RESULT_TYPES:
        return RESULT_TYPES[full]
    # Only losslab's own modules are imported on demand: a hostile run.json must not make
    # loading import (and run) arbitrary installed code. Other types register by being imported first.
    if module == "losslab" or module.startswith("losslab."):
        try:
            importlib.import_module(module)  # registers its result types
        except ImportError:
            pass  # moved or removed: look for the class by name below
        if full in RESULT_TYPES:
            return RESULT_TYPES[full]
    short = qualname.rsplit(".", 1)[-1]
    matches = [cls for key, cls in RESULT_TYPES.items() if key.rsplit(":", 1)[-1].rsplit(".", 1)[-1] == short]
    if len(matches) == 1:
        return matches[0]
    raise KeyError(f"result type {name!r} is not registered (import the module that defines it)")


def encode(value: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """A JSON-able form of ``value``; arrays go into ``arrays`` under keys derived from ``path``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type_name(type(value))
        if name not in RESULT_TYPES:
            raise TypeError(f"{type(value).__name__} is not registered with register_result")
        fields = {f.name: encode(getattr(value, f.name), f"{path}.{f.name}", arrays) for f in dataclasses.fields(value)}
        return {"__type__": name, **fields}
    if isinstance(value, np.ndarray):
        arrays[path] = value
        return {"__array__": path}
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor slipped in: store as array
        arrays[path] = value.detach().cpu().numpy()
        return {"__array__": path}
    if isinstance(value, dict):
        return {"__dict__": {str(k): encode(v, f"{path}.{k}", arrays) for k, v in value.items()}}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, f"{path}.{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, f"{path}.{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if value is None or isinstance(value, (str, int, bool)):
        return value
    raise TypeError(f"cannot save a {type(value).__name__} at {path}")


def decode(value: Any, arrays: Any) -> Any:
    """Inverse of `encode`; ``arrays`` maps keys to arrays (an open ``np.load``)."""
    if isinstance(value, list):
        return [decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        return np.asarray(arrays[value["__array__"]])
    if "__tuple__" in value:
        return tuple(decode(v, arrays) for v in value["__tuple__"])
    if "__float__" in value:
        return float(value["__float__"])
    if "__dict__" in value:
        return {k: decode(v, arrays) for k, v in value["__dict__"].items()}
    if "__type__" in value:
        cls = resolve_type(str(value["__type__"]))
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: decode(v, arrays) for k, v in value.items() if k in known}
        return cls(**kwargs)
    return {k: decode(v, arrays) for k, v in value.items()}


def summary_of(result: Any, *names: str, **values: Any) -> dict[str, Any]:
    """A result's summary: the fields ``names`` of ``result``, then ``values``.

    Times (fields ending in ``seconds``) are rounded to the millisecond: they are
    measurements, and more digits only make the printed table harder to read.

    >>> from types import SimpleNamespace
    >>> summary_of(SimpleNamespace(hvps=7, wall_seconds=1.23456), "hvps", "wall_seconds", kind="lanczos")
    {'hvps': 7, 'wall_seconds': 1.235, 'kind': 'lanczos'}
    """
    out = {name: getattr(result, name) for name in names}
    out.update({name: round(value, 3) for name, value in out.items() if name.endswith("seconds")})
    return {**out, **values}
