"""Batch size, sharpness and generalization: do small batches find wide basins?

For each dataset, one network trained with SGD at a small and a large batch size (any
number of sizes) until the train loss reaches ``target_loss`` (the same fit for every
batch size, within one budget of epochs), K seeds each; optionally with the step
size scaled with the batch (η_B = η·(B/B_min)^p: p = 1 'linear', Goyal et al. 2017;
p = ½ 'sqrt', Krizhevsky 2014; 'none' keeps η, Keskar et al.'s setting). For each run:
train and test loss and error at the end, λmax of the full-batch train-loss Hessian
(Lanczos), ε-sharpness (Keskar et al. 2017: the largest loss increase in the box
|δᵢ| ≤ ε(|θᵢ| + 1), as 100·ΔL/(1 + L)) and adaptive sharpness (Kwon et al. 2021: the
largest increase over ‖δ/|θ|‖₂ ≤ ρ, invariant under the rescalings that leave a ReLU
network's function unchanged), `losslab.curvature.sharpness`. Then, for seed 0, the
straight line θ(α) = (1 − α)·θ_small + α·θ_large for α ∈ [−1, 2] with train and test
loss and accuracy along it (Keskar et al. 2017, Fig. 3), and the reparametrization of
Dinh et al. (2017): the large-batch solution with its first hidden layer scaled by c and
the next layer's weights by 1/c computes the same function, yet its λmax and ε-sharpness
change; adaptive sharpness does not.

What the literature says: Keskar et al. (2017) find large-batch solutions sharper
(larger ε-sharpness, a visible rise of the loss along the line past the large-batch end)
and worse on the test set — a generalization gap. Dinh et al. (2017) show that sharpness
measured without normalization can be made arbitrarily large or small by rescaling
without changing the function, so it cannot by itself explain generalization. The summary
says which of the two the data supports: whether the large-batch solutions are also
sharper by the scale-invariant measure, and whether they test worse, with the error bars
over seeds (mean ± standard error).

Every (dataset, batch size, seed) run is one sweep point, and each dataset's line another.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from losslab.curvature import adaptive_sharpness, epsilon_sharpness, hessian_operator, lanczos
from losslab.curvature.cost import estimate_curvature
from losslab.data import load_data
from losslab.errors import UserError, check_choice, check_float, check_int
from losslab.models import build_model
from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work, seconds_per_point
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study, subset
from losslab.train import TrainConfig, init_thetas, train
from losslab.train.cost import estimate_training

__all__ = [
    "BatchSizeConfig",
    "BatchSizeData",
    "BatchSizeLine",
    "BatchSizeResult",
    "BatchSizeRun",
    "batch_size",
    "interpolate_solutions",
    "rescale_relu_layer",
]

LR_SCALINGS = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}


@dataclass(frozen=True)
class BatchSizeConfig:
    """SGD at each of ``batch_sizes`` for ``epochs`` epochs on each of ``datasets``, ``seeds`` seeds each."""

    datasets: tuple[str, ...] = ("digits", "mnist1d")
    model: str = "mlp:{in}-64-64-{out}"  # {in}, {out}: the data's input and output widths (ReLU: Dinh's setting)
    train_size: int | None = None  # None: every training row
    batch_sizes: tuple[int, ...] = (16, 512)  # small first; Keskar et al.: 256 vs 10 % of the data
    lr: float = 0.05  # at the smallest batch
    lr_scaling: str = "none"  # 'none' (Keskar et al.), 'sqrt' or 'linear': η·(B/B_min)^p
    epochs: int = 1000  # the budget in passes over the data, the same for every batch size
    target_loss: float | None = (
        0.02  # stop at this train loss: every batch size compared at the same fit; None: all epochs
    )
    seeds: int = 4
    eps: float = 1e-3  # ε of ε-sharpness (Keskar et al. report 1e-3 and 5e-4)
    rho: float = 0.1  # ρ of adaptive sharpness, ℓ2 ball
    ascent_steps: int = 20  # projected-gradient steps of each worst-case sharpness
    lanczos_tol: float = 1e-4
    alphas: int = 31  # points on α ∈ [-1, 2], α = 0 and 1 among them (steps of 0.1)
    rescale: float = 4.0  # c of the Dinh et al. reparametrization
    seed: int = 0  # seed k (from `seed`) initializes run k and orders its batches

    def __post_init__(self) -> None:
        owner = "the batch-size study"
        if not self.datasets:
            raise UserError("The batch-size study needs at least one dataset: use datasets=digits.")
        if "{in}" not in self.model or "{out}" not in self.model or not self.model.startswith("mlp:"):
            raise UserError(
                f"The 'model' of the batch-size study must be an MLP with '{{in}}' and '{{out}}', "
                f"as in 'mlp:{{in}}-64-64-{{out}}'. Got {self.model!r}."
            )
        if len(self.batch_sizes) < 2:
            raise UserError("The batch-size study needs at least two batch sizes: use batch_sizes=16,512.")
        for b in self.batch_sizes:
            check_int(b, "batch_sizes", owner, low=1)
        if list(self.batch_sizes) != sorted(set(self.batch_sizes)):
            raise UserError(f"The batch sizes must increase strictly. Got {self.batch_sizes}.")
        if self.train_size is not None:
            check_int(self.train_size, "train_size", owner, low=2)
        check_float(self.lr, "lr", owner, low=0.0, low_open=True)
        check_choice(self.lr_scaling, "lr_scaling", owner, LR_SCALINGS)
        check_int(self.epochs, "epochs", owner, low=1)
        if self.target_loss is not None:
            check_float(self.target_loss, "target_loss", owner, low=0.0, low_open=True)
        check_int(self.seeds, "seeds", owner, low=1)
        check_float(self.eps, "eps", owner, low=0.0, low_open=True)
        check_float(self.rho, "rho", owner, low=0.0, low_open=True)
        check_int(self.ascent_steps, "ascent_steps", owner, low=1)
        check_float(self.lanczos_tol, "lanczos_tol", owner, low=0.0, high=1.0, low_open=True)
        check_int(self.alphas, "alphas", owner, low=4)
        if (self.alphas - 1) % 3:
            raise UserError(f"The 'alphas' parameter must be 3k + 1 so that α = 0 and 1 are points. Got {self.alphas}.")
        check_float(self.rescale, "rescale", owner, low=0.0, low_open=True)

    def lr_for(self, batch: int) -> float:
        return self.lr * (batch / self.batch_sizes[0]) ** LR_SCALINGS[self.lr_scaling]

    def runs(self) -> list[tuple[str, int, int]]:
        """(dataset, batch size, seed) of every run."""
        return [(d, b, self.seed + k) for d in self.datasets for b in self.batch_sizes for k in range(self.seeds)]

    def train_config(self, batch: int, seed: int) -> TrainConfig:
        return TrainConfig(
            optimizer="sgd",
            lr=self.lr_for(batch),
            batch_size=batch,
            epochs=self.epochs,
            target_loss=self.target_loss,
            seed=seed,
        )

    def alpha_grid(self) -> np.ndarray:
        """α ∈ [-1, 2] in steps of 3/(alphas − 1), with 0 and 1 exact."""
        step = (self.alphas - 1) // 3
        return np.arange(-step, 2 * step + 1, dtype=np.float64) / step


def rescale_relu_layer(objective: Objective, theta: torch.Tensor, c: float) -> torch.Tensor:
    """θ with the first linear layer's weight and bias ×c and the second linear layer's weight ×1/c.

    relu(c·z) = c·relu(z) for c > 0, so the network computes the same function (Dinh et al. 2017).
    """
    slices = objective.layout.slices
    weights = [n for n in slices if n.endswith("weight")]
    first, second = weights[0], weights[1]
    out = theta.clone()
    for name in (first, first[: -len("weight")] + "bias"):
        if name in slices:
            out[slices[name]] *= c
    out[slices[second]] /= c
    return out


def interpolate_solutions(
    objective: Objective, test: Objective | None, small: torch.Tensor, large: torch.Tensor, alphas: np.ndarray
) -> dict[str, np.ndarray]:
    """Train (and test) loss and accuracy at θ(α) = (1 − α)·θ_small + α·θ_large for each α.

    Every point is evaluated alone, by the same call as a run's endpoint metrics, so α = 0
    and α = 1 reproduce the endpoints' values bit for bit ((1 − 0)·x + 0·y = x exactly).
    """
    out: dict[str, list[float]] = {"train_loss": [], "train_accuracy": [], "test_loss": [], "test_accuracy": []}
    for alpha in alphas:
        theta = (1 - float(alpha)) * small + float(alpha) * large
        metrics = _metrics(objective, test, theta)
        for key in out:
            out[key].append(metrics[key])
    return {key: np.asarray(v, dtype=np.float64) for key, v in out.items()}


def _metrics(objective: Objective, test: Objective | None, theta: torch.Tensor) -> dict[str, float]:
    train_m = objective.metrics(theta)
    test_m = test.metrics(theta) if test is not None else {"loss": math.nan, "accuracy": math.nan}
    return {
        "train_loss": float(train_m["loss"]),
        "train_accuracy": float(train_m["accuracy"]),
        "test_loss": float(test_m["loss"]),
        "test_accuracy": float(test_m["accuracy"]),
    }


@register_result
@dataclass
class BatchSizeRun:
    """One SGD run: where it ended and how sharp it is there."""

    theta: np.ndarray
    lr: float
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    lambda_max: float
    lambda_max_residual: float
    epsilon_sharpness: float  # 100·ΔL/(1 + L) in the ε box
    adaptive_sharpness: float  # ΔL in the adaptive ℓ2 ball of radius ρ
    steps: int
    stopped: str


@register_result
@dataclass
class BatchSizeLine:
    """The line between seed 0's smallest- and largest-batch solutions, and the rescaled large-batch θ."""

    alphas: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    rescale: float  # c
    rescaled_loss: float  # the rescaled θ's train loss: the same function, so the same loss
    rescaled_lambda_max: float
    rescaled_epsilon_sharpness: float
    rescaled_adaptive_sharpness: float


