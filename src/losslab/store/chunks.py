"""Resumable chunks: long work split into pieces, each saved the moment it finishes.

A piece is a dict of arrays or a registered result object (`register_result`), so a
sweep can keep each point as the result type it already is.

Rerunning the same work on the same directory loads the finished pieces and computes
only the rest, so a run killed mid-way resumes where it stopped and ends with results
bit-identical to an uninterrupted run (each piece is a deterministic function of its
index, and ``.npz`` stores arrays exactly).
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from losslab._io import atomic_write, write_json
from losslab.parallel import Executor, run_pieces  # re-exported: `from losslab.store import Executor` keeps working
from losslab.store.serialize import decode, encode

__all__ = ["Chunks", "Executor", "canonical_config"]

Arrays = dict[str, np.ndarray]
Piece = Any  # a dict of arrays, or a result object registered with `register_result`
P = TypeVar("P")
_SPEC = "__piece__"  # the npz entry holding a result object's JSON form

# What a damaged .npz raises on open or on reading an array (a crash mid-write on a file
# system without atomic rename, a full disk, a copy cut short).
DAMAGED = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)

# Run directories being written by this process: root → called with the number of chunks
# reused from an earlier process, so the run records whether it really resumed.
_REUSE_LISTENERS: dict[Path, Callable[[int], None]] = {}


def listen_for_reuse(root: Path, listener: Callable[[int], None] | None) -> None:
    """Report chunks reused under ``root`` to ``listener`` (None: stop reporting)."""
    root = root.resolve()
    if listener is None:
        _REUSE_LISTENERS.pop(root, None)
    else:
        _REUSE_LISTENERS[root] = listener


def _report_reuse(directory: Path, count: int) -> None:
    if not count or not _REUSE_LISTENERS:
        return
    directory = directory.resolve()
    for root, listener in _REUSE_LISTENERS.items():
        if directory == root or root in directory.parents:
            listener(count)


def canonical_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as JSON, with every checkpoint path that exists made absolute.

    A rerun that spells the same checkpoint another way (``t`` or ``/home/me/t``)
    describes the same computation: its run resumes instead of being refused, its
    chunks are reused, and the run can be reused from any directory.
    """

    def fix(key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fix(k, v) for k, v in value.items()}
        if "checkpoint" in key.lower():
            if isinstance(value, list):
                return [fix(key, v) for v in value]
            if isinstance(value, str) and value and Path(value).exists():
                return str(Path(value).resolve())
        return value

    plain = json.loads(json.dumps(config, default=str))
    return {k: fix(k, v) for k, v in plain.items()}


class Chunks:
    """Pieces ``0 … n-1`` of one computation, stored under ``directory``.

    ``key`` describes the computation (config, seeds, shapes); pieces saved under a
    different key are stale and are deleted, never mixed in.
    """

    def __init__(self, directory: str | Path, key: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.key = canonical_config(key)
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
        """Whether piece ``index`` is saved; a truncated piece file is deleted and counts as not done.

        Opening the zip reads its central directory, which sits at the end of the file, so
        a file cut short anywhere is caught here without reading the arrays.
        """
        file = self._file(index)
        if not file.is_file():
            return False
        try:
            with zipfile.ZipFile(file):
                pass
        except DAMAGED:
            file.unlink(missing_ok=True)
            return False
        return True

    def save(self, index: int, piece: Piece) -> None:
        """Save one piece: a dict of arrays, or a registered result object (`register_result`)."""
        if isinstance(piece, dict):
            arrays = piece
        else:  # the object's JSON form beside its arrays, as a run stores its results
            arrays = {}
            spec = encode(piece, "piece", arrays)
            arrays[_SPEC] = np.array(json.dumps(spec, allow_nan=False))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write(self._file(index), lambda f: f.write(buffer.getvalue()))

    def load(self, index: int) -> Piece:
        """A saved piece, as it was given to `save` (dicts of arrays come back as dicts of arrays)."""
        # np.load leaks the file it opened when the zip is damaged: open and close it here
        with open(self._file(index), "rb") as f, np.load(f, allow_pickle=False) as data:
            if _SPEC in data.files:
                return decode(json.loads(str(data[_SPEC].item())), data)
            return {k: data[k] for k in data.files}

    def _load_or_discard(self, index: int) -> Piece | None:
        """A saved piece, or None after deleting a damaged one (it is recomputed)."""
        try:
            return self.load(index)
        except (*DAMAGED, TypeError):  # TypeError: a saved object no longer fits its class
            self._file(index).unlink(missing_ok=True)
            return None

    def map(
        self,
        fn: Callable[[int], P],
        count: int,
        *,
        executor: Executor | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[P]:
        """Results of ``fn(i)`` for i < count: loaded when saved before, else computed and saved at once.

        ``fn`` returns a dict of arrays or a registered result object. A saved piece that
        cannot be read (damaged by a crash mid-write) is deleted and computed again.
        """
        out: dict[int, Any] = {}
        for i in range(count):
            if self.done(i):
                piece = self._load_or_discard(i)
                if piece is not None:
                    out[i] = piece
        _report_reuse(self.directory, len(out))
        missing = [i for i in range(count) if i not in out]
        if progress is not None:
            progress(len(out), count)
        results = run_pieces(fn, missing, executor)
        for index, piece in results:
            self.save(index, piece)
            out[index] = self.load(index)  # what a resumed run would read: the same types and bits
            if progress is not None:
                progress(len(out), count)
        return [out[i] for i in range(count)]
