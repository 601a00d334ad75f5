"""Shared test fixtures: a registry of tiny seeded cases (model, loss, data) at float64.

Every numerical method is checked on these against a dense reference built another
way (``torch.autograd.functional.hessian`` and friends). Cases cover the architecture
families losslab must handle: tanh and ReLU MLPs, a 1-D CNN, and a residual network
with batch norm (in eval mode).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from losslab.data import Dataset, as_dataset
from losslab.models import build_model

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one core per worker: its torch and the commands it starts
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup`` (pyproject's addopts) each module's tests run on one worker.

    So a module-scoped fixture is built once, and a test that counts processes or files sees
    only its own module's. Modules that start Ray mark themselves ``xdist_group("ray")`` and
    share one worker: two local Ray clusters at once would see each other's processes.
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            module = getattr(item, "module", None)
            item.add_marker(pytest.mark.xdist_group(module.__name__ if module else item.nodeid.split("::")[0]))


@dataclass
class TinyCase:
    """A small seeded problem: ``make_model()`` gives a fresh float64 model in eval mode."""

    name: str
    make_model: Callable[[], nn.Module]
    loss: str
    data: Dataset


def _regression(n: int, d: int, k: int, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.sin(X @ torch.randn(d, k, generator=g, dtype=torch.float64))
    return as_dataset((X, y), name="tiny-regression")


def _classification(n: int, shape: tuple[int, ...], classes: int, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(classes, (n,), generator=g)
    return as_dataset((X, y), name="tiny-classification")


def _bn_resnet() -> nn.Module:
    model = build_model("deep:2,width=5,in=3,out=3,residual=1,bn=1", seed=3).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-trivial running statistics, so eval mode is not the identity
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5, generator=g)
                module.running_var.uniform_(0.5, 2.0, generator=g)
                module.weight.uniform_(0.5, 1.5, generator=g)
                module.bias.uniform_(-0.2, 0.2, generator=g)
    return model.eval()


TINY_CASES = [
    TinyCase(
        "mlp-tanh-mse", lambda: build_model("mlp:3-4-2,act=tanh", seed=1).double(), "mse", _regression(23, 3, 2, 0)
    ),
    TinyCase(
        "mlp-relu-ce",
        lambda: build_model("mlp:4-5-3", seed=2).double(),
        "cross_entropy",
        _classification(29, (4,), 3, 1),
    ),
    TinyCase(
        "cnn1d-ce",
        lambda: build_model("cnn1d:length=12,channels=2,classes=3", seed=4).double(),
        "cross_entropy",
        _classification(17, (12,), 3, 2),
    ),
    TinyCase("resnet-bn-ce", _bn_resnet, "cross_entropy", _classification(19, (3,), 3, 3)),
]


@pytest.fixture(params=TINY_CASES, ids=lambda c: c.name)
def tiny_case(request: pytest.FixtureRequest) -> TinyCase:
    """Each tiny case in turn."""
    return request.param


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op torch thread for the tests of a module, restored afterwards.

    Tiny models gain nothing from intra-op threads, and on a shared machine OpenMP
    threads spin-waiting for a busy core made some test modules 10–70× slower. Opt in
    with ``pytestmark = pytest.mark.usefixtures("one_thread")`` at the top of a module
    (module scope: set once, restored after the module's last test).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def kill_mid_sweep_then_resume(
    command: Callable[[Path], list[str]], killed: Path, clean: Path, sweep: str, *, at_least: int, below: int
) -> None:
    """Run ``command(killed)``, SIGKILL it once ``at_least`` pieces of its sweep ``sweep`` are saved,
    rerun it into the same directory (it must resume) and run ``command(clean)``, for the caller
    to compare the two runs.
    """
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = killed / "chunks" / sweep
    deadline = time.time() + 180
    while len(list(chunks.glob("0*.npz"))) < at_least and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(chunks.glob("0*.npz")))
    assert at_least <= done < below, "the study must die mid-sweep for this test to mean anything"
    assert json.loads((killed / "run.json").read_text())["status"] == "running"
    for out in (killed, clean):
        subprocess.run(command(out), env=env, check=True, stdout=subprocess.DEVNULL)


def assert_same_objective(a: Any, b: Any, rows: Any = None) -> None:
    """Every quantity of the float64 Objective ``a`` equals ``b``'s to round-off (rtol 1e-12):
    loss, gradient, Hessian and GGN products, many-point losses, outputs, metrics and (with
    ``rows``, an index tensor) a minibatch loss, at a seeded θ near θ₀ and seeded vectors.
    """
    assert a.dim == b.dim and torch.equal(a.theta0, b.theta0)
    g = torch.Generator().manual_seed(4)
    theta = a.theta0 + 0.3 * torch.randn(a.dim, generator=g, dtype=torch.float64)
    V = torch.randn(3, a.dim, generator=g, dtype=torch.float64)
    thetas = torch.stack([a.theta0, theta, -theta])
    pairs = [
        (a.loss(theta), b.loss(theta)),
        (a.grad(theta), b.grad(theta)),
        (a.hvp_many(theta, V), b.hvp_many(theta, V)),
        (a.curvature_at(theta).ggn_many(V), b.curvature_at(theta).ggn_many(V)),
        (a.loss_many(thetas), b.loss_many(thetas)),
        (a.forward(theta), b.forward(theta)),
    ]
    if rows is not None:
        pairs.append((a.batch_loss(theta, rows), b.batch_loss(theta, rows)))
    for got, want in pairs:
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert a.metrics(theta) == pytest.approx(b.metrics(theta), rel=1e-12)
