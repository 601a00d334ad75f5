"""Dict, tuple and integer inputs: every quantity equals the one-tensor path of the same network.

Each case builds a model on structured inputs and its twin on one packed tensor that unpacks
the same inputs inside ``forward``; both share their parameters, so at float64 the loss,
gradient, Hessian and GGN products and many-point losses must agree to round-off (1e-12
relative: the same operations in the same order, only the argument passing differs).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import assert_same_objective
from torch import nn
from typer.testing import CliRunner

from losslab import Objective, load_data
from losslab.cli import app
from losslab.data import Dataset, as_dataset
from losslab.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

N, L, VOCAB, CLASSES = 24, 5, 11, 3


class Bag(nn.Module):
    """Mean of the embeddings of the unmasked tokens, then a linear layer (token ids: int64)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 4)
        self.head = nn.Linear(4, CLASSES)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = mask.to(self.head.weight.dtype)[..., None]
        return self.head(torch.tanh((self.embed(input_ids) * w).sum(1) / w.sum(1).clamp(min=1)))


class PackedBag(Bag):
    """The same network on one int64 tensor [n, 2L]: ids, then the mask."""

    def forward(self, packed: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(packed[:, :L], packed[:, L:])


class DictBag(Bag):
    """The same network on the dict itself (one positional argument that is not a key)."""

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        return super().forward(batch["input_ids"], batch["mask"])


class Pair(nn.Module):
    """f(a, b) = W₂ tanh(W_a a + W_b b): two real-valued inputs."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a, self.b, self.out = nn.Linear(3, 6), nn.Linear(2, 6, bias=False), nn.Linear(6, CLASSES)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.a(a) + self.b(b)))


class PackedPair(Pair):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x[:, :3], x[:, 3:])


def _tokens() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(VOCAB, (N, L), generator=g)
    mask = (torch.rand(N, L, generator=g) > 0.3).long()
    mask[:, 0] = 1
    return ids, mask, torch.randint(CLASSES, (N,), generator=g)


def _pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(N, 3, generator=g), torch.randn(N, 2, generator=g), torch.randint(CLASSES, (N,), generator=g)


class Items(torch.utils.data.Dataset):
    """A map-style Dataset of dict items, the target under 'label'."""

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor, y: torch.Tensor) -> None:
        self.ids, self.mask, self.y = ids, mask, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "mask": self.mask[i], "label": self.y[i]}


def test_dict_inputs_equal_the_tensor_path() -> None:
    ids, mask, y = _tokens()
    packed = Objective(PackedBag(), "cross_entropy", (torch.cat([ids, mask], 1), y), dtype="float64")
    keyword = Objective(Bag(), "cross_entropy", ({"input_ids": ids, "mask": mask}, y), dtype="float64", batch_size=7)
    assert isinstance(keyword.X, dict) and keyword.X["input_ids"].dtype == torch.int64
    assert_same_objective(keyword, packed)
    # the dict itself for a forward of one argument, and a Dataset of dict items (read in, then streamed)
    assert_same_objective(
        Objective(DictBag(), "cross_entropy", ({"input_ids": ids, "mask": mask}, y), dtype="float64"), packed
    )
    items = Items(ids, mask, y)
    data = as_dataset(items)
    assert isinstance(data, Dataset) and set(data.X_train) == {"input_ids", "mask"} and data.num_classes == CLASSES
    assert_same_objective(Objective(Bag(), "cross_entropy", items, dtype="float64"), packed)
    streamed = Objective(Bag(), "cross_entropy", as_dataset(items, stream=True), dtype="float64", batch_size=5)
    assert streamed.streamed
    loader = torch.utils.data.DataLoader(items, batch_size=5)  # batches arrive as dicts, target and all
    assert_same_objective(Objective(Bag(), "cross_entropy", loader, dtype="float64"), packed)
    assert_same_objective(streamed, packed)


def test_tuple_inputs_equal_the_tensor_path() -> None:
    a, b, y = _pair()
    packed = Objective(PackedPair(), "cross_entropy", (torch.cat([a, b], 1), y), dtype="float64")
    assert_same_objective(Objective(Pair(), "cross_entropy", ((a, b), y), dtype="float64", batch_size=5), packed)
    pairs = torch.utils.data.TensorDataset(a, b, y)  # items (a_i, b_i, y_i): regroup as ((a_i, b_i), y_i)
    grouped = [((a_i, b_i), y_i) for a_i, b_i, y_i in pairs]
    assert_same_objective(
        Objective(Pair(), "cross_entropy", as_dataset(_List(grouped), stream=True), dtype="float64"), packed
    )


class _List(torch.utils.data.Dataset):
    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def test_integer_inputs_keep_their_dtype_and_float_inputs_follow_dtype() -> None:
    ids, mask, y = _tokens()

    class Tokens(Bag):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return super().forward(ids, torch.ones_like(ids))

    objective = Objective(Tokens(), "cross_entropy", (ids, y), dtype="float64")
    assert objective.X.dtype == torch.int64 and torch.equal(objective.X, ids)
    model = Tokens().double()
    with torch.no_grad():
        want = nn.functional.cross_entropy(model(ids), y)
    torch.testing.assert_close(objective.loss(objective.theta0), want, rtol=1e-13, atol=0)
    X = torch.randn(N, 4)
    assert Objective(nn.Linear(4, CLASSES), "cross_entropy", (X, y), dtype="float64").X.dtype == torch.float64
    assert as_dataset((ids, y)).X_train.dtype == torch.int64  # no silent cast to float any more
    # an integer X for a model of real-valued inputs: the message says why and what to do
    with pytest.raises(UserError, match="Integer inputs keep their dtype.*cast X to float"):
        Objective(nn.Linear(L, CLASSES), "cross_entropy", (ids, y))


def test_structured_inputs_fail_with_the_fix() -> None:
    ids, mask, y = _tokens()

    class NoTarget(Items):
        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": self.ids[i], "mask": self.mask[i]}

    with pytest.raises(UserError, match="one key must hold the target.*found none"):
        as_dataset(NoTarget(ids, mask, y))
    with pytest.raises(UserError, match="different numbers of rows"):
        as_dataset(({"input_ids": ids, "mask": mask[:-1]}, y))
    with pytest.raises(UserError, match="no built-in model reads"):
        _ = as_dataset(({"input_ids": ids, "mask": mask}, y)).input_shape
    with pytest.raises(UserError, match="failed on inputs \\{input_ids: \\(4, 5\\) int64, mask: \\(4, 5\\) int64\\}"):
        Objective(Pair(), "cross_entropy", ({"input_ids": ids, "mask": mask}, y))


def cli_model() -> nn.Module:
    """``--model tests/test_objective_inputs.py:cli_model``."""
    return Bag()


def cli_data() -> Items:
    """``--data tests/test_objective_inputs.py:cli_data``: a Dataset of dict items."""
    return Items(*_tokens())


def test_dict_data_through_the_command_line(tmp_path: Path) -> None:
    spec = str(Path(__file__).resolve())
    assert isinstance(load_data(f"{spec}:cli_data").X_train, dict)
    args = ["hessian", "--data", f"{spec}:cli_data", "--model", f"{spec}:cli_model", "--top", "1"]
    result = CliRunner().invoke(
        app, [*args, "--dtype", "float64", "--out", str(tmp_path / "run"), "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout.strip().splitlines()[-1])["result"]["top"]
    ids, mask, y = _tokens()
    objective = Objective(PackedBag(), "cross_entropy", (torch.cat([ids, mask], 1), y), dtype="float64")
    exact = torch.linalg.eigvalsh(objective.hessian(objective.theta0))[-1]
    assert top["certified"] and top["eigenvalues"][0] == pytest.approx(float(exact), rel=1e-6)
