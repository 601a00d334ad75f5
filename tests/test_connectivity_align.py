"""Permutation specs, weight and activation matching, and the function check.

Every architecture family of the tiny cases (tanh and ReLU MLPs, the 1-D CNN, the
residual network with batch norm) plus a 2-D CNN with batch norm and pooling: a random
permutation of hidden units must leave the outputs unchanged, and matching a network
against its own permuted copy must recover the permutation exactly.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from losslab.connectivity import (
    Network,
    Path,
    PermutationSpec,
    align,
    as_network,
    check_function,
    correlations,
    derive_spec,
    evaluate_path,
    permute_network,
    weight_matching,
)
from losslab.connectivity.graph import TracedNetwork
from losslab.data import as_dataset
from losslab.errors import UserError
from losslab.models import build_model
from losslab.objective import Objective

# A network and its permuted copy differ only in the order of the terms of each sum:
# at float64 the outputs agree to a few ulps of their O(1) size.
ROUND_OFF = 1e-12


class Conv2DNet(nn.Module):
    """A user 2-D CNN: conv, batch norm, max-pool, conv, global average pool, linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 5, 3)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.shape[0], 1, 6, 6)
        h = nn.functional.max_pool2d(torch.relu(self.norm(self.conv1(x))), 2)
        return self.head(torch.relu(self.conv2(h)).mean(dim=(2, 3)))


def conv2d_objective() -> Objective:
    torch.manual_seed(0)
    model = Conv2DNet().double()
    with torch.no_grad():
        model.norm.running_mean.uniform_(-0.5, 0.5)
        model.norm.running_var.uniform_(0.5, 2.0)
        model.conv2.bias.fill_(0.5)  # no dead channels: activation matching cannot tell dead units apart
    g = torch.Generator().manual_seed(5)
    data = as_dataset(
        (
            torch.randn(40, 36, generator=g, dtype=torch.float64),
            torch.randint(3, (40,), generator=g),
        )
    )
    return Objective(model.eval(), "cross_entropy", data, dtype="float64")


def objective_of(case) -> Objective:
    return Objective(case.make_model(), case.loss, case.data, dtype="float64")


