"""The datasets every losslab analysis consumes: in memory (`Dataset`) or streamed (`StreamDataset`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

import torch

from losslab.data.inputs import Inputs, count_rows, map_inputs, take_rows
from losslab.data.stream import Stream, targets
from losslab.errors import UserError, check_float, check_int

__all__ = ["MATERIALIZE_BYTES", "Dataset", "StreamDataset", "as_dataset"]

# A torch Dataset whose items stack to at most this many bytes is read into memory once (every
# analysis can then index it); a larger one is streamed batch by batch. A quarter of the default
# activation budget of an Objective (1 GiB), so holding the data never dominates a run's memory.
MATERIALIZE_BYTES = 256 << 20

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Dataset:
    """Train (and optionally test) tensors with what analyses need to know about them.

    Classification targets are int64 class indices; regression targets are float
    tensors of shape [n, k]. Inputs are a tensor, a tuple or a dict of tensors with the
    examples first (`losslab.data.inputs`). ``corrupted`` holds the training indices whose labels were
    replaced by `with_label_noise` (empty when none were).
    """

    name: str
    X_train: Inputs
    y_train: torch.Tensor
    X_test: Inputs | None = None
    y_test: torch.Tensor | None = None
    task: Task = "classification"
    num_classes: int | None = None
    corrupted: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if count_rows(self.X_train, self.name) != len(self.y_train):
            raise UserError(
                f"Dataset {self.name!r} has {count_rows(self.X_train, self.name)} inputs but {len(self.y_train)} "
                "targets: return X and y with the same first dimension."
            )
        if (self.X_test is None) != (self.y_test is None):
            raise UserError(f"Dataset {self.name!r} has test inputs or targets but not both.")

    @property
    def n_train(self) -> int:
        return count_rows(self.X_train, self.name)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return _input_shape(self.X_train, self.name)

    @property
    def output_dim(self) -> int:
        """Width of the model output this data needs (classes, or regression targets)."""
        if self.task == "classification":
            assert self.num_classes is not None
            return self.num_classes
        return 1 if self.y_train.ndim == 1 else int(self.y_train.shape[1])

    def split(self, which: str = "train") -> tuple[Inputs, torch.Tensor]:
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

    def subset(self, index: torch.Tensor) -> Dataset:
        """The training rows ``index`` (the test split whole); ``corrupted`` re-indexed into them."""
        index = torch.as_tensor(index, dtype=torch.long)
        corrupted = torch.nonzero(torch.isin(index, self.corrupted)).flatten()
        meta = {**self.meta, "subset": len(index)}
        return replace(
            self, X_train=take_rows(self.X_train, index), y_train=self.y_train[index], corrupted=corrupted, meta=meta
        )

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
        y[corrupted.to(y.device)] = torch.randint(self.num_classes, (count,), generator=generator).to(y)
        meta = {**self.meta, "label_noise": fraction, "noise_seed": seed}
        return replace(self, y_train=y, corrupted=corrupted, meta=meta)


class StreamDataset:
    """A torch Dataset (or DataLoader) too large to hold, read batch by batch (`Stream`).

    The same questions as `Dataset` answers, except that ``split`` gives a `Stream` instead
    of tensors. ``num_classes`` costs one pass over the data, the first time it is asked.
    """

    def __init__(self, name: str, train: Stream, test: Stream | None = None) -> None:
        self.name, self.train, self.test = name, train, test
        self.task: Task = "classification" if train.classification else "regression"
        self.corrupted = torch.zeros(0, dtype=torch.long)
        self.meta: dict[str, Any] = {"streamed": True}

    def __repr__(self) -> str:
        return f"StreamDataset({self.name!r}, n_train={self.n_train})"

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def has_test(self) -> bool:
        return self.test is not None

    @cached_property
    def num_classes(self) -> int | None:
        return self.train.max_label() + 1 if self.task == "classification" else None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return _input_shape(self.train.take([0])[0], self.name)

    @property
    def output_dim(self) -> int:
        if self.task == "classification":
            return int(self.num_classes)  # type: ignore[arg-type]
        return int(self.train.take([0])[1].shape[1])

    def split(self, which: str = "train") -> Stream:
        if which == "train":
            return self.train
        if which == "test":
            if self.test is None:
                raise UserError(
                    f"Dataset {self.name!r} has no test split: use split='train' or give data with a test split."
                )
            return self.test
        raise UserError(f"The 'split' parameter must be 'train' or 'test'. Got {which!r}.")

    def subset(self, index: torch.Tensor) -> StreamDataset:
        """The training rows ``index`` (still streamed; the test split whole)."""
        return StreamDataset(self.name, self.train.subset(index), self.test)

    def with_label_noise(self, fraction: float, seed: int = 0) -> StreamDataset:
        fraction = check_float(fraction, "label_noise", "Dataset", low=0.0, high=1.0)
        if fraction == 0.0:
            return self
        raise UserError(
            f"Label noise rewrites stored labels, but {self.name!r} is streamed from a torch Dataset: "
            "replace the labels in its __getitem__, or give (X, y) tensors."
        )


def _input_shape(X: Inputs, name: str) -> tuple[int, ...]:
    if not isinstance(X, torch.Tensor):
        raise UserError(
            f"The inputs of {name!r} are a tuple or dict of tensors, which no built-in model reads: "
            "give --model path/to/file.py:function (a model that takes them)."
        )
    return tuple(X.shape[1:])


def as_dataset(data: Any, name: str = "user", *, stream: bool | None = None) -> Dataset | StreamDataset:
    """Turn ``(X, y)``, a ``torch.utils.data.Dataset``, a ``DataLoader`` or a `Dataset` into a dataset.

    ``X`` is a tensor, a tuple or a dict of tensors (`losslab.data.inputs`); integer inputs
    (token ids) keep their dtype. Integer targets make a classification task with
    ``max(y) + 1`` classes; float targets make a regression task. A torch Dataset's items
    are ``(x, y)`` pairs or dicts with a target key (`losslab.data.stream.TARGET_KEYS`).

    ``stream``: True reads a torch Dataset or DataLoader batch by batch and never holds it
    (`StreamDataset`); False stacks its items into tensors; None (default) streams a
    DataLoader and a Dataset whose items would take more than `MATERIALIZE_BYTES`.
    """
    if isinstance(data, (Dataset, StreamDataset)):
        return data
    if isinstance(data, (torch.utils.data.Dataset, torch.utils.data.DataLoader)) and not isinstance(data, tuple):
        source = Stream(data, name)
        loader = isinstance(data, torch.utils.data.DataLoader)
        if stream or (stream is None and (loader or source.n * source.item_bytes > MATERIALIZE_BYTES)):
            return StreamDataset(name, source)
        data = source.take(range(source.n))
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise UserError(
            f"The data {name!r} must be a tuple (X, y) of tensors or a torch Dataset. Got {type(data).__name__}."
        )
    X = map_inputs(lambda t: t, data[0], name)
    y = data[1] if isinstance(data[1], torch.Tensor) else torch.as_tensor(data[1])
    if isinstance(X, torch.Tensor) and X.ndim < 2:
        raise UserError(f"The inputs X of {name!r} must have shape [n, features...]. Got shape {tuple(X.shape)}.")
    y = targets(y, name)
    if y.is_floating_point():
        return Dataset(name, X, y, task="regression")
    return Dataset(name, X, y, task="classification", num_classes=int(y.max()) + 1 if len(y) else 0)
