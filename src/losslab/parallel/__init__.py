"""Where independent pieces of work run: in this process (default) or on a Ray cluster."""

from losslab.parallel.executor import Executor, LocalExecutor, RayExecutor, get_executor

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "get_executor"]
