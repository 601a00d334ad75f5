"""Dead and stuck ReLU units over training, against width, and whether the loss cares.

For ReLU MLPs ``mlp:IN-w-…-w-OUT`` at each width w, train and keep θ at every epoch.
At each snapshot and hidden layer:

- a unit is *dead* when its ReLU output is 0 on every training row (it never fires);
- a unit is *stuck* when its incoming weights (its row of W and its bias) moved, over
  the last epoch, by at most ``stuck_tol`` of their norm: ‖Δw_i‖ ≤ tol · ‖w_i‖.

Then at the final θ the dead units are removed (their rows of W_l and b_l and their
columns of W_{l+1}; a smaller model) and the training loss re-measured, and so are the
stuck units that still fire ("does the loss care?").

Checked invariants (``invariants()``, all 0 when they hold):

- removing dead units leaves the training loss unchanged: zeroing their weights gives a
  bit-identical loss (every term they contribute is 0·w = 0), and the physically smaller
  network's float64 loss agrees to 1e-12 relative (only the summation order changes);
- with plain SGD, a first-layer unit dead at one snapshot receives exactly zero gradient
  (relu'(z) = 0 on every row; its inputs are the fixed data), so its weights are
  bit-identical at every later snapshot and it stays dead (not checked for deeper
  layers, whose inputs move, nor for momentum or Adam, whose state keeps moving them).

A width whose training diverges (a non-finite batch loss; lr 1.0 does this on digits
at some widths over 30 epochs) is kept, not fatal: its ``diverged_step`` records where,
and every measurement above is taken over the snapshots whose training loss (in the
training's dtype) is still finite, the last of them standing in for the final θ.

Each width is one resumable sweep point. Lu et al. (2019, "Dying ReLU and
initialization") analyse the probability of a dead network against depth and width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from losslab.data import load_data
from losslab.errors import UserError, check_each, check_float, check_int
from losslab.models import build_model
from losslab.objective import Objective
from losslab.objective.cost import Estimate
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study, subset
from losslab.train import TrainConfig, check_training, train
from losslab.train.cost import estimate_training

__all__ = ["StuckUnitsConfig", "StuckUnitsResult", "StuckWidthPoint", "hidden_activations", "stuck_units"]

_REMOVAL_RTOL = 1e-12  # float64 round-off of a reordered sum of ≤ a few thousand terms, with a wide margin


@dataclass(frozen=True)
class StuckUnitsConfig:
    """The widths, the depth and the training run."""

    widths: tuple[int, ...] = (8, 32, 128)
    depth: int = 4  # hidden layers: deeper layers die first (their inputs move; digits' pixels never do)
    data: str = "digits"
    train_size: int | None = None
    optimizer: str = "sgd"  # plain SGD: the first-layer invariant is exact only without optimizer state
    lr: float = 1.0  # large steps kill units (at 0.5 none die on digits); at 2.0 whole layers die
    batch_size: int | None = 64
    epochs: int = 5
    stuck_tol: float = 1e-3  # relative movement of the incoming weights over one epoch
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "stuck-units"
        check_each(self.widths, "widths", owner, "width", "16,64", low=1)
        check_int(self.depth, "depth", owner, low=1)
        check_training(self, owner)
        check_float(self.stuck_tol, "stuck_tol", owner, low=0.0)
        if self.train_size is not None:
            check_int(self.train_size, "train_size", owner, low=2)

    def data_set(self) -> Any:
        data = load_data(self.data)
        if self.train_size is not None and self.train_size < data.n_train:
            data = subset(data, self.train_size, self.seed)
        if data.task != "classification":
            raise UserError(f"The stuck-units study trains classifiers: {self.data!r} is not a classification dataset.")
        return data

    def spec(self, data: Any, widths: list[int]) -> str:
        features = int(np.prod(data.X_train.shape[1:]))
        return "mlp:" + "-".join(str(v) for v in (features, *widths, data.num_classes))

    def train_config(self, per_epoch: int) -> TrainConfig:
        return TrainConfig.of(self, "optimizer", "lr", "batch_size", "epochs", "seed", snapshot_every=per_epoch)


def _linears(objective: Objective) -> list[tuple[str, str]]:
    """(weight, bias) names of the Linear layers in order, refusing anything but a zoo ReLU MLP."""
    layers = [m for m in objective.model.children() if not isinstance(m, torch.nn.Flatten)]
    ok = layers and all(isinstance(m, torch.nn.Linear if i % 2 == 0 else torch.nn.ReLU) for i, m in enumerate(layers))
    if not ok or len(layers) % 2 == 0:
        raise UserError("The stuck-units study needs a ReLU MLP ('mlp:IN-H-…-OUT'): Linear and ReLU layers in turn.")
    names = [n for n in objective.layout.names if n.endswith(".weight")]
    return [(n, n[: -len("weight")] + "bias") for n in names]


def hidden_activations(objective: Objective, theta: torch.Tensor) -> list[torch.Tensor]:
    """The ReLU outputs [N, width] of every hidden layer on the training set, from the flat θ."""
    params = objective.layout.unflatten(objective.as_theta(theta))
    h = objective.X.flatten(1).to(params[_linears(objective)[0][0]].dtype)
    out = []
    for weight, bias in _linears(objective)[:-1]:
        h = torch.relu(h @ params[weight].T + params[bias])
        out.append(h)
    return out


def _remove(objective: Objective, theta: torch.Tensor, drop: list[torch.Tensor], spec_of: Any) -> float:
    """The float64 training loss of the smaller network without the ``drop`` [width] units (NaN: a layer empties)."""
    params = objective.layout.unflatten(objective.as_theta(theta).double())
    layers = _linears(objective)
    widths = [int((~d).sum()) for d in drop]
    if min(widths) == 0:
        return float("nan")
    small: dict[str, torch.Tensor] = {}
    incoming = None
    for i, (weight, bias) in enumerate(layers):
        W, b = params[weight], params[bias]
        if incoming is not None:
            W = W[:, incoming]
        if i < len(drop):
            keep = ~drop[i]
            W, b = W[keep], b[keep]
            incoming = keep
        small[weight], small[bias] = W, b
    model = build_model(spec_of(widths), seed=0)
    reduced = Objective(model, "cross_entropy", objective.dataset, dtype="float64", device=objective.device)
    return float(reduced.loss(reduced.as_theta(small)))


def _zeroed(objective: Objective, theta: torch.Tensor, drop: list[torch.Tensor]) -> torch.Tensor:
    """θ with the incoming and outgoing weights of the ``drop`` units set to 0 (same shapes)."""
    theta = objective.as_theta(theta).clone()
    slices, shapes = objective.layout.slices, dict(zip(objective.layout.names, objective.layout.shapes, strict=True))
    layers = _linears(objective)
    for i, d in enumerate(drop):
        weight, bias = layers[i]
        W = theta[slices[weight]].view(shapes[weight])
        W[d] = 0
        theta[slices[bias]][d] = 0
        nxt = layers[i + 1][0]
        theta[slices[nxt]].view(shapes[nxt])[:, d] = 0
    return theta


@register_result
@dataclass
class StuckWidthPoint:
    """One width: fractions [T, L] per snapshot and hidden layer, and the losses with units removed."""

    steps: np.ndarray  # [T] snapshot steps
    dead: np.ndarray  # [T, L] fraction of units dead on the training set
    stuck: np.ndarray  # [T, L] fraction whose incoming weights moved ≤ tol over the last epoch (NaN at T=0)
    dead_count: np.ndarray  # [L] at the end
    stuck_alive_count: np.ndarray  # [L] stuck but firing, at the end
    loss: float  # final training loss (float64)
    loss_without_dead: float  # NaN when a layer would be empty
    loss_without_stuck_alive: float  # dead and stuck-alive units removed (zeroed)
    removal_violations: int
    revived: int  # first-layer dead units that moved or fired later (plain SGD: must be 0)
    diverged_step: int | None = None  # steps taken when a batch loss stopped being finite; None: no divergence


@register_result
@dataclass
class StuckUnitsResult:
    widths: np.ndarray
    points: list[StuckWidthPoint]
    config: dict[str, Any]

    def invariants(self) -> dict[str, int]:
        return {
            "removal_violations": sum(p.removal_violations for p in self.points),
            "revived_first_layer": sum(p.revived for p in self.points),
        }

    def summary(self) -> dict[str, Any]:
        return {
            "widths": [int(w) for w in self.widths],
            "final_dead_fraction": [[round(float(v), 4) for v in p.dead[-1]] for p in self.points],
            "final_stuck_fraction": [[round(float(v), 4) for v in p.stuck[-1]] for p in self.points],
            "dead_units": [[int(v) for v in p.dead_count] for p in self.points],
            "loss": [p.loss for p in self.points],
            "loss_without_dead": [p.loss_without_dead for p in self.points],
            "loss_without_stuck_alive": [p.loss_without_stuck_alive for p in self.points],
            "diverged_step": [p.diverged_step for p in self.points],
            "last_step": [int(p.steps[-1]) for p in self.points],
            "invariants": self.invariants(),
        }


def _measure(config: StuckUnitsConfig, data: Any, width: int, context: StudyContext) -> StuckWidthPoint:
    widths = [width] * config.depth
    spec_of = lambda ws: config.spec(data, list(ws))  # noqa: E731
    objective = Objective(
        build_model(spec_of(widths), seed=config.seed),
        "cross_entropy",
        data,
        device=context.device,
        dtype=context.dtype,
    )
    layers = _linears(objective)
    result = train(objective, config.train_config(config.train_config(1).steps_per_epoch(objective.n)), test=False)
    snaps = torch.as_tensor(result.snapshots, device=objective.device)
    steps = np.asarray(result.snapshot_steps)
    diverged_step = None
    if result.stopped == "diverged":
        diverged_step = int(result.snapshot_steps[-1])
        unchecked = Objective(  # the training's own dtype: the float64 loss of a blown-up θ can still be finite
            build_model(spec_of(widths), seed=config.seed),
            "cross_entropy",
            data,
            device=context.device,
            dtype=context.dtype,
            check_finite=False,
        )
        finite = [bool(torch.isfinite(unchecked.loss(s))) for s in snaps]
        keep = len(finite) if all(finite) else finite.index(False)
        if keep == 0:
            raise UserError(f"The stuck-units study: width {width} has no finite loss even at initialization.")
        snaps, steps = snaps[:keep], steps[:keep]
    slices, shapes = objective.layout.slices, dict(zip(objective.layout.names, objective.layout.shapes, strict=True))

    def incoming(theta: torch.Tensor, i: int) -> torch.Tensor:
        weight, bias = layers[i]
        return torch.cat([theta[slices[weight]].view(shapes[weight]), theta[slices[bias]][:, None]], dim=1)

    T, L = len(snaps), config.depth
    dead, stuck = np.zeros((T, L)), np.full((T, L), np.nan)
    masks = []
    for t in range(T):
        acts = hidden_activations(objective, snaps[t])
        masks.append([(a == 0).all(0) for a in acts])
        for i in range(L):
            dead[t, i] = float(masks[t][i].double().mean())
            if t > 0:
                now, before = incoming(snaps[t], i), incoming(snaps[t - 1], i)
                moved = (now - before).norm(dim=1) <= config.stuck_tol * before.norm(dim=1)
                stuck[t, i] = float(moved.double().mean())
    revived = 0
    if config.optimizer == "sgd":
        for t in range(T - 1):  # consecutive snapshots suffice: by induction, dead stays dead from t on
            same = (incoming(snaps[t + 1], 0) == incoming(snaps[t], 0)).all(1)
            revived += int((masks[t][0] & (~same | ~masks[t + 1][0])).sum())
    final = snaps[-1]
    drop = masks[-1]
    now, before = (
        [incoming(final, i) for i in range(L)],
        [incoming(snaps[-2] if T > 1 else final, i) for i in range(L)],
    )
    stuck_now = [(a - b).norm(dim=1) <= config.stuck_tol * b.norm(dim=1) for a, b in zip(now, before, strict=True)]
    exact = Objective(
        build_model(spec_of(widths), seed=config.seed), "cross_entropy", data, dtype="float64", device=objective.device
    )
    loss = float(exact.loss(final.double()))
    violations = 0
    if not torch.equal(objective.loss(_zeroed(objective, final, drop)), objective.loss(final)):
        violations += 1
    without_dead = _remove(objective, final, drop, spec_of)
    if np.isfinite(without_dead) and abs(without_dead - loss) > _REMOVAL_RTOL * max(1.0, abs(loss)):
        violations += 1
    both = [d | s for d, s in zip(drop, stuck_now, strict=True)]
    without_stuck = float(exact.loss(_zeroed(exact, final.double(), both)))
    return StuckWidthPoint(
        steps=steps,
        dead=dead,
        stuck=stuck,
        dead_count=np.array([int(d.sum()) for d in drop]),
        stuck_alive_count=np.array([int((s & ~d).sum()) for d, s in zip(drop, stuck_now, strict=True)]),
        loss=loss,
        loss_without_dead=without_dead,
        loss_without_stuck_alive=without_stuck,
        removal_violations=violations,
        revived=revived,
        diverged_step=diverged_step,
    )


def _estimate(config: StuckUnitsConfig, context: StudyContext) -> Estimate:
    """One training run per width (the per-snapshot forward passes are a few % on top)."""
    data = config.data_set()
    estimate = Estimate("study stuck-units", [])
    for width in config.widths:
        spec = config.spec(data, [width] * config.depth)
        objective = Objective(
            build_model(spec, seed=config.seed), "cross_entropy", data, device=context.device, dtype=context.dtype
        )
        tc = config.train_config(config.train_config(1).steps_per_epoch(objective.n))
        estimate.include(estimate_training(objective, replace(tc, snapshot_every=None), test=False), f"width {width}")
    return estimate


@register_study(
    "stuck-units",
    "Dead and stuck ReLU units per layer over training, against width; the loss without them.",
    StuckUnitsConfig,
    quick=StuckUnitsConfig(),
    full=StuckUnitsConfig(widths=(8, 16, 32, 64, 128, 256, 512), epochs=30),
    estimate=lambda config, context: _estimate(config, context),
    demo="Stuck units: dead and frozen ReLUs per layer against width",
)
def stuck_units(config: StuckUnitsConfig, context: StudyContext) -> StuckUnitsResult:
    """Run the stuck-units study of ``config`` (see the module docstring)."""
    data = config.data_set()
    widths = sorted(set(config.widths))
    points = context.sweep(
        "stuck-units",
        {**asdict(config), "widths": widths},
        len(widths),
        lambda i: _measure(config, data, widths[i], context),
    )
    return StuckUnitsResult(np.asarray(widths, dtype=np.int64), points, asdict(config))
