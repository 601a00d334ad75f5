"""An instrumented trainer on the `Objective`, for one seed or a seed ensemble.

Every minibatch step runs the model in train mode (dropout active, batch norm on batch
statistics), as the model's author defined it, whatever mode the objective's model is
in; the full-data records evaluate in the objective's mode (eval for models from
`losslab.build_model`). Every random draw of a step's forward pass (dropout masks) is
seeded from the run's seed and the step (`losslab.train.randomness`), so the same run
gives the same numbers.

One seed: plain autograd on the minibatch loss. A seed ensemble: K copies of one
architecture as a [K, D] block, each with its own initialization and batch order,
stepped together by one ``vmap`` of the gradient (``torch.func``), so restart studies
cost a fraction of K sequential runs (`benchmarks/ensemble.py`). Both share the
optimizer code and the recording logic; each ensemble member matches the same seed
trained alone (tests/test_train.py), except for dropout masks, which the members draw
together.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from losslab.errors import UserError
from losslab.objective import Objective
from losslab.objective.modes import eval_changes
from losslab.store import register_result
from losslab.train.config import TrainConfig
from losslab.train.optim import FlatOptimizer
from losslab.train.randomness import forked, seed_step

__all__ = ["Callback", "EnsembleResult", "TrainResult", "TrainState", "init_thetas", "train", "train_ensemble"]


@dataclass
class TrainState:
    """What a callback sees: ``theta`` is [D] for one seed and [K, D] for an ensemble."""

    step: int
    epoch: float
    theta: torch.Tensor
    lr: float
    objective: Objective
    config: TrainConfig
    record: dict[str, Any] = field(default_factory=dict)
    stop: bool = False  # a callback may set this to end training after this step


class Callback(Protocol):
    """Hooks into the training loop; every method is optional.

    ``on_start`` sees step 0 (the initial θ and its record) before the first step;
    ``on_step`` follows every step; ``on_record`` follows every step that records.
    """

    def on_start(self, state: TrainState) -> None: ...

    def on_step(self, state: TrainState) -> None: ...

    def on_record(self, state: TrainState) -> None: ...


@register_result
@dataclass
class TrainResult:
    """One training run: final and initial θ, metrics per record, trajectory snapshots.

    ``history`` maps 'step', 'epoch', 'lr', 'loss', 'accuracy', 'test_loss',
    'test_accuracy', 'batch_loss' and 'grad_norm' (mean minibatch gradient norm since
    the previous record) to arrays with one entry per record; missing metrics are NaN.
    ``stopped`` is 'budget', 'target', 'callback' or 'diverged'. For networks with batch
    norm, ``buffers`` holds the running statistics accumulated in training: evaluate the
    final θ with ``objective.with_buffers(result.buffers)`` (the objective refuses the
    final θ with its own, initial statistics). ``mode`` says which mode the steps and
    the records ran in, ``seeds`` which seed drove each random stream, ``params`` which
    parameters θ holds (frozen ones stay fixed, outside θ).
    """

    theta: np.ndarray
    theta_init: np.ndarray
    history: dict[str, np.ndarray]
    snapshots: np.ndarray
    snapshot_steps: np.ndarray
    steps: int
    stopped: str
    wall_seconds: float
    config: dict[str, Any]
    buffers: dict[str, np.ndarray] = field(default_factory=dict)  # final batch-norm statistics, if any
    mode: dict[str, str] = field(default_factory=dict)  # {'steps': 'train', 'records': the objective's mode}
    seeds: dict[str, int] = field(default_factory=dict)  # {'batch_order': …, 'forward': …} (dropout masks)
    params: dict[str, Any] = field(default_factory=dict)  # which parameters θ holds (Objective.params_summary)

    @property
    def final(self) -> dict[str, float]:
        """The last record's metrics. A metric never measured (the test split's without one, accuracy of a
        regression) is left out, not NaN; one that became NaN (a diverged loss) stays."""
        return {k: float(v[-1]) for k, v in self.history.items() if len(v) and not np.isnan(v).all()}

    def summary(self) -> dict[str, Any]:
        final = self.final
        names = {"loss": "train_loss", "accuracy": "train_accuracy", "test_loss": "test_loss",
                 "test_accuracy": "test_accuracy"}  # fmt: skip
        return {
            "steps": self.steps,
            "stopped": self.stopped,
            **{name: final[key] for key, name in names.items() if key in final},
            **({} if "test_loss" in final else {"test": "no test split"}),
            "wall_seconds": round(self.wall_seconds, 3),
            "mode": dict(self.mode),
            "seeds": dict(self.seeds),
        }


@register_result
@dataclass
class EnsembleResult:
    """K seeds trained together: ``thetas`` [K, D], ``history`` arrays [records, K] ('step' is [records])."""

    thetas: np.ndarray
    thetas_init: np.ndarray
    seeds: np.ndarray
    history: dict[str, np.ndarray]
    steps: np.ndarray
    stopped: list[str]
    wall_seconds: float
    config: dict[str, Any]
    mode: dict[str, str] = field(default_factory=dict)  # as TrainResult.mode
    seeds_forward: int | None = None  # seed of the members' forward draws (dropout), drawn together

    def member(self, k: int) -> TrainResult:
        """Member k as a `TrainResult` (no snapshots)."""
        history = {key: (v if v.ndim == 1 else v[:, k]) for key, v in self.history.items()}
        empty = np.zeros((0, self.thetas.shape[1]), dtype=np.float32)
        return TrainResult(
            self.thetas[k],
            self.thetas_init[k],
            history,
            empty,
            np.zeros(0, dtype=np.int64),
            int(self.steps[k]),
            self.stopped[k],
            self.wall_seconds,
            {**self.config, "seed": int(self.seeds[k])},
        )

    def summary(self) -> dict[str, Any]:
        final = {k: v[-1] for k, v in self.history.items() if v.ndim == 2}
        out: dict[str, Any] = {"members": len(self.seeds), "wall_seconds": round(self.wall_seconds, 3)}
        for key in ("loss", "accuracy", "test_accuracy"):
            if key in final and np.isfinite(final[key]).any():
                out[f"{key}_median"] = float(np.nanmedian(final[key]))
                out[f"{key}_min"] = float(np.nanmin(final[key]))
                out[f"{key}_max"] = float(np.nanmax(final[key]))
        out["stopped"] = {s: self.stopped.count(s) for s in sorted(set(self.stopped))}
        out["mode"] = dict(self.mode)
        return out


_KEYS = ("epoch", "lr", "loss", "accuracy", "test_loss", "test_accuracy", "batch_loss", "grad_norm")


class _Loop:
    """Budget, batch order, records and stopping, shared by `train` and `train_ensemble`."""

    def __init__(
        self,
        objective: Objective,
        config: TrainConfig,
        seeds: Sequence[int],
        test: Objective | None,
        callbacks: Sequence[Callback],
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.objective, self.config, self.test = objective, config, test
        self.callbacks, self.progress = callbacks, progress
        self.n = objective.n
        self.rows = config.batch_rows(self.n)
        self.per_epoch = config.steps_per_epoch(self.n)
        self.total = config.total_steps(self.n)
        self.record_every = config.record_steps(self.n)
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.order: torch.Tensor | None = None
        self.history: dict[str, list[Any]] = {"step": [], **{k: [] for k in _KEYS}}
        self.pending_loss: list[torch.Tensor] = []
        self.pending_norm: list[torch.Tensor] = []

    def batch(self, step: int) -> torch.Tensor:
        """Row indices [K, rows] for this step: a fresh seeded permutation each epoch."""
        position = step % self.per_epoch
        if position == 0:
            if self.rows == self.n:
                self.order = torch.arange(self.n).expand(len(self.generators), self.n)
            else:
                self.order = torch.stack([torch.randperm(self.n, generator=g) for g in self.generators])
        assert self.order is not None
        return self.order[:, position * self.rows : (position + 1) * self.rows].to(self.objective.device)

    def record(self, step: int, theta: torch.Tensor, lr: float) -> dict[str, Any]:
        """Full-data metrics of every member ([K] arrays) at this step."""
        thetas = theta.reshape(-1, self.objective.dim)
        train = self.objective.metrics_many(thetas)
        test = self.test.metrics_many(thetas) if self.test is not None else {"loss": None, "accuracy": None}
        nan = np.full(len(thetas), np.nan)
        as_np = lambda t: nan if t is None else t.double().cpu().numpy()  # noqa: E731
        mean = lambda xs: torch.stack(xs).mean(0).reshape(-1).double().cpu().numpy() if xs else nan  # noqa: E731
        row = {
            "epoch": step / self.per_epoch,
            "lr": lr,
            "loss": as_np(train["loss"]),
            "accuracy": as_np(train["accuracy"]),
            "test_loss": as_np(test["loss"]),
            "test_accuracy": as_np(test["accuracy"]),
            "batch_loss": mean(self.pending_loss),
            "grad_norm": mean(self.pending_norm),
        }
        self.pending_loss, self.pending_norm = [], []
        self.history["step"].append(step)
        for key in _KEYS:
            self.history[key].append(row[key])
        return row

    def reached_target(self, row: dict[str, Any]) -> np.ndarray:
        c = self.config
        done = np.zeros(len(row["loss"]), dtype=bool)
        if c.target_loss is not None:
            done |= row["loss"] <= c.target_loss
        if c.target_accuracy is not None:
            done |= row["accuracy"] >= c.target_accuracy - 1e-12
        return done

    def arrays(self, member: int | None = None) -> dict[str, np.ndarray]:
        """Records as arrays: [R] for step, epoch and lr; [R, K] per member (or [R] for one ``member``)."""
        out = {"step": np.asarray(self.history["step"], dtype=np.int64)}
        for key in _KEYS:
            values = np.asarray(self.history[key], dtype=np.float64)
            out[key] = values if values.ndim == 1 or member is None else values[:, member]
        return out

    def start(self, theta: torch.Tensor, lr: float, row: dict[str, Any]) -> None:
        state = TrainState(0, 0.0, theta, lr, self.objective, self.config, row)
        for cb in self.callbacks:
            if hasattr(cb, "on_start"):
                cb.on_start(state)

    def notify(self, state: TrainState, recorded: bool) -> bool:
        for cb in self.callbacks:
            if hasattr(cb, "on_step"):
                cb.on_step(state)
            if recorded and hasattr(cb, "on_record"):
                cb.on_record(state)
        return state.stop


def _uses_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _modes(objective: Objective) -> dict[str, str]:
    changes = eval_changes(objective.model)
    return {
        "steps": "train",
        "records": objective.mode,
        "eval_changes": "; ".join(changes) if changes else "none (no dropout or batch norm)",
    }


def train(
    objective: Objective,
    config: TrainConfig | None = None,
    *,
    theta: torch.Tensor | None = None,
    test: Objective | None | bool = True,
    callbacks: Sequence[Callback] = (),
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train from ``theta`` (default: the objective's model weights) and record everything.

    ``test=True`` evaluates the dataset's test split at each record when it has one.
    Steps run in train mode (dropout on, batch statistics), with the forward's random
    draws seeded by ``config.seed`` and the step; records evaluate in the objective's
    mode (eval for zoo and CLI models). Batch norm's running statistics accumulate in a
    copy (``result.buffers``), so ``objective``'s own buffers are never changed; the
    final θ is registered with ``objective`` so that evaluating it with those initial
    statistics raises an error naming ``objective.with_buffers(result.buffers)``.
    """
    config = config or TrainConfig()
    start_time = time.perf_counter()
    theta = objective.as_theta(objective.theta0 if theta is None else theta).clone()
    theta_init = theta.clone()
    caller = objective
    if objective.buffers:  # train mode may update them (batch norm): work on a copy
        objective = objective.with_buffers({k: v.clone() for k, v in objective.buffers.items()})
        if isinstance(test, Objective):
            test = test.with_buffers(objective.buffers)  # the same tensors: updated as training runs
    with forked(objective.device):
        return _train(caller, objective, config, theta, theta_init, test, callbacks, progress, start_time)


