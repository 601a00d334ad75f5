"""Executors: one small interface, ``map(fn, indices)`` yielding ``(index, result)`` as pieces finish.

Analyses hand their pieces (grid chunks, seeds, sweep points) to an executor and
never know which one runs them. Ray costs ~2 s to start and a few ms per task, so
pieces should be chunks of work, not single points.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from losslab.errors import UserError

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "get_executor"]


class Executor(Protocol):
    """Where pieces run: ``map`` yields ``(index, fn(index))`` for each index as each finishes (any order)."""

    def map(self, fn: Callable[[int], Any], indices: Iterable[int]) -> Iterator[tuple[int, Any]]: ...


class LocalExecutor:
    """Runs pieces one after another in this process (the default)."""

    def map(self, fn: Callable[[int], Any], indices: Iterable[int]) -> Iterator[tuple[int, Any]]:
        for index in indices:
            yield index, fn(index)


class RayExecutor:
    """Runs pieces as Ray tasks on a cluster (``address``) or a local one (``"local"``).

    ``fn`` is sent once (``ray.put``) and each task receives only its index.
    Results arrive in completion order; the chunk store saves each on arrival.
    """

    def __init__(self, address: str = "local", *, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--ray needs the ray package: pip install 'losslab[ray]'.") from None
        self.ray = ray
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address == "local":
                kwargs["num_cpus"] = num_cpus
            else:
                kwargs["address"] = address
            try:
                ray.init(**kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UserError(
                    f"Cannot connect to the Ray cluster at {address!r} ({exc}): check --ray ADDRESS."
                ) from None

    def map(self, fn: Callable[[int], Any], indices: Iterable[int]) -> Iterator[tuple[int, Any]]:
        ray = self.ray
        fn_ref = ray.put(fn)

        @ray.remote
        def piece(f: Callable[[int], Any], index: int) -> tuple[int, Any]:
            return index, f(index)

        pending = [piece.remote(fn_ref, i) for i in indices]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])


def get_executor(ray: str | None = None) -> LocalExecutor | RayExecutor:
    """``None``: this process; ``"local"``: a Ray cluster on this machine; else a Ray address."""
    return LocalExecutor() if not ray else RayExecutor(ray)
