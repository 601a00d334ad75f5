"""The traced graph of a network, and the permutation symmetries read off it.

`TracedNetwork` records the forward pass as a ``torch.fx`` graph of ATen operations
(``make_fx`` in pre-dispatch mode: ``linear``, ``conv2d``, ``batch_norm``, ``add``, …,
with Python control flow already resolved on an example batch). Parameters and buffers
are inputs of the graph, so the same graph runs at any θ.

Deriving the spec: every axis of every tensor in the graph gets a label, and each
operation states which labels must be equal for the operation to commute with a
permutation of hidden units — a linear layer ties its input features to its weight's
columns and gives its output the weight's rows; an addition ties its operands
(residual streams); batch norm ties its statistics to its channels; a reshape that
flattens C channels of length L gives the C·L features the channel label in blocks of
L. Labels are merged in a union–find. The network's inputs, its outputs, batch and
spatial axes are *fixed*: a class of labels that meets one of them cannot be permuted.
Every other class that holds at least two parameter axes is one group of hidden units.
An operation the rules do not know, applied to hidden units, stops the derivation with
a `UserError` that says how to pass a spec instead. Whatever the rules say, every
alignment checks afterwards that the permuted network computes the same function.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx
from torch.func import functional_call

from losslab.connectivity.network import Network
from losslab.connectivity.permutation_spec import Axis, PermutationSpec
from losslab.data.inputs import cast_inputs
from losslab.errors import UserError
from losslab.objective import Objective

__all__ = ["Layer", "Probe", "TracedNetwork", "derive_spec"]

Label = tuple[int, int]  # (union–find element, inner block size)
FIXED: Label = (0, 1)

_POINTWISE = {
    "relu",
    "tanh",
    "sigmoid",
    "gelu",
    "silu",
    "elu",
    "leaky_relu",
    "hardtanh",
    "softplus",
    "mish",
    "selu",
    "celu",
    "hardswish",
    "hardsigmoid",
    "logsigmoid",
    "neg",
    "abs",
    "exp",
    "log",
    "sin",
    "cos",
    "square",
    "sqrt",
    "rsqrt",
    "reciprocal",
    "erf",
    "sign",
    "clone",
    "contiguous",
    "alias",
    "detach",
    "_to_copy",
    "to",
    "dropout",
    "feature_dropout",
    "alpha_dropout",
    "lift_fresh_copy",
    "add",
    "sub",
    "rsub",
    "mul",
    "div",
    "pow",
    "maximum",
    "minimum",
    "where",
    "clamp",
    "clamp_min",
    "clamp_max",
    "softmax",
    "_softmax",
    "log_softmax",
    "_log_softmax",
    "threshold",
    "masked_fill",
}
_RESHAPE = {
    "view",
    "reshape",
    "_unsafe_view",
    "flatten",
    "unflatten",
    "unsqueeze",
    "squeeze",
    "view_as",
}
_TRANSPOSE = {"t", "transpose", "permute", "numpy_T", "swapaxes", "swapdims", "movedim"}
_MATMUL = {"mm", "bmm", "matmul", "addmm"}
_CONV = {
    "conv1d",
    "conv2d",
    "conv3d",
    "convolution",
    "_convolution",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
}
_BATCH_NORM = {
    "batch_norm",
    "native_batch_norm",
    "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit",
    "instance_norm",
}
_REDUCE = {"mean", "sum", "amax", "amin", "logsumexp", "var", "std", "prod", "linalg_vector_norm"}
_POOL = {f"{kind}_pool{d}d{tail}" for kind in ("max", "avg") for d in (1, 2, 3) for tail in ("", "_with_indices")} | {
    f"{a}adaptive_{kind}_pool{d}d" for a in ("", "_") for kind in ("max", "avg") for d in (1, 2, 3)
}


class _Underivable(Exception):
    """An operation on hidden units that the rules cannot see through."""


class _UnionFind:
    """Labels of tensor axes; element 0 is the fixed class.

    ``factor[e]`` relates an element to its parent: (e, k) ≡ (parent, k·factor[e]).
    """

    def __init__(self) -> None:
        self.parent = [0]
        self.factor = [1]

    def new(self) -> Label:
        self.parent.append(len(self.parent))
        self.factor.append(1)
        return (len(self.parent) - 1, 1)

    def find(self, label: Label) -> Label:
        """The label as (root, inner block size relative to the root), compressing the path."""
        element, inner = label
        path = []
        while self.parent[element] != element:
            path.append(element)
            element = self.parent[element]
        total = 1
        for e in reversed(path):  # nearest the root first: total is e's factor to the root
            total *= self.factor[e]
            self.parent[e], self.factor[e] = element, total
        return (element, inner * (self.factor[label[0]] if path else 1))

    def fixed(self, label: Label) -> bool:
        return self.find(label)[0] == 0

    def unify(self, a: Label, b: Label) -> None:
        (ra, ka), (rb, kb) = self.find(a), self.find(b)
        if ra == 0 or rb == 0:
            other = rb if ra == 0 else ra
            self.parent[other], self.factor[other] = 0, 1
            return
        if ra == rb:
            if ka != kb:
                raise _Underivable("one axis is read in blocks of two different sizes")
            return
        if kb % ka == 0:  # attach ra under rb: (ra, ka) ≡ (rb, kb) needs factor kb / ka
            self.parent[ra], self.factor[ra] = rb, kb // ka
        elif ka % kb == 0:
            self.parent[rb], self.factor[rb] = ra, ka // kb
        else:
            raise _Underivable("an axis is reshaped in blocks that do not nest")


def _name(node: fx.Node) -> str:
    if node.target is operator.getitem:
        return "getitem"
    packet = getattr(node.target, "overloadpacket", None)
    name = getattr(packet, "__name__", str(node.target))
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name


def _arguments(node: fx.Node) -> dict[str, Any]:
    """The call's arguments by schema name (defaults filled in)."""
    schema = node.target._schema  # type: ignore[union-attr]
    out = {a.name: a.default_value for a in schema.arguments}
    out.update({a.name: v for a, v in zip(schema.arguments, node.args, strict=False)})
    out.update(node.kwargs)
    return out


