"""A real multi-process Ray cluster: a head and a second node on this machine, one CPU each.

The study runs through ``--ray ADDRESS`` and must give the in-process arrays bit for bit
(float64); a worker killed mid-run costs only its task; a driver killed mid-run resumes
from its chunks; a killed ``--ray local`` run leaves no Ray process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from losslab.parallel._watchdog import session_members

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("ray")]
ray = pytest.importorskip("ray")

STUDY = "gd-vs-sgd"  # quick preset: 4 training pieces, then 2 barrier pieces
STEPS = "steps=300"  # half the quick preset's steps: ~4 s in one process, pieces of ~1 s to kill
ARGS = ["study", STUDY, "--quick", "--set", STEPS, "--dtype", "float64", "--json"]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cluster():
    from losslab.parallel.cluster import start_node

    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    if ray.is_initialized():
        ray.shutdown()
    head = start_node(1)
    node = start_node(1, head=head.address)
    try:
        ray.init(address=head.address, log_to_driver=False, logging_level="WARNING")
        deadline = time.monotonic() + 60
        while ray.cluster_resources().get("CPU", 0) < 2:
            assert time.monotonic() < deadline, "the second node did not join"
            time.sleep(0.2)
        yield head, node
    finally:
        ray.shutdown()
        node.stop()
        head.stop()


def _study(out: Path, ray_address: str | None = None) -> None:
    from losslab.cli.study import run_study

    run_study(STUDY, quick=True, settings=[STEPS], dtype="float64", out=out, json_out=True, ray=ray_address)


def _arrays(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "results" / "study.npz") as data:
        return {k: data[k] for k in data.files}


def _assert_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)  # equal NaNs pass; nothing else may differ


@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> dict[str, np.ndarray]:
    """The study in this process with one torch thread, as Ray's one-CPU workers run it.

    Bit-identity needs the same thread count on both sides: a reduction split over two
    threads adds in another order (1e-15 relative differences).
    """
    import torch

    out = tmp_path_factory.mktemp("local") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _study(out)
    finally:
        torch.set_num_threads(threads)
    return _arrays(out)


def test_the_cluster_gives_the_in_process_arrays(cluster, in_process, tmp_path, capsys) -> None:
    head, _ = cluster
    _study(tmp_path / "run", head.address)
    _assert_identical(in_process, _arrays(tmp_path / "run"))
    manifest = __import__("json").loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["executor"] == {"kind": "ray", "address": head.address, "workers": 2, "nodes": 2}
    assert "losslab: ray: 4/4 pieces done on 2 workers" in capsys.readouterr().err


def _task_pids(sessions: list[int]) -> list[int]:
    """Workers of the cluster that are running a losslab task now (Ray titles them ray::_run)."""
    pids = []
    for sid in sessions:
        for pid in session_members(sid):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::_run"):
                pids.append(pid)
    return pids


def test_a_killed_worker_costs_only_its_task(cluster, in_process, tmp_path) -> None:
    head, node = cluster
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 30
        while not killed and time.monotonic() < deadline:
            pids = _task_pids([head.session, node.session])
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one)
    killer.start()
    _study(tmp_path / "run", head.address)
    killer.join()
    assert killed, "no worker was running a task to kill"
    _assert_identical(in_process, _arrays(tmp_path / "run"))


def _wait_for_chunk(run: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not list((run / "chunks").glob("*/000*.npz")):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no chunk was written"
        time.sleep(0.05)


def test_a_killed_driver_resumes_from_its_chunks(cluster, in_process, tmp_path) -> None:
    head, _ = cluster
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "losslab", *ARGS, "--out", str(run), "--ray", head.address]
    driver = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_chunk(run, driver)
    driver.kill()
    driver.wait()
    _study(run, head.address)
    manifest = __import__("json").loads((run / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["resumed"] and manifest["chunks_reused"] >= 1
    _assert_identical(in_process, _arrays(run))


def _ray_processes() -> set[int]:
    """Processes of any Ray node on this machine (their command lines name Ray)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if any(mark in cmdline for mark in (b"ray::", b"/ray/", b"ray.scripts", b"raylet", b"gcs_server")):
                found.add(int(entry))
    return found


def _sessions(pids: set[int]) -> set[int]:
    sessions = set()
    for pid in pids:
        try:
            sessions.add(os.getsid(pid))
        except ProcessLookupError:
            pass
    return sessions


def test_a_killed_ray_local_run_leaves_no_ray_process(cluster, tmp_path) -> None:
    head, node = cluster
    before = _ray_processes()
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "losslab", *ARGS, "--out", str(run), "--ray", "local"]
    driver = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while not _task_pids(list(_sessions(_ray_processes() - before) - {head.session, node.session})):
        assert driver.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the local cluster ran no task"
        time.sleep(0.05)
    started = _ray_processes() - before - set(head.pids) - set(node.pids)
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + 30
    while (left := started & _ray_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"Ray processes outlived the killed run: {sorted(left)}"


def test_an_estimate_on_the_cluster_divides_by_its_workers(cluster, capsys) -> None:
    from losslab.cli.study import run_study

    head, _ = cluster
    run_study(STUDY, quick=True, settings=[STEPS], json_out=True, estimate=True, ray=head.address)
    est = __import__("json").loads(capsys.readouterr().out)["estimate"]
    assert est["workers"] == 2
    assert est["seconds_at_best"] == est["seconds"] / 2


def test_hessian_pieces_on_the_cluster_equal_the_in_process_ones(cluster, tmp_path) -> None:
    import torch

    from losslab.cli.hessian import hessian_command
    from losslab.cli.train import train_command
    from losslab.store import load

    head, _ = cluster
    train_command(model="mlp:64-12-10", epochs=1, out=tmp_path / "train", json_out=True)
    pieces = {"top": 2, "trace": True, "density": True, "starts": 2, "steps": 8, "dtype": "float64", "json_out": True}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the one-CPU workers run
    try:
        hessian_command(checkpoint=str(tmp_path / "train"), out=tmp_path / "local", **pieces)
    finally:
        torch.set_num_threads(threads)
    hessian_command(checkpoint=str(tmp_path / "train"), out=tmp_path / "ray", ray=head.address, **pieces)
    local, remote = load(tmp_path / "local"), load(tmp_path / "ray")
    assert remote.manifest["executor"]["workers"] == 2
    np.testing.assert_array_equal(local["top"].eigenvalues, remote["top"].eigenvalues)
    assert local["trace"].estimate == remote["trace"].estimate
    np.testing.assert_array_equal(local["density"].nodes, remote["density"].nodes)
