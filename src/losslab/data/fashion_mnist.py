"""Fashion-MNIST (Xiao et al. 2017) read from local IDX files: real images, no download.

Debian's ``dataset-fashion-mnist`` package puts the four files under
``/usr/share/datasets/fashion-mnist/``; ``root=`` points at another directory holding them.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from losslab.data.dataset import Dataset
from losslab.errors import UserError, check_int

__all__ = ["DEFAULT_ROOT", "FILES", "fashion_mnist", "read_idx"]

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX array (LeCun's MNIST format): two zero bytes, a type code (0x08 = uint8), the rank,
    big-endian int32 sizes, then the data; gzip-compressed when the name ends in ``.gz``.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"The IDX file {str(path)!r} cannot be read ({exc}): reinstall the data files.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{str(path)!r} is not an IDX file of unsigned bytes: give the Fashion-MNIST .gz files.")
    rank = raw[3]
    header = 4 + 4 * rank
    shape = tuple(int(s) for s in np.frombuffer(raw[4:header], dtype=">i4")) if rank else ()
    if len(raw) != header + int(np.prod(shape)):
        raise UserError(
            f"The IDX file {str(path)!r} holds {len(raw) - header} bytes for shape {shape}: it is truncated; "
            "reinstall the data files."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def fashion_mnist(*, n: int = 60000, test_n: int = 10000, seed: int = 0, root: str = DEFAULT_ROOT) -> Dataset:
    """Fashion-MNIST as [n, 1, 28, 28] float images and 10 classes.

    ``n`` training and ``test_n`` test images are a seeded random subset (all of them by
    default). Pixels are scaled to [0, 1], then standardized with the training subset's mean
    and standard deviation (one scalar each, as is usual for grayscale images).
    """
    check_int(n, "n", "data 'fashion-mnist'", low=1)
    check_int(test_n, "test_n", "data 'fashion-mnist'", low=0)
    folder = Path(root)
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise UserError(
            f"Fashion-MNIST's {missing[0]} is not in {str(folder)!r}: run 'apt-get install -y dataset-fashion-mnist' "
            "or pass root=DIR with the four IDX .gz files."
        )
    arrays = {key: read_idx(folder / name) for key, name in FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(
                f"Fashion-MNIST's {split} files in {str(folder)!r} do not match ({images.shape} images, "
                f"{labels.shape} labels): reinstall the data files."
            )
    generator = torch.Generator().manual_seed(seed)
    parts = []
    for split, count in (("train", n), ("test", test_n)):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if count > len(images):
            raise UserError(
                f"The {'n' if split == 'train' else 'test_n'} option of data 'fashion-mnist' is at most "
                f"{len(images)}. Got {count}."
            )
        index = torch.randperm(len(images), generator=generator)[:count].sort().values.numpy()
        X = torch.from_numpy(images[index].astype(np.float32) / 255.0).unsqueeze(1)
        parts.append((X, torch.from_numpy(labels[index].astype(np.int64))))
    (X_train, y_train), (X_test, y_test) = parts
    mean, std = X_train.mean(), X_train.std().clamp_min(1e-6)
    return Dataset(
        "fashion-mnist",
        (X_train - mean) / std,
        y_train,
        (X_test - mean) / std if test_n else None,
        y_test if test_n else None,
        num_classes=10,
        meta={"n": n, "test_n": test_n, "seed": seed, "root": str(folder.resolve()), "classes": list(CLASSES)},
    )
