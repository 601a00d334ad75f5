"""User models as ``package.module:function`` with keyword options, up to torchvision's ResNet-18.

The torchvision tests need the optional dependency (a torchvision built for the installed
torch) and skip cleanly without it; the option syntax is tested everywhere on ``torch.nn``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import vector_to_parameters

from losslab import Objective, build_model, curvature
from losslab.errors import UserError
from losslab.surface import axis, line, random_directions


def test_keyword_options_reach_the_model_function() -> None:
    model = build_model("torch.nn:Linear,in_features=3,out_features=2,bias=False")
    assert isinstance(model, torch.nn.Linear) and model.weight.shape == (2, 3) and model.bias is None
    same = build_model("torch.nn:Linear,in_features=3,out_features=2,bias=False", seed=0)
    assert torch.equal(model.weight, same.weight)  # seeded like every model spec
    with pytest.raises(UserError, match="must be written key=value"):
        build_model("torch.nn:Linear,3")
    with pytest.raises(UserError, match="raised TypeError"):  # a keyword the function does not take
        build_model("torch.nn:Linear,in_features=3,out_features=2,colour=1")


def _torchvision_or_skip() -> None:
    """Skip without torchvision, or with one that cannot load (PyPI's CUDA build beside a CPU torch).

    ``.ci/run`` runs this file again in an environment built for torchvision and sets
    ``LOSSLAB_REQUIRE_TORCHVISION=1`` there, so that a broken install fails instead of skipping.
    """
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # ImportError, or RuntimeError from its C extension
        message = f"torchvision cannot be imported here: {type(exc).__name__}: {exc}"
        if os.environ.get("LOSSLAB_REQUIRE_TORCHVISION") == "1":
            pytest.fail(message)
        pytest.skip(message)


def test_a_broken_installed_module_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "brokenvision.py").write_text("raise RuntimeError('operator brokenvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        UserError, match=r"Importing the model module 'brokenvision' failed with RuntimeError.*Reinstall"
    ):
        build_model("brokenvision:resnet18")


def _resnet18() -> tuple[torch.nn.Module, Objective]:
    _torchvision_or_skip()
    model = build_model("torchvision.models:resnet18,num_classes=10", seed=0)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(6, 3, 32, 32, generator=g)  # ResNet-18's stem takes 3 channels
    y = torch.arange(6) % 10
    return model, Objective(model, "cross_entropy", (X, y))


def test_torchvision_resnet18_hessian_top_eigenvalue() -> None:
    model, objective = _resnet18()
    assert objective.dim == 11_181_642  # resnet18 with a 10-class head
    H = curvature.hessian_operator(objective, objective.theta0)
    top, _ = curvature.extreme_eigenpairs(H, top=1, bottom=0, tol=1e-2, max_hvps=60)
    lam, v = float(top.eigenvalues[0]), torch.as_tensor(top.vectors[0])  # vectors [k, D], unit norm
    # Reference: plain double backward through the module itself (no losslab), the Rayleigh
    # quotient of the returned vector and the residual ‖Hv − λv‖ it certifies.
    params = list(model.parameters())
    reference = build_model("torchvision.models:resnet18,num_classes=10", seed=0)
    ref_params = list(reference.parameters())
    loss = F.cross_entropy(reference(objective.X), objective.y)
    grads = torch.autograd.grad(loss, ref_params, create_graph=True)
    pieces = torch.split(v, [p.numel() for p in params])
    Hv = torch.autograd.grad(grads, ref_params, grad_outputs=[s.view_as(p) for s, p in zip(pieces, params)])
    Hv = torch.cat([h.reshape(-1) for h in Hv])
    rayleigh = float(v @ Hv / (v @ v))
    assert lam == pytest.approx(rayleigh, rel=1e-3)
    # the residual the result reports is the one measured here, to float32 round-off of 11M-long sums
    assert float((Hv - lam * v).norm()) == pytest.approx(float(top.residuals[0]), rel=0.05, abs=1e-4 * abs(lam))


def test_torchvision_resnet18_surface_line() -> None:
    model, objective = _resnet18()
    dirs = random_directions(objective.layout, objective.theta0, "filter", seed=0, count=1)
    alphas = axis(-1.0, 1.0, 3)
    result = line(objective, objective.theta0, dirs, alphas)
    reference = build_model("torchvision.models:resnet18,num_classes=10", seed=0)
    d = torch.as_tensor(dirs.d1)
    with torch.no_grad():
        for k, alpha in enumerate(alphas):
            vector_to_parameters(objective.theta0 + float(alpha) * d, reference.parameters())
            expected = float(F.cross_entropy(reference(objective.X), objective.y))
            # float32 forward of 11M parameters, in another order of operations: relative 1e-4
            assert result.loss[k] == pytest.approx(expected, rel=1e-4), alpha
