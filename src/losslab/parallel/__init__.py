"""Where independent pieces of work run: in this process (default) or on a Ray cluster."""

from losslab.parallel.executor import (
    Executor,
    LocalExecutor,
    RayExecutor,
    cluster_workers,
    get_executor,
    run_pieces,
    seeded,
)

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "cluster_workers", "get_executor", "run_pieces", "seeded"]
