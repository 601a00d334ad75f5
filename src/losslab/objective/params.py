"""Which parameters θ holds: the ``params`` selector of `Objective`.

By default θ holds the trainable parameters (``requires_grad=True``), as an optimizer
built from ``model.parameters()`` with frozen tensors would update them, and as
curvlinops' ``params`` argument selects them. Frozen parameters stay fixed at their
values in the model: they are not trained, not part of the Hessian, its dimension D or
a surface's directions, and they are kept in `Objective.state_dict` and checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from losslab.errors import UserError

__all__ = ["ParamSelection", "select_parameters", "unused_parameters"]

ParamSelection = str | Sequence[str] | Callable[[str, nn.Parameter], bool]


def select_parameters(model: nn.Module, params: ParamSelection) -> tuple[list[str], str]:
    """The names θ holds (in ``named_parameters`` order) and a word for how they were chosen.

    ``params``: 'trainable' (``requires_grad=True``), 'all', a list of parameter names, or
    a callable ``fn(name, parameter) -> bool``.
    """
    named = list(model.named_parameters())
    if isinstance(params, str):
        if params == "trainable":
            chosen, how = [n for n, p in named if p.requires_grad], "trainable"
        elif params == "all":
            chosen, how = [n for n, _ in named], "all"
        else:
            raise UserError(
                "The 'params' parameter of Objective must be 'trainable', 'all', a list of parameter names "
                f"or a callable (name, parameter) -> bool. Got {params!r}."
            )
    elif callable(params):
        chosen, how = [n for n, p in named if params(n, p)], "callable"
    elif isinstance(params, Sequence) and all(isinstance(n, str) for n in params):
        known = {n for n, _ in named}
        wrong = [n for n in params if n not in known]
        if wrong:
            raise UserError(
                f"The 'params' list of Objective names {wrong[0]!r}, which the model does not have: "
                f"choose from {', '.join(repr(n) for n, _ in named[:6])}{' …' if len(named) > 6 else ''}."
            )
        wanted = set(params)
        chosen, how = [n for n, _ in named if n in wanted], "names"
    else:
        raise UserError(
            "The 'params' parameter of Objective must be 'trainable', 'all', a list of parameter names "
            f"or a callable (name, parameter) -> bool. Got {type(params).__name__}."
        )
    if not chosen:
        raise UserError(
            f"The 'params' selection {how!r} of Objective holds no parameter (all are frozen or none matched): "
            "pass params='all' or unfreeze some with requires_grad_(True)."
        )
    return chosen, how


def unused_parameters(
    model: nn.Module,
    names: Sequence[str],
    buffers: dict[str, torch.Tensor],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None = None,
) -> list[str]:
    """Parameters among ``names`` that the outputs on ``model(*args, **kwargs)`` do not depend on at all.

    Such parameters have zero gradient and add exact zero eigenvalues to the Hessian.
    """
    params = dict(model.named_parameters())
    leaves = {n: params[n].detach().clone().requires_grad_(True) for n in names}
    private = {k: v.clone() for k, v in buffers.items()}  # train-mode batch norm writes its buffers
    try:
        with torch.enable_grad():
            out: Any = functional_call(model, (leaves, private), args, kwargs)
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            return []
        if not out.requires_grad:
            return list(names)
        grads = torch.autograd.grad(out.sum(), list(leaves.values()), allow_unused=True)
    except Exception:  # the model's own checks report failures of the forward
        return []
    return [n for n, g in zip(names, grads, strict=True) if g is None]
