"""Permutation alignment on the zoo's residual and plain CNNs with batch norm (issue 17, §1).

A trained ``resnet20`` (width 4, float64, on 8×8 digit images) and a copy of it with every
group of channels randomly permuted — the three residual streams (one permutation shared by
the stem, every block's output, the projection shortcut and the next block's input) and the
nine inner block channels — compute the same function. Weight and activation matching must
recover the permutation exactly, so the matched barrier is zero up to round-off, while the
naive line between the two copies climbs far above the endpoints' loss.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslab.connectivity import (
    Network,
    Path,
    PermutationSpec,
    align,
    as_network,
    evaluate_path,
    permute_network,
    reestimate_batch_norm,
)
from losslab.connectivity.graph import TracedNetwork
from losslab.data import as_dataset, load_data
from losslab.errors import UserError
from losslab.models import build_model
from losslab.objective import Objective

# A permutation reorders the terms of each channel sum and nothing else: float64 outputs of
# O(10) size agree to a few hundred ulps at most.
ROUND_OFF = 1e-10
ROWS = 128  # digit images: enough for every channel to vary, few enough for a loaded core


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_data("digits:images=true")
    return data.X_train[:ROWS].double(), data.y_train[:ROWS]


def _trained(spec: str, steps: int = 30) -> nn.Module:
    """``spec`` trained by plain SGD in train mode, so its running statistics are real ones."""
    X, y = _images()
    model = build_model(spec, seed=0).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        rows = torch.randint(len(X), (32,), generator=g)
        loss = F.cross_entropy(model(X[rows]), y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _random_perms(spec: PermutationSpec, objective: Objective, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sizes = spec.sizes({**objective.layout.unflatten(objective.theta0), **objective.buffers})
    return {group: torch.randperm(n, generator=g) for group, n in sizes.items()}


@pytest.fixture(scope="module")
def resnet():
    """(objective, traced graph, network A, A with every group permuted, the permutations)."""
    model = _trained("resnet20:width=4")
    objective = Objective(model, "cross_entropy", as_dataset(_images()), dtype="float64")
    traced = TracedNetwork(objective, rows=64)
    net = as_network(objective, model)
    # Population statistics at A: the values the batch-norm reset gives A, so that the
    # endpoints of every path are the same networks with and without the reset.
    net = Network(net.theta, reestimate_batch_norm(objective, net.theta, net.buffers))
    perms = _random_perms(traced.derived(), objective, seed=3)
    permuted = permute_network(objective, traced.derived(), net, perms)
    return objective, traced, net, permuted, perms


def test_the_derived_resnet_spec_shares_one_permutation_along_each_residual_stream(resnet) -> None:
    objective, traced, *_ = resnet
    groups = {g: {(a.name, a.axis) for a in axes} for g, axes in traced.derived().groups.items()}
    assert len(groups) == 3 + 9  # three streams, one inner group per basic block
    stem = next(axes for axes in groups.values() if ("conv.weight", 0) in axes)
    for block in range(3):  # stage 1 has identity shortcuts: every block writes the stem's stream
        assert {(f"layers.{block}.conv2.weight", 0), (f"layers.{block}.bn2.running_var", 0)} <= stem
        assert (f"layers.{block}.conv1.weight", 1) in stem
    assert ("layers.3.shortcut.0.weight", 1) in stem  # the projection reads stream 1 …
    stage2 = next(axes for axes in groups.values() if ("layers.3.shortcut.0.weight", 0) in axes)
    # … and writes stream 2, with its batch norm and every block of stage 2
    assert {("layers.3.shortcut.1.running_mean", 0), ("layers.4.conv2.weight", 0), ("layers.6.conv1.weight", 1)} <= (
        stage2
    )
    last = next(axes for axes in groups.values() if ("head.weight", 1) in axes)
    assert ("layers.8.conv2.weight", 0) in last and ("layers.6.shortcut.0.weight", 0) in last
    inner = next(axes for axes in groups.values() if ("layers.4.conv1.weight", 0) in axes)
    assert inner == {
        ("layers.4.conv1.weight", 0),
        ("layers.4.conv2.weight", 1),
        *((f"layers.4.bn1.{k}", 0) for k in ("weight", "bias", "running_mean", "running_var")),
    }


def test_the_plain_twin_has_one_group_per_convolution() -> None:
    X, y = _images()
    model = build_model("resnet8-noshort:width=4", seed=0).double().eval()
    objective = Objective(model, "cross_entropy", as_dataset((X[:16], y[:16])), dtype="float64")
    spec = TracedNetwork(objective).derived()
    assert len(spec.groups) == 1 + 2 * 3  # the stem and both convolutions of each block
    net = as_network(objective, model)
    permuted = permute_network(objective, spec, net, _random_perms(spec, objective, seed=0))
    torch.testing.assert_close(
        objective.forward(permuted.theta, buffers=permuted.buffers),
        objective.forward(net.theta, buffers=net.buffers),
        rtol=0,
        atol=ROUND_OFF,
    )


def test_a_random_permutation_of_every_group_preserves_the_resnet_function(resnet) -> None:
    objective, _, net, permuted, perms = resnet
    assert all(not torch.equal(p, torch.arange(len(p))) for p in perms.values())  # every group really moves
    assert not torch.equal(permuted.theta, net.theta)
    before = objective.forward(net.theta, buffers=net.buffers)
    after = objective.forward(permuted.theta, buffers=permuted.buffers)
    torch.testing.assert_close(after, before, rtol=0, atol=ROUND_OFF)


def test_a_float32_permuted_resnet_computes_the_same_outputs() -> None:
    X, y = _images()
    model = build_model("resnet8:width=4", seed=1).eval()
    objective = Objective(model, "cross_entropy", as_dataset((X[:32].float(), y[:32])), dtype="float32")
    spec = TracedNetwork(objective).derived()
    net = as_network(objective, model)
    permuted = permute_network(objective, spec, net, _random_perms(spec, objective, seed=1))
    before = objective.forward(net.theta, buffers=net.buffers)
    # float32 channel sums of ≤ 16·9 terms of O(1): reordering them moves outputs by ≲ 1e-6.
    torch.testing.assert_close(objective.forward(permuted.theta, buffers=permuted.buffers), before, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["weight", "activation"])
def test_matching_recovers_the_permuted_resnet_and_removes_the_barrier(resnet, method: str) -> None:
    objective, traced, net, permuted, perms = resnet
    alignment = align(objective, net, permuted, method=method, traced=traced)
    for group, perm in perms.items():  # permuted unit i is unit perm[i]: the inverse undoes it
        assert np.array_equal(alignment.perms[group], torch.argsort(perm).numpy()), group
    assert alignment.max_output_change <= alignment.tolerance
    aligned = alignment.network(objective)
    assert torch.equal(aligned.theta, net.theta)  # a permutation moves entries, never rounds them
    matched = evaluate_path(objective, Path("line", net, aligned), points=3, test=False)
    naive = evaluate_path(objective, Path("line", net, permuted), points=3, test=False)
    loss = float(matched.values["train_loss"][0])
    # The bound, relative to the endpoint loss (≈ 1.48 after 30 steps); the matched line is A itself.
    assert matched.barrier().height <= 1e-4 * max(1.0, loss)
    assert naive.barrier().height >= 0.1  # averaging unrelated channels: measured 0.63 (2.43 without the reset)


def test_batch_norm_statistics_are_re_estimated_along_the_resnet_path(resnet) -> None:
    objective, _, net, permuted, _ = resnet
    path = Path("line", net, permuted)
    reset = evaluate_path(objective, path, points=3, test=False, bn_reset=True)
    interpolated = evaluate_path(objective, path, points=3, test=False, bn_reset=False)
    # The ends already carry their population statistics: the reset leaves them as they are.
    np.testing.assert_allclose(
        reset.values["train_loss"][[0, 2]], interpolated.values["train_loss"][[0, 2]], atol=1e-12
    )
    # In the middle, interpolated statistics describe neither network (the dnn-mode-connectivity
    # pitfall); the reset changes the loss there by a large margin.
    assert abs(reset.values["train_loss"][1] - interpolated.values["train_loss"][1]) >= 0.1

    # Independent reference: eval mode with the re-estimated statistics computes what train-mode
    # batch norm computes with the whole training set as one batch.
    theta = path.thetas(torch.tensor([0.5], dtype=torch.float64))[0]
    buffers = reestimate_batch_norm(objective, theta, path.buffers(0.5))
    model = build_model("resnet20:width=4", seed=0).double()
    model.load_state_dict(objective.layout.unflatten(theta) | buffers)
    with torch.no_grad():
        reference = model.train()(objective.X)
    torch.testing.assert_close(objective.forward(theta, buffers=buffers), reference, rtol=0, atol=ROUND_OFF)


class FlatHeadCNN(nn.Module):
    """A user CNN whose head reads the last feature map flattened, through dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(5)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(5 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x.view(-1, 1, 8, 8))), inplace=True)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(self.drop(torch.flatten(x, 1)))


