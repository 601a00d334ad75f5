"""The executors' contract without a cluster: seeded pieces, batching, the watchdog, --ray passed down."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from losslab.parallel import LocalExecutor, run_pieces, seeded
from losslab.parallel._watchdog import session_members
from losslab.parallel.executor import _batches, _run

pytestmark = pytest.mark.xdist_group("ray")  # modules that start Ray share one test worker


def _draws(index: int) -> tuple[float, float, float]:
    """A piece that draws from every global generator (as user code and older libraries do)."""
    return random.random(), float(np.random.rand()), float(torch.rand(()))  # noqa: NPY002


def test_a_piece_draws_the_same_numbers_in_any_order_and_leaves_the_callers_state() -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    forward = dict(run_pieces(_draws, [0, 1, 2, 3]))
    after = torch.rand(3)  # the caller's stream goes on as if no piece had run
    backward = dict(LocalExecutor().map(_draws, [3, 2, 1, 0]))
    assert forward == backward
    assert len(set(forward.values())) == 4  # different pieces, different numbers
    assert torch.equal(before, after)
    with seeded(2):
        assert _draws(2) == forward[2]


def test_tasks_cover_every_piece_once_in_order() -> None:
    for count in (1, 3, 8, 9, 100, 1001):
        for workers in (1, 2, 7, 64):
            batches = _batches(list(range(count)), workers)
            assert [i for b in batches for i in b] == list(range(count))
            assert len(batches) <= max(4 * workers, 1) or len(batches) == count
            if count <= 4 * workers:
                assert all(len(b) == 1 for b in batches)  # few pieces: one per task, for balance


def test_a_batch_runs_each_piece_under_its_own_seed() -> None:
    batched = _run(_draws, [5, 6])
    assert batched == [(5, _run(_draws, [5])[0][1]), (6, _run(_draws, [6])[0][1])]


def test_the_watchdog_ends_its_command_when_the_parent_goes() -> None:
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "losslab.parallel._watchdog", "sh", "-c", "sleep 300 & sleep 300"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert watchdog.stdout is not None and watchdog.stdin is not None
    kind, sid = watchdog.stdout.readline().decode().split()
    watchdog.stdout.close()
    assert kind == "session"
    deadline = time.monotonic() + 10
    while len(session_members(int(sid))) < 3:  # sh and both sleeps (one of them in the background)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    watchdog.stdin.close()  # what the kernel does when the parent dies
    assert watchdog.wait(timeout=15) == 0
    assert session_members(int(sid)) == []


def test_demo_steps_run_their_pieces_where_the_demo_was_told(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import json

    import losslab.cli.common as common
    import losslab.cli.study as study
    from losslab.cli.common import ray_default

    asked: list[str] = []
    monkeypatch.setattr(common, "get_executor", lambda ray: asked.append(ray) or LocalExecutor())
    settings = ["widths=4", "epochs=1", "points=3", "train_size=100"]
    with ray_default("10.0.0.1:6379"):
        study.run_study("width-barriers", quick=True, settings=settings, out=tmp_path / "w", json_out=True)
    assert asked == ["10.0.0.1:6379"]
    assert json.loads((tmp_path / "w" / "run.json").read_text())["executor"] == {"kind": "in-process", "workers": 1}
    study.run_study("width-barriers", quick=True, settings=settings, out=tmp_path / "v", json_out=True)
    assert asked == ["10.0.0.1:6379"]  # outside the demo: no --ray, no executor asked for


def test_a_local_run_records_where_it_ran(tmp_path) -> None:
    from losslab.store import RunDir

    run = RunDir.create(tmp_path / "r", command="x", config={})
    assert run.manifest["executor"] == {"kind": "in-process", "workers": 1}
    run.release()
    assert os.path.isfile(tmp_path / "r" / "run.json")


def test_a_study_context_shipped_with_a_piece_leaves_its_executor_and_progress_behind(tmp_path) -> None:
    import pickle

    from losslab.studies import StudyContext

    context = StudyContext(directory=tmp_path, executor=LocalExecutor(), progress=lambda d, t: None, dtype="float64")
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(context.progress)  # a lambda here; a rich progress bar holds locks no pickler takes
    shipped = pickle.loads(pickle.dumps(context))
    assert shipped.executor is None and shipped.progress is None
    assert shipped.directory is None and (shipped.dtype, shipped.device) == ("float64", "cpu")
    assert context.executor is not None and context.progress is not None  # the driver's own is untouched
