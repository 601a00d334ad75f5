"""The image models of the loss-landscape literature, as zoo specs.

- ``resnet20`` / ``resnet56`` (``resnet{6n+2}`` for 6n+2 in 8 … 110): the CIFAR ResNets of He et al. (2016, §4.2),
  three stages of n basic blocks with 16·w, 32·w, 64·w channels; ``-noshort`` drops every
  skip connection and keeps all other layers, the pair behind Li et al. (2018, Fig. 5).
  Shortcuts that change shape are 1×1 convolutions with batch norm (He et al.'s option B),
  so every channel of a residual stream has weights a permutation can act on.
- ``vgg9``: seven 3×3 convolutions with batch norm and two linear layers (Li et al. 2018).
- ``vit:patch=4,dim=64,depth=4,heads=4``: a small vision transformer (Dosovitskiy et al. 2021)
  whose attention is `F.scaled_dot_product_attention`; losslab runs curvature products through
  its math backend, which has a double backward on every device.

Every model ends in global average pooling (or token mean), so any image size works; ``in``
(input channels) and ``classes`` default to Fashion-MNIST's 1 and 10.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from losslab._loading import option, reject_unknown
from losslab.errors import UserError
from losslab.models.zoo import _AttentionBlock, register_model

__all__ = ["CifarResNet", "VGG", "VisionTransformer"]


class BasicBlock(nn.Module):
    """relu(bn(conv(relu(bn(conv x)))) + shortcut(x)), the shortcut dropped when ``skip`` is off."""

    def __init__(self, fan_in: int, fan_out: int, stride: int, skip: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(fan_in, fan_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(fan_out)
        self.conv2 = nn.Conv2d(fan_out, fan_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(fan_out)
        self.skip = skip
        self.shortcut: nn.Module = nn.Identity()
        if skip and (stride != 1 or fan_in != fan_out):
            self.shortcut = nn.Sequential(
                nn.Conv2d(fan_in, fan_out, 1, stride=stride, bias=False), nn.BatchNorm2d(fan_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(h + self.shortcut(x) if self.skip else h)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images (He et al. 2016, §4.2); ``skip=False`` is its plain twin."""

    def __init__(self, depth: int, *, skip: bool = True, width: int = 16, fan_in: int = 1, classes: int = 10) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise UserError(f"A CIFAR ResNet has depth 6n+2 (8, 14, 20, 32, 44, 56, 110). Got {depth}.")
        blocks = (depth - 2) // 6
        self.conv = nn.Conv2d(fan_in, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        layers: list[nn.Module] = []
        channels = width
        for stage, out in enumerate((width, 2 * width, 4 * width)):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(channels, out, stride, skip))
                channels = out
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(F.relu(self.bn(self.conv(_image(x)))))
        return self.head(h.mean((2, 3)))


class VGG(nn.Module):
    """Convolutions with batch norm and max pooling, then two linear layers (Simonyan & Zisserman 2015)."""

    def __init__(self, plan: list[int | str], *, fan_in: int = 1, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = fan_in
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.BatchNorm2d(int(item)), nn.ReLU()]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(_image(x)).mean((2, 3)))


class VisionTransformer(nn.Module):
    """Patch embedding, a learned position embedding, pre-norm attention blocks, mean-pooled tokens."""

    def __init__(
        self, *, size: int = 28, patch: int = 4, dim: int = 64, depth: int = 4, heads: int = 4, fan_in: int = 1,
        classes: int = 10,
    ) -> None:  # fmt: skip
        super().__init__()
        if dim % heads:
            raise UserError(f"The vit's dim must be divisible by heads. Got dim={dim}, heads={heads}.")
        if size % patch:
            raise UserError(f"The vit's image size must be a multiple of patch. Got size={size}, patch={patch}.")
        self.size = size
        self.embed = nn.Conv2d(fan_in, dim, patch, stride=patch)
        self.position = nn.Parameter(0.02 * torch.randn((size // patch) ** 2, dim))
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _image(x)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            raise UserError(f"The vit was built for {self.size}×{self.size} images; give size={x.shape[-1]}.")
        h = self.embed(x).flatten(2).transpose(1, 2) + self.position
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h).mean(1))


class _Block(_AttentionBlock):
    """The zoo's transformer block, attending through F.scaled_dot_product_attention (fused kernels)."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


def _image(x: torch.Tensor) -> torch.Tensor:
    """[B, H, W] or [B, C, H, W] → [B, C, H, W]."""
    return x.unsqueeze(1) if x.ndim == 3 else x


def _common(options: dict[str, str], owner: str) -> dict[str, int]:
    return {"fan_in": option(options, "in", 1, owner), "classes": option(options, "classes", 10, owner)}


def _resnet(depth: int, skip: bool) -> Callable[[str | None, dict[str, str], str], nn.Module]:
    name = f"resnet{depth}" + ("" if skip else "-noshort")

    def build(positional: str | None, options: dict[str, str], spec: str) -> nn.Module:
        if positional is not None:
            raise UserError(f"The model spec {spec!r} must be written {name}:width=16,in=1,classes=10.")
        width = option(options, "width", 16, name)
        common = _common(options, name)
        reject_unknown(options, name, ["width", "in", "classes"])
        if width < 1:
            raise UserError(f"The 'width' option of {name} must be an int ≥ 1. Got {width}.")
        return CifarResNet(depth, skip=skip, width=width, **common)

    return build


# resnet20 and resnet56 (with and without skips) are the pairs of Li et al. (2018); only the first
# entry carries an example, so the list of known models in error messages stays short.
for _depth in (8, 14, 20, 32, 44, 56, 110):
    for _skip in (True, False):
        _example = "resnet20:width=16,in=1,classes=10 (resnet{6n+2}[-noshort])" if (_depth, _skip) == (20, True) else ""
        register_model(f"resnet{_depth}" + ("" if _skip else "-noshort"), _example)(_resnet(_depth, _skip))


@register_model("vgg9", "vgg9:width=64,in=1,classes=10")
def _vgg9(positional: str | None, options: dict[str, str], spec: str) -> nn.Module:
    w = option(options, "width", 64, "vgg9")
    common = _common(options, "vgg9")
    reject_unknown(options, "vgg9", ["width", "in", "classes"])
    if w < 1:
        raise UserError(f"The 'width' option of vgg9 must be an int ≥ 1. Got {w}.")
    return VGG([w, "M", 2 * w, "M", 4 * w, 4 * w, "M", 8 * w, 8 * w, "M", 8 * w], **common)


@register_model("vit", "vit:patch=4,dim=64,depth=4,heads=4,size=28,in=1,classes=10")
def _vit(positional: str | None, options: dict[str, str], spec: str) -> nn.Module:
    keys = (("size", 28), ("patch", 4), ("dim", 64), ("depth", 4), ("heads", 4))
    kwargs = {key: option(options, key, default, "vit") for key, default in keys}
    common = _common(options, "vit")
    reject_unknown(options, "vit", [*dict(keys), "in", "classes"])
    return VisionTransformer(**kwargs, **common)
