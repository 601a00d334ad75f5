"""The zoo, user models, checkpoints."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from losslab.errors import UserError
from losslab.models import ZOO, build_model, load_checkpoint, save_checkpoint


@pytest.mark.parametrize(
    "spec,params",
    [
        ("mlp:64-100-100-10", 64 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10),
        ("mlp:2-2-1,act=tanh", 2 * 2 + 2 + 2 + 1),
        ("mlp:3-4-2,bias=0", 3 * 4 + 4 * 2),
        ("cnn1d", (1 * 25 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + 25 * 5 * 10 + 10),
        ("deep:3,width=8,in=4,out=2", (4 * 8 + 8) + 3 * (8 * 8 + 8) + 8 * 2 + 2),
        ("deep:3,width=8,in=4,out=2,residual=1,bn=1", (4 * 8 + 8) + 3 * (8 * 8 + 8 + 16) + 8 * 2 + 2),
        # embed (1→8) + positions 5×8 + block (2 norms, qkv 8→24, proj 8→8, mlp 8→16→8) + norm + head 8→3
        (
            "transformer:length=5,dim=8,heads=2,layers=1,classes=3",
            16 + 40 + (2 * 16 + 8 * 24 + 24 + 8 * 8 + 8 + 8 * 16 + 16 + 16 * 8 + 8) + 16 + 8 * 3 + 3,
        ),
    ],
)
def test_zoo_specs_build_the_architecture(spec: str, params: int) -> None:
    model = build_model(spec, seed=0)
    assert sum(p.numel() for p in model.parameters()) == params
    assert not model.training  # analysis models come in eval mode


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    torch.manual_seed(7)
    expected = torch.rand(1)
    torch.manual_seed(7)
    a = build_model("mlp:5-6-2", seed=3)
    assert torch.equal(torch.rand(1), expected)
    b, c = build_model("mlp:5-6-2", seed=3), build_model("mlp:5-6-2", seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_residual_and_plain_deep_nets_differ_only_in_the_skip() -> None:
    plain = build_model("deep:4,width=6,in=3,out=2,residual=0", seed=1)
    residual = build_model("deep:4,width=6,in=3,out=2,residual=1", seed=1)
    x = torch.randn(5, 3)
    for p, q in zip(plain.parameters(), residual.parameters()):
        assert torch.equal(p, q)
    assert not torch.allclose(plain(x), residual(x))


def test_user_models_and_errors(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(
        textwrap.dedent("""
        import torch
        def small():
            return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        def not_a_model():
            return 3
    """)
    )
    a = build_model(f"{tmp_path / 'net.py'}:small", seed=1)
    b = build_model(f"{tmp_path / 'net.py'}:small", seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(UserError, match="returned int, not a torch.nn.Module"):
        build_model(f"{tmp_path / 'net.py'}:not_a_model")
    with pytest.raises(UserError, match="Unknown model 'resnet50'"):
        build_model("resnet50")
    with pytest.raises(UserError, match="needs layer sizes"):
        build_model("mlp:abc")
    with pytest.raises(UserError, match="'act' option of mlp"):
        build_model("mlp:2-3,act=swishy")
    with pytest.raises(UserError, match="has no option 'depthh'"):
        build_model("deep:depthh=3")
    assert {"mlp", "cnn1d", "deep", "transformer"} <= set(ZOO)
    with pytest.raises(UserError, match="divisible by heads"):
        build_model("transformer:dim=5,heads=2")


def test_checkpoints_round_trip_and_name_what_differs(tmp_path: Path) -> None:
    model = build_model("mlp:4-5-2", seed=0)
    path = save_checkpoint(model, tmp_path / "m.pt")
    other = load_checkpoint(build_model("mlp:4-5-2", seed=9), path)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), other.parameters()))
    with pytest.raises(UserError, match="'1.weight' has shape \\(5, 4\\) there but \\(6, 4\\)"):
        load_checkpoint(build_model("mlp:4-6-2"), path)
    with pytest.raises(UserError, match="missing '5.weight'"):
        load_checkpoint(build_model("mlp:4-5-5-2"), path)
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(model, tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match="is not a plain state_dict of tensors"):
        load_checkpoint(model, tmp_path / "bad.pt")
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "wrapped.pt")
    load_checkpoint(build_model("mlp:4-5-2", seed=2), tmp_path / "wrapped.pt")