def random_perms(spec: PermutationSpec, objective: Objective, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sizes = spec.sizes({**objective.layout.unflatten(objective.theta0), **objective.buffers})
    return {group: torch.randperm(n, generator=g) for group, n in sizes.items()}


def objectives(tiny_case) -> list[Objective]:
    return [objective_of(tiny_case)] + ([conv2d_objective()] if tiny_case.name == "cnn1d-ce" else [])


def test_a_random_permutation_preserves_the_function(tiny_case) -> None:
    for objective in objectives(tiny_case):
        spec = derive_spec(objective)
        net = as_network(objective, objective.model)
        for seed in range(3):
            permuted = permute_network(objective, spec, net, random_perms(spec, objective, seed))
            assert not torch.equal(permuted.theta, net.theta)
            before = objective.forward(net.theta, buffers=net.buffers)
            after = objective.forward(permuted.theta, buffers=permuted.buffers)
            torch.testing.assert_close(after, before, rtol=0, atol=ROUND_OFF)


@pytest.mark.parametrize("method", ["weight", "activation"])
def test_matching_recovers_a_random_permutation_exactly(tiny_case, method: str) -> None:
    for objective in objectives(tiny_case):
        spec = derive_spec(objective)
        net = as_network(objective, objective.model)
        perms = random_perms(spec, objective, seed=7)
        permuted = permute_network(objective, spec, net, perms)
        alignment = align(objective, net, permuted, method=method)
        for group, perm in perms.items():  # permuted unit i is unit perm[i]: the inverse undoes it
            assert np.array_equal(alignment.perms[group], torch.argsort(perm).numpy()), group
        assert np.array_equal(alignment.theta, net.theta.numpy())  # a permutation moves, never rounds
        evaluation = evaluate_path(objective, Path("line", net, alignment.network(objective)), points=5)
        for curve, values in evaluation.values.items():
            # Every point is θ_A up to the round-off of (1 − t)θ + tθ.
            assert evaluation.barrier(curve).height <= ROUND_OFF, curve
            assert np.ptp(values) <= ROUND_OFF, curve


@pytest.mark.parametrize("method", ["weight", "activation"])
def test_alignment_of_independent_networks_preserves_the_function(tiny_case, method: str) -> None:
    objective = objective_of(tiny_case)
    other = tiny_case.make_model()
    with torch.no_grad():  # an independent second network of the same architecture
        for p in other.parameters():
            p.copy_(torch.randn_like(p, generator=None) * 0.5)
    alignment = align(objective, objective.model, other, method=method)
    assert alignment.max_output_change <= alignment.tolerance
    aligned = alignment.network(objective)
    b = as_network(objective, other)
    assert objective.with_buffers(aligned.buffers).loss(aligned.theta) == pytest.approx(
        float(objective.with_buffers(b.buffers).loss(b.theta)), abs=ROUND_OFF
    )
    if method == "weight":  # coordinate ascent never ends below where it started
        assert alignment.cosine_after >= alignment.cosine_before - ROUND_OFF


def test_derived_specs_of_the_zoo_families() -> None:
    mlp = objective_of_spec("mlp:4-5-3", (4,))
    assert derive_spec(mlp).to_dict() == {  # written by hand from the layer layout of MLP
        "1": [["1.weight", 0, 1], ["1.bias", 0, 1], ["3.weight", 1, 1]],
    }
    cnn = objective_of_spec("cnn1d:length=12,channels=2,classes=3", (12,))
    groups = derive_spec(cnn).groups
    assert list(groups) == ["conv1", "conv2", "conv3"]
    # 12 → 5 → 3 → 2 positions: the head reads each of conv3's channels as a block of 2 features.
    assert ("head.weight", 1, 2) in [(a.name, a.axis, a.inner) for a in groups["conv3"]]
    res = objective_of_spec("deep:2,width=5,in=3,out=3,residual=1,bn=1", (3,))
    (stream,) = derive_spec(res).groups.values()  # the residual stream: one permutation for all blocks
    names = {(a.name, a.axis) for a in stream}
    assert {
        ("blocks.0.linear.weight", 0),
        ("blocks.0.linear.weight", 1),
        ("head.weight", 1),
        ("blocks.1.norm.running_var", 0),
    } <= names


def objective_of_spec(spec: str, shape: tuple[int, ...]) -> Objective:
    g = torch.Generator().manual_seed(0)
    data = as_dataset((torch.randn(8, *shape, generator=g), torch.randint(3, (8,), generator=g)))
    return Objective(build_model(spec, seed=0), "cross_entropy", data)


def test_weight_matching_finds_the_optimum_of_one_group_by_brute_force() -> None:
    # One hidden layer: J(π) = Σ⟨W_A, π(W_B)⟩ is linear in π, so one assignment is optimal.
    objective = objective_of_spec("mlp:3-5-3,act=tanh", (3,))
    spec = derive_spec(objective)
    a = objective.layout.unflatten(objective.theta0)
    b = objective.layout.unflatten(objective.as_theta(build_model("mlp:3-5-3,act=tanh", seed=9)))
    found = weight_matching(spec, a, b).perms["1"]

    def J(perm: torch.Tensor) -> float:
        moved = spec.apply(b, {"1": perm})
        return float(sum((a[k].double() * moved[k].double()).sum() for k in a))

    best = max(J(torch.tensor(p)) for p in itertools.permutations(range(5)))
    assert J(found) == pytest.approx(best, abs=1e-12)


def test_weight_matching_ends_at_a_coordinate_wise_optimum() -> None:
    objective = objective_of_spec("mlp:3-4-4-3", (3,))
    spec = derive_spec(objective)
    a = objective.layout.unflatten(objective.theta0)
    b = objective.layout.unflatten(objective.as_theta(build_model("mlp:3-4-4-3", seed=4)))
    perms = weight_matching(spec, a, b, seed=3).perms

    def J(p: dict[str, torch.Tensor]) -> float:
        moved = spec.apply(b, p)
        return float(sum((a[k].double() * moved[k].double()).sum() for k in a))

    for group in perms:  # no single group can do better with the others held fixed
        for p in itertools.permutations(range(4)):
            assert J({**perms, group: torch.tensor(p)}) <= J(perms) + 1e-12


def test_activation_matching_maximizes_summed_correlation() -> None:
    objective = objective_of_spec("mlp:3-5-3,act=tanh", (3,))
    traced = TracedNetwork(objective)
    a = as_network(objective, objective.model)
    b = as_network(objective, build_model("mlp:3-5-3,act=tanh", seed=9))
    corr = correlations(traced, traced.spec, a, b)["1"]

    def hidden(net: Network) -> np.ndarray:  # tanh(X W1ᵀ + b1), written out by hand
        p = objective.layout.unflatten(net.theta)
        return torch.tanh(objective.X @ p["1.weight"].T + p["1.bias"]).double().numpy()

    reference = np.corrcoef(hidden(a).T, hidden(b).T)[:5, 5:]
    np.testing.assert_allclose(corr.numpy(), reference, atol=1e-6)  # float32 activations
    perm = align(objective, a, b, method="activation").perms["1"]
    best = max(sum(reference[i, p[i]] for i in range(5)) for p in itertools.permutations(range(5)))
    assert sum(reference[i, perm[i]] for i in range(5)) == pytest.approx(best, abs=1e-6)


def test_a_spec_that_misses_an_axis_fails_the_function_check() -> None:
    objective = objective_of_spec("mlp:4-5-3", (4,))
    net = as_network(objective, objective.model)
    partial = PermutationSpec.of({"h": [("1.weight", 0), ("1.bias", 0)]})  # forgets 3.weight's columns
    broken = permute_network(objective, partial, net, {"h": torch.tensor([1, 0, 2, 3, 4])})
    with pytest.raises(UserError, match="computes a different function"):
        check_function(objective, net, broken)


def test_user_specs_are_checked_against_the_model() -> None:
    objective = objective_of_spec("mlp:4-5-6-3", (4,))
    net = as_network(objective, objective.model)
    good = {
        "h1": [("1.weight", 0), ("1.bias", 0), ("3.weight", 1)],
        "h2": [("3.weight", 0), ("3.bias", 0), ("5.weight", 1)],
    }
    assert align(objective, net, net, spec=good).max_output_change == 0.0
    cases = [
        ({"h1": good["h1"]}, "does not cover the hidden units of '3.weight' axis 0"),
        ({**good, "h1": good["h1"][:2]}, "leaves \\('3.weight', 1\\) out"),
        ({**good, "h3": [("9.weight", 0)]}, "names '9.weight'"),
        ({"h1": [("1.weight", 0), ("3.weight", 0)]}, "has 5 units at '1.weight' but 6"),
        ({"h1": [("1.weight", "rows")]}, "must be \\(name, axis\\)"),
        ({"h1": [("1.weight", 2)]}, "axis 2 of '1.weight'"),
        ([("1.weight", 0)], "must be a non-empty dict"),
    ]
    for spec, message in cases:
        with pytest.raises(UserError, match=message):
            align(objective, net, net, spec=spec)


class Cumulative(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.cumsum(self.a(x), 1))  # the order of hidden units matters here


def test_an_underivable_architecture_says_how_to_pass_a_spec() -> None:
    g = torch.Generator().manual_seed(0)
    objective = Objective(Cumulative(), "cross_entropy", (torch.randn(6, 4, generator=g), torch.arange(6) % 3))
    with pytest.raises(UserError) as info:
        derive_spec(objective)
    message = str(info.value)
    assert "\n" not in message and "'cumsum'" in message and "spec" in message
    net = as_network(objective, objective.model)
    with pytest.raises(UserError, match="computes a different function"):  # a wrong user spec cannot slip through
        align(
            objective,
            net,
            build_model_like(objective),
            spec={"h": [("a.weight", 0), ("a.bias", 0), ("b.weight", 1)]},
        )


def build_model_like(objective: Objective) -> Network:
    torch.manual_seed(1)
    return as_network(objective, Cumulative())