def test_activation_matching_observes_conv_channels_read_flattened() -> None:
    # Before the fix: "Activation matching finds no activations for group 'conv2'", since the
    # dropout after the flattening hid the feature map from the probe search.
    X, y = _images()
    torch.manual_seed(0)
    model = FlatHeadCNN().double().eval()
    objective = Objective(model, "cross_entropy", as_dataset((X, y)), dtype="float64")
    traced = TracedNetwork(objective)
    (probe,) = traced.probes["conv2"]
    assert probe.inner == 16  # 5 channels of 4×4 positions, read as 80 features
    net = as_network(objective, model)
    perms = _random_perms(traced.derived(), objective, seed=2)
    permuted = permute_network(objective, traced.derived(), net, perms)
    alignment = align(objective, net, permuted, method="activation", traced=traced)
    for group, perm in perms.items():
        assert np.array_equal(alignment.perms[group], torch.argsort(perm).numpy()), group


def test_a_flattened_probe_counts_every_position_as_an_observation() -> None:
    from losslab.connectivity.graph import Probe

    value = torch.arange(2 * 3 * 4, dtype=torch.float64).reshape(2, 12)  # 3 units × 4 positions, flattened
    observed = Probe(None, 1, 4).observations(value)  # type: ignore[arg-type]
    slow = torch.stack([value[b, u * 4 + k] for b in range(2) for k in range(4) for u in range(3)]).reshape(8, 3)
    assert torch.equal(observed, slow)


