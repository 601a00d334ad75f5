"""The depth study: plain nets stop training with depth and residual twins do not; every number checked by hand."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import kill_mid_sweep_then_resume
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.data import load_data
from losslab.errors import UserError
from losslab.models import build_model
from losslab.studies import STUDIES, StudyContext, subset
from losslab.studies.depth import RESNET_QUICK, DepthConfig, DepthResult, _plane_twins

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def quick() -> DepthResult:
    study = STUDIES["depth"]
    return study.run(study.config("quick"), StudyContext())


def test_plain_nets_stop_training_with_depth_and_residual_twins_do_not(quick: DepthResult) -> None:
    # The anchor (He et al. 2016; Li et al. 2018), on the quick preset where it holds for every seed:
    # at depth 16 no plain seed gets below 0.9·ln 10, every residual seed does, and every seed of both
    # trains at depth 2.
    deep_plain, deep_res = quick.point(16, False), quick.point(16, True)
    assert quick.trains(deep_plain).sum() == 0 and quick.trains(deep_res).all()
    assert quick.trains(quick.point(2, False)).all() and quick.trains(quick.point(2, True)).all()
    assert np.nanmax(deep_res.final_loss) < np.nanmin(deep_plain.final_loss) / 10
    assert np.all(np.isnan(deep_plain.steps_to_target)) and np.all(np.isfinite(deep_res.steps_to_target))
    # Vanishing gradients: the plain stem's gradient at init is orders of magnitude below the head's,
    # the residual twin's is not.
    assert np.all(deep_plain.grad_norm_init[:, 0] < 1e-3 * deep_plain.grad_norm_init[:, -1])
    assert np.all(deep_res.grad_norm_init[:, 0] > 0.05 * deep_res.grad_norm_init[:, -1])
    # Twins have the same parameters, counted independently from the built modules.
    for depth in (2, 16):
        plain, res = quick.point(depth, False), quick.point(depth, True)
        count = sum(p.numel() for p in build_model(res.model).parameters())
        assert plain.params == res.params == count
        assert plain.layers == res.layers and len(plain.layers) == depth + 2
    # The plane's center is seed 0's final θ (float32, two evaluation paths: 1e-5 relative).
    for plane_ in quick.planes:
        assert (plane_.depth, plane_.member) == (16, 0)  # nothing diverged: the deepest depth, seed 0
        point = quick.point(16, plane_.residual)
        center = plane_.loss[len(plane_.a) // 2, len(plane_.b) // 2]
        assert center == pytest.approx(point.final_loss[0], rel=1e-5)
        assert np.all(plane_.convexity >= 0)
    summary = quick.summary()
    assert len(summary["runs"]) == 4 and {"plane_plain", "plane_residual"} <= set(summary)


def test_gradients_and_the_convexity_map_by_hand() -> None:
    # A float64 case small enough for a dense Hessian (3 hidden layers of width 4: 366 parameters);
    # Lanczos with a Krylov space as large as the dimension is exact up to round-off.
    study = STUDIES["depth"]
    config = study.config(
        "quick",
        train_size=100,
        depths=(3,),
        width=4,
        seeds=2,
        steps=30,
        record_every=10,
        lanczos_tol=1e-9,
        max_hvps=800,
        bottom=100,
        slq_starts=4,
        slq_steps=400,  # ≥ D = 366: the quadrature is exact, only the random starts are left
        grid=3,
        convexity_grid=3,
    )
    result = study.run(config, StudyContext(dtype="float64"))
    data = subset(load_data("digits"), 100, 0)
    X, y = data.X_train.double(), data.y_train
    for residual in (False, True):
        point = result.point(3, residual)
        for k in range(2):
            model = build_model(point.model, seed=k).double()
            torch.nn.functional.cross_entropy(model(X), y).backward()
            norms = {}
            for name, p in model.named_parameters():
                owner = name.rsplit(".", 1)[0]
                norms[owner] = norms.get(owner, 0.0) + float(p.grad.square().sum())
            assert list(norms) == point.layers
            # Same float64 arithmetic by two routes: agreement to 1e-10 relative.
            np.testing.assert_allclose(point.grad_norm_init[k], np.sqrt(list(norms.values())), rtol=1e-10)
        # The convexity map's center cell is θ_end of seed 0: |λmin/λmax| of the dense Hessian there.
        plane_ = next(p for p in result.planes if p.residual == residual)
        theta = torch.as_tensor(point.theta_end[0])
        model = build_model(point.model).double()
        params = dict(model.named_parameters())
        names, shapes = list(params), [p.shape for p in params.values()]

        def loss(t: torch.Tensor, names=names, shapes=shapes, model=model) -> torch.Tensor:
            chunks, start = {}, 0
            for name, shape in zip(names, shapes, strict=True):
                chunks[name] = t[start : start + shape.numel()].view(shape)
                start += shape.numel()
            return torch.nn.functional.cross_entropy(torch.func.functional_call(model, chunks, (X,)), y)

        eig = torch.linalg.eigvalsh(torch.func.hessian(loss)(theta))
        lo, hi = float(eig[0]), float(eig[-1])
        # Krylov space ≥ D in float64: eigenvalues to ~1e-8 of λmax.
        assert plane_.lambda_max[1, 1] == pytest.approx(hi, rel=1e-6)
        assert plane_.lambda_min[1, 1] == pytest.approx(lo, abs=1e-6 * hi)
        assert plane_.convexity[1, 1] == pytest.approx(abs(lo / hi), abs=1e-5)
        assert point.lambda_max_end[0] == pytest.approx(hi, rel=1e-6)
        # The saddle index at init and at the end of seed 0 against the dense float64 eigendecomposition.
        theta_init = build_model(point.model, seed=0).double()
        theta_init = torch.cat([p.detach().reshape(-1) for p in theta_init.parameters()])
        for when, at in (("init", theta_init), ("end", theta)):
            values, vectors = torch.linalg.eigh(torch.func.hessian(loss)(at))
            tau = 1e-3 * float(values[-1])  # the default τ of saddle_index
            below = values < -tau
            count, dim = int(below.sum()), len(values)
            assert getattr(point, f"tau_{when}")[0] == pytest.approx(tau, rel=1e-6)
            assert getattr(point, f"lambda_min_{when}")[0] == pytest.approx(
                float(values[0]), abs=1e-6 * float(values[-1])
            )
            # Every bottom Ritz value is exact here, so the certified count is min(count, bottom) …
            assert getattr(point, f"count_lower_{when}")[0] == min(count, 100)
            assert 0 < count < 100, "the case must exercise the exact count"
            # … and below 100 the bottom pairs certify it: the interval is the exact fraction.
            low, high = (getattr(point, f"index_{when}{s}")[0] for s in ("_low", "_high"))
            assert low == high == count / dim
            # The quadrature is exact at 400 ≥ D steps, so each start's estimate is zᵀPz/D for the projector
            # P onto the eigenvectors below −τ and a Rademacher z: mean c/D, variance 2(‖P‖²_F − Σ P_ii²)/D².
            P = vectors[:, below] @ vectors[:, below].T
            sd = float(torch.sqrt(2 * (P.square().sum() - P.diagonal().square().sum()) / 4)) / dim
            assert abs(getattr(point, f"index_{when}")[0] - count / dim) <= 5 * sd


def test_settings_are_validated() -> None:
    study = STUDIES["depth"]
    with pytest.raises(UserError, match="at least one depth"):
        study.config("quick", depths=())
    with pytest.raises(UserError, match="must differ"):
        study.config("quick", depths=(4, 4))
    with pytest.raises(UserError, match="'trains_below' parameter of the depth study"):
        study.config("quick", trains_below=1.5)
    result = CliRunner().invoke(app, ["study", "depth", "--set", "width=0"])
    assert result.exit_code == 2 and "width" in result.stderr


TINY = ["depths=2,3,4", "width=6", "seeds=2", "steps=40", "train_size=150", "grid=3", "convexity_grid=1"]


def _command(out: Path, settings: list[str] = TINY) -> list[str]:
    tiny = [arg for item in settings for arg in ("--set", item)]
    return [sys.executable, "-m", "losslab.cli", "study", "depth", "--quick", *tiny, "--out", str(out), "--json"]


def test_a_killed_study_resumes_bit_identically(tmp_path: Path) -> None:
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    kill_mid_sweep_then_resume(_command, killed, clean, "depth", at_least=2, below=6)
    a, b = load(killed), load(clean)
    assert a.manifest["resumed"] and a.status == "complete"
    for pa, pb in zip(a.result.points, b.result.points, strict=True):
        for field in ("final_loss", "loss_curve", "grad_norm_init", "lambda_max_end", "theta_end"):
            assert getattr(pa, field).tobytes() == getattr(pb, field).tobytes(), field
    assert a.result.planes[1].loss.tobytes() == b.result.planes[1].loss.tobytes()
    assert (killed / "figures" / "study-depth.png").is_file()
    assert (killed / "figures" / "study-depth-planes.png").is_file()


def test_cli_lists_the_study() -> None:
    listed = CliRunner().invoke(app, ["study", "list", "--json"])
    assert listed.exit_code == 0 and "depth" in json.loads(listed.stdout)


def test_planes_move_to_the_deepest_depth_where_both_twins_have_a_finite_end() -> None:
    # The full preset's residual nets diverge at depth 32 (lr 0.05, no normalization): a diverged θ has no
    # finite Hessian, so the Li et al. planes go to the deepest depth where each twin has a seed that did not.
    ok, bad = "budget", "diverged"
    point = lambda depth, residual, stopped: SimpleNamespace(depth=depth, residual=residual, stopped=stopped)  # noqa: E731
    points = [
        point(2, False, [ok, ok]),
        point(2, True, [ok, ok]),
        point(16, False, [ok, "target"]),
        point(16, True, [bad, ok]),
        point(32, False, [ok, ok]),
        point(32, True, [bad, bad]),
    ]
    config = DepthConfig(depths=(2, 16, 32))
    twins = _plane_twins(config, points)  # type: ignore[arg-type]
    assert [(p.depth, p.residual, k) for p, k in twins] == [(16, False, 0), (16, True, 1)]
    points[3].stopped = [bad, bad]
    assert [(p.depth, k) for p, k in _plane_twins(config, points)] == [(2, 0), (2, 0)]  # type: ignore[arg-type]
    for p in points:
        p.stopped = [bad, bad]
    assert _plane_twins(config, points) == []  # type: ignore[arg-type]


def test_resnet_twins_with_batch_norm_on_the_quick_preset() -> None:
    # ResNet-8/14 vs their -noshort twins on digits images (RESNET_QUICK, ~45 s on a shared core).
    study = STUDIES["depth"]
    result = study.run(study.config("quick", **RESNET_QUICK), StudyContext())
    data = subset(load_data("digits:images=true"), 100, 0)
    for depth in (8, 14):
        plain, res = result.point(depth, False), result.point(depth, True)
        # Every plain parameter has its residual twin's name and shape; the twin adds only the two 1×1
        # projection shortcuts with batch norm (w→2w and 2w→4w): 10w² + 12w weights for w = 4.
        a, b = build_model(plain.model), build_model(res.model)
        shapes = {n: p.shape for n, p in b.named_parameters()}
        assert all(shapes[n] == p.shape for n, p in a.named_parameters())
        assert (
            res.params - plain.params
            == 10 * 4**2 + 12 * 4
            == sum(p.numel() for n, p in b.named_parameters() if "shortcut" in n)
        )
        for point in (plain, res):
            assert point.stopped == ["budget", "budget"]
            for when in ("init", "end"):
                index, low, high = (getattr(point, f"index_{when}{s}") for s in ("", "_low", "_high"))
                lam_min, tau = getattr(point, f"lambda_min_{when}"), getattr(point, f"tau_{when}")
                assert np.all((0 <= low) & (low <= high) & (high <= 1) & (0 <= index) & (index <= 1))
                # A bottom Ritz value below −τ certifies an eigenvalue there (interlacing): count ≥ 1 iff λmin < −τ.
                assert np.array_equal(getattr(point, f"count_lower_{when}") >= 1, lam_min < -tau)
                assert np.all(np.isfinite(getattr(point, f"lambda_max_{when}")))
            # Batch norm, by an independent route on a fresh module: at init the loss is train-mode batch norm
            # on the whole training set as one batch; at the end, eval mode with the statistics training kept.
            for k in range(2):
                model = build_model(point.model, seed=k).train()
                with torch.no_grad():
                    ref = torch.nn.functional.cross_entropy(model(data.X_train), data.y_train)
                assert point.loss_init[k] == pytest.approx(float(ref), rel=1e-4)
                assert point.loss_curve[0, k] == pytest.approx(point.loss_init[k], rel=1e-5)
                state, start = {}, 0
                for name, buf in model.named_buffers():
                    state[name] = torch.as_tensor(point.buffers_end[k][start : start + buf.numel()]).reshape(buf.shape)
                    state[name] = state[name].to(buf.dtype)
                    start += buf.numel()
                params = {n: p for n, p in model.named_parameters()}
                flat, start = torch.as_tensor(point.theta_end[k]), 0
                for name, p in params.items():
                    state[name] = flat[start : start + p.numel()].reshape(p.shape)
                    start += p.numel()
                model.load_state_dict(state)
                with torch.no_grad():
                    ref = torch.nn.functional.cross_entropy(model.eval()(data.X_train), data.y_train)
                assert point.final_loss[k] == pytest.approx(float(ref), rel=1e-4)
    # Deep plain nets with batch norm explode their gradients toward the stem at init (Yang et al. 2019): at
    # depth 14 the stem/head ratio of every plain seed is above the residual twin's (by > 2× at this seed).
    plain, res = result.point(14, False), result.point(14, True)
    ratio = lambda p: p.grad_norm_init[:, 0] / p.grad_norm_init[:, -1]  # noqa: E731
    assert np.all(ratio(plain) > ratio(res))
    for plane_ in result.planes:
        point = result.point(14, plane_.residual)
        assert (plane_.depth, plane_.member) == (14, 0)
        center = plane_.loss[len(plane_.a) // 2, len(plane_.b) // 2]
        assert center == pytest.approx(point.final_loss[0], rel=1e-5)
        assert np.all(np.isfinite(plane_.loss)) and np.all(np.isfinite(plane_.convexity))
    with pytest.raises(UserError, match="6n\\+2"):
        study.config("quick", family="resnet", depths=(8, 10))
    with pytest.raises(UserError, match="image data"):
        study.run(study.config("quick", family="resnet", depths=(8,), data="digits"), StudyContext())


RESNET_TINY = [
    "family=resnet",
    "data=digits:images=true",
    "depths=8,14",
    "width=2",
    "seeds=1",
    "steps=20",
    "train_size=60",
    "max_hvps=12",
    "bottom=1",
    "slq_starts=2",
    "slq_steps=4",
    "grid=3",
    "convexity_grid=1",
]


def test_a_killed_resnet_study_resumes_bit_identically_and_its_estimate_counts_the_runs(tmp_path: Path) -> None:
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    kill_mid_sweep_then_resume(
        functools.partial(_command, settings=RESNET_TINY), killed, clean, "depth", at_least=1, below=4
    )
    a, b = load(killed), load(clean)
    assert a.manifest["resumed"] and a.status == "complete"
    for pa, pb in zip(a.result.points, b.result.points, strict=True):
        for name in ("final_loss", "buffers_end", "theta_end", "index_init", "index_end", "lambda_max_end"):
            assert getattr(pa, name).tobytes() == getattr(pb, name).tobytes(), name
        assert pa.buffers_end.shape[1] > 0  # the batch-norm statistics travel with the point
    settings = [arg for item in RESNET_TINY for arg in ("--set", item)]
    out = CliRunner().invoke(app, ["study", "depth", "--quick", *settings, "--estimate", "--json"])
    assert out.exit_code == 0, out.output
    work = json.loads(out.stdout)["estimate"]["work"]
    steps = [w for w in work if w["what"].startswith("depth 8 plain: each seed: optimizer steps")]
    assert len(steps) == 1 and steps[0]["count"] == 20  # one seed, 20 steps, trained alone (batch norm)
    density = [w for w in work if w["what"].startswith("depth 14 residual: λmax, λmin and the saddle index")]
    assert any("density" in w["what"] and w["count"] == 2 * 2 * 4 for w in density)  # init and end × 2 starts × 4
