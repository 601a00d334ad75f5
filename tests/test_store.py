"""Run directories, result round trips, resumable chunks (with a real killed process), executors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from losslab.errors import UserError
from losslab.parallel import LocalExecutor, RayExecutor
from losslab.store import Chunks, RunDir, load, register_result
from losslab.train import TrainResult

pytestmark = pytest.mark.xdist_group("ray")  # modules that start Ray share one test worker


@register_result
@dataclass
class Inner:
    values: np.ndarray
    label: str


@register_result
@dataclass
class Outer:
    grid: np.ndarray
    inner: Inner
    parts: list
    stats: dict
    count: int
    ratio: float
    missing: float | None

    def summary(self) -> dict:
        return {"count": self.count}


def make_outer() -> Outer:
    return Outer(
        grid=np.arange(12, dtype=np.float32).reshape(3, 4),
        inner=Inner(np.array([1.5, np.nan]), "a<b>"),
        parts=[Inner(np.zeros(2, dtype=np.int64), "p0"), 3, "x"],
        stats={"loss": np.ones(3), "name": "n", "inf": float("inf")},
        count=4,
        ratio=float("nan"),
        missing=None,
    )


def assert_same(a: object, b: object) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif hasattr(a, "__dataclass_fields__"):
        assert type(a) is type(b)
        for name in a.__dataclass_fields__:
            assert_same(getattr(a, name), getattr(b, name))
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def test_results_round_trip_through_a_run(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", command="test", config={"x": 1})
    original = make_outer()
    run.save_result("main", original)
    run.complete({"count": 4})
    loaded = load(tmp_path / "r")
    assert loaded.status == "complete" and loaded.manifest["result"] == {"count": 4}
    assert_same(original, loaded.result)
    assert_same(original, loaded["main"])
    assert set(json.loads((tmp_path / "r" / "run.json").read_text())["versions"]) >= {
        "losslab",
        "torch",
        "numpy",
        "python",
    }


def test_train_results_round_trip(tmp_path: Path) -> None:
    from losslab import Objective, TrainConfig, build_model, load_data, train

    result = train(
        Objective(build_model("mlp:2-4-2"), "cross_entropy", load_data("xor")), TrainConfig(epochs=3, batch_size=2)
    )
    run = RunDir.create(tmp_path / "t", command="train", config={})
    run.save_result("train", result)
    run.complete(result.summary())
    back = load(tmp_path / "t").result
    assert isinstance(back, TrainResult)
    assert_same(result, back)


def test_complete_runs_are_protected_and_force_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "run"
    run = RunDir.create(path, command="c", config={"a": 1})
    run.complete({})
    with pytest.raises(UserError, match="already holds a complete c run: pass --force"):
        RunDir.create(path, command="c", config={"a": 1})
    (path / "extra.txt").write_text("old")
    RunDir.create(path, command="c", config={"a": 2}, force=True)
    assert not (path / "extra.txt").exists()


def test_unfinished_runs_resume_only_with_the_same_config(tmp_path: Path) -> None:
    path = tmp_path / "run"
    crashed = RunDir.create(path, command="c", config={"a": 1})
    crashed.chunks("grid", {"k": 1}).save(0, {"x": np.ones(2)})
    crashed.release()  # what the death of its process does
    resumed = RunDir.create(path, command="c", config={"a": 1})
    assert resumed.chunks("grid", {"k": 1}).done(0)
    assert not resumed.manifest["resumed"]  # nothing reused yet
    resumed.chunks("grid", {"k": 1}).map(lambda i: {"x": np.zeros(2)}, 2)
    assert resumed.manifest["resumed"] and resumed.manifest["chunks_reused"] == 1
    resumed.release()
    with pytest.raises(UserError, match="unfinished run of another command or config"):
        RunDir.create(path, command="c", config={"a": 2})
    failed = RunDir.create(path, command="c", config={"a": 1})
    failed.fail("boom")
    assert load(path).manifest["error"] == "boom"


def test_refuses_foreign_directories_files_and_unwritable_paths(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty and holds no losslab run"):
        RunDir.create(tmp_path / "stuff", command="c", config={})
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is a file"):
        RunDir.create(tmp_path / "file", command="c", config={})
    if os.geteuid() != 0:  # root ignores permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(UserError, match="Cannot write to --out"):
            RunDir.create(locked / "run", command="c", config={})
    with pytest.raises(UserError, match="Cannot write to --out"):
        RunDir.create(Path("/proc/losslab-run"), command="c", config={})


def test_damaged_runs_give_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{not json")
    with pytest.raises(UserError, match="run.json of .* is damaged"):
        load(tmp_path / "bad")
    with pytest.raises(UserError, match="no run.json"):
        load(tmp_path)
    run = RunDir.create(tmp_path / "r", command="c", config={})
    run.save_result("main", make_outer())
    (tmp_path / "r" / "results" / "main.npz").write_bytes(b"truncated")
    with pytest.raises(UserError, match="result 'main' .* cannot be read"):
        load(tmp_path / "r")


def test_discard_removes_only_what_the_run_wrote(tmp_path: Path) -> None:
    fresh = RunDir.create(tmp_path / "new", command="c", config={})
    fresh.discard()
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    existing = RunDir.create(tmp_path / "empty", command="c", config={})
    existing.discard()
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())


def test_chunks_skip_finished_pieces_and_drop_stale_ones(tmp_path: Path) -> None:
    calls: list[int] = []

    def piece(i: int) -> dict[str, np.ndarray]:
        calls.append(i)
        return {"v": np.full(3, i, dtype=np.float64)}

    chunks = Chunks(tmp_path / "c", {"n": 4})
    chunks.save(1, piece(1))
    calls.clear()
    out = chunks.map(piece, 4)
    assert calls == [0, 2, 3] and [int(o["v"][0]) for o in out] == [0, 1, 2, 3]
    calls.clear()
    Chunks(tmp_path / "c", {"n": 4}).map(piece, 4)
    assert calls == []
    Chunks(tmp_path / "c", {"n": 5}).map(piece, 4)  # another computation: nothing reused
    assert calls == [0, 1, 2, 3]


def test_chunks_store_registered_result_objects(tmp_path: Path) -> None:
    """A piece may be a registered result (nested results, lists, dicts, nan/inf): it comes back equal."""
    calls: list[int] = []

    def piece(i: int) -> Outer:
        calls.append(i)
        outer = make_outer()
        outer.count = i
        outer.grid = outer.grid + i
        return outer

    first = Chunks(tmp_path / "c", {"n": 3}).map(piece, 3, executor=LocalExecutor())
    assert calls == [0, 1, 2]
    again = Chunks(tmp_path / "c", {"n": 3}).map(piece, 3)
    assert calls == [0, 1, 2]  # all three reused from disk
    for i, (a, b) in enumerate(zip(first, again)):
        expected = piece(i)
        assert isinstance(b, Outer) and isinstance(b.inner, Inner) and isinstance(b.parts[0], Inner)
        assert_same(expected, a)
        assert_same(expected, b)
    mixed = Chunks(tmp_path / "m", {"k": 0})
    mixed.save(0, {"v": np.arange(3)})
    mixed.save(1, make_outer())
    assert set(mixed.load(0)) == {"v"} and isinstance(mixed.load(1), Outer)

    @dataclass
    class Unregistered:
        x: int

    with pytest.raises(TypeError, match="not registered"):
        mixed.save(2, Unregistered(1))


CRASHY = textwrap.dedent("""
    import sys, time
    import numpy as np
    from losslab.store import Chunks

    def piece(i):
        rng = np.random.default_rng(i)          # each piece a deterministic function of its index
        time.sleep(float(sys.argv[2]))
        return {"x": rng.standard_normal((50, 7)), "i": np.array([i])}

    chunks = Chunks(sys.argv[1], {"what": "crash-test"})
    out = chunks.map(piece, 12)
    np.save(sys.argv[1] + ".result.npy", np.concatenate([o["x"] for o in out]))
