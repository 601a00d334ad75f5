"""Directions: filter/layer normalization, seeding, orthogonalization, PCA of a trajectory.

References are independent: per-filter norms are recomputed from the parameter tensors
of the model (not from the layout's slices), PCA is checked against NumPy's SVD and
scikit-learn's PCA. Tolerances: float64 norms of ≤ 10³ numbers agree to ~1e-15
relative; 1e-12 leaves a wide margin while catching any real mismatch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TinyCase
from sklearn.decomposition import PCA

from losslab.errors import UserError
from losslab.objective import Objective
from losslab.surface import (
    Directions,
    filter_normalize,
    layer_normalize,
    make_directions,
    orthogonalize,
    pca_directions,
    random_directions,
)

RTOL = 1e-12


def _params(obj: Objective, flat: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
    """The named tensors of a flat vector, rebuilt by walking the model's parameters."""
    flat = torch.as_tensor(np.asarray(flat))
    out, start = {}, 0
    for name, p in obj.model.named_parameters():
        out[name] = flat[start : start + p.numel()].reshape(p.shape)
        start += p.numel()
    return out


def test_filter_normalized_directions_have_the_filter_norms_of_theta(tiny_case: TinyCase) -> None:
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    theta = obj.theta0
    dirs = random_directions(obj.layout, theta, "filter", seed=3)
    raw = random_directions(obj.layout, theta, "random", seed=3)  # the same Gaussian draws, unnormalized
    for d, g in ((dirs.d1, raw.d1), (dirs.d2, raw.d2)):
        d_params, g_params, t_params = _params(obj, d), _params(obj, g), _params(obj, theta)
        for name, t in t_params.items():
            if t.ndim >= 2:  # a filter is one output unit: weight[k] of a linear or conv layer
                rows = d_params[name].reshape(t.shape[0], -1)
                torch.testing.assert_close(rows.norm(dim=1), t.reshape(t.shape[0], -1).norm(dim=1), rtol=RTOL, atol=0)
                # only rescaled: each filter still points along its Gaussian draw
                cos = torch.nn.functional.cosine_similarity(rows, g_params[name].reshape(t.shape[0], -1))
                torch.testing.assert_close(cos, torch.ones_like(cos), rtol=0, atol=1e-12)
            else:  # biases and batch-norm parameters stay at zero by default (Li et al.'s 'biasbn')
                assert not d_params[name].any(), name


def test_include_bias_normalizes_one_axis_parameters_as_whole_vectors(tiny_case: TinyCase) -> None:
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    theta = obj.theta0
    d = random_directions(obj.layout, theta, "filter", seed=1, include_bias=True, count=1).d1
    d_params, t_params = _params(obj, d), _params(obj, theta)
    vectors = [name for name, t in t_params.items() if t.ndim == 1]
    assert vectors
    for name in vectors:
        torch.testing.assert_close(d_params[name].norm(), t_params[name].norm(), rtol=RTOL, atol=0)


def test_layer_normalized_directions_have_the_layer_norms_of_theta(tiny_case: TinyCase) -> None:
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    theta = obj.theta0
    d = random_directions(obj.layout, theta, "layer", seed=2, count=1).d1
    d_params, t_params = _params(obj, d), _params(obj, theta)
    for module_name, module in obj.model.named_modules():
        weights = [n for n, p in module.named_parameters(recurse=False) if p.ndim >= 2]
        if not weights:
            continue
        prefix = f"{module_name}." if module_name else ""
        d_norm = torch.cat([d_params[prefix + n].reshape(-1) for n in weights]).norm()
        t_norm = torch.cat([t_params[prefix + n].reshape(-1) for n in weights]).norm()
        torch.testing.assert_close(d_norm, t_norm, rtol=RTOL, atol=0)
    for name, t in t_params.items():
        if t.ndim == 1:
            assert not d_params[name].any(), name


def test_a_zero_filter_of_theta_gives_a_zero_filter_not_nan() -> None:
    layer = torch.nn.Linear(3, 4).double()
    with torch.no_grad():
        layer.weight[1] = 0.0
    obj = Objective(layer, "mse", (torch.randn(5, 3), torch.randn(5, 4)), dtype="float64")
    d = filter_normalize(torch.randn(obj.dim, dtype=torch.float64), obj.theta0, obj.layout)
    assert torch.isfinite(d).all()
    assert not d[3:6].any() and d[:3].norm() > 0


def test_directions_are_seeded_gaussian_and_device_dtype_independent(tiny_case: TinyCase) -> None:
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    first = random_directions(obj.layout, obj.theta0, "filter", seed=5)
    again = random_directions(obj.layout, obj.theta0, "filter", seed=5)
    other = random_directions(obj.layout, obj.theta0, "filter", seed=6)
    assert np.array_equal(first.d1, again.d1) and np.array_equal(first.d2, again.d2)
    assert not np.array_equal(first.d1, other.d1)
    assert not np.array_equal(first.d1, first.d2)  # d₂ is a fresh draw, not a copy of d₁
    raw64 = random_directions(obj.layout, obj.theta0, "random", seed=5).d1
    raw32 = random_directions(obj.layout, obj.theta0.float(), "random", seed=5).d1
    assert np.array_equal(raw32, raw64.astype(np.float32))  # one float64 draw, then cast


