"""A full study preset on a local two-node Ray cluster vs in one process: speed ratio and equality.

The cluster is the one the tests use: a head and a second node on this machine
(`losslab.parallel.cluster.start_node`), ``--cpus-per-node`` CPUs each, torch limited to
one thread per worker. The in-process side runs the same study with the same thread
count per process (1), so the ratio measures what Ray's pieces buy, not thread counts.
Both runs are CLI subprocesses with their own run directories; every result array
is compared exactly (NaN equal to NaN).

    RAY_AUTH_MODE=disabled python benchmarks/ray_study.py [--study saddles] [--cpus-per-node 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import emit

from losslab.parallel.cluster import start_node


def _run(study: str, out: Path, extra: list[str], env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "losslab", "study", study, "--out", str(out), "--json", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _arrays(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "results" / "study.npz") as data:
        return {k: data[k] for k in data.files}


def _wait_for_cpus(address: str, cpus: int, timeout: float = 60) -> None:
    import ray

    ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    deadline = time.monotonic() + timeout
    while ray.cluster_resources().get("CPU", 0) < cpus:
        if time.monotonic() > deadline:
            raise RuntimeError("the second node did not join the head")
        time.sleep(0.2)
    ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", default="saddles")
    parser.add_argument("--quick", action="store_true", help="The quick preset instead of the full one.")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--dtype", default="float64")
    args = parser.parse_args()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    extra = ["--dtype", args.dtype] + (["--quick"] if args.quick else [])
    with tempfile.TemporaryDirectory() as tmp:
        local = _run(args.study, Path(tmp) / "local", extra, env)
        start = time.perf_counter()
        head = start_node(args.cpus_per_node)
        node = start_node(args.cpus_per_node, head=head.address)
        startup = time.perf_counter() - start
        try:
            _wait_for_cpus(head.address, 2 * args.cpus_per_node)
            clustered = _run(args.study, Path(tmp) / "ray", [*extra, "--ray", head.address], env)
        finally:
            node.stop()
            head.stop()
        a, b = _arrays(Path(tmp) / "local"), _arrays(Path(tmp) / "ray")
        identical = a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
        manifest = json.loads((Path(tmp) / "ray" / "run.json").read_text())
    emit(
        "ray_study",
        {
            "study": args.study,
            "preset": "quick" if args.quick else "full",
            "dtype": args.dtype,
            "in_process_s": round(local, 2),
            "cluster_s": round(clustered, 2),
            "speedup": round(local / clustered, 3),
            "cluster_start_s": round(startup, 2),
            "executor": manifest["executor"],
            "arrays": len(a),
            "identical": identical,
            "cpus": os.cpu_count(),
        },
    )


if __name__ == "__main__":
    main()
