"""Result objects ⇄ (JSON, arrays): how every result is saved and loaded again.

A result is a dataclass registered with `register_result`. Its fields may hold NumPy
arrays (saved in ``.npz``), JSON scalars, strings, lists and dicts of those, and other
registered results (nested). Loading rebuilds the same classes with the same values.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

import numpy as np

__all__ = ["RESULT_TYPES", "decode", "encode", "register_result"]

RESULT_TYPES: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register_result(cls: T) -> T:
    """Class decorator: make a dataclass saveable by the run store and loadable by `losslab.load`."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass to be registered as a result")
    RESULT_TYPES[cls.__name__] = cls
    return cls


def encode(value: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """A JSON-able form of ``value``; arrays go into ``arrays`` under keys derived from ``path``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if name not in RESULT_TYPES:
            raise TypeError(f"{name} is not registered with register_result")
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
        cls = RESULT_TYPES.get(value["__type__"])
        if cls is None:
            raise KeyError(value["__type__"])
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: decode(v, arrays) for k, v in value.items() if k in known}
        return cls(**kwargs)
    return {k: decode(v, arrays) for k, v in value.items()}