@pytest.mark.parametrize("seed", range(5))
def test_raw_directions_are_standard_normal(seed: int) -> None:
    # loss-landscapes draws uniform [0, 1) instead; a N(0, 1) draw of D = 40,000 numbers has
    # mean ±0.005 and variance 1 ± 0.007 (one standard error); 6 standard errors bound
    # every seed here with room, and a uniform draw fails both by two orders of magnitude.
    dim = 40_000
    from losslab.objective import ParamLayout

    layout = ParamLayout(("w",), (torch.Size([dim]),))
    d = random_directions(layout, torch.zeros(dim, dtype=torch.float64), "random", seed=seed, count=1).d1
    assert abs(d.mean()) < 6 / np.sqrt(dim)
    assert abs(d.var() - 1) < 6 * np.sqrt(2 / dim)
    assert abs(np.mean(np.abs(d)) - np.sqrt(2 / np.pi)) < 6 * 0.6 / np.sqrt(dim)  # E|Z| = √(2/π)


def test_orthogonalize_removes_the_component_along_d1() -> None:
    g = torch.Generator().manual_seed(0)
    d1, d2 = torch.randn(2, 300, generator=g, dtype=torch.float64)
    d2 = d2 + 0.7 * d1  # strongly correlated
    ortho = orthogonalize(d2, d1)
    assert abs(float(ortho @ d1)) < 1e-12 * float(d1.norm() * ortho.norm())
    # the plane is unchanged: ortho lies in span(d1, d2)
    coeffs = torch.linalg.lstsq(torch.stack([d1, d2], 1), ortho[:, None]).solution
    torch.testing.assert_close(torch.stack([d1, d2], 1) @ coeffs, ortho[:, None], rtol=0, atol=1e-12)


def test_orthogonal_option_of_random_directions(tiny_case: TinyCase) -> None:
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    dirs = random_directions(obj.layout, obj.theta0, "filter", seed=0, orthogonal=True)
    plain = random_directions(obj.layout, obj.theta0, "filter", seed=0)
    assert dirs.orthogonalized and np.array_equal(dirs.d1, plain.d1)
    assert abs(dirs.d1 @ dirs.d2) < 1e-12 * np.linalg.norm(dirs.d1) * np.linalg.norm(dirs.d2)


def _trajectory(T: int, D: int, seed: int) -> np.ndarray:
    """A random walk with drift: a trajectory with a dominant direction and a curved second one."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, T)[:, None]
    return (
        rng.normal(size=D)
        + t * rng.normal(size=D) * 3
        + np.sin(3 * t) * rng.normal(size=D)
        + 0.1 * rng.normal(size=(T, D))
    )


@pytest.mark.parametrize("T", [3, 4, 9])
def test_pca_matches_numpy_svd_and_sklearn(T: int) -> None:
    snapshots = _trajectory(T, 40, seed=T)
    pc1, pc2, fractions = pca_directions(snapshots)
    M = snapshots - snapshots[-1]
    M = M - M.mean(0)
    _, s, Vt = np.linalg.svd(M, full_matrices=False)
    for k, pc in enumerate((pc1, pc2)):
        sign = np.sign(pc @ Vt[k])
        np.testing.assert_allclose(pc, sign * Vt[k], rtol=0, atol=1e-12)
        assert (snapshots[0] - snapshots[-1]) @ pc > 0  # training starts on the positive side
    np.testing.assert_allclose(fractions, (s**2 / (s**2).sum())[:2], rtol=1e-12)
    sk = PCA(n_components=2, svd_solver="full").fit(snapshots - snapshots[-1])
    np.testing.assert_allclose(fractions, sk.explained_variance_ratio_, rtol=1e-10)
    np.testing.assert_allclose(np.abs(sk.components_ @ np.stack([pc1, pc2]).T), np.eye(2), atol=1e-10)


def test_pca_refuses_fewer_than_three_snapshots_and_a_straight_trajectory() -> None:
    with pytest.raises(UserError, match="at least 3 snapshots"):
        pca_directions(_trajectory(2, 10, 0))
    start, step = np.ones(10), np.arange(10.0)
    line = np.stack([start + k * step for k in range(5)])
    with pytest.raises(UserError, match="line"):
        pca_directions(line)
    with pytest.raises(UserError, match="10 entries but the model 11"):
        pca_directions(_trajectory(4, 10, 0), dim=11)


def test_toward_another_point_and_wrong_lengths(tiny_case: TinyCase) -> None:
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    theta = obj.theta0
    target = theta + torch.linspace(-1, 1, obj.dim, dtype=torch.float64)
    dirs = make_directions(obj.layout, theta, "filter", seed=4, toward=target)
    assert np.array_equal(dirs.d1, (target - theta).numpy())
    assert np.array_equal(dirs.d2, random_directions(obj.layout, theta, "filter", seed=4, count=1).d1)
    assert dirs.kind == ["toward", "filter"]
    with pytest.raises(UserError, match="entries"):
        filter_normalize(torch.zeros(obj.dim + 1, dtype=torch.float64), theta, obj.layout)
    with pytest.raises(UserError, match="parameters"):
        Directions(np.zeros(obj.dim - 1), np.zeros(obj.dim - 1), ["given"] * 2).tensors(theta)
    with pytest.raises(UserError, match="parameters"):
        make_directions(obj.layout, theta, "filter", toward=torch.zeros(obj.dim + 2, dtype=torch.float64))
    with pytest.raises(UserError, match="--pca-from"):
        make_directions(obj.layout, theta, "pca")


def test_layer_normalize_equals_filter_normalize_for_one_row_layers() -> None:
    # A layer with one output unit has one filter: both normalizations must agree.
    model = torch.nn.Sequential(torch.nn.Linear(4, 1)).double()
    obj = Objective(model, "mse", (torch.randn(6, 4), torch.randn(6, 1)), dtype="float64")
    d = torch.randn(obj.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(
        layer_normalize(d, obj.theta0, obj.layout),
        filter_normalize(d, obj.theta0, obj.layout),
        rtol=0,
        atol=0,
    )
