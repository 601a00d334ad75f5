"""`StudyContext.sweep` carries registered result objects through resumable chunks unchanged."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from losslab.store import register_result
from losslab.studies import StudyContext
from losslab.studies.double_descent import DoubleDescentPoint

pytestmark = pytest.mark.xdist_group("ray")  # modules that start Ray share one test worker


@register_result
@dataclass
class _Point:
    index: int
    values: np.ndarray
    scale: float
    labels: dict[str, float]
    missing: float | None


def _point(i: int) -> _Point:
    rng = np.random.default_rng(i)
    # nan and a float with a long repr: a text round trip that loses a bit would show here
    return _Point(i, rng.standard_normal(5), 1 / 3 + i, {"nan": float("nan"), "tiny": 5e-324}, None)


def _same(a: _Point, b: _Point) -> None:
    assert type(a) is type(b) is _Point
    assert a.index == b.index and a.scale == b.scale and a.missing is b.missing
    assert a.values.tobytes() == b.values.tobytes()
    assert np.isnan(b.labels["nan"]) and a.labels["tiny"] == b.labels["tiny"]


def test_points_come_back_as_the_objects_they_were_in_memory_and_from_disk(tmp_path) -> None:
    memory = StudyContext().sweep("s", {"k": 1}, 3, _point)
    stored = StudyContext(directory=tmp_path).sweep("s", {"k": 1}, 3, _point)
    calls: list[int] = []

    def counted(i: int) -> _Point:
        calls.append(i)
        return _point(i)

    (tmp_path / "s" / "000001.npz").unlink()  # as if the run died before the second point
    resumed = StudyContext(directory=tmp_path).sweep("s", {"k": 1}, 3, counted)
    assert calls == [1]  # only the missing point is recomputed
    for m, s, r in zip(memory, stored, resumed, strict=True):
        _same(m, s)
        _same(m, r)


def test_chunks_of_the_array_format_are_stale_not_mixed_in(tmp_path) -> None:
    # A run written before points were objects: same study key, pieces of plain arrays.
    StudyContext(directory=tmp_path).sweep("s", {"k": 1}, 2, _point)
    key_file = tmp_path / "s" / "key.json"
    key = json.loads(key_file.read_text())
    assert key["points"] == "registered-result"
    del key["points"]
    key_file.write_text(json.dumps(key))
    np.savez(tmp_path / "s" / "000000.npz", values=np.zeros(5))
    again = StudyContext(directory=tmp_path).sweep("s", {"k": 1}, 2, _point)
    _same(_point(0), again[0])


def _width_point(i: int) -> DoubleDescentPoint:
    seeds = np.arange(2, dtype=np.float64)
    return DoubleDescentPoint(10 * i, seeds + i, seeds / (i + 1), seeds, seeds, seeds)


def test_points_made_on_ray_workers_come_back_the_same(tmp_path) -> None:
    ray = pytest.importorskip("ray")
    from losslab.parallel import RayExecutor

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    try:
        remote = StudyContext(directory=tmp_path, executor=RayExecutor("local", num_cpus=2)).sweep(
            "s", {"k": 2}, 3, _width_point
        )
    finally:
        ray.shutdown()
    for i, point in enumerate(remote):
        local = _width_point(i)
        assert type(point) is DoubleDescentPoint and point.params == local.params
        assert point.steps_to_target.tobytes() == local.steps_to_target.tobytes()