def _is_tensor(value: Any) -> bool:
    return isinstance(value, fx.Node) and isinstance(value.meta.get("val"), torch.Tensor)


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(int(s) for s in node.meta["val"].shape)


def _fixed_like(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return [FIXED] * value.ndim
    if isinstance(value, (tuple, list)):
        return [_fixed_like(v) for v in value]
    return None


class _Labeller:
    """Assigns labels to every axis of every tensor in a graph, merging them by the rules above."""

    def __init__(self, graph: fx.Graph, names: Sequence[str]) -> None:
        self.uf = _UnionFind()
        self.labels: dict[fx.Node, Any] = {}
        self.axes: dict[tuple[str, int], Label] = {}
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        for node, name in zip(placeholders, [*names, None], strict=True):
            if name is None:  # the data: its axes are fixed
                self.labels[node] = _fixed_like(node.meta.get("val"))
                continue
            self.labels[node] = [self.uf.new() for _ in _shape(node)]
            for axis, label in enumerate(self.labels[node]):
                self.axes[(name, axis)] = label
        for node in graph.nodes:
            if node.op == "placeholder":
                continue
            if node.op == "output":
                self._fix(self.labels_of(node.args[0]))
            elif node.op == "get_attr":
                self.labels[node] = _fixed_like(node.meta.get("val"))
            elif node.op == "call_function":
                try:
                    self.labels[node] = self._rule(node)
                except _Underivable as exc:
                    raise _Underivable(f"{exc} (graph node {node.name!r})") from None
            else:
                raise _Underivable(f"a {node.op} node")

    # ---------------------------------------------------------------- helpers
    def labels_of(self, value: Any) -> Any:
        if isinstance(value, fx.Node):
            return self.labels.get(value)
        if isinstance(value, (tuple, list)):
            return [self.labels_of(v) for v in value]
        return None

    def _fix(self, labels: Any) -> None:
        if isinstance(labels, tuple) and len(labels) == 2 and all(isinstance(v, int) for v in labels):
            self.uf.unify(labels, FIXED)
        elif isinstance(labels, list):
            for item in labels:
                self._fix(item)

    def _live(self, labels: Any) -> bool:
        if isinstance(labels, tuple) and len(labels) == 2 and all(isinstance(v, int) for v in labels):
            return not self.uf.fixed(labels)
        return isinstance(labels, list) and any(self._live(item) for item in labels)

    def _broadcast(self, operands: Sequence[fx.Node], out_shape: tuple[int, ...]) -> list[Label]:
        """Labels of an elementwise result: operands align from the right, tied unless broadcast."""
        result = [FIXED] * len(out_shape)
        for d in range(1, len(out_shape) + 1):
            tied = [self.labels[a][-d] for a in operands if len(_shape(a)) >= d and _shape(a)[-d] == out_shape[-d] > 1]
            for label in tied[1:]:
                self.uf.unify(tied[0], label)
            if tied:
                result[-d] = tied[0]
        return result

    # ---------------------------------------------------------------- rules
    def _rule(self, node: fx.Node) -> Any:
        name = _name(node)
        if name == "getitem":
            return self.labels[node.args[0]][node.args[1]]  # type: ignore[index]
        tensors = [a for a in (*node.args, *node.kwargs.values()) if _is_tensor(a)]
        nested = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, (list, tuple))]
        if name in _POINTWISE:
            return self._broadcast(tensors, _shape(node))
        if name == "linear":
            return self._linear(node)
        if name in _MATMUL:
            return self._matmul(node, name)
        if name in _CONV:
            return self._conv(node, name)
        if name in _BATCH_NORM:
            return self._batch_norm(node)
        if name in ("layer_norm", "native_layer_norm"):
            return self._layer_norm(node)
        if name in ("group_norm", "native_group_norm"):
            return self._group_norm(node, name)
        if name in _RESHAPE:
            return self._reshape(node.args[0], _shape(node))  # type: ignore[arg-type]
        if name in _TRANSPOSE:
            return self._transpose(node)
        if name == "expand":
            x = node.args[0]
            si, so, lx = _shape(x), _shape(node), self.labels[x]  # type: ignore[arg-type,index]
            off = len(so) - len(si)
            return [lx[d - off] if d >= off and si[d - off] == so[d] else FIXED for d in range(len(so))]
        if name in _REDUCE:
            return self._reduce(node)
        if name in _POOL:
            return self._pool(node)
        if name in ("slice", "select", "narrow"):
            return self._slice(node, name)
        if name == "cat":
            return self._cat(node)
        if not isinstance(node.meta.get("val"), (torch.Tensor, tuple, list)):
            return None  # shape assertions and the like: nothing flows on from them
        if any(self._live(self.labels_of(a)) for a in (*tensors, *nested)):
            raise _Underivable(f"the operation {name!r} is not understood on hidden units")
        return _fixed_like(node.meta.get("val"))

    def _linear(self, node: fx.Node) -> list[Label]:
        args = _arguments(node)
        lx, lw = self.labels[args["input"]], self.labels[args["weight"]]
        if len(lw) != 2:
            raise _Underivable("a linear layer without a 2-D weight")
        self.uf.unify(lx[-1], lw[1])
        if args["bias"] is not None:
            self.uf.unify(self.labels[args["bias"]][0], lw[0])
        return [*lx[:-1], lw[0]]

    def _matmul(self, node: fx.Node, name: str) -> list[Label]:
        args = _arguments(node)
        if name == "addmm":
            a, b = args["mat1"], args["mat2"]
        else:
            a, b = args["self"], args["other" if name == "matmul" else "mat2"]
        la, lb = self.labels[a], self.labels[b]
        if len(la) < 2 or len(lb) < 2:
            raise _Underivable("a matrix product with a vector")
        self.uf.unify(la[-1], lb[-2])
        sa, sb = _shape(a), _shape(b)
        batch = [FIXED] * (len(_shape(node)) - 2)
        for d in range(1, len(batch) + 1):
            tied = [lab[-2 - d] for lab, s in ((la, sa), (lb, sb)) if len(s) >= d + 2 and s[-2 - d] > 1]
            for label in tied[1:]:
                self.uf.unify(tied[0], label)
            if tied:
                batch[-d] = tied[0]
        out = [*batch, la[-2], lb[-1]]
        if name == "addmm":
            bias = args["self"]
            for d in range(1, len(_shape(bias)) + 1):
                if _shape(bias)[-d] > 1:
                    self.uf.unify(self.labels[bias][-d], out[-d])
        return out

    def _conv(self, node: fx.Node, name: str) -> list[Label]:
        args = _arguments(node)
        x, w, b = args["input"], args["weight"], args["bias"]
        transposed = bool(args.get("transposed", name.startswith("conv_transpose")))
        groups = int(args.get("groups", 1))
        lx, lw = self.labels[x], self.labels[w]
        # A convolution mixes positions and kernel taps: those axes never permute.
        for label in (*lx[2:], *lw[2:]):
            self.uf.unify(label, FIXED)
        in_axis, out_axis = (0, 1) if transposed else (1, 0)
        if groups == 1:
            self.uf.unify(lx[1], lw[in_axis])
            channel = lw[out_axis]
        elif not transposed and groups == _shape(x)[1] == _shape(w)[0] and _shape(w)[1] == 1:
            self.uf.unify(lx[1], lw[0])  # depthwise: output channel c reads input channel c only
            channel = lw[0]
        else:
            raise _Underivable(f"a grouped convolution (groups={groups})")
        if b is not None:
            self.uf.unify(self.labels[b][0], channel)
        return [lx[0], channel, *[FIXED] * (len(_shape(node)) - 2)]

    def _batch_norm(self, node: fx.Node) -> Any:
        x = node.args[0]
        lx = self.labels[x]  # type: ignore[index]
        channel = lx[1] if len(lx) > 1 else FIXED
        for stat in node.args[1:5]:  # weight, bias, running_mean, running_var in every variant
            if _is_tensor(stat):
                self.uf.unify(self.labels[stat][0], channel)  # type: ignore[index]
        value = node.meta["val"]
        if isinstance(value, torch.Tensor):
            return lx
        return [
            lx,
            *(
                [channel] if tuple(v.shape) == (_shape(x)[1],) else _fixed_like(v)  # type: ignore[arg-type]
                for v in value[1:]
            ),
        ]

    def _layer_norm(self, node: fx.Node) -> Any:
        args = _arguments(node)
        lx = self.labels[args["input"]]
        k = len(args["normalized_shape"])
        affine = [args[key] for key in ("weight", "bias") if args[key] is not None]
        if k == 1:  # statistics over the features are symmetric in them: the features may permute
            for p in affine:
                self.uf.unify(self.labels[p][0], lx[-1])
        else:
            for label in (*lx[-k:], *(lab for p in affine for lab in self.labels[p])):
                self.uf.unify(label, FIXED)
        value = node.meta["val"]
        return lx if isinstance(value, torch.Tensor) else [lx, *(_fixed_like(v) for v in value[1:])]

    def _group_norm(self, node: fx.Node, name: str) -> Any:
        args = _arguments(node)
        lx = self.labels[args["input"]]
        groups = args["num_groups"] if name == "group_norm" else args["group"]
        affine = [args[key] for key in ("weight", "bias") if args[key] is not None]
        if groups in (1, _shape(args["input"])[1]):  # one group, or one per channel: symmetric
            for p in affine:
                self.uf.unify(self.labels[p][0], lx[1])
        else:
            for label in (lx[1], *(self.labels[p][0] for p in affine)):
                self.uf.unify(label, FIXED)
        value = node.meta["val"]
        return lx if isinstance(value, torch.Tensor) else [lx, *(_fixed_like(v) for v in value[1:])]

    def _reshape(self, x: fx.Node, out_shape: tuple[int, ...]) -> list[Label]:
        ins = [(s, lab) for s, lab in zip(_shape(x), self.labels[x], strict=True) if s != 1]
        outs = [i for i, s in enumerate(out_shape) if s != 1]
        result = [FIXED] * len(out_shape)
        a = b = 0
        while a < len(ins) and b < len(outs):
            merged, split = [a], [b]
            pa, pb = ins[a][0], out_shape[outs[b]]
            while pa != pb:
                if pa < pb:
                    a += 1
                    pa *= ins[a][0]
                    merged.append(a)
                else:
                    b += 1
                    pb *= out_shape[outs[b]]
                    split.append(b)
            labels = [ins[i][1] for i in merged]
            live = [i for i, lab in enumerate(labels) if not self.uf.fixed(lab)]
            if live and (live != [0] or (len(merged) > 1 and len(split) > 1)):
                raise _Underivable("a reshape that mixes hidden units with another axis")
            if live:
                element, inner = labels[0]
                inner *= math.prod(ins[i][0] for i in merged[1:])
                rest = math.prod(out_shape[outs[j]] for j in split[1:])
                if inner % rest:
                    raise _Underivable("a reshape that splits hidden units")
                result[outs[split[0]]] = (element, inner // rest)
            a += 1
            b += 1
        return result

    def _transpose(self, node: fx.Node) -> list[Label]:
        x = node.args[0]
        primes = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37][: len(_shape(x))]  # type: ignore[arg-type]
        probe = torch.empty(primes, device="meta")
        moved = node.target(probe, *node.args[1:], **node.kwargs)  # type: ignore[operator]
        return [self.labels[x][primes.index(s)] for s in moved.shape]  # type: ignore[index]

    def _reduce(self, node: fx.Node) -> list[Label]:
        args = _arguments(node)
        lx = self.labels[args["self"]]
        dim = args.get("dim")
        dims = (
            set(range(len(lx)))
            if dim is None or dim == []
            else {d % len(lx) for d in ([dim] if isinstance(dim, int) else dim)}
        )
        if args.get("keepdim"):
            return [FIXED if d in dims else lab for d, lab in enumerate(lx)]
        return [lab for d, lab in enumerate(lx) if d not in dims]  # a symmetric reduction forgets the order

    def _pool(self, node: fx.Node) -> Any:
        lx = self.labels[node.args[0]]  # type: ignore[index]
        for label in lx[2:]:
            self.uf.unify(label, FIXED)
        value = node.meta["val"]
        out = [lx[0], lx[1]] + [FIXED] * ((value[0] if isinstance(value, tuple) else value).ndim - 2)
        return out if isinstance(value, torch.Tensor) else [out, _fixed_like(value[1])]

    def _slice(self, node: fx.Node, name: str) -> list[Label]:
        x = node.args[0]
        lx = list(self.labels[x])  # type: ignore[index]
        dim = _arguments(node)["dim"] % len(lx)
        whole = name != "select" and _shape(node)[dim] == _shape(x)[dim]  # type: ignore[arg-type]
        if not whole and not self.uf.fixed(lx[dim]):
            raise _Underivable("indexing into hidden units")
        if name == "select":
            return lx[:dim] + lx[dim + 1 :]
        return lx if whole else lx[:dim] + [FIXED] + lx[dim + 1 :]

    def _cat(self, node: fx.Node) -> list[Label]:
        args = _arguments(node)
        parts = args["tensors"]
        dim = args["dim"] % len(_shape(node))
        result = [FIXED] * len(_shape(node))
        for d in range(len(result)):
            labels = [self.labels[p][d] for p in parts]
            if d == dim:
                if any(not self.uf.fixed(lab) for lab in labels):
                    raise _Underivable("a concatenation along hidden units")
                continue
            for label in labels[1:]:
                self.uf.unify(labels[0], label)
            result[d] = labels[0]
        return result


