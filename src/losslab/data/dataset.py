"""The in-memory dataset every losslab analysis consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from losslab.errors import UserError, check_float, check_int

__all__ = ["Dataset", "as_dataset"]

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Dataset:
    """Train (and optionally test) tensors with what analyses need to know about them.

    Classification targets are int64 class indices; regression targets are float
    tensors of shape [n, k]. ``corrupted`` holds the training indices whose labels were
    replaced by `with_label_noise` (empty when none were).
    """

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    task: Task = "classification"
    num_classes: int | None = None
    corrupted: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.X_train) != len(self.y_train):
            raise UserError(
                f"Dataset {self.name!r} has {len(self.X_train)} inputs but {len(self.y_train)} "
                "targets: return X and y with the same first dimension."
            )
        if (self.X_test is None) != (self.y_test is None):
            raise UserError(f"Dataset {self.name!r} has test inputs or targets but not both.")

    @property
    def n_train(self) -> int:
        return len(self.X_train)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X_train.shape[1:])

    @property
    def output_dim(self) -> int:
        """Width of the model output this data needs (classes, or regression targets)."""
        if self.task == "classification":
            assert self.num_classes is not None
            return self.num_classes
        return 1 if self.y_train.ndim == 1 else int(self.y_train.shape[1])

    def split(self, which: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """The (X, y) tensors of the 'train' or 'test' split."""
        if which == "train":
            return self.X_train, self.y_train
        if which == "test":
            if self.X_test is None or self.y_test is None:
                raise UserError(
                    f"Dataset {self.name!r} has no test split: use split='train' or give data with a test split."
                )
            return self.X_test, self.y_test
        raise UserError(f"The 'split' parameter must be 'train' or 'test'. Got {which!r}.")

    @property
    def has_test(self) -> bool:
        return self.X_test is not None

    def with_label_noise(self, fraction: float, seed: int = 0) -> Dataset:
        """Replace a seeded ``fraction`` of training labels by uniformly random labels.

        ``fraction=1.0`` gives fully random labels (Zhang et al. 2017). A replaced label
        may by chance equal the original one, as in that paper; ``corrupted`` lists the
        indices that were replaced either way. The test split is left clean.
        """
        fraction = check_float(fraction, "label_noise", "Dataset", low=0.0, high=1.0)
        seed = check_int(seed, "noise_seed", "Dataset")
        if fraction == 0.0:
            return self
        if self.task != "classification" or self.num_classes is None:
            raise UserError(
                f"Label noise needs class labels, but dataset {self.name!r} is a regression "
                "task: use a classification dataset or label_noise=0."
            )
        generator = torch.Generator().manual_seed(seed)
        n = self.n_train
        count = round(fraction * n)
        corrupted = torch.randperm(n, generator=generator)[:count].sort().values
        y = self.y_train.clone()
        y[corrupted] = torch.randint(self.num_classes, (count,), generator=generator)
        meta = {**self.meta, "label_noise": fraction, "noise_seed": seed}
        return replace(self, y_train=y, corrupted=corrupted, meta=meta)


def as_dataset(data: Any, name: str = "user") -> Dataset:
    """Turn ``(X, y)`` tensors, a ``torch.utils.data.Dataset`` or a `Dataset` into a `Dataset`.

    Integer targets make a classification task with ``max(y) + 1`` classes; float
    targets make a regression task.
    """
    if isinstance(data, Dataset):
        return data
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, tuple):
        try:
            items = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
        except TypeError:
            raise UserError(f"The torch Dataset {name!r} has no length: give a map-style Dataset or (X, y).") from None
        if not items or not all(isinstance(item, (tuple, list)) and len(item) == 2 for item in items):
            raise UserError(f"The torch Dataset {name!r} must yield (x, y) pairs: return (X, y) tensors instead.")
        X = torch.stack([torch.as_tensor(x) for x, _ in items])
        y = torch.stack([torch.as_tensor(t) for _, t in items])
        data = (X, y)
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise UserError(
            f"The data {name!r} must be a tuple (X, y) of tensors or a torch Dataset. Got {type(data).__name__}."
        )
    X, y = (torch.as_tensor(t) if not isinstance(t, torch.Tensor) else t for t in data)
    if X.ndim < 2:
        raise UserError(f"The inputs X of {name!r} must have shape [n, features...]. Got shape {tuple(X.shape)}.")
    if not X.is_floating_point():
        X = X.float()
    if y.is_floating_point():
        return Dataset(name, X, y if y.ndim > 1 else y[:, None], task="regression")
    if y.ndim != 1:
        raise UserError(f"Integer targets of {name!r} must be class indices of shape [n]. Got shape {tuple(y.shape)}.")
    y = y.long()
    if len(y) and int(y.min()) < 0:
        raise UserError(f"Class labels of {name!r} must be ≥ 0. Got {int(y.min())}.")
    return Dataset(name, X, y, task="classification", num_classes=int(y.max()) + 1 if len(y) else 0)