@register_result
@dataclass
class BatchSizeData:
    """One dataset: runs by batch size ([B, K] arrays, K seeds) and its line."""

    data: str
    model: str
    n_train: int
    batch_sizes: np.ndarray
    lrs: np.ndarray
    seeds: np.ndarray
    train_loss: np.ndarray
    train_error: np.ndarray
    test_loss: np.ndarray
    test_error: np.ndarray
    lambda_max: np.ndarray
    epsilon_sharpness: np.ndarray
    adaptive_sharpness: np.ndarray
    thetas: np.ndarray  # [B, K, D]
    line: BatchSizeLine
    target_loss: float | None = None  # the config's; None: every run had the same budget and no target
    reached_target: np.ndarray | None = None  # [B, K] the run stopped at the target (None: runs saved before this)

    def stats(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard error over seeds [B] of one [B, K] field (standard error 0 for one seed)."""
        values = getattr(self, name)
        k = values.shape[1]
        se = values.std(axis=1, ddof=1) / math.sqrt(k) if k > 1 else np.zeros(len(values))
        return values.mean(axis=1), se

    def verdict(self) -> dict[str, Any]:
        """Large vs small batch: which measures say 'sharper', whether it tests worse, beyond 2 standard errors."""
        out: dict[str, Any] = {}
        for name in ("lambda_max", "epsilon_sharpness", "adaptive_sharpness", "test_error"):
            mean, se = self.stats(name)
            diff = float(mean[-1] - mean[0])
            noise = 2 * math.hypot(float(se[-1]), float(se[0]))
            out[name] = "higher" if diff > noise else "lower" if diff < -noise else "within error bars"
        plain = out["lambda_max"] == "higher" or out["epsilon_sharpness"] == "higher"
        adaptive = out["adaptive_sharpness"] == "higher"
        worse = out["test_error"] == "higher"
        if plain and adaptive and worse:
            supports = "Keskar et al. 2017: large batches end sharper, also scale-invariantly, and test worse"
        elif plain and not adaptive:
            supports = (
                "Dinh et al. 2017: the large batch is sharper only by unnormalized measures; "
                "the scale-invariant measure does not separate the batch sizes"
            )
        elif worse and not plain:
            supports = "neither: large batches test worse without ending sharper"
        elif plain and adaptive:
            supports = "partly Keskar et al. 2017: large batches end sharper by every measure, but do not test worse"
        else:
            supports = "neither: no measure separates the batch sizes beyond the error bars"
        out["same_fit"] = None if self.reached_target is None or self.target_loss is None else True
        if out["same_fit"] is not None and not self.reached_target.all():
            # Keskar et al. and Dinh et al. compare minima of the same training loss; without it a batch size
            # that ran out of budget is simply less trained, and every difference above may be that alone.
            out["same_fit"] = False
            missed = [
                f"{int((~row).sum())} of {len(row)} runs at batch {int(b)}"
                for b, row in zip(self.batch_sizes, self.reached_target, strict=True)
                if not row.all()
            ]
            supports = (
                f"neither: not compared at the same fit ({', '.join(missed)} stopped at the epoch budget above "
                f"the target train loss {self.target_loss:g}); raise epochs or scale lr with the batch"
            )
        out["supports"] = supports
        return out

    def summary(self) -> dict[str, Any]:
        rows = []
        for i, b in enumerate(self.batch_sizes):
            row: dict[str, Any] = {"batch_size": int(b), "lr": float(self.lrs[i])}
            for name in ("train_loss", "test_error", "lambda_max", "epsilon_sharpness", "adaptive_sharpness"):
                mean, se = self.stats(name)
                row[name] = float(mean[i])
                row[f"{name}_stderr"] = float(se[i])
            if self.reached_target is not None:
                row["reached_target"] = float(self.reached_target[i].mean())
            rows.append(row)
        line = self.line
        mid = np.flatnonzero(line.alphas == 0.5)
        return {
            "n_train": self.n_train,
            "model": self.model,
            "batch_sizes": rows,
            "line_train_loss_at_half": float(line.train_loss[mid[0]]) if len(mid) else None,
            "line_train_loss_max_in_0_1": float(line.train_loss[(line.alphas >= 0) & (line.alphas <= 1)].max()),
            "rescaled": {
                "c": line.rescale,
                "train_loss": line.rescaled_loss,
                "lambda_max": line.rescaled_lambda_max,
                "epsilon_sharpness": line.rescaled_epsilon_sharpness,
                "adaptive_sharpness": line.rescaled_adaptive_sharpness,
            },
            "verdict": self.verdict(),
        }


@register_result
@dataclass
class BatchSizeResult:
    """One `BatchSizeData` per dataset, in the order of ``config['datasets']``."""

    datasets: list[BatchSizeData]
    config: dict[str, Any]

    def dataset(self, name: str) -> BatchSizeData:
        for d in self.datasets:
            if d.data == name:
                return d
        raise KeyError(name)

    def summary(self) -> dict[str, Any]:
        return {d.data: d.summary() for d in self.datasets}


def _objective(config: BatchSizeConfig, name: str, device: str, dtype: str) -> Objective:
    data = load_data(name)
    if data.task != "classification":
        raise UserError(f"The batch-size study needs classification data: {name!r} is a regression task.")
    if config.train_size is not None and config.train_size < data.n_train:
        data = subset(data, config.train_size, config.seed)
    spec = _model(config, data)
    return Objective(build_model(spec, seed=config.seed), "cross_entropy", data, device=device, dtype=dtype)


def _model(config: BatchSizeConfig, data: Any) -> str:
    return config.model.replace("{in}", str(int(np.prod(data.input_shape)))).replace("{out}", str(data.output_dim))


def _sharpness(config: BatchSizeConfig, objective: Objective, theta: torch.Tensor) -> tuple[float, float, float, float]:
    """(λmax, its residual, ε-sharpness, adaptive sharpness) at θ: the calls a user would make."""
    top = lanczos(hessian_operator(objective, theta), 1, tol=config.lanczos_tol, seed=config.seed)
    eps = epsilon_sharpness(objective, theta, eps=config.eps, steps=config.ascent_steps, seed=config.seed)
    ada = adaptive_sharpness(objective, theta, rho=config.rho, steps=config.ascent_steps, seed=config.seed)
    return float(top.eigenvalues[0]), float(top.residuals[0]), float(eps.value), float(ada.value)


def _run(config: BatchSizeConfig, objective: Objective, batch: int, seed: int) -> BatchSizeRun:
    theta0 = init_thetas(_model(config, objective.dataset), [seed], objective)[0]
    result = train(objective, config.train_config(batch, seed), theta=theta0, test=False)
    theta = torch.as_tensor(result.theta).to(objective.device, objective.dtype)
    if result.stopped == "diverged":
        raise UserError(
            f"SGD at batch {batch} (lr {config.lr_for(batch):g}) diverged: lower lr or use lr_scaling=none."
        )
    metrics = _metrics(objective, objective.test_objective(), theta)
    lam, resid, eps, ada = _sharpness(config, objective, theta)
    return BatchSizeRun(
        theta=result.theta,
        lr=config.lr_for(batch),
        lambda_max=lam,
        lambda_max_residual=resid,
        epsilon_sharpness=eps,
        adaptive_sharpness=ada,
        steps=int(result.steps),
        stopped=str(result.stopped),
        **metrics,
    )


def _line(config: BatchSizeConfig, objective: Objective, small: BatchSizeRun, large: BatchSizeRun) -> BatchSizeLine:
    a = torch.as_tensor(small.theta).to(objective.device, objective.dtype)
    b = torch.as_tensor(large.theta).to(objective.device, objective.dtype)
    alphas = config.alpha_grid()
    values = interpolate_solutions(objective, objective.test_objective(), a, b, alphas)
    rescaled = rescale_relu_layer(objective, b, config.rescale)
    lam, _, eps, ada = _sharpness(config, objective, rescaled)
    return BatchSizeLine(
        alphas=alphas,
        rescale=config.rescale,
        rescaled_loss=float(objective.loss(rescaled)),
        rescaled_lambda_max=lam,
        rescaled_epsilon_sharpness=eps,
        rescaled_adaptive_sharpness=ada,
        **values,
    )


def _estimate(config: BatchSizeConfig, context: StudyContext) -> Estimate:
    """Per run: training, λmax and the two ascents; per dataset: the line and the rescaled θ's sharpness."""
    estimate = Estimate("study batch-size", [])
    for name in config.datasets:
        objective = _objective(config, name, context.device, context.dtype)
        at = objective.curvature_at(objective.theta0)
        sharp = estimate_curvature(at, top=1, sharpness=True)
        for b in config.batch_sizes:
            estimate.include(
                estimate_training(objective, config.train_config(b, config.seed), test=False),
                f"{name} B = {b}",
                times=config.seeds,
            )
        runs = len(config.batch_sizes) * config.seeds + 1
        estimate.include(sharp, f"{name}: λmax and sharpness of {runs} points", times=runs)
        points = 2 * config.alphas  # train and test
        estimate.work.append(
            Work(f"{name}: the line, train and test", points, points, seconds_per_point(objective, objective.theta0))
        )
    return estimate


@register_study(
    "batch-size",
    "Small vs large SGD batches: lambda_max, eps- and adaptive sharpness, test error, the Keskar line.",
    BatchSizeConfig,
    quick=BatchSizeConfig(
        datasets=("digits",), model="mlp:{in}-32-32-{out}", lr_scaling="sqrt", epochs=400, seeds=3, ascent_steps=10
    ),
    full=BatchSizeConfig(),
    estimate=_estimate,
    demo="Batch size: sharpness (plain and scale-invariant) and the line between small- and large-batch solutions",
)
def batch_size(config: BatchSizeConfig, context: StudyContext) -> BatchSizeResult:
    """Every run, then each dataset's line (see the module docstring)."""
    device, dtype = context.device, context.dtype
    objectives = {name: _objective(config, name, device, dtype) for name in config.datasets}
    runs = config.runs()
    key = asdict(config)
    points = context.sweep(
        "batch-size", key, len(runs), lambda i: _run(config, objectives[runs[i][0]], runs[i][1], runs[i][2])
    )
    by_data: dict[str, list[list[BatchSizeRun]]] = {}
    for (name, _, _), point in zip(runs, points, strict=True):
        by_data.setdefault(name, [])
        rows = by_data[name]
        if not rows or len(rows[-1]) == config.seeds:
            rows.append([])
        rows[-1].append(point)
    names = list(config.datasets)
    lines = context.sweep(
        "batch-size-lines",
        key,
        len(names),
        lambda i: _line(config, objectives[names[i]], by_data[names[i]][0][0], by_data[names[i]][-1][0]),
    )
    out = []
    for name, line in zip(names, lines, strict=True):
        rows = by_data[name]
        field = lambda attr, rows=rows: np.array([[getattr(r, attr) for r in row] for row in rows])  # noqa: E731
        objective = objectives[name]
        out.append(
            BatchSizeData(
                data=name,
                model=_model(config, objective.dataset),
                n_train=objective.n,
                batch_sizes=np.asarray(config.batch_sizes, dtype=np.int64),
                lrs=np.array([config.lr_for(b) for b in config.batch_sizes]),
                seeds=np.array([config.seed + k for k in range(config.seeds)], dtype=np.int64),
                train_loss=field("train_loss"),
                train_error=1 - field("train_accuracy"),
                test_loss=field("test_loss"),
                test_error=1 - field("test_accuracy"),
                lambda_max=field("lambda_max"),
                epsilon_sharpness=field("epsilon_sharpness"),
                adaptive_sharpness=field("adaptive_sharpness"),
                thetas=np.stack([np.stack([r.theta for r in row]) for row in rows]),
                line=line,
                target_loss=config.target_loss,
                reached_target=field("stopped") == "target",
            )
        )
    return BatchSizeResult(out, key)