def _train(
    caller: Objective,
    objective: Objective,
    config: TrainConfig,
    theta: torch.Tensor,
    theta_init: torch.Tensor,
    test: Objective | None | bool,
    callbacks: Sequence[Callback],
    progress: Callable[[int, int], None] | None,
    start_time: float,
) -> TrainResult:
    test_obj = objective.test_objective(test)
    loop = _Loop(objective, config, [config.seed], test_obj, callbacks, progress)
    optimizer = FlatOptimizer(config, theta)
    snapshots: list[np.ndarray] = [_snapshot(theta)]
    snapshot_steps = [0]
    snapshot_every = config.snapshot_every or loop.record_every
    row = loop.record(0, theta, config.lr_at(0, loop.total))
    loop.start(theta, config.lr_at(0, loop.total), row)
    stopped, step = "budget", 0
    if loop.reached_target(row).all():
        stopped = "target"
    while stopped == "budget" and step < loop.total:
        lr = config.lr_at(step, loop.total)
        index = loop.batch(step)[0]
        params = theta.detach().requires_grad_(True)
        seed_step(config.seed, step, objective.device)
        value = objective.batch_loss(params, index, train=True)
        (grad,) = torch.autograd.grad(value, params)
        if not (torch.isfinite(value) and torch.isfinite(grad).all()):
            stopped = "diverged"
            break
        loop.pending_loss.append(value.detach())
        loop.pending_norm.append(grad.norm())
        theta = optimizer.step(theta, grad, lr)
        step += 1
        recorded = step % loop.record_every == 0 or step == loop.total
        if recorded:
            row = loop.record(step, theta, config.lr_at(step, loop.total))
            if loop.reached_target(row).all():
                stopped = "target"
        if step % snapshot_every == 0 or step == loop.total or stopped != "budget":
            snapshots.append(_snapshot(theta))
            snapshot_steps.append(step)
        state = TrainState(step, step / loop.per_epoch, theta, lr, objective, config, row if recorded else {})
        if loop.notify(state, recorded) and stopped == "budget":
            stopped = "callback"
        if progress is not None:
            progress(step, loop.total)
    if loop.history["step"][-1] != step:  # stopped between records: record where it ended
        loop.record(step, theta, config.lr_at(step, loop.total))
    if snapshot_steps[-1] != step:
        snapshots.append(_snapshot(theta))
        snapshot_steps.append(step)
    changed = {k: v for k, v in objective.buffers.items() if not torch.equal(v, caller.buffers[k])}
    if changed:  # keep the last few: a study may train one objective many times
        caller._trained = (*caller._trained[-7:], (theta.detach().clone(), {**caller.buffers, **changed}))
    return TrainResult(
        theta=theta.detach().cpu().numpy().copy(),
        theta_init=theta_init.cpu().numpy(),
        history=loop.arrays(member=0),
        snapshots=np.stack(snapshots),
        snapshot_steps=np.asarray(snapshot_steps, dtype=np.int64),
        steps=step,
        stopped=stopped,
        wall_seconds=time.perf_counter() - start_time,
        config=config.to_dict(),
        buffers={k: v.detach().cpu().numpy().copy() for k, v in objective.buffers.items()}
        if _uses_batch_norm(objective.model)
        else {},
        mode=_modes(objective),
        seeds={"batch_order": config.seed, "forward": config.seed},
        params=objective.params_summary,
    )


