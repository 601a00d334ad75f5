"""Model inputs that are a tensor, a tuple of tensors or a dict of tensors, one row per example.

A batch ``(X, y)`` may carry ``X`` as one tensor, as a tuple ``(a, b)`` (the model is called
``model(a, b)``) or as a dict ``{"input_ids": …, "mask": …}`` (the model is called with those
keyword arguments, ``model(input_ids=…, mask=…)``; a model whose ``forward`` takes one
argument that is not among the keys gets the dict itself). Every tensor has the examples
along its first dimension. Floating tensors follow the objective's dtype; integer tensors
(token ids for ``nn.Embedding``, masks) keep theirs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Union

import torch
from torch import nn

from losslab.errors import UserError

__all__ = [
    "Inputs",
    "arguments",
    "call_args",
    "cast_inputs",
    "count_rows",
    "describe",
    "inputs_finite",
    "leaves",
    "map_inputs",
    "take_rows",
]

Inputs = Union[torch.Tensor, tuple[Any, ...], dict[str, Any]]  # noqa: UP007 (a runtime alias)


def map_inputs(fn: Callable[[torch.Tensor], torch.Tensor], X: Any, name: str = "user") -> Inputs:
    """``fn`` applied to every tensor of ``X`` (lists of tensors become tuples; arrays, numbers and
    nested lists of numbers become tensors)."""
    if isinstance(X, torch.Tensor):
        return fn(X)
    if isinstance(X, dict):
        return {str(k): map_inputs(fn, v, name) for k, v in X.items()}
    if isinstance(X, tuple) or (isinstance(X, list) and X and all(isinstance(v, torch.Tensor) for v in X)):
        return tuple(map_inputs(fn, v, name) for v in X)  # a collated tuple of inputs comes back a list
    try:
        return fn(torch.as_tensor(X))
    except (TypeError, RuntimeError, ValueError):
        raise UserError(
            f"The inputs of {name!r} must be a tensor, a tuple of tensors or a dict of tensors. Got {type(X).__name__}."
        ) from None


def leaves(X: Any) -> list[torch.Tensor]:
    """Every tensor of ``X``, in order."""
    out: list[torch.Tensor] = []
    map_inputs(lambda t: out.append(t) or t, X)
    return out


def count_rows(X: Inputs, name: str = "user") -> int:
    """The number of examples: the common first dimension of every tensor of ``X``."""
    tensors = leaves(X)
    if not tensors:
        raise UserError(f"The inputs of {name!r} hold no tensor: give a tensor, a tuple or a dict of tensors.")
    if any(t.ndim == 0 for t in tensors):
        raise UserError(f"The inputs of {name!r} must have the examples along the first dimension; one is a scalar.")
    sizes = {len(t) for t in tensors}
    if len(sizes) > 1:
        raise UserError(
            f"The input tensors of {name!r} have different numbers of rows {sorted(sizes)}: "
            "give every tensor the examples along its first dimension."
        )
    return sizes.pop()


def cast_inputs(X: Inputs, device: torch.device, dtype: torch.dtype) -> Inputs:
    """``X`` on ``device``; floating tensors in ``dtype``, integer and bool tensors in their own."""
    return map_inputs(lambda t: t.to(device, dtype if t.is_floating_point() else t.dtype), X)


def take_rows(X: Inputs, index: Any) -> Inputs:
    """The rows ``index`` (a slice, an index tensor) of every tensor of ``X``."""
    return map_inputs(lambda t: t[index], X)


def inputs_finite(X: Inputs) -> bool:
    """True when no floating tensor of ``X`` holds NaN or inf."""
    # min and max in one pass, no [n]-sized bool tensor: NaN propagates into both, ±inf is one of them
    return all(
        bool(torch.isfinite(end)) for t in leaves(X) if t.is_floating_point() and t.numel() for end in torch.aminmax(t)
    )


def describe(X: Inputs) -> str:
    """Shapes and dtypes, for messages: ``(4, 3) float32`` or ``{input_ids: (4, 7) int64, …}``."""
    if isinstance(X, torch.Tensor):
        return f"{tuple(X.shape)} {str(X.dtype).removeprefix('torch.')}"
    if isinstance(X, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in X.items()) + "}"
    return "(" + ", ".join(describe(v) for v in X) + ")"


def call_args(model: nn.Module, X: Inputs) -> str:
    """How to call ``model`` on inputs shaped like ``X``, decided once from ``model.forward``'s
    signature (the rule in the module docstring): 'whole' (``model(X)``), 'keywords'
    (``model(**X)``) or 'positional' (``model(*X)``). `arguments` applies it.
    """
    if isinstance(X, torch.Tensor):
        return "whole"
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # no signature to read: call as the data is shaped
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    single = len(positional) == 1 and not any(p.kind == p.VAR_POSITIONAL for p in params)
    if isinstance(X, dict):
        names = {p.name for p in params}
        takes_all = any(p.kind == p.VAR_KEYWORD for p in params) or set(X) <= names
        return "whole" if single and not takes_all else "keywords"
    return "whole" if single and len(X) > 1 else "positional"


def arguments(how: str, X: Inputs) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(args, kwargs) that call a model on ``X`` the way `call_args` decided."""
    if how == "keywords":
        return (), X  # type: ignore[return-value]
    if how == "positional":
        return tuple(X), {}  # type: ignore[arg-type]
    return (X,), {}
