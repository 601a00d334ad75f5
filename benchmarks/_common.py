"""Shared benchmark helpers: timing, the machine, the float32 matmul peak."""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import torch


def sync() -> None:
    """Wait for the GPU's queued work, so that a timer reads work done, not work launched (no-op on CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def best_of(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls (seconds), after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process in MB, and the GPU's peak allocation where CUDA was used."""
    import resource

    peak = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def matmul_peak_gflops(size: int = 2000, device: str = "cpu") -> float:
    """float32 GFLOP/s of a square matmul: the machine's practical peak for dense work."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)

    def run() -> None:
        for _ in range(5):
            a @ b
        if device != "cpu":
            torch.cuda.synchronize()

    return 5 * 2 * size**3 / best_of(run) / 1e9


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": date.today().isoformat(),
    }


def emit(name: str, figures: dict[str, Any]) -> None:
    """The benchmark's one JSON line on stdout."""
    sys.stdout.write(json.dumps({"benchmark": name, **figures, "machine": machine()}) + "\n")
