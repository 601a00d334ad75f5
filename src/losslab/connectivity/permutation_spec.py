"""Permutation specs: which axes of which tensors one permutation of hidden units moves.

Reordering the hidden units of a layer — the rows of the weight and bias that compute
them, and the columns of every weight that reads them — leaves the function of the
network unchanged (Hecht-Nielsen 1990). A spec lists these symmetries: each *group* is
one set of hidden units (a layer's outputs; in a residual network the whole residual
stream, since every block reads and writes it) and names every tensor axis that the
group's permutation moves. The plain data structure a user writes is a dict::

    {"hidden1": [("fc1.weight", 0), ("fc1.bias", 0), ("fc2.weight", 1)],
     "hidden2": [("fc2.weight", 0), ("fc2.bias", 0), ("out.weight", 1)]}

with names from ``model.state_dict()`` (buffers such as batch-norm running statistics
included). An entry may carry a third number, ``inner``: the axis is then read as
[units, inner] blocks and whole blocks move together, as where a convolution's C
channels of length L are flattened into C·L features: ``("head.weight", 1, L)``.

`losslab.connectivity.derive_spec` builds the spec of MLPs, 1-D/2-D CNNs and residual
networks with batch norm automatically.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from losslab.errors import UserError

__all__ = ["Axis", "PermutationSpec", "SpecLike"]


@dataclass(frozen=True)
class Axis:
    """Axis ``axis`` of the tensor ``name``, moved in blocks of ``inner`` entries."""

    name: str
    axis: int
    inner: int = 1


SpecLike = Any  # a PermutationSpec or the plain {group: [(name, axis[, inner]), ...]} dict


def _entry(group: str, entry: Any) -> Axis:
    if isinstance(entry, Axis):
        return entry
    ok = (
        isinstance(entry, (tuple, list))
        and len(entry) in (2, 3)
        and isinstance(entry[0], str)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in entry[1:])
    )
    if not ok or entry[1] < 0 or (len(entry) == 3 and entry[2] < 1):
        raise UserError(
            f"The entry {entry!r} of group {group!r} of the permutation spec must be (name, axis) "
            "or (name, axis, inner) with a state_dict name, an axis ≥ 0 and inner ≥ 1, "
            "e.g. ('fc1.weight', 0)."
        )
    return Axis(*entry)


@dataclass(frozen=True)
class PermutationSpec:
    """Groups of hidden units, each with the tensor axes its permutation moves."""

    groups: dict[str, tuple[Axis, ...]]

    @classmethod
    def of(cls, spec: SpecLike) -> PermutationSpec:
        """A spec from a `PermutationSpec` or the plain dict form (see the module docstring)."""
        if isinstance(spec, PermutationSpec):
            return spec
        if not isinstance(spec, Mapping) or not spec:
            raise UserError(
                "A permutation spec must be a non-empty dict {group: [(name, axis), ...]}, e.g. "
                "{'hidden1': [('fc1.weight', 0), ('fc1.bias', 0), ('fc2.weight', 1)]}. "
                f"Got {type(spec).__name__}."
            )
        groups: dict[str, tuple[Axis, ...]] = {}
        for group, entries in spec.items():
            if isinstance(entries, (str, bytes)) or not isinstance(entries, Iterable):
                raise UserError(f"Group {group!r} of the permutation spec must be a list of (name, axis) pairs.")
            groups[str(group)] = tuple(_entry(str(group), e) for e in entries)
            if not groups[str(group)]:
                raise UserError(f"Group {group!r} of the permutation spec is empty: list the axes it permutes.")
        return cls(groups)

    def to_dict(self) -> dict[str, list[list[Any]]]:
        """The plain (JSON-able) form; `PermutationSpec.of` reads it back."""
        return {g: [[a.name, a.axis, a.inner] for a in axes] for g, axes in self.groups.items()}

    def sizes(self, state: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """Units per group, after checking every entry against ``state`` (tensors by name)."""
        sizes: dict[str, int] = {}
        owner: dict[tuple[str, int], str] = {}
        for group, axes in self.groups.items():
            for a in axes:
                if a.name not in state:
                    raise UserError(
                        f"The permutation spec names {a.name!r} (group {group!r}), which is not "
                        "a parameter or buffer of this model: use names from model.state_dict()."
                    )
                shape = tuple(state[a.name].shape)
                if a.axis >= len(shape):
                    raise UserError(
                        f"The permutation spec permutes axis {a.axis} of {a.name!r} "
                        f"(group {group!r}), "
                        f"which has shape {shape}: give an axis below {len(shape)}."
                    )
                key = (a.name, a.axis)
                if key in owner:
                    raise UserError(
                        f"Axis {key[1]} of {a.name!r} is in groups {owner[key]!r} and {group!r} "
                        "of the permutation spec: each axis belongs to one group."
                    )
                owner[key] = group
                if shape[a.axis] % a.inner:
                    raise UserError(
                        f"Axis {a.axis} of {a.name!r} has {shape[a.axis]} entries, not a "
                        f"multiple of inner={a.inner} (group {group!r} of the permutation spec)."
                    )
                units = shape[a.axis] // a.inner
                if sizes.setdefault(group, units) != units:
                    raise UserError(
                        f"Group {group!r} of the permutation spec has {sizes[group]} units at "
                        f"{axes[0].name!r} but {units} at {a.name!r} axis {a.axis}: every axis "
                        "of a group must hold the same number of units."
                    )
        return sizes

    def apply(self, state: Mapping[str, torch.Tensor], perms: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` with every group's axes reordered: unit i becomes unit ``perms[group][i]``."""
        out = dict(state)
        for group, axes in self.groups.items():
            perm = perms[group]
            for a in axes:
                out[a.name] = permute_axis(out[a.name], a.axis, perm, a.inner)
        return out

    def covers(self, derived: PermutationSpec) -> None:
        """Fail unless every axis of every group in ``derived`` sits in one group of this spec."""
        where = {(a.name, a.axis): g for g, axes in self.groups.items() for a in axes}
        for axes in derived.groups.values():
            if not any((a.name, a.axis) in where for a in axes):
                shown = ", ".join(f"({a.name!r}, {a.axis})" for a in axes[:4])
                more = ", …" if len(axes) > 4 else ""
                raise UserError(
                    f"The permutation spec does not cover the hidden units of {axes[0].name!r} "
                    f"axis {axes[0].axis}: add a group with {shown}{more}."
                )
            for a in axes:
                if where.get((a.name, a.axis)) != where.get((axes[0].name, axes[0].axis)):
                    raise UserError(
                        f"The permutation spec leaves ({a.name!r}, {a.axis}) out of the group that "
                        f"permutes ({axes[0].name!r}, {axes[0].axis}), though both index the same "
                        "hidden units: put them in one group."
                    )


def permute_axis(tensor: torch.Tensor, axis: int, perm: torch.Tensor, inner: int = 1) -> torch.Tensor:
    """``tensor`` with axis ``axis`` (read as [units, inner] blocks) reordered by ``perm``."""
    axis %= tensor.ndim
    shape = tensor.shape
    blocks = tensor.reshape(*shape[:axis], len(perm), inner, *shape[axis + 1 :])
    return blocks.index_select(axis, perm.to(tensor.device)).reshape(shape)