def test_a_resnet_trained_by_losslab_aligns_with_its_result_buffers() -> None:
    # Before the fix the function check refused the trained θ with its own result.buffers
    # ("θ was trained with batch norm …"), and the path's re-estimated endpoints likewise.
    import losslab

    X, y = _images()
    objective = Objective(build_model("resnet8:width=4", seed=0), "cross_entropy", as_dataset((X.float(), y)))
    result = losslab.train(objective, losslab.TrainConfig(steps=4, batch_size=32, lr=0.05))
    a = as_network(objective, result.theta, result.buffers)
    traced = TracedNetwork(objective, rows=64)
    b = permute_network(objective, traced.derived(), a, _random_perms(traced.derived(), objective, seed=4))
    alignment = align(objective, a, b, method="weight", traced=traced)
    matched = evaluate_path(objective, Path("line", a, alignment.network(objective)), points=3, test=False)
    # float32: the aligned network is A entry for entry; the line's interior points round (1 − t)θ + tθ.
    assert matched.barrier().height <= 1e-5
    # The default statistics still do not mix with the trained θ.
    with pytest.raises(UserError, match=r"with_buffers\(result\.buffers\)"):
        objective.loss(objective.as_theta(result.theta))


@pytest.mark.parametrize("method", ["weight", "activation"])
def test_matching_recovers_a_permuted_vgg9(method: str) -> None:
    X, y = _images()
    model = build_model("vgg9:width=2", seed=0).double().eval()
    with torch.no_grad():  # statistics of a trained net, not the init's 0 and 1
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(0.3, 0.6)  # no dead channels: the data cannot tell dead units apart
        model.classifier[0].bias.uniform_(0.3, 0.6)
    objective = Objective(model, "cross_entropy", as_dataset((X[:64], y[:64])), dtype="float64")
    traced = TracedNetwork(objective)
    spec = traced.derived()
    assert len(spec.groups) == 8  # seven convolutions and the hidden linear layer
    net = as_network(objective, model)
    perms = _random_perms(spec, objective, seed=5)
    permuted = permute_network(objective, spec, net, perms)
    alignment = align(objective, net, permuted, method=method, traced=traced)
    assert alignment.max_output_change <= ROUND_OFF
    for group, perm in perms.items():
        assert np.array_equal(alignment.perms[group], torch.argsort(perm).numpy()), group
