"""The image zoo (CIFAR ResNets with and without skips, VGG-9, a small ViT) and curvature through attention.

References are built another way: ``torch.autograd.functional.hvp`` of the loss written out as a
function of the flat parameters, at float64, under the math attention backend (the one with a
double backward), for a few random vectors. Tolerance 1e-10: both sides are exact float64 computations of the same sums
in a different order, so they agree to a few hundred ulps of the entries' size (~1).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from losslab import Objective, UserError
from losslab.models import CifarResNet, build_model


def _reference_products(objective: Objective, V: torch.Tensor) -> torch.Tensor:
    """H vᵢ by ``torch.autograd.functional.hvp`` of the loss written out independently."""
    model, names, shapes = objective.model, objective.layout.names, objective.layout.shapes

    def loss(theta: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in zip(names, shapes):
            size = int(torch.Size(shape).numel())
            params[name] = theta[start : start + size].view(shape)
            start += size
        out = functional_call(model, (params, objective.buffers), (objective.X,))
        return nn.functional.cross_entropy(out, objective.y)

    with sdpa_kernel(SDPBackend.MATH):
        return torch.stack([torch.autograd.functional.hvp(loss, objective.theta0.clone(), v)[1] for v in V])


def _images(n: int, size: int, seed: int = 0, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, size, size, generator=g, dtype=torch.float64), torch.randint(classes, (n,), generator=g)


@pytest.mark.parametrize("spec", ["resnet20", "resnet56-noshort", "vgg9:width=8", "vit:patch=4,dim=16,depth=1,heads=2"])
def test_image_models_take_any_batch_of_28x28_images(spec: str) -> None:
    model = build_model(spec, seed=0)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert model(torch.randn(3, 28, 28)).shape == (3, 10)  # a channel axis is added


def test_the_noshort_twin_differs_only_by_the_projection_shortcuts() -> None:
    plain, residual = build_model("resnet20-noshort"), build_model("resnet20")
    names = {k for k, _ in residual.named_parameters()} - {k for k, _ in plain.named_parameters()}
    assert names and all(".shortcut." in k for k in names)
    # two stage transitions, each a 1×1 convolution and a batch norm: 16·32 + 2·32 + 32·64 + 2·64
    assert sum(p.numel() for k, p in residual.named_parameters() if k in names) == 2752
    assert build_model("resnet56").layers.__len__() == 27 and build_model("resnet20").layers.__len__() == 9


def test_skip_connections_carry_the_input_where_plain_blocks_do_not() -> None:
    # With every block's second convolution zeroed, a block of the residual net is relu(shortcut(x))
    # and still depends on its input; the plain net's blocks output relu(0) = 0, a constant.
    x = torch.randn(4, 1, 12, 12)
    outputs = {}
    for spec in ("resnet8", "resnet8-noshort"):
        model = build_model(spec, seed=1)
        with torch.no_grad():
            for block in model.layers:
                block.conv2.weight.zero_()
        outputs[spec] = model(x)
    assert outputs["resnet8-noshort"].std(0).max() < 1e-6
    assert outputs["resnet8"].std(0).max() > 1e-3


def test_bad_specs_name_the_fix() -> None:
    with pytest.raises(UserError, match="6n\\+2"):
        CifarResNet(21)
    with pytest.raises(UserError, match="no option 'depth'"):
        build_model("resnet20:depth=3")
    with pytest.raises(UserError, match="divisible by heads"):
        build_model("vit:dim=10,heads=4")
    with pytest.raises(UserError, match="multiple of patch"):
        build_model("vit:size=30,patch=4")


def test_resnet_with_batch_norm_hessian_products_equal_the_reference() -> None:
    X, y = _images(4, 4)
    model = build_model("resnet8:width=1,classes=3", seed=0)  # 3 stages, 1·2·4 channels: 213 parameters
    with torch.no_grad():  # non-trivial running statistics, as after training
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    objective = Objective(model, "cross_entropy", (X, y), dtype="float64")
    V = torch.randn(4, objective.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(
        objective.hvp_many(objective.theta0, V), _reference_products(objective, V), rtol=0, atol=1e-10
    )


@pytest.mark.parametrize("mode", ["reuse", "recompute", "forward"])
def test_hessian_products_through_fused_attention_equal_the_reference(mode: str) -> None:
    # F.scaled_dot_product_attention's fused CPU kernel has no double backward; products must still work.
    X, y = _images(6, 8)
    model = build_model("vit:size=8,patch=4,dim=4,depth=1,heads=2,classes=3", seed=0)
    objective = Objective(model, "cross_entropy", (X, y), dtype="float64", hvp_mode=mode)
    V = torch.randn(3, objective.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(
        objective.hvp_many(objective.theta0, V), _reference_products(objective, V), rtol=0, atol=1e-10
    )


def test_a_transformer_encoder_layer_user_model_has_hessian_products() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.Linear(1, 8), layer, nn.Flatten(), nn.Linear(8 * 5, 3)).eval()
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(6, 5, 1, generator=g, dtype=torch.float64), torch.randint(3, (6,), generator=g)
    objective = Objective(model, "cross_entropy", (X, y), dtype="float64")
    v = torch.randn(objective.dim, dtype=torch.float64, generator=g)
    assert torch.allclose(objective.hvp(objective.theta0, v), _reference_products(objective, v[None])[0], atol=1e-10)
    # The GGN of cross-entropy is positive semi-definite: vᵀGv ≥ 0 up to round-off.
    assert float(v @ objective.ggn_vp(objective.theta0, v)) >= -1e-12
