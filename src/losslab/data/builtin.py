"""Datasets that need no network: every one is generated or ships inside a package."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import torch

from losslab._loading import is_user_spec, load_callable, option, parse_spec, reject_unknown
from losslab.data.dataset import Dataset, as_dataset
from losslab.data.fashion_mnist import fashion_mnist
from losslab.errors import UserError, check_float, check_int

__all__ = ["DATASETS", "digits", "load_data", "mnist1d", "spirals", "teacher", "xor"]


def _split(n: int, test_fraction: float, seed: int, owner: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test indices of a seeded permutation; the training split keeps at least one row."""
    check_float(test_fraction, "test_fraction", owner, low=0.0, high=1.0)
    n_test = round(test_fraction * n)
    if n_test >= n:
        raise UserError(
            f"The 'test_fraction' parameter of {owner} leaves no training rows of {n}: "
            "give a smaller test_fraction or a larger n."
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_test:].sort().values, order[:n_test].sort().values


def digits(*, test_fraction: float = 0.2, seed: int = 0, images: bool = False) -> Dataset:
    """scikit-learn's 8×8 digits (1,797 images, 64 features, 10 classes).

    Split with a seeded permutation, then standardized per feature with the training
    split's mean and standard deviation (constant pixels keep std 1). ``images=True``
    gives the same numbers as [n, 1, 8, 8] images, for fast CNN tests.
    """
    from sklearn.datasets import load_digits

    check_int(seed, "seed", "data 'digits'")
    bunch = load_digits()
    X = torch.tensor(bunch.data, dtype=torch.float32)
    y = torch.tensor(bunch.target, dtype=torch.long)
    train, test = _split(len(X), test_fraction, seed, "data 'digits'")
    mean = X[train].mean(0)
    std = X[train].std(0)
    std[std == 0] = 1.0
    X = (X - mean) / std
    if images:
        X = X.reshape(-1, 1, 8, 8)
    return Dataset(
        "digits",
        X[train],
        y[train],
        X[test],
        y[test],
        num_classes=10,
        meta={"test_fraction": test_fraction, "seed": seed, "images": images},
    )


def mnist1d(*, seed: int = 42) -> Dataset:
    """MNIST-1D (Greydanus 2020): 4,000 train / 1,000 test sequences of length 40.

    Generated procedurally by ``mnist1d.data.make_dataset`` with its default arguments
    (seed 42 is the published dataset); never downloaded. ``make_dataset`` reseeds the
    global NumPy and ``random`` generators, so their state is restored afterwards.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    check_int(seed, "seed", "data 'mnist1d'", low=0)  # NumPy seeds are non-negative
    args = get_dataset_args()
    args.seed = seed
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002  (mnist1d reseeds them)
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    as_x = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    return Dataset(
        "mnist1d",
        as_x(data["x"]),
        as_y(data["y"]),
        as_x(data["x_test"]),
        as_y(data["y_test"]),
        num_classes=10,
        meta={"seed": seed},
    )


def teacher(
    *,
    n: int = 1000,
    d: int = 10,
    hidden: int = 4,
    out: int = 1,
    task: str = "regression",
    noise: float = 0.0,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Teacher–student data: x ~ N(0, I_d) labelled by a random d-hidden-out ReLU network.

    Regression targets are the teacher's outputs plus N(0, noise²); classification
    targets are the argmax of ``out`` ≥ 2 teacher outputs. The teacher's weights are kept
    in ``meta["teacher"]`` (first-layer W1 [hidden, d], b1, second-layer W2 [out, hidden],
    b2), so a student can be compared with the network that made the data.
    """
    owner = "data 'teacher'"
    for name, value in (("n", n), ("d", d), ("hidden", hidden), ("out", out)):
        check_int(value, name, owner, low=1)
    check_int(seed, "seed", owner)
    check_float(noise, "noise", owner, low=0.0)
    if task not in ("regression", "classification"):
        raise UserError(f"The 'task' option of teacher must be 'regression' or 'classification'. Got {task!r}.")
    if task == "classification" and out < 2:
        raise UserError("A classification teacher needs out ≥ 2 classes: write teacher:task=classification,out=3.")
    g = torch.Generator().manual_seed(seed)
    W1 = torch.randn(hidden, d, generator=g) / math.sqrt(d)
    b1 = 0.1 * torch.randn(hidden, generator=g)
    W2 = torch.randn(out, hidden, generator=g) / math.sqrt(hidden)
    b2 = torch.zeros(out)
    X = torch.randn(n, d, generator=g)
    F = torch.relu(X @ W1.T + b1) @ W2.T + b2
    if task == "regression":
        y = F + noise * torch.randn(F.shape, generator=g)
    else:
        y = F.argmax(1)
    train, test = _split(n, test_fraction, seed, owner)
    meta = {"teacher": {"W1": W1, "b1": b1, "W2": W2, "b2": b2}, "seed": seed, "noise": noise}
    return Dataset(
        "teacher",
        X[train],
        y[train],
        X[test],
        y[test],
        task=task,  # type: ignore[arg-type]
        num_classes=out if task == "classification" else None,
        meta=meta,
    )