""")


def test_a_killed_run_resumes_bit_identically(tmp_path: Path) -> None:
    script = tmp_path / "crashy.py"
    script.write_text(CRASHY)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    directory = tmp_path / "chunks"
    proc = subprocess.Popen([sys.executable, str(script), str(directory), "0.15"], env=env)
    deadline = time.time() + 60
    while len(list(directory.glob("*.npz"))) < 4 and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list(directory.glob("*.npz")))
    assert 4 <= finished < 12, "the process must die mid-run for this test to mean anything"
    assert not (tmp_path / "chunks.result.npy").exists()
    subprocess.run([sys.executable, str(script), str(directory), "0"], env=env, check=True)
    resumed = np.load(tmp_path / "chunks.result.npy")
    clean = tmp_path / "clean"
    subprocess.run([sys.executable, str(script), str(clean), "0"], env=env, check=True)
    uninterrupted = np.load(tmp_path / "clean.result.npy")
    assert resumed.tobytes() == uninterrupted.tobytes()


def _square(i: int) -> dict[str, np.ndarray]:
    return {"v": np.array([i * i])}


def test_ray_executor_gives_what_the_local_one_gives(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    local = Chunks(tmp_path / "local", {"k": 0}).map(_square, 6, executor=LocalExecutor())
    ray_out = Chunks(tmp_path / "ray", {"k": 0}).map(_square, 6, executor=RayExecutor("local", num_cpus=2))
    ray.shutdown()
    assert [int(o["v"][0]) for o in local] == [int(o["v"][0]) for o in ray_out] == [0, 1, 4, 9, 16, 25]


def test_a_directory_left_with_only_a_stale_lock_is_reused(tmp_path: Path) -> None:
    """A process killed between taking the lock and writing run.json leaves only lock files behind."""
    path = tmp_path / "r"
    path.mkdir()
    (path / ".lock").write_text("not-a-pid\n")  # unreadable: stale
    (path / ".lock-candidate-999999").write_text("999999\n")
    run = RunDir.create(path, command="c", config={})
    assert (path / ".lock").read_text().split()[0] == str(os.getpid())
    with pytest.raises(UserError, match=f"another losslab process \\(pid {os.getpid()}\\)"):
        RunDir.create(path, command="c", config={})
    run.complete({})
    assert not (path / ".lock").exists() and load(path).status == "complete"


def test_a_user_error_late_in_long_work_keeps_the_finished_pieces(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", command="c", config={"n": 3})
    chunks = run.chunks("sweep", {"n": 3})
    chunks.save(0, {"v": np.zeros(2)})
    (run.path / "report.html").write_text("partial")
    run.discard("UserError: the last point cannot take this setting")
    assert chunks.done(0) and not (run.path / "report.html").exists()
    manifest = json.loads((run.path / "run.json").read_text())
    assert manifest["status"] == "failed" and "last point" in manifest["error"]
    again = RunDir.create(tmp_path / "r", command="c", config={"n": 3})  # the same command resumes
    calls: list[int] = []
    again.chunks("sweep", {"n": 3}).map(lambda i: calls.append(i) or {"v": np.full(2, i)}, 2)
    assert calls == [1]
    again.release()
