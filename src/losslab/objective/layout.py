"""Flat parameter vectors θ ∈ R^D and the named tensors of a module, both ways."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ParamLayout"]


@dataclass(frozen=True)
class ParamLayout:
    """Order, names and shapes of a module's parameters inside one flat vector.

    θ is the concatenation of ``p.flatten()`` over ``named_parameters()`` (shared
    parameters counted once; `Objective` keeps only the selected ones, by default the
    trainable ones), so ``flatten(model)`` and ``unflatten(θ)`` are exact
    inverses and ``slices`` locate every tensor and every layer inside θ.
    """

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, model: nn.Module, names: Sequence[str] | None = None) -> ParamLayout:
        """The layout of all of ``model``'s parameters, or of those in ``names`` (in model order)."""
        named = list(model.named_parameters())
        if names is not None:
            wanted = set(names)
            named = [(n, p) for n, p in named if n in wanted]
        return cls(tuple(n for n, _ in named), tuple(p.shape for _, p in named))

    @property
    def numels(self) -> tuple[int, ...]:
        return tuple(int(torch.Size(s).numel()) for s in self.shapes)

    @property
    def dim(self) -> int:
        return sum(self.numels)

    @property
    def slices(self) -> dict[str, slice]:
        """Where each named parameter lives in θ."""
        out, start = {}, 0
        for name, size in zip(self.names, self.numels, strict=True):
            out[name] = slice(start, start + size)
            start += size
        return out

    def groups(self) -> dict[str, slice]:
        """Contiguous slices of θ per layer: parameters grouped by their owning module.

        ``"0.weight"`` and ``"0.bias"`` form group ``"0"``; a top-level parameter forms
        its own group. Groups are contiguous because `named_parameters` lists a module's
        own parameters together.
        """
        out: dict[str, slice] = {}
        for name, where in self.slices.items():
            owner = name.rsplit(".", 1)[0] if "." in name else name
            if owner in out and out[owner].stop == where.start:
                out[owner] = slice(out[owner].start, where.stop)
            else:
                out[owner if owner not in out else name] = where
        return out

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of θ shaped like the module's parameters (no copy; works under vmap)."""
        parts = zip(self.names, theta.split(self.numels), self.shapes, strict=True)
        return {name: part.view(shape) for name, part, shape in parts}

    def flatten(self, params: dict[str, torch.Tensor] | nn.Module) -> torch.Tensor:
        """Concatenate named tensors (or a module's parameters) into θ, in layout order."""
        if isinstance(params, nn.Module):
            params = dict(params.named_parameters())
        return torch.cat([params[name].detach().reshape(-1) for name in self.names])