def train_ensemble(
    objective: Objective,
    config: TrainConfig | None = None,
    *,
    thetas: torch.Tensor,
    seeds: Sequence[int],
    test: Objective | None | bool = True,
    callbacks: Sequence[Callback] = (),
    progress: Callable[[int, int], None] | None = None,
) -> EnsembleResult:
    """Train K members together: ``thetas`` [K, D] initial points, ``seeds`` their batch orders.

    Member k follows exactly the run ``train(objective, replace(config, seed=seeds[k]),
    theta=thetas[k])``; members that reach the target stop (their parameters freeze)
    while the others continue; a member whose loss stops being finite freezes as 'diverged'.
    Steps run in train mode. With dropout, the members' masks are drawn together, seeded
    by ``seeds[0]`` and the step (reproducible, but not the masks a member trained alone
    would draw).
    """
    config = config or TrainConfig()
    start_time = time.perf_counter()
    if _uses_batch_norm(objective.model):
        raise UserError("Seed ensembles do not support batch norm yet: train the seeds one by one with train().")
    thetas = torch.as_tensor(thetas)
    if thetas.ndim != 2 or thetas.shape[0] != len(seeds):
        raise UserError(
            f"train_ensemble needs thetas [K, D] with one row per seed; "
            f"got {tuple(thetas.shape)} for {len(seeds)} seeds."
        )
    theta = torch.stack([objective.as_theta(t, f"thetas[{k}]") for k, t in enumerate(thetas)])
    theta_init = theta.clone()
    K = len(seeds)
    test_obj = objective.test_objective(test)
    loop = _Loop(objective, config, seeds, test_obj, callbacks, progress)
    optimizer = FlatOptimizer(config, theta)
    step_loss = functools.partial(objective.batch_loss, train=True)
    grad_fn = torch.vmap(torch.func.grad_and_value(step_loss), randomness="different")
    active = torch.ones(K, dtype=torch.bool, device=theta.device)
    stopped = ["budget"] * K
    steps_done = np.zeros(K, dtype=np.int64)
    row = loop.record(0, theta, config.lr_at(0, loop.total))
    loop.start(theta, config.lr_at(0, loop.total), row)
    _freeze(active, stopped, loop.reached_target(row), "target")
    step = 0
    with forked(objective.device):
        while bool(active.any()) and step < loop.total:
            lr = config.lr_at(step, loop.total)
            index = loop.batch(step)
            seed_step(int(seeds[0]), step, objective.device)
            grad, value = grad_fn(theta, index)
            norm = grad.norm(dim=1)
            finite = torch.isfinite(value) & torch.isfinite(norm)
            if not bool(finite.all()):
                _freeze(active, stopped, (~finite).cpu().numpy(), "diverged")
            loop.pending_loss.append(torch.where(finite, value, torch.nan).detach())
            loop.pending_norm.append(torch.where(finite, norm, torch.nan))
            theta = optimizer.step(theta, grad, lr, active)
            steps_done[active.cpu().numpy()] += 1
            step += 1
            recorded = step % loop.record_every == 0 or step == loop.total
            if recorded:
                row = loop.record(step, theta, config.lr_at(step, loop.total))
                _freeze(active, stopped, loop.reached_target(row), "target")
            state = TrainState(step, step / loop.per_epoch, theta, lr, objective, config, row if recorded else {})
            if loop.notify(state, recorded):
                _freeze(active, stopped, np.ones(K, dtype=bool), "callback")
            if progress is not None:
                progress(step, loop.total)
    if loop.history["step"][-1] != step:
        loop.record(step, theta, config.lr_at(step, loop.total))
    return EnsembleResult(
        thetas=theta.cpu().numpy(),
        thetas_init=theta_init.cpu().numpy(),
        seeds=np.asarray(seeds, dtype=np.int64),
        history=loop.arrays(),
        steps=steps_done,
        stopped=stopped,
        wall_seconds=time.perf_counter() - start_time,
        config=config.to_dict(),
        mode=_modes(objective),
        seeds_forward=int(seeds[0]),
    )


def _snapshot(theta: torch.Tensor) -> np.ndarray:
    """A float32 copy of θ (θ is updated in place, so never keep a view)."""
    return theta.detach().to("cpu", torch.float32, copy=True).numpy()


def _freeze(active: torch.Tensor, stopped: list[str], which: np.ndarray, reason: str) -> None:
    for k in np.flatnonzero(which):
        if active[k]:
            active[k] = False
            stopped[k] = reason


def init_thetas(model: str, seeds: Sequence[int], objective: Objective) -> torch.Tensor:
    """Initial points [K, D] of the zoo or user model ``model`` built with each seed."""
    from losslab.models import build_model

    return torch.stack([objective.as_theta(build_model(model, seed=int(s))) for s in seeds])
