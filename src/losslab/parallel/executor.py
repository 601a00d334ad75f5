"""Executors: one small interface, ``map(fn, indices)`` yielding ``(index, result)`` as pieces finish.

Analyses hand their pieces (grid chunks, seeds, sweep points) to an executor and
never know which one runs them. Every executor runs piece ``i`` with the global
random generators (``random``, NumPy, torch) seeded from ``i`` (`seeded`), so a piece
that draws from them gives the same numbers in this process, on any worker, in any
order. Ray costs ~2 s to start and a few ms per task, so pieces should be chunks of
work, not single points; `RayExecutor` also packs several pieces into one task when
there are many more pieces than workers.
"""

from __future__ import annotations

import atexit
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import torch

from losslab.errors import UserError

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "cluster_workers", "get_executor", "run_pieces", "seeded"]

PIECE_SEED = 0x5EED  # piece i runs with global generators seeded PIECE_SEED + i
TASKS_PER_WORKER = 4  # pieces are packed into about this many tasks per worker: balance vs per-task cost
RESUBMITS = 3  # a task whose worker or node died is sent again this many times (Ray's own retries come first)


class Executor(Protocol):
    """Where pieces run: ``map`` yields ``(index, fn(index))`` for each index as each finishes (any order)."""

    def map(self, fn: Callable[[int], Any], indices: Iterable[int]) -> Iterator[tuple[int, Any]]: ...

    def describe(self) -> dict[str, Any]: ...


@contextmanager
def seeded(index: int) -> Iterator[None]:
    """Global generators seeded from ``index`` inside; the caller's states restored after."""
    states = random.getstate(), np.random.get_state()  # noqa: NPY002
    seed = PIECE_SEED + index
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the legacy global is what user code may draw from)
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=cuda):  # restores CPU and (initialized) CUDA generators
            torch.manual_seed(seed)
            yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])  # noqa: NPY002


def _run(fn: Callable[[int], Any], batch: list[int]) -> list[tuple[int, Any]]:
    """One task: the pieces of ``batch``, each under `seeded`."""
    out = []
    for index in batch:
        with seeded(index):
            out.append((index, fn(index)))
    return out


class LocalExecutor:
    """Runs pieces one after another in this process (the default)."""

    def map(self, fn: Callable[[int], Any], indices: Iterable[int]) -> Iterator[tuple[int, Any]]:
        for index in indices:
            yield from _run(fn, [index])

    def describe(self) -> dict[str, Any]:
        return {"kind": "in-process", "workers": 1}


def run_pieces(
    fn: Callable[[int], Any], indices: Iterable[int], executor: Executor | None = None
) -> Iterator[tuple[int, Any]]:
    """``executor.map(fn, indices)``; in this process when ``executor`` is None."""
    return (executor or LocalExecutor()).map(fn, indices)


def _batches(indices: list[int], workers: int) -> list[list[int]]:
    """Consecutive runs of ``indices``, about `TASKS_PER_WORKER` per worker (one piece each when few)."""
    size = max(1, math.ceil(len(indices) / (TASKS_PER_WORKER * max(workers, 1))))
    return [indices[i : i + size] for i in range(0, len(indices), size)]


class RayExecutor:
    """Runs pieces as Ray tasks on a cluster (``address``) or on a local one (``"local"``).

    ``"local"`` starts a head node on this machine with ``num_cpus`` CPUs (default: all)
    that ends with this process, however it ends (`losslab.parallel.cluster`). ``fn`` is
    sent once (``ray.put``); each task runs a batch of consecutive pieces. A task whose
    worker or node died is retried by Ray and then resubmitted here (`RESUBMITS`), so a
    lost worker costs only its task. Progress goes to stderr: ``losslab: ray: k/n pieces
    done on W workers``.
    """

    def __init__(self, address: str = "local", *, num_cpus: int | None = None, report: bool = True) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--ray needs the ray package: pip install 'losslab[ray]'.") from None
        self.ray = ray
        self.address = address
        self.report = report
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if not ray.is_initialized():
            target = _local_head(num_cpus or os.cpu_count() or 1) if address == "local" else address
            try:
                ray.init(address=target, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UserError(
                    f"Cannot connect to the Ray cluster at {address!r} ({exc}): check --ray ADDRESS."
                ) from None
        self._remote = ray.remote(_run)

    @property
    def workers(self) -> int:
        """CPUs of the cluster: how many pieces can run at once."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def describe(self) -> dict[str, Any]:
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        return {"kind": "ray", "address": self.address, "workers": self.workers, "nodes": len(nodes)}

    def map(self, fn: Callable[[int], Any], indices: Iterable[int]) -> Iterator[tuple[int, Any]]:
        ray = self.ray
        todo = list(indices)
        if not todo:
            return
        workers = self.workers
        fn_ref = ray.put(fn)
        pending = {self._remote.remote(fn_ref, batch): (batch, 0) for batch in _batches(todo, workers)}
        done, last = 0, 0.0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            batch, attempt = pending.pop(ready[0])
            try:
                results = ray.get(ready[0])
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError):
                if attempt >= RESUBMITS:
                    raise RuntimeError(
                        f"pieces {batch} failed {attempt + 1} times on lost Ray workers; rerun to resume"
                    ) from None
                self._say(f"a worker was lost; pieces {batch[0]}…{batch[-1]} sent again")
                pending[self._remote.remote(fn_ref, batch)] = (batch, attempt + 1)
                continue
            yield from results
            done += len(batch)
            if time.monotonic() - last > 2.0 or done == len(todo):
                self._say(f"{done}/{len(todo)} pieces done on {workers} workers")
                last = time.monotonic()

    def _say(self, text: str) -> None:
        if self.report:
            sys.stderr.write(f"losslab: ray: {text}\n")
            sys.stderr.flush()


_LOCAL: dict[str, Any] = {}  # the one local head of this process, reused by every command it runs


def _local_head(num_cpus: int) -> str:
    from losslab.parallel.cluster import start_node

    if "node" not in _LOCAL:
        node = start_node(num_cpus)
        _LOCAL["node"] = node

        def stop() -> None:
            import ray

            ray.shutdown()
            node.stop()

        atexit.register(stop)
    return str(_LOCAL["node"].address)


def cluster_workers(ray: str) -> int:
    """CPUs that ``--ray`` would run on, without starting anything: this machine's for ``"local"``."""
    if ray == "local":
        return os.cpu_count() or 1
    return RayExecutor(ray, report=False).workers


def get_executor(ray: str | None = None) -> LocalExecutor | RayExecutor:
    """``None``: this process; ``"local"``: a Ray cluster on this machine; else a Ray address."""
    return LocalExecutor() if not ray else RayExecutor(ray)