def spirals(
    *,
    n: int = 400,
    arms: int = 2,
    noise: float = 0.1,
    turns: float = 1.5,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> Dataset:
    """Interleaved 2-D spirals, one class per arm (radius grows linearly with angle)."""
    owner = "data 'spirals'"
    check_int(n, "n", owner, low=1)
    check_int(arms, "arms", owner, low=2)  # one class per arm: fewer than two is no classification task
    check_int(seed, "seed", owner)
    check_float(noise, "noise", owner, low=0.0)
    check_float(turns, "turns", owner, low=0.0, low_open=True)
    train, test = _split(n, test_fraction, seed, owner)
    g = torch.Generator().manual_seed(seed)
    label = torch.arange(n) % arms
    r = torch.rand(n, generator=g)
    angle = 2 * math.pi * (turns * r + label / arms)
    X = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], 1)
    X = X + noise * r[:, None] * torch.randn(n, 2, generator=g)
    return Dataset(
        "spirals",
        X[train],
        label[train],
        X[test],
        label[test],
        num_classes=arms,
        meta={"seed": seed, "noise": noise},
    )


def xor() -> Dataset:
    """The four XOR points {0,1}² with labels x₁ ⊕ x₂ (no test split: there is nothing else)."""
    X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 1, 0])
    return Dataset("xor", X, y, num_classes=2)


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": digits,
    "mnist1d": mnist1d,
    "teacher": teacher,
    "spirals": spirals,
    "xor": xor,
    "fashion-mnist": fashion_mnist,
}


def load_data(spec: str, *, label_noise: float | None = None, noise_seed: int | None = None) -> Dataset:
    """Build a dataset from a spec string.

    Built-ins take ``key=value`` options: ``digits``, ``mnist1d:seed=1``,
    ``teacher:n=500,d=5,hidden=3``, ``spirals:arms=3``, ``xor``. Every spec also accepts
    ``label_noise=p`` and ``noise_seed=s`` (see `Dataset.with_label_noise`). User data:
    ``path/to/file.py:function`` or ``package.module:function`` returning ``(X, y)``
    tensors, a ``torch.utils.data.Dataset`` or a `Dataset`.
    """
    name, positional, options = parse_spec(spec, "data")
    if name not in DATASETS and is_user_spec(spec):
        fn = load_callable(spec, "data")  # guarded: what the function raises is a one-line UserError
        data = as_dataset(fn(), name=spec)
        options = {}
    elif name in DATASETS:
        if positional is not None:
            raise UserError(f"The data spec {spec!r} must be written {name}:key=value,key=value.")
        owner = f"data {name!r}"
        noise = option(options, "label_noise", 0.0, owner)
        seed_noise = option(options, "noise_seed", 0, owner)
        fn = DATASETS[name]
        defaults = _defaults(fn)
        kwargs = {key: option(options, key, default, owner) for key, default in defaults.items()}
        reject_unknown(options, owner, [*defaults, "label_noise", "noise_seed"])
        data = fn(**kwargs)
        label_noise = noise if label_noise is None else label_noise
        noise_seed = seed_noise if noise_seed is None else noise_seed
    else:
        raise UserError(f"Unknown data {spec!r}: use one of {', '.join(DATASETS)} or 'path/to/file.py:function'.")
    return data.with_label_noise(label_noise or 0.0, noise_seed or 0)


def _defaults(fn: Callable[..., Dataset]) -> dict[str, object]:
    import inspect

    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
