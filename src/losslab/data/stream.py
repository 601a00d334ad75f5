"""Examples read from a map-style torch Dataset (or a DataLoader over one) a batch at a time.

A `Stream` never holds the data whole: `batches` collates consecutive items in a fixed
order and `take` any rows by index, so an `Objective` over it sums its loss, gradient and
curvature products batch by batch (`Objective.batch_sum`) with the same numbers as over
the tensors the items would stack to. Items are ``(x, y)`` pairs, ``x`` a tensor, a tuple
or a dict of tensors (`losslab.data.inputs`), or dicts that hold the target under one of
`TARGET_KEYS` and the model's keyword inputs under the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, SequentialSampler, default_collate

from losslab.data.inputs import Inputs, count_rows, leaves, map_inputs
from losslab.errors import UserError

__all__ = ["TARGET_KEYS", "Stream", "split_batch", "targets"]

TARGET_KEYS = ("y", "label", "labels", "target", "targets")


def targets(y: Any, name: str) -> torch.Tensor:
    """Targets as losslab keeps them: int64 class indices [n], or float regression targets [n, k]."""
    y = y if isinstance(y, torch.Tensor) else torch.as_tensor(y)
    if y.is_floating_point():
        return y if y.ndim > 1 else y[:, None]
    if y.ndim != 1:
        raise UserError(f"Integer targets of {name!r} must be class indices of shape [n]. Got shape {tuple(y.shape)}.")
    y = y.long()
    if len(y) and int(y.min()) < 0:
        raise UserError(f"Class labels of {name!r} must be ≥ 0. Got {int(y.min())}.")
    return y


def split_batch(batch: Any, name: str) -> tuple[Inputs, Any]:
    """(inputs, targets) of a collated batch: an ``(x, y)`` pair, or a dict with one target key."""
    if isinstance(batch, dict):
        keys = [k for k in TARGET_KEYS if k in batch]
        if len(keys) != 1:
            found = "none" if not keys else ", ".join(repr(k) for k in keys)
            raise UserError(
                f"The items of {name!r} are dicts, so one key must hold the target (one of "
                f"{', '.join(TARGET_KEYS)}); found {found}: name the target key once, or yield (x, y) pairs."
            )
        return {k: v for k, v in batch.items() if k != keys[0]}, batch[keys[0]]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise UserError(
        f"The torch Dataset {name!r} must yield (x, y) pairs or dicts with a target key "
        f"({', '.join(TARGET_KEYS)}). Got {type(batch).__name__}"
        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        + "."
    )


class Stream:
    """The ``n`` examples of a map-style torch Dataset or of a DataLoader, read batch by batch.

    A DataLoader is iterated as it is (its batch size, collate function, workers), so it
    must read its dataset in order (``shuffle=False``, no ``drop_last``): the objective is
    a sum over every example, and `take` reads rows of the same dataset by index.
    """

    def __init__(self, source: Any, name: str = "user") -> None:
        self.name = name
        self.loader: DataLoader | None = None
        if isinstance(source, DataLoader):
            if isinstance(source.dataset, IterableDataset):
                raise UserError(
                    f"The DataLoader {name!r} reads an IterableDataset, which has no rows by index: "
                    "give a map-style Dataset (with __getitem__ and __len__)."
                )
            if not isinstance(source.sampler, SequentialSampler) or source.drop_last:
                raise UserError(
                    f"The DataLoader {name!r} shuffles, samples or drops rows, but the objective sums over every "
                    "example in a fixed order: build it with shuffle=False and drop_last=False."
                )
            self.loader, self.dataset, self.collate = source, source.dataset, source.collate_fn
        elif isinstance(source, torch.utils.data.Dataset) and not isinstance(source, IterableDataset):
            self.dataset, self.collate = source, default_collate
        else:
            raise UserError(
                f"The data {name!r} is not a map-style torch Dataset or a DataLoader over one. "
                f"Got {type(source).__name__}."
            )
        try:
            self.n = len(self.dataset)  # type: ignore[arg-type]
        except TypeError:
            raise UserError(f"The torch Dataset {name!r} has no length: give a map-style Dataset or (X, y).") from None
        if self.n == 0:
            raise UserError(f"The torch Dataset {name!r} is empty: give at least one example.")
        X, y = self.take([0])
        self.classification = not y.is_floating_point()
        self.checked = False  # set by the first whole pass that checked every value (`Objective.batches`)
        self.item_bytes = sum(t.numel() * t.element_size() for t in leaves((X, y)))

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"Stream({self.name!r}, n={self.n})"

    @property
    def batch_size(self) -> int | None:
        """The DataLoader's batch size (None for a Dataset: the objective chooses)."""
        return None if self.loader is None else self.loader.batch_size

    def subset(self, index: Sequence[int] | torch.Tensor) -> Stream:
        """The rows ``index`` as a stream of their own (read the same way)."""
        rows = torch.utils.data.Subset(self.dataset, [int(i) for i in index])
        if self.loader is None:
            return Stream(rows, self.name)
        loader = self.loader
        return Stream(DataLoader(rows, batch_size=loader.batch_size, collate_fn=loader.collate_fn), self.name)

    def take(self, index: Sequence[int] | torch.Tensor) -> tuple[Inputs, torch.Tensor]:
        """The rows ``index``, collated: (inputs, targets)."""
        rows = [int(i) for i in index]
        try:
            items = [self.dataset[i] for i in rows]
            batch = self.collate(items)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(
                f"Reading rows of the torch Dataset {self.name!r} failed with {type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:200]}. Fix its __getitem__ (or collate_fn)."
            ) from exc
        return self._checked(batch, len(rows))

    def batches(self, size: int) -> Iterator[tuple[Inputs, torch.Tensor]]:
        """Consecutive batches in a fixed order: the DataLoader's, or ``size`` rows at a time."""
        if self.loader is not None:
            seen = 0
            for batch in self.loader:
                X, y = self._checked(batch, None)
                seen += len(y)
                yield X, y
            if seen != self.n:
                raise UserError(
                    f"The DataLoader {self.name!r} gave {seen} rows but its dataset has {self.n}: "
                    "give a DataLoader that reads every row once."
                )
            return
        for start in range(0, self.n, size):
            yield self.take(range(start, min(self.n, start + size)))

    def _checked(self, batch: Any, rows: int | None) -> tuple[Inputs, torch.Tensor]:
        X, y = split_batch(batch, self.name)
        X, y = map_inputs(lambda t: t, X, self.name), targets(y, self.name)
        if count_rows(X, self.name) != len(y) or (rows is not None and len(y) != rows):
            raise UserError(
                f"A batch of {self.name!r} has {count_rows(X, self.name)} inputs but {len(y)} targets: "
                "each item must hold one example."
            )
        return X, y

    def max_label(self) -> int:
        """The largest class label (one pass over the data)."""
        return max(int(y.max()) for _, y in self.batches(max(1, (64 << 20) // max(1, self.item_bytes))))
