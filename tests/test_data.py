"""Built-in datasets, user data, label noise."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from losslab.data import DATASETS, as_dataset, load_data
from losslab.errors import UserError


def test_digits_split_and_standardization_are_fixed() -> None:
    a, b = load_data("digits"), load_data("digits")
    assert a.X_train.shape == (1438, 64) and a.X_test.shape == (359, 64) and a.num_classes == 10
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    varying = a.X_train.std(0) > 0
    torch.testing.assert_close(a.X_train.mean(0), torch.zeros(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(a.X_train.std(0)[varying], torch.ones(int(varying.sum())), atol=1e-5, rtol=0)
    assert not torch.equal(load_data("digits:seed=1").y_train, a.y_train)


def test_mnist1d_is_generated_with_its_defaults_and_leaves_global_rngs_alone() -> None:
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    expected_np, expected_py = np.random.rand(), random.random()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    data = load_data("mnist1d")
    assert (np.random.rand(), random.random()) == (expected_np, expected_py)  # noqa: NPY002
    assert data.X_train.shape == (4000, 40) and data.X_test.shape == (1000, 40)
    assert data.num_classes == 10 and set(data.y_train.tolist()) == set(range(10))
    assert torch.equal(load_data("mnist1d").X_train, data.X_train)
    assert not Path("mnist1d_data.pkl").exists()  # never the downloading get_dataset


def test_teacher_labels_come_from_the_kept_teacher() -> None:
    data = load_data("teacher:n=50,d=3,hidden=2,out=1")
    t = data.meta["teacher"]
    X = torch.cat([data.X_train, data.X_test])
    assert data.task == "regression" and data.y_train.shape == (40, 1)
    predicted = torch.relu(data.X_train @ t["W1"].T + t["b1"]) @ t["W2"].T + t["b2"]
    torch.testing.assert_close(predicted, data.y_train)
    cls = load_data("teacher:n=60,d=3,hidden=4,out=3,task=classification")
    assert cls.task == "classification" and cls.num_classes == 3 and cls.y_train.dtype == torch.long
    assert X.shape[1] == 3


def test_toy_sets() -> None:
    xor = load_data("xor")
    assert xor.X_train.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and xor.y_train.tolist() == [0, 1, 1, 0]
    assert not xor.has_test
    spirals = load_data("spirals:n=90,arms=3")
    assert spirals.num_classes == 3 and spirals.n_train + len(spirals.X_test) == 90


@pytest.mark.parametrize("fraction", [0.0, 0.2, 1.0])
def test_label_noise_replaces_a_seeded_fraction_and_keeps_the_indices(fraction: float) -> None:
    clean = load_data("digits")
    noisy = load_data(f"digits:label_noise={fraction},noise_seed=3")
    n = clean.n_train
    assert len(noisy.corrupted) == round(fraction * n)
    untouched = torch.ones(n, dtype=torch.bool)
    untouched[noisy.corrupted] = False
    assert torch.equal(noisy.y_train[untouched], clean.y_train[untouched])
    assert torch.equal(noisy.y_test, clean.y_test)  # the test split stays clean
    if fraction == 1.0:  # random labels: about 1 in 10 agree by chance (Zhang et al. 2017)
        agree = (noisy.y_train == clean.y_train).double().mean().item()
        assert 0.05 < agree < 0.15
    assert torch.equal(load_data(f"digits:label_noise={fraction},noise_seed=3").y_train, noisy.y_train)


def test_user_data_from_a_file_and_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mydata.py").write_text(
        textwrap.dedent("""
        import torch
        def pairs():
            g = torch.Generator().manual_seed(0)
            return torch.randn(20, 3, generator=g), torch.randint(4, (20,), generator=g)
        class Items(torch.utils.data.Dataset):
            def __len__(self): return 5
            def __getitem__(self, i): return torch.full((2,), float(i)), torch.tensor(float(i))
        def torch_dataset():
            return Items()
        def wrong():
            return "not data"
    """)
    )
    data = load_data(f"{tmp_path / 'mydata.py'}:pairs")
    assert data.task == "classification" and data.num_classes <= 4 and data.n_train == 20
    monkeypatch.syspath_prepend(str(tmp_path))
    ds = load_data("mydata:torch_dataset")
    assert ds.task == "regression" and ds.X_train.shape == (5, 2) and ds.y_train.shape == (5, 1)
    with pytest.raises(UserError, match="must be a tuple \\(X, y\\)"):
        load_data("mydata:wrong")
    with pytest.raises(UserError, match="has no function 'nope'"):
        load_data("mydata:nope")
    with pytest.raises(UserError, match="does not exist"):
        load_data(f"{tmp_path / 'missing.py'}:pairs")
    with pytest.raises(UserError, match="cannot be imported"):
        load_data("no_such_module_xyz.sub:fn")


def test_bad_specs() -> None:
    with pytest.raises(UserError, match="Unknown data 'cifar'"):
        load_data("cifar")
    with pytest.raises(UserError, match="has no option 'bogus'"):
        load_data("digits:bogus=1")
    with pytest.raises(UserError, match="'label_noise' parameter.*Got 1.5"):
        load_data("digits:label_noise=1.5")
    with pytest.raises(UserError, match="must be a float"):
        load_data("digits:test_fraction=abc")
    with pytest.raises(UserError, match="needs class labels"):
        load_data("teacher:label_noise=0.1")
    with pytest.raises(UserError, match="2 targets"):
        as_dataset((torch.zeros(3, 2), torch.zeros(2)))
    assert set(DATASETS) >= {"digits", "mnist1d", "teacher", "spirals", "xor"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("spirals:n=-5", "The 'n' parameter of data 'spirals' must be an int ≥ 1. Got -5."),
        ("spirals:n=0", "The 'n' parameter of data 'spirals' must be an int ≥ 1. Got 0."),
        ("spirals:arms=1", "The 'arms' parameter of data 'spirals' must be an int ≥ 2. Got 1."),
        ("spirals:noise=-1", "The 'noise' parameter of data 'spirals' must be a finite number ≥ 0.0. Got -1.0."),
        ("spirals:turns=0", "The 'turns' parameter of data 'spirals' must be a finite number > 0.0. Got 0.0."),
        ("spirals:n=2,test_fraction=0.9", "The 'test_fraction' parameter of data 'spirals' leaves no training rows"),
        ("teacher:n=0", "The 'n' parameter of data 'teacher' must be an int ≥ 1. Got 0."),
        ("teacher:d=0", "The 'd' parameter of data 'teacher' must be an int ≥ 1. Got 0."),
        ("teacher:hidden=-2", "The 'hidden' parameter of data 'teacher' must be an int ≥ 1. Got -2."),
        ("teacher:out=0", "The 'out' parameter of data 'teacher' must be an int ≥ 1. Got 0."),
        ("teacher:noise=nan", "The 'noise' parameter of data 'teacher' must be a finite number ≥ 0.0. Got nan."),
        ("teacher:test_fraction=1.5", "The 'test_fraction' parameter of data 'teacher' must be a finite number"),
        ("digits:test_fraction=-0.1", "The 'test_fraction' parameter of data 'digits' must be a finite number"),
        ("digits:test_fraction=1", "The 'test_fraction' parameter of data 'digits' leaves no training rows"),
        ("mnist1d:seed=-1", "The 'seed' parameter of data 'mnist1d' must be an int ≥ 0. Got -1."),
        ("set_splitting:elements=0", "The 'elements' parameter of set_splitting must be an int ≥ 3. Got 0."),
    ],
)
def test_impossible_sizes_of_builtin_data_are_user_errors(spec: str, message: str) -> None:
    """Before: spirals:n=-5 built an empty dataset and teacher:d=0 one with no features, found by a solver."""
    with pytest.raises(UserError) as info:
        load_data(spec)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_every_builtin_size_option_is_validated() -> None:
    """Each integer size option of each built-in, set to 0, is refused with the parameter named."""
    from losslab.data.builtin import _defaults

    sizes = {"n", "d", "hidden", "out", "arms", "elements", "subsets", "size"}
    checked = 0
    for name, fn in DATASETS.items():
        for key, default in _defaults(fn).items():
            if key in sizes and isinstance(default, int):
                with pytest.raises(UserError, match=f"'{key}' parameter"):
                    load_data(f"{name}:{key}=0")
                checked += 1
    assert checked >= 9
