"""The model zoo: small networks built from short spec strings, seeded."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from losslab._loading import option, reject_unknown
from losslab.errors import UserError

__all__ = ["MLP", "ZOO", "Conv1DNet", "DeepMLP", "TinyTransformer", "activation", "register_model"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
}


def activation(name: str, owner: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise UserError(f"The 'act' option of {owner} must be one of {', '.join(ACTIVATIONS)}. Got {name!r}.")
    return ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """Fully connected network ``sizes[0] → … → sizes[-1]``, activation between layers.

    Inputs with more than one feature axis are flattened first.
    """

    def __init__(self, sizes: list[int], act: str = "relu", bias: bool = True) -> None:
        activation(act, "mlp")  # validate even when there is no hidden layer
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(fan_in, fan_out, bias=bias))
            if i < len(sizes) - 2:
                layers.append(activation(act, "mlp"))
        super().__init__(*layers)
        self.sizes = list(sizes)


class Conv1DNet(nn.Module):
    """The 1-D CNN of the MNIST-1D paper (Greydanus 2020): three stride-2 convolutions and a linear head.

    Input [B, L] or [B, 1, L]; with L = 40 the feature map shrinks 40 → 19 → 10 → 5.
    """

    def __init__(self, length: int = 40, channels: int = 25, classes: int = 10, act: str = "relu") -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.act = activation(act, "cnn1d")
        out_len = length
        for kernel in (5, 3, 3):
            out_len = (out_len + 2 - kernel) // 2 + 1
        self.head = nn.Linear(channels * out_len, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.unsqueeze(1)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.act(self.conv3(x))
        return self.head(x.flatten(1))


class Block(nn.Module):
    """One hidden layer of a deep MLP: act(bn(W x + b)), added to x when residual."""

    def __init__(self, width: int, act: str, residual: bool, bn: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.norm = nn.BatchNorm1d(width) if bn else nn.Identity()
        self.act = activation(act, "deep")
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm(self.linear(x)))
        return x + h if self.residual else h


class DeepMLP(nn.Module):
    """``depth`` hidden layers of equal width, plain or residual (He et al. 2016), same parameters either way."""

    def __init__(
        self,
        depth: int,
        width: int,
        fan_in: int,
        fan_out: int,
        act: str = "relu",
        residual: bool = False,
        bn: bool = False,
    ) -> None:
        super().__init__()
        self.stem = nn.Linear(fan_in, width)
        self.blocks = nn.Sequential(*(Block(width, act, residual, bn) for _ in range(depth)))
        self.head = nn.Linear(width, fan_out)
        self.act = activation(act, "deep")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.act(self.stem(x.flatten(1)))))


class TinyTransformer(nn.Module):
    """A pre-norm transformer encoder over a 1-D signal (Vaswani et al. 2017), for MNIST-1D-sized inputs.

    Each of the ``length`` positions is a token embedded from its scalar value plus a
    learned position embedding; ``layers`` blocks of multi-head self-attention and an
    MLP (width 2·dim) with residual connections; mean-pooled tokens feed a linear head.
    Written with plain tensor ops (no fused kernels) so it runs under ``vmap`` and
    double backward like every other zoo model.
    """

    def __init__(self, length: int = 40, dim: int = 16, heads: int = 2, layers: int = 1, classes: int = 10) -> None:
        super().__init__()
        if dim % heads:
            raise UserError(f"The transformer's dim must be divisible by heads. Got dim={dim}, heads={heads}.")
        self.heads = heads
        self.embed = nn.Linear(1, dim)
        self.position = nn.Parameter(0.02 * torch.randn(length, dim))
        self.blocks = nn.ModuleList(_AttentionBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.flatten(1).unsqueeze(-1)) + self.position
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h).mean(1))


class _AttentionBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        batch, length, dim = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(batch, length, 3, self.heads, dim // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [batch, heads, length, head_dim]
        h = h + self.proj(self.attend(q, k, v).transpose(1, 2).reshape(batch, length, dim))
        return h + self.mlp(self.norm2(h))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q kᵀ / √d) v, written out: every backend differentiates it twice (Hessian products)."""
        return (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1) @ v


Builder = Callable[[str | None, dict[str, str], str], nn.Module]
ZOO: dict[str, tuple[Builder, str]] = {}


def register_model(name: str, example: str) -> Callable[[Builder], Builder]:
    """Add a builder ``fn(positional, options, spec) -> nn.Module`` to the zoo under ``name``."""

    def add(fn: Builder) -> Builder:
        ZOO[name] = (fn, example)
        return fn

    return add


def _sizes(text: str | None, spec: str, example: str) -> list[int]:
    try:
        sizes = [int(s) for s in (text or "").split("-")]
    except ValueError:
        sizes = []
    if len(sizes) < 2 or min(sizes) < 1:
        raise UserError(f"The model spec {spec!r} needs layer sizes like {example!r}.")
    return sizes


@register_model("mlp", "mlp:64-100-100-10,act=relu")
def _mlp(positional: str | None, options: dict[str, str], spec: str) -> nn.Module:
    sizes = _sizes(positional, spec, "mlp:64-100-100-10")
    act = option(options, "act", "relu", "mlp")
    bias = option(options, "bias", True, "mlp")
    reject_unknown(options, "mlp", ["act", "bias"])
    return MLP(sizes, act, bias)


@register_model("cnn1d", "cnn1d:channels=25,length=40,classes=10")
def _cnn1d(positional: str | None, options: dict[str, str], spec: str) -> nn.Module:
    kwargs = {
        key: option(options, key, default, "cnn1d")
        for key, default in (("length", 40), ("channels", 25), ("classes", 10), ("act", "relu"))
    }
    reject_unknown(options, "cnn1d", ["length", "channels", "classes", "act"])
    return Conv1DNet(**kwargs)


@register_model("deep", "deep:8,width=64,in=64,out=10,residual=1,bn=0,act=relu")
def _deep(positional: str | None, options: dict[str, str], spec: str) -> nn.Module:
    try:
        depth = int(positional) if positional is not None else option(options, "depth", 4, "deep")
    except ValueError:
        raise UserError(f"The depth in {spec!r} must be an int, as in 'deep:8,width=64'.") from None
    kwargs = {
        key: option(options, key, default, "deep")
        for key, default in (
            ("width", 64),
            ("in", 64),
            ("out", 10),
            ("act", "relu"),
            ("residual", False),
            ("bn", False),
        )
    }
    reject_unknown(options, "deep", ["depth", "width", "in", "out", "act", "residual", "bn"])
    return DeepMLP(depth, kwargs["width"], kwargs["in"], kwargs["out"], kwargs["act"], kwargs["residual"], kwargs["bn"])


@register_model("transformer", "transformer:dim=16,heads=2,layers=1,length=40,classes=10")
def _transformer(positional: str | None, options: dict[str, str], spec: str) -> nn.Module:
    kwargs = {
        key: option(options, key, default, "transformer")
        for key, default in (("length", 40), ("dim", 16), ("heads", 2), ("layers", 1), ("classes", 10))
    }
    reject_unknown(options, "transformer", list(kwargs))
    return TinyTransformer(**kwargs)
