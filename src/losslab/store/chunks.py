"""Resumable chunks: long work split into pieces, each saved the moment it finishes.

Rerunning the same work on the same directory loads the finished pieces and computes
only the rest, so a run killed mid-way resumes where it stopped and ends with results
bit-identical to an uninterrupted run (each piece is a deterministic function of its
index, and ``.npz`` stores arrays exactly).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from losslab._io import atomic_write, write_json

__all__ = ["Chunks", "Executor"]

Arrays = dict[str, np.ndarray]


class Executor(Protocol):
    """Where pieces run (`losslab.parallel`): yields ``(index, result)`` as each finishes."""

    def map(self, fn: Callable[[int], Any], indices: Iterable[int]) -> Iterator[tuple[int, Any]]: ...


class Chunks:
    """Pieces ``0 … n-1`` of one computation, stored under ``directory``.

    ``key`` describes the computation (config, seeds, shapes); pieces saved under a
    different key are stale and are deleted, never mixed in.
    """

    def __init__(self, directory: str | Path, key: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.key = json.loads(json.dumps(key, default=str))
        key_file = self.directory / "key.json"
        if key_file.is_file():
            try:
                stale = json.loads(key_file.read_text()) != self.key
            except ValueError:
                stale = True
            if stale:
                shutil.rmtree(self.directory)
        if not key_file.is_file():
            write_json(key_file, self.key)

    def _file(self, index: int) -> Path:
        return self.directory / f"{index:06d}.npz"

    def done(self, index: int) -> bool:
        return self._file(index).is_file()

    def save(self, index: int, arrays: Arrays) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write(self._file(index), lambda f: f.write(buffer.getvalue()))

    def load(self, index: int) -> Arrays:
        with np.load(self._file(index), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def map(
        self,
        fn: Callable[[int], Arrays],
        count: int,
        *,
        executor: Executor | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Arrays]:
        """Results of ``fn(i)`` for i < count: loaded when saved before, else computed and saved at once."""
        missing = [i for i in range(count) if not self.done(i)]
        finished = count - len(missing)
        if progress is not None:
            progress(finished, count)
        results = ((i, fn(i)) for i in missing) if executor is None else executor.map(fn, missing)
        for index, arrays in results:
            self.save(index, arrays)
            finished += 1
            if progress is not None:
                progress(finished, count)
        return [self.load(i) for i in range(count)]
