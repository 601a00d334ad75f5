"""Run directories (manifest, arrays, figures, report), atomic writes, resumable chunks."""

from losslab.store.chunks import Chunks, Executor
from losslab.store.run import Run, RunDir, environment, load, versions
from losslab.store.serialize import RESULT_TYPES, register_result, summary_of

__all__ = [
    "RESULT_TYPES",
    "Chunks",
    "Executor",
    "Run",
    "RunDir",
    "environment",
    "load",
    "register_result",
    "summary_of",
    "versions",
]