@dataclass(frozen=True)
class Probe:
    """Where a group's hidden units can be observed: axis ``axis`` of the output of ``node``.

    ``inner`` > 1 when that axis holds the units flattened, as [units, inner] blocks (a
    feature map's C channels of H·W positions read by a linear layer): each block's
    ``inner`` entries are further observations of one unit.
    """

    node: fx.Node
    axis: int
    inner: int = 1

    def observations(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` as [observations, units]: every other axis (batch, positions, blocks) counts."""
        moved = value.movedim(self.axis, -1)
        units = moved.shape[-1] // self.inner
        return moved.reshape(*moved.shape[:-1], units, self.inner).movedim(-2, -1).reshape(-1, units)


@dataclass(frozen=True)
class Layer:
    """A linear or convolutional layer whose outputs are one group's hidden units (for REPAIR)."""

    node: fx.Node
    weight: str
    bias: str | None
    axis: int  # the channel axis of the layer's output
    group: str
    before_batch_norm: bool


class _Reached(Exception):
    """Stops a graph run once the node asked for has been computed."""


class _Capture(fx.Interpreter):
    def __init__(self, module: fx.GraphModule, wanted: set[fx.Node], stop: fx.Node | None) -> None:
        super().__init__(module)
        self.extra_traceback = False
        self.wanted, self.stop = wanted, stop
        self.seen: dict[fx.Node, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n in self.wanted:
            self.seen[n] = out
        if n is self.stop:
            raise _Reached
        return out


class TracedNetwork:
    """The forward graph of ``objective``'s model, its derived spec, where its hidden units live.

    ``spec`` is None when the architecture is not derivable; ``error`` then says why.
    ``probes`` lists, per group, the tensors whose axis holds the group's hidden units
    as the next layer reads them (after the nonlinearity); ``layers`` lists the linear
    and convolutional layers that compute a group's units.
    """

    def __init__(self, objective: Objective, rows: int = 256) -> None:
        self.objective = objective
        self.rows = min(rows, objective.n)
        params = objective.layout.unflatten(objective.theta0)
        self.names = [*params, *objective.buffers]
        model = objective.model

        def forward(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(model, (p, b), (x,))

        from torch.fx.experimental.proxy_tensor import make_fx

        try:
            with warnings.catch_warnings():
                # tracing internals may warn about experimental modes
                warnings.simplefilter("ignore")
                self.module = make_fx(forward, pre_dispatch=True)(
                    params, dict(objective.buffers), objective.X[: self.rows]
                )
        except Exception as exc:
            raise UserError(
                f"Cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}): pass a permutation spec and use "
                "weight matching (align='weight', spec=…; --spec FILE.json on the command line)."
            ) from None
        self.spec: PermutationSpec | None = None
        self.error: str | None = None
        self.probes: dict[str, list[Probe]] = {}
        self.layers: list[Layer] = []
        try:
            labeller = _Labeller(self.module.graph, self.names)
        except _Underivable as exc:
            self.error = str(exc)
            return
        self._read_groups(labeller)

    def _read_groups(self, labeller: _Labeller) -> None:
        uf = labeller.uf
        members: dict[int, list[Axis]] = {}
        for (name, axis), label in labeller.axes.items():
            root, inner = uf.find(label)
            if root != 0:
                members.setdefault(root, []).append(Axis(name, axis, inner))
        names: dict[int, str] = {}
        groups: dict[str, tuple[Axis, ...]] = {}
        for root, axes in members.items():
            if len(axes) < 2:  # an axis nothing else reads (a kernel tap, an unused tensor)
                continue
            first = next((a for a in axes if a.inner == 1), axes[0])
            name = first.name.rsplit(".", 1)[0] if "." in first.name else first.name
            if name in groups:
                name = f"{first.name}:{first.axis}"
            names[root] = name
            groups[name] = tuple(axes)
        if not groups:
            self.error = "the model has no hidden units to permute"
            return
        self.spec = PermutationSpec(groups)

        def group_of(label: Label, whole: bool = True) -> str | None:
            """The group whose units ``label`` indexes (one per entry unless ``whole`` is False)."""
            root, inner = uf.find(label)
            return names.get(root) if inner == 1 or not whole else None

        params = dict(zip(self.module.graph.find_nodes(op="placeholder"), self.names, strict=False))
        for node in self.module.graph.nodes:
            kind = _name(node) if node.op == "call_function" else ""
            if kind in ("linear", *_CONV, *_MATMUL):
                self._add_probe(node, kind, labeller, group_of)
            if kind in ("linear", *_CONV):
                self._add_layer(node, kind, labeller, group_of, params)

    def _add_probe(self, node: fx.Node, kind: str, labeller: _Labeller, group_of: Callable[..., str | None]) -> None:
        """Record where the layer ``node`` reads a group's units (before any flattening)."""
        data = node.args[1] if kind == "addmm" else node.args[0]
        group = group_of(labeller.labels[data][1 if kind in _CONV else -1], whole=False)
        if group is None:
            return
        while _name(data) in _RESHAPE:  # observe the units as they were before flattening
            data = data.args[0]
        # A pointwise op after the flattening (dropout, an activation) leaves the units flattened
        # in blocks where the layer reads them: the probe then reads the blocks.
        for axis, label in enumerate(labeller.labels[data]):
            if group_of(label, whole=False) == group:
                probe = Probe(data, axis, labeller.uf.find(label)[1])
                if probe not in self.probes.setdefault(group, []):
                    self.probes[group].append(probe)
                return

    def _add_layer(
        self,
        node: fx.Node,
        kind: str,
        labeller: _Labeller,
        group_of: Callable[..., str | None],
        params: dict[fx.Node, str],
    ) -> None:
        """Record ``node`` for REPAIR when it computes a group's units from its weight and bias."""
        axis = len(_shape(node)) - 1 if kind == "linear" else 1
        group = group_of(labeller.labels[node][axis])
        transposed = kind.startswith("conv_transpose") or (
            kind in ("convolution", "_convolution") and bool(node.args[6])
        )
        weight, bias = node.args[1], node.args[2] if len(node.args) > 2 else None
        if group is None or transposed or weight not in params or (bias is not None and bias not in params):
            return
        before_batch_norm = any(_name(user) in _BATCH_NORM for user in node.users)
        self.layers.append(Layer(node, params[weight], params.get(bias), axis, group, before_batch_norm))

    def derived(self) -> PermutationSpec:
        """The derived spec, or a `UserError` saying why there is none and how to pass one."""
        if self.spec is None:
            raise UserError(
                f"Cannot derive a permutation spec for {type(self.objective.model).__name__}: "
                f"{self.error}. Pass one as a dict {{group: [(name, axis), ...]}} "
                "(see losslab.connectivity.PermutationSpec; "
                "--spec FILE.json on the command line)."
            )
        return self.spec

    def activations(
        self,
        network: Network,
        nodes: Sequence[fx.Node],
        *,
        stop: fx.Node | None = None,
        X: torch.Tensor | None = None,
    ) -> Iterator[dict[fx.Node, torch.Tensor]]:
        """Outputs of ``nodes`` at ``network`` on ``X`` (default: the objective's data), by batch.

        The graph was traced at a fixed batch size; a short last batch is padded with
        copies of its first row, whose outputs are dropped (rows are independent in eval mode).
        """
        X = self.objective.X if X is None else cast_inputs(X, self.objective.device, self.objective.dtype)
        params = self.objective.layout.unflatten(network.theta)
        wanted = set(nodes)
        for start in range(0, len(X), self.rows):
            chunk = X[start : start + self.rows]
            real = len(chunk)
            if real < self.rows:
                chunk = torch.cat([chunk, chunk[:1].expand(self.rows - real, *chunk.shape[1:])])
            capture = _Capture(self.module, wanted, stop)
            with torch.no_grad():
                try:
                    capture.run(params, network.buffers, chunk)
                except _Reached:
                    pass
            yield {n: v[:real] for n, v in capture.seen.items()}


def derive_spec(objective: Objective) -> PermutationSpec:
    """The permutation spec of ``objective``'s model, read off its traced graph."""
    return TracedNetwork(objective).derived()
