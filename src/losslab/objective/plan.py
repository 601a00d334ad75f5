"""A batched evaluator for plain MLPs: many parameter points in one ``baddbmm`` chain.

On CPU, ``vmap`` over ``functional_call`` splits each ``nn.Linear`` into an unfused
batched matmul plus a separate bias add, and a plain loop pays a dispatch per point.
For ``nn.Sequential`` stacks of Linear layers and pointwise activations (the zoo's
MLPs and most users' MLPs) this plan evaluates a chunk of points with one fused
``baddbmm`` per layer; measured on the digits MLP (17,610 parameters, 1,438 rows,
2 CPU cores): 3,050 points/s against 2,280 for the loop and 2,400 for ``vmap``.
Any other architecture uses the generic paths, which give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from losslab.objective.layout import ParamLayout

__all__ = ["SequentialPlan"]

_POINTWISE: dict[type[nn.Module], Callable[[torch.Tensor], torch.Tensor]] = {
    nn.ReLU: torch.relu_,
    nn.Tanh: torch.tanh_,
    nn.Sigmoid: torch.sigmoid_,
    nn.Identity: lambda h: h,
    nn.GELU: lambda h: F.gelu(h),
}


class SequentialPlan:
    """Outputs of an ``nn.Sequential`` MLP at k parameter points at once."""

    def __init__(self, steps: list[tuple[str, object]], flatten: bool) -> None:
        self.steps = steps
        self.flatten = flatten
        self._workspace: dict[tuple[int, torch.dtype], torch.Tensor] = {}

    @classmethod
    def of(cls, model: nn.Module, layout: ParamLayout) -> SequentialPlan | None:
        """The plan for ``model``, or None when it is not a plain Sequential MLP."""
        if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
            return None
        slices = layout.slices
        steps: list[tuple[str, object]] = []
        flatten = False
        for i, (name, module) in enumerate(model.named_children()):
            if isinstance(module, nn.Flatten) and i == 0 and module.start_dim == 1:
                flatten = True
            elif type(module) is nn.Linear:
                weight = slices.get(f"{name}.weight")
                bias = slices.get(f"{name}.bias") if module.bias is not None else None
                if weight is None or (module.bias is not None and bias is None):
                    return None  # tied or frozen parameters: leave it to the generic path
                steps.append(("linear", (weight, bias, module.out_features, module.in_features)))
            elif type(module) in _POINTWISE and not (type(module) is nn.GELU and module.approximate != "none"):
                steps.append(("pointwise", _POINTWISE[type(module)]))
            else:
                return None
        if not steps or steps[0][0] != "linear":
            return None
        return cls(steps, flatten)

    def live_width(self) -> int:
        """Numbers per input row and point alive at once in `outputs`: the widest layer's in + out."""
        return max(arg[2] + arg[3] for kind, arg in self.steps if kind == "linear")  # type: ignore[index]

    def first_layer(self, thetas: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """The first Linear layer's output X Wᵀ + b [k, n, out] at the k points ``thetas`` [k, D].

        It is linear in θ (W and b are slices of θ), which `losslab.surface` uses on a plane:
        f(θ + a d₁ + b d₂) = f(θ) + a f(d₁) + b f(d₂), three products for the whole grid.
        """
        h = X.flatten(1) if self.flatten else X
        if h.ndim != 2:
            raise ValueError("SequentialPlan needs 2-D inputs")
        weight, bias, fan_out, fan_in = self.steps[0][1]  # type: ignore[misc]
        W = thetas[:, weight].view(-1, fan_out, fan_in).transpose(1, 2)
        if bias is None:
            return torch.matmul(h, W)
        return torch.baddbmm(thetas[:, bias].view(-1, 1, fan_out), h.expand(len(thetas), *h.shape), W)

    def outputs(self, thetas: torch.Tensor, X: torch.Tensor, *, first: torch.Tensor | None = None) -> torch.Tensor:
        """Model outputs [k, n, out] at the k points ``thetas`` [k, D] on inputs ``X`` [n, ...].

        For evaluation under ``torch.no_grad()`` (layers write into reused buffers). ``first``:
        the first layer's output at these points [k, n, out] (see `first_layer`), computed
        by the caller and overwritten here; the first layer is then skipped.
        """
        k = thetas.shape[0]
        if first is not None:
            return self._from(1, first, thetas, fresh=True)
        h = X.flatten(1) if self.flatten else X
        if h.ndim != 2:
            raise ValueError("SequentialPlan needs 2-D inputs")
        return self._from(0, h.expand(k, *h.shape), thetas, fresh=False)  # h aliases X until a layer writes

    def _from(self, begin: int, h: torch.Tensor, thetas: torch.Tensor, *, fresh: bool) -> torch.Tensor:
        k = thetas.shape[0]
        for layer, (kind, arg) in enumerate(self.steps[begin:], start=begin):
            if kind == "linear":
                weight, bias, fan_out, fan_in = arg  # type: ignore[misc]
                W = thetas[:, weight].view(k, fan_out, fan_in).transpose(1, 2)
                out = self._buffer(layer, (k, h.shape[1], fan_out), thetas)
                if bias is None:
                    h = torch.bmm(h, W, out=out)
                else:
                    h = torch.baddbmm(thetas[:, bias].view(k, 1, fan_out), h, W, out=out)
                fresh = True
            else:
                act = arg
                h = act(h if fresh else h.clone())  # type: ignore[operator]
        return h.clone()  # the workspace is reused by the next call

    def _buffer(self, layer: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor | None:
        """A layer's output buffer on CPU, kept between calls (None elsewhere: a new tensor).

        On CPU, fresh multi-megabyte outputs each call were returned to the OS and faulted
        back in page by page: on the digits MLP an 8-point call ran at 0.60 ms a point
        against 0.32 ms in a long call. CUDA's caching allocator already reuses memory.
        """
        if like.device.type != "cpu":
            return None
        key = (layer, like.dtype)
        need = math.prod(shape)
        buffer = self._workspace.get(key)
        if buffer is None or buffer.numel() < need:  # grow to the largest chunk seen, then reuse
            buffer = self._workspace[key] = torch.empty(need, dtype=like.dtype)
        return buffer[:need].view(shape)
