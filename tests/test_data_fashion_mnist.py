"""Fashion-MNIST from IDX files: a reader tested on tiny files written here, and the real Debian files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from losslab import UserError, load_data
from losslab.data.fashion_mnist import DEFAULT_ROOT, FILES, fashion_mnist, read_idx


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 20), ("test", 6)):
        _write_idx(tmp_path / FILES[f"{split}_images"], rng.integers(0, 256, (count, 28, 28)))
        _write_idx(tmp_path / FILES[f"{split}_labels"], np.arange(count) % 10)
    return tmp_path


def test_the_reader_returns_what_was_written(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", array)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), array)


def test_a_subset_is_seeded_scaled_and_standardized(tiny_root: Path) -> None:
    data = fashion_mnist(n=12, test_n=4, seed=3, root=str(tiny_root))
    assert data.X_train.shape == (12, 1, 28, 28) and data.X_test.shape == (4, 1, 28, 28)
    assert abs(float(data.X_train.mean())) < 1e-5 and abs(float(data.X_train.std()) - 1) < 1e-5
    raw = read_idx(tiny_root / FILES["train_images"]).astype(np.float64) / 255
    labels = read_idx(tiny_root / FILES["train_labels"])
    # each chosen image is a file image after the affine standardization, and keeps its own label
    chosen = torch.randperm(20, generator=torch.Generator().manual_seed(3))[:12].sort().values.numpy()
    x = raw[chosen]
    expected = (x - x.mean()) / x.std(ddof=1)
    assert np.allclose(data.X_train[:, 0].numpy(), expected, atol=1e-5)
    assert np.array_equal(data.y_train.numpy(), labels[chosen])
    again = load_data(f"fashion-mnist:n=12,test_n=4,seed=3,root={tiny_root}")
    assert torch.equal(again.X_train, data.X_train)


def test_missing_truncated_and_oversized_inputs_name_the_fix(tiny_root: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="apt-get install -y dataset-fashion-mnist"):
        fashion_mnist(root=str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="at most 20"):
        fashion_mnist(n=21, root=str(tiny_root))
    with pytest.raises(UserError, match="'n' parameter"):
        load_data(f"fashion-mnist:n=0,root={tiny_root}")
    path = tiny_root / FILES["test_labels"]
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-2]))
    with pytest.raises(UserError, match="truncated"):
        fashion_mnist(root=str(tiny_root))


@pytest.mark.skipif(
    not Path(DEFAULT_ROOT, FILES["train_labels"]).is_file(), reason="dataset-fashion-mnist not installed"
)
def test_the_real_files_hold_fashion_mnist() -> None:
    labels = read_idx(Path(DEFAULT_ROOT) / FILES["train_labels"])
    # Xiao et al. (2017): 60,000 training images, 6,000 per class; the first label is 9 (ankle boot)
    assert len(labels) == 60000 and np.bincount(labels).tolist() == [6000] * 10 and labels[0] == 9
    data = load_data("fashion-mnist:n=256,test_n=64")
    assert data.X_train.shape == (256, 1, 28, 28) and data.num_classes == 10 and int(data.y_train.max()) <= 9
