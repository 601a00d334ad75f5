"""An Objective over a torch Dataset or DataLoader reads it batch by batch, with the in-memory numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import assert_same_objective
from torch import nn

from losslab import Objective, build_model, train
from losslab.data import Dataset, StreamDataset, as_dataset, dataset
from losslab.data.stream import Stream
from losslab.errors import UserError
from losslab.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

N = 37  # not a multiple of any batch size below: the last batch is short


def _data(n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(3, (n,), generator=g)


class Rows(torch.utils.data.Dataset):
    """Items computed from their index (nothing stored but the seeds); records every read."""

    def __init__(self, n: int = N, nan_at: int | None = None) -> None:
        self.n, self.nan_at, self.reads = n, nan_at, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.reads.append(i)
        g = torch.Generator().manual_seed(1000 + i)
        x = torch.randn(5, generator=g, dtype=torch.float64)
        if i == self.nan_at:
            x[0] = float("nan")
        return x, int(torch.randint(3, (1,), generator=g))


def _in_memory(rows: Rows) -> tuple[torch.Tensor, torch.Tensor]:
    items = [Rows.__getitem__(rows, i) for i in range(len(rows))]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def _model() -> nn.Module:
    return build_model("mlp:5-7-3,act=tanh", seed=0)


def test_streamed_objective_equals_the_in_memory_one() -> None:
    rows = Rows()
    memory = Objective(_model(), "cross_entropy", _in_memory(rows), dtype="float64")
    sources = {
        "dataset": as_dataset(rows, stream=True),
        "loader": torch.utils.data.DataLoader(rows, batch_size=8),
    }
    for name, source in sources.items():
        size = None if name == "loader" else 6
        streamed = Objective(_model(), "cross_entropy", source, dtype="float64", batch_size=size)
        assert streamed.streamed and streamed.batch_size == (8 if name == "loader" else 6)
        assert_same_objective(streamed, memory, rows=torch.tensor([3, 30, 7]))
        wide = Objective(_model(), "cross_entropy", source, batch_size=size).at_float64()  # its float64 twin
        v = torch.randn(memory.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        torch.testing.assert_close(wide.hvp(wide.theta0, v), memory.hvp(memory.theta0, v), rtol=1e-12, atol=1e-14)
    # a trainer's minibatches read rows by index: the same run as in memory
    config = TrainConfig(optimizer="sgd", lr=0.1, epochs=2, batch_size=8, seed=0)
    a = train(Objective(_model(), "cross_entropy", sources["dataset"], dtype="float64"), config)
    b = train(memory, config)
    torch.testing.assert_close(torch.as_tensor(a.theta), torch.as_tensor(b.theta), rtol=1e-12, atol=1e-14)


def test_a_streamed_objective_never_reads_more_than_a_batch_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = Rows()
    largest = [0]
    take = Stream.take

    def recorded(self: Stream, index):
        largest[0] = max(largest[0], len(index))
        return take(self, index)

    monkeypatch.setattr(Stream, "take", recorded)
    objective = Objective(_model(), "cross_entropy", as_dataset(rows, stream=True), dtype="float64", batch_size=5)
    theta = objective.theta0
    objective.loss(theta), objective.grad(theta), objective.hvp(theta, theta), objective.ggn_vp(theta, theta)
    objective.loss_many(torch.stack([theta, theta]))
    assert largest[0] == 5 and sorted(set(rows.reads)) == list(range(N))
    assert objective.curvature_at(theta)._mode == "recompute"  # a kept graph would keep every batch's inputs
    with pytest.raises(UserError, match="needs all inputs in memory.*streams"):
        _ = objective.X


def test_large_datasets_stream_and_small_ones_are_read_in(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = Rows()
    small = as_dataset(rows)
    assert isinstance(small, Dataset)
    torch.testing.assert_close(small.X_train, _in_memory(rows)[0], rtol=0, atol=0)
    monkeypatch.setattr(dataset, "MATERIALIZE_BYTES", 40 * N - 1)  # 40 bytes per item: 5 float64 and a label
    large = as_dataset(rows)
    assert isinstance(large, StreamDataset) and large.n_train == N and large.task == "classification"
    assert large.num_classes == int(_in_memory(rows)[1].max()) + 1 and large.input_shape == (5,)
    assert isinstance(as_dataset(torch.utils.data.DataLoader(rows, batch_size=4)), StreamDataset)
    assert isinstance(as_dataset(rows, stream=False), Dataset)


def test_streams_that_cannot_be_summed_fail_with_the_fix() -> None:
    rows = Rows()
    with pytest.raises(UserError, match="shuffle=False"):
        as_dataset(torch.utils.data.DataLoader(rows, batch_size=4, shuffle=True))
    with pytest.raises(UserError, match="drop_last=False"):
        as_dataset(torch.utils.data.DataLoader(rows, batch_size=4, drop_last=True))

    class Endless(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield torch.zeros(5), 0

    with pytest.raises(UserError, match="map-style"):
        as_dataset(torch.utils.data.DataLoader(Endless()))
    dirty = Objective(_model(), "cross_entropy", as_dataset(Rows(nan_at=30), stream=True), batch_size=8)
    with pytest.raises(UserError, match="contains NaN or inf"):  # row 30 is read on the first pass
        dirty.loss(dirty.theta0)
    with pytest.raises(UserError, match="outputs 2 logits but the targets.*contain class 2"):
        bad = Objective(build_model("mlp:5-7-2", seed=0), "cross_entropy", as_dataset(Rows(), stream=True))
        bad.loss(bad.theta0)
    with pytest.raises(UserError, match="Label noise rewrites stored labels"):
        as_dataset(rows, stream=True).with_label_noise(0.1)


LAZY = textwrap.dedent('''
    import torch

    D = 1 << 16  # 256 KiB of float32 inputs per row


    class Lazy(torch.utils.data.Dataset):
        """Row i = a_i u + b_i w for fixed seeded u, w: computed from its index, never stored."""

        def __init__(self, n):
            g = torch.Generator().manual_seed(0)
            self.n, self.basis = n, torch.randn(2, D, generator=g) / D**0.5
            self.coef = torch.randn(n, 2, generator=g)

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return self.coef[i] @ self.basis, i % 2


    def big():
        return Lazy(4096)  # 1.07 GB materialized


    def tiny():
        return Lazy(8)


    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(D, 2))
''')


def _peak_rss_mb(tmp_path: Path, data: str) -> tuple[float, dict]:
    """Peak RSS (MB) of ``python -m losslab hessian --top 1`` on ``lazy.py:data``, and its result."""
    code = (
        "import json, resource, subprocess, sys\n"
        "out = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(json.dumps({'rc': out.returncode, 'stdout': out.stdout, 'stderr': out.stderr[-2000:],"
        " 'rss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
    )
    lazy = tmp_path / "lazy.py"
    command = [sys.executable, "-m", "losslab", "hessian", "--data", f"{lazy}:{data}", "--model", f"{lazy}:model"]
    command += ["--top", "1", "--tol", "1e-2", "--out", str(tmp_path / data), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    # a fresh parent per measurement: RUSAGE_CHILDREN is the largest child a process ever waited for
    report = json.loads(
        subprocess.run(
            [sys.executable, "-c", code, *command], env=env, capture_output=True, text=True, check=True
        ).stdout
    )
    assert report["rc"] == 0, report["stderr"]
    return report["rss_kb"] / 1024, json.loads(report["stdout"].strip().splitlines()[-1])


@pytest.mark.slow  # two subprocess runs; the big one reads 1.07 GB nine times (~25 s on 2 busy cores)
def test_peak_memory_of_a_streamed_hessian_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "lazy.py").write_text(LAZY)
    base, _ = _peak_rss_mb(tmp_path, "tiny")
    peak, result = _peak_rss_mb(tmp_path, "big")
    assert result["result"]["top"]["certified"]
    assert peak - base < 400, f"peak RSS {peak:.0f} MB against {base:.0f} MB on 8 rows of the same model"
