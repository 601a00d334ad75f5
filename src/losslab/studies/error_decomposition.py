"""The three errors of learning: approximation, estimation, optimization (Bottou & Bousquet 2007).

For a class F_m (two-layer ReLU networks of width m with weight decay λ), a teacher g*
and the risk R(f) = ½ E(f(x) − y)², the excess risk of what training returns splits as

    R(ĥ) − R(g*) = [R(h_opt) − R(g*)] + [R(ĥ_opt) − R(h_opt)] + [R(ĥ) − R(ĥ_opt)]
                    approximation       estimation            optimization

with h_opt the best network of the class on the distribution, ĥ_opt the best on the
training set and ĥ what Adam reaches from a seed. "Best" is the regularized objective
J(f) = ½ mean (f − y)² + (λ/2)‖θ‖², the one training minimizes, so the class is the
weight-decay class of Pilanci & Ergen (2020), whose convex program (`relu2_optimum`)
certifies ĥ_opt.

The pieces, each measured, none assumed:

- Data: x ~ N(0, I_d), y = g*(x) + σ·N(0, 1), with g* the ReLU teacher of the data set
  ``teacher:d=…,hidden=…,seed=…`` (`teacher_network` takes its weights; `sample` draws
  fresh points from the same recipe). R is estimated on a fresh sample of ``risk_size``
  points per training set (their spread is the error bar over fresh samples);
  R(g*) = σ²/2 exactly.
- ĥ_opt(m): the convex program on the training set gives p*, a certified lower bound
  on J of every network of every width. Where its recovered network has at most m units
  it is ĥ_opt(m) with the certificate's gap. Otherwise (an interior-point solver spreads
  an optimum over many cells, so the recovered width often exceeds the sparsest one)
  ĥ_opt(m) is the best of the Adam seeds at width m, and its gap J(best) − p* is still a
  proven bound on how far it can be from the width-m optimum (p* ≤ the width-m optimum).
  ``certified`` says that gap is within ``certify_tol`` of J.
- h_opt(m): the same construction on ``population_size`` points of the noiseless
  distribution y = g*(x). Noise changes J by the constant σ²/2 in expectation and not its
  minimizer (E(f − y)² = E(f − g*)² + σ²), so dropping it estimates the same h_opt with
  far less variance. ``population_draws`` independent samples give its error bar (their
  spread); their mean risk is used.
- ĥ: ``seeds`` Adam runs at width m (`train_students`: the recipe of `relu2_sgd_gap`, full batch,
  weight decay λ).

What each check can and cannot say:

- The terms telescope, so they sum to the directly measured R̂(ĥ) − R̂(g*) to round-off.
- R(ĥ) − R(ĥ_opt) can be negative: ĥ_opt minimizes the training objective, not the risk,
  and a worse training fit can generalize better. What is never negative is the
  objective-level optimization gap J_train(ĥ) − J_train(ĥ_opt) ≥ −gap, reported beside
  it (``objective_gap``). Likewise the estimation error's objective-level twin,
  J_pop(ĥ_opt) − J_pop(h_opt) ≥ −gap_pop (``estimation_objective``).
- Approximation: R(h_opt) ≥ R(g*) in the population. When the class contains the
  teacher (m ≥ hidden), J(h_opt) ≤ J(g*) + gap gives R(h_opt) − R(g*) ≤ λΩ(g*) + gap,
  with Ω(g*) = Σ_j |α_j|‖u_j‖ the teacher's balanced weight-decay penalty: weight decay
  biases h_opt away from the teacher by at most that much (``teacher_penalty``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from losslab.data import load_data
from losslab.errors import UserError, check_float, check_int
from losslab.exact.relu2 import Relu2Result, relu2_objective, relu2_optimum, relu2_outputs
from losslab.exact.sgd_gap import RELU2_CONFIG
from losslab.models import build_model
from losslab.objective.cost import Estimate, Work, best_seconds
from losslab.store import register_result
from losslab.studies.base import StudyContext, register_study

__all__ = [
    "ErrorDecompositionConfig",
    "ErrorDecompositionResult",
    "PopulationPoint",
    "TrainingPoint",
    "error_decomposition",
    "sample",
    "teacher_network",
    "train_students",
]

# Sample seeds: each sample gets its own stream, so a training set, its fresh risk sample
# and the population samples never share points.
_TRAIN, _RISK, _POPULATION = 1, 2, 3
_CPU = torch.device("cpu")  # the study computes in NumPy float64 on the host


@dataclass(frozen=True)
class ErrorDecompositionConfig:
    """A sweep over widths m and training sizes n for one teacher."""

    d: int = 1  # inputs: in 1-D the convex program has ~2n patterns, so large samples stay solvable
    hidden: int = 3  # the teacher's width: widths below it cannot contain the teacher
    noise: float = 0.1  # label noise σ: R(g*) = σ²/2 = 0.005
    teacher_seed: int = 0  # the teacher of ``teacher:…,seed=teacher_seed``
    lam: float = 1e-3  # weight decay λ: its bias λΩ(g*) ≈ 1.4e-3, below R(g*)
    widths: tuple[int, ...] = (1, 2, 3, 4, 8, 64)
    sizes: tuple[int, ...] = (20, 40, 80, 160, 320)
    draws: int = 4  # training sets (each with its own fresh risk sample) per size
    seeds: int = 8  # Adam runs per width and training set
    steps: int = 3000  # Adam steps (RELU2_CONFIG: gaps 0.07–1 % after 3,000 on n = 100)
    population_size: int = 1500  # noiseless points for h_opt (the convex solve grows like n^2.3 in 1-D)
    population_draws: int = 3  # independent population samples: h_opt's error bar
    risk_size: int = 200_000  # fresh points per risk estimate: standard error ~1e-5 of R
    certify_tol: float = 1e-3  # relative gap below which ĥ_opt/h_opt counts as certified
    time_limit: float = 1800.0  # seconds per convex solve
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "the error-decomposition study"
        check_int(self.d, "d", owner, low=1)
        check_int(self.hidden, "hidden", owner, low=1)
        check_float(self.noise, "noise", owner, low=0.0)
        check_float(self.lam, "lam", owner, low=0.0, low_open=True)
        if not self.widths or min(self.widths) < 1:
            raise UserError(f"The 'widths' parameter of {owner} must be positive ints, as in widths=1,3,32.")
        if not self.sizes or min(self.sizes) < 2:
            raise UserError(f"The 'sizes' parameter of {owner} must be ints ≥ 2, as in sizes=20,40.")
        check_int(self.draws, "draws", owner, low=1)
        check_int(self.seeds, "seeds", owner, low=1)
        check_int(self.steps, "steps", owner, low=1)
        check_int(self.population_size, "population_size", owner, low=2)
        check_int(self.population_draws, "population_draws", owner, low=1)
        check_int(self.risk_size, "risk_size", owner, low=2)
        check_float(self.certify_tol, "certify_tol", owner, low=0.0, low_open=True)
        check_float(self.time_limit, "time_limit", owner, low=0.0, low_open=True)


def teacher_network(d: int, hidden: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The teacher of ``teacher:d=d,hidden=hidden,seed=seed`` as (U [hidden, d+1], bias last; α [hidden]).

    The data set's teacher is Σ_j W2_j (W1_j·x + b1_j)_+ + b2 with b2 = 0, which is
    exactly the `relu2_outputs` form with u_j = (W1_j, b1_j), α_j = W2_j.
    """
    meta = load_data(f"teacher:n=10,d={d},hidden={hidden},seed={seed}").meta["teacher"]
    if float(meta["b2"].abs().max()) != 0.0:  # relu2 networks have no output bias
        raise UserError("The teacher has an output bias, which two-layer relu2 networks cannot represent.")
    U = np.c_[meta["W1"].double().numpy(), meta["b1"].double().numpy()]
    return U, meta["W2"].double().numpy()[0]


def sample(
    U: np.ndarray, alpha: np.ndarray, n: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n fresh points of the teacher's distribution: X ~ N(0, I_d), g*(X), and y = g*(X) + noise·N(0, 1).

    The same generative recipe as `losslab.data.builtin.teacher`, from an independent
    seeded stream (float64).
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, U.shape[1] - 1))
    g = relu2_outputs(U, alpha, X)
    return X, g, g + noise * rng.standard_normal(n)


def _half_mse(f: np.ndarray, y: np.ndarray) -> float:
    return float(0.5 * np.mean(np.square(f - y)))


def _pad(networks: list[tuple[np.ndarray, np.ndarray]], r: int) -> tuple[np.ndarray, np.ndarray]:
    """Networks of different widths as zero-padded U [k, m, r] and α [k, m] (zero units compute 0, cost 0)."""
    m = max([len(a) for _, a in networks] + [1])
    U, A = np.zeros((len(networks), m, r)), np.zeros((len(networks), m))
    for i, (u, a) in enumerate(networks):
        U[i, : len(a)], A[i, : len(a)] = u, a
    return U, A


@dataclass
class _Runs:
    """Adam runs of one width: final objectives [K] and networks (U [K, m, d+1], α [K, m])."""

    objectives: np.ndarray
    U: np.ndarray
    alpha: np.ndarray

    def network(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.U[k], self.alpha[k]


def train_students(X: np.ndarray, y: np.ndarray, lam: float, width: int, seeds: list[int], steps: int) -> _Runs:
    """Full-batch Adam on J(θ) = ½ mean (f − y)² + (λ/2)‖θ‖² for ``relu2:d-width`` from each seed's zoo init.

    The recipe of `losslab.exact.sgd_gap.RELU2_CONFIG` (Adam, lr 1e-2, cosine schedule
    lr·½(1 + cos(π t/T)), coupled weight decay λ on every parameter, i.e. the gradient of
    J), written out in NumPy float64 for all seeds at once with the hand-derived gradient
    ∂J/∂α_j = mean e·(x̃·u_j)_+ + λα_j, ∂J/∂u_j = mean e·α_j·1[x̃·u_j > 0]·x̃ + λu_j
    (e = f − y). The trainer's general loop costs ~8–25 ms per step on these tiny
    networks on a busy machine (600 steps of 3 seeds: 9–20 s), most of the quick
    preset's time; the test suite checks this loop against the trainer
    (`relu2_sgd_gap`). The final objective is evaluated with `relu2_objective`.
    """
    d = X.shape[1]
    inits = []
    for s in seeds:
        model = build_model(f"relu2:{d}-{width}", seed=int(s))
        W1, b1, W2 = (p.detach().double() for p in model.parameters())
        inits.append((torch.cat([W1, b1[:, None]], 1), W2[0]))
    U = torch.stack([u for u, _ in inits]).numpy().copy()
    alpha = torch.stack([a for _, a in inits]).numpy().copy()
    Xt = np.c_[X, np.ones(len(X))]
    n = len(y)
    lr, beta1, beta2, eps = RELU2_CONFIG.lr, 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults
    moments = [[np.zeros_like(U), np.zeros_like(U)], [np.zeros_like(alpha), np.zeros_like(alpha)]]
    for t in range(1, steps + 1):
        Z = np.einsum("nr,kmr->knm", Xt, U)
        H = np.maximum(Z, 0.0)
        e = (np.einsum("knm,km->kn", H, alpha) - y) / n
        grads = (
            np.einsum("kn,km,knm,nr->kmr", e, alpha, (Z > 0).astype(np.float64), Xt) + lam * U,
            np.einsum("knm,kn->km", H, e) + lam * alpha,
        )
        step = lr * 0.5 * (1 + np.cos(np.pi * (t - 1) / steps))  # the cosine schedule at step t − 1
        for param, grad, (m1, m2) in zip((U, alpha), grads, moments, strict=True):
            m1 *= beta1
            m1 += (1 - beta1) * grad
            m2 *= beta2
            m2 += (1 - beta2) * grad * grad
            denom = np.sqrt(m2) / np.sqrt(1 - beta2**t) + eps
            param -= (step / (1 - beta1**t)) * m1 / denom
    U_np, a_np = U, alpha
    objectives = np.array([relu2_objective(U_np[k], a_np[k], X, y, lam) for k in range(len(seeds))])
    return _Runs(objectives, U_np, a_np)


def _class_optima(
    exact: Relu2Result, config: ErrorDecompositionConfig, device: str, first_seed: int, *, train_all: bool
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray, Any]:
    """Per width m: the best network of width m found, its proven gap to the width-m optimum, and the Adam runs.

    Returns (networks, gaps [W], from_convex [W], runs [W] of `_Runs`). With
    ``train_all`` False, widths that hold the convex network get no runs (None).
    """
    networks, gaps, convex, runs = [], [], [], []
    seeds = list(range(first_seed, first_seed + config.seeds))
    for m in config.widths:
        if not train_all and exact.width <= m:  # the convex network is in the class: no runs needed
            networks.append((exact.U, exact.alpha))
            gaps.append(exact.gap)
            convex.append(True)
            runs.append(None)
            continue
        run = train_students(exact.X, exact.y, exact.lam, m, seeds, config.steps)
        runs.append(run)
        best = int(np.argmin(run.objectives))
        if exact.width <= m and exact.optimum <= run.objectives[best]:
            networks.append((exact.U, exact.alpha))
            gaps.append(exact.gap)
            convex.append(True)
        else:
            networks.append(run.network(best))
            gaps.append(float(run.objectives[best] - exact.lower_bound))
            convex.append(False)
    return networks, np.asarray(gaps), np.asarray(convex), runs


@register_result
@dataclass
class PopulationPoint:
    """h_opt(m) for every width, from one noiseless population sample.

    ``U`` [W, m, d+1] / ``alpha`` [W, m] are the networks (zero-padded); ``gap`` [W] the
    proven J(h_opt(m)) − (width-m optimum on this sample) bound; ``objective`` [W] their J;
    ``risk`` [W] their ½ mean (f − g*)² on the sample (the noiseless risk).
    """

    draw: int
    lower_bound: float
    convex_gap: float
    convex_width: int
    U: np.ndarray
    alpha: np.ndarray
    gap: np.ndarray
    from_convex: np.ndarray
    objective: np.ndarray
    risk: np.ndarray
    seconds: float


@register_result
@dataclass
class TrainingPoint:
    """One training set of size n: ĥ_opt(m), the Adam runs ĥ and their risks on a fresh sample.

    Shapes: W widths, S seeds, P population draws. Risks are ½ mean (f − y)² on the fresh
    sample of ``risk_size`` noisy points: ``risk_teacher`` (scalar), ``risk_population``
    [W, P] (each h_opt draw), ``risk_optimum`` [W] (ĥ_opt), ``risk_trained`` [W, S];
    ``approximation_se`` [W] the standard error of R̂(h_opt) − R̂(g*) from the per-point
    differences. ``objective_gap`` [W, S] = J_train(ĥ) − J_train(ĥ_opt).
    """

    size: int
    draw: int
    convex_width: int
    convex_gap: float
    lower_bound: float
    U: np.ndarray
    alpha: np.ndarray
    gap: np.ndarray
    from_convex: np.ndarray
    objective_optimum: np.ndarray
    objective_trained: np.ndarray
    objective_gap: np.ndarray
    risk_teacher: float
    risk_population: np.ndarray
    risk_optimum: np.ndarray
    risk_trained: np.ndarray
    approximation_se: np.ndarray
    seconds: float


def _population_point(
    config: ErrorDecompositionConfig, draw: int, U_t: np.ndarray, a_t: np.ndarray, device: str
) -> PopulationPoint:
    start = time.perf_counter()
    X, g, _ = sample(U_t, a_t, config.population_size, 0.0, seed=(config.seed, _POPULATION, draw))
    exact = relu2_optimum(X, g, config.lam, time_limit=config.time_limit)
    networks, gaps, convex, _ = _class_optima(exact, config, device, first_seed=config.seed, train_all=False)
    U, A = _pad(networks, X.shape[1] + 1)
    objective = np.array([relu2_objective(u, a, X, g, config.lam) for u, a in networks])
    risk = np.array([_half_mse(relu2_outputs(u, a, X), g) for u, a in networks])
    return PopulationPoint(
        draw,
        exact.lower_bound,
        exact.gap,
        exact.width,
        U,
        A,
        gaps,
        convex,
        objective,
        risk,
        time.perf_counter() - start,
    )


def _training_point(
    config: ErrorDecompositionConfig,
    size: int,
    draw: int,
    U_t: np.ndarray,
    a_t: np.ndarray,
    population: list[PopulationPoint],
    device: str,
) -> TrainingPoint:
    start = time.perf_counter()
    X, _, y = sample(U_t, a_t, size, config.noise, seed=(config.seed, _TRAIN, size, draw))
    exact = relu2_optimum(X, y, config.lam, time_limit=config.time_limit)
    networks, gaps, convex, runs = _class_optima(
        exact, config, device, first_seed=config.seed + 1000 * draw, train_all=True
    )
    U, A = _pad(networks, X.shape[1] + 1)
    optimum = np.array([relu2_objective(u, a, X, y, config.lam) for u, a in networks])
    trained = np.stack([run.objectives for run in runs])
    Xr, _, yr = sample(U_t, a_t, config.risk_size, config.noise, seed=(config.seed, _RISK, size, draw))
    loss_teacher = 0.5 * np.square(relu2_outputs(U_t, a_t, Xr) - yr)
    W, P = len(config.widths), len(population)
    risk_population, se = np.zeros((W, P)), np.zeros(W)
    for w in range(W):
        losses = [0.5 * np.square(relu2_outputs(p.U[w], p.alpha[w], Xr) - yr) for p in population]
        risk_population[w] = [float(np.mean(loss)) for loss in losses]
        se[w] = float(np.std(np.mean(losses, 0) - loss_teacher) / np.sqrt(len(yr)))
    risk_optimum = np.array([_half_mse(relu2_outputs(u, a, Xr), yr) for u, a in networks])
    risk_trained = np.array(
        [[_half_mse(relu2_outputs(*run.network(k), Xr), yr) for k in range(config.seeds)] for run in runs]
    )
    return TrainingPoint(
        size,
        draw,
        exact.width,
        exact.gap,
        exact.lower_bound,
        U,
        A,
        gaps,
        convex,
        optimum,
        trained,
        trained - optimum[:, None],
        float(np.mean(loss_teacher)),
        risk_population,
        risk_optimum,
        risk_trained,
        se,
        time.perf_counter() - start,
    )


@register_result
@dataclass
class ErrorDecompositionResult:
    """The three errors per width m, size n, training draw t and seed s.

    Shapes: W = len(widths), N = len(sizes), T = draws, S = seeds, P = population draws.
    Risks (½ mean squared error on each draw's fresh sample): ``risk_teacher`` [N, T],
    ``risk_population`` [W, N, T] (mean over the P draws of h_opt; ``population_spread``
    [W, N, T] their standard deviation), ``risk_optimum`` [W, N, T], ``risk_trained``
    [W, N, T, S]. Terms: ``approximation``, ``estimation`` [W, N, T], ``optimization``
    [W, N, T, S], and ``excess`` [W, N, T, S] = R̂(ĥ) − R̂(g*) measured directly.
    Objective level: ``objective_gap`` [W, N, T, S] ≥ −``gap``; ``estimation_objective``
    [W, N, T, P] = J_pop(ĥ_opt) − J_pop(h_opt) ≥ −``population_gap`` [W, P].
    """

    widths: np.ndarray
    sizes: np.ndarray
    noise: float
    lam: float
    hidden: int
    teacher_penalty: float  # λΩ(g*), the most weight decay can bias h_opt's risk when m ≥ hidden
    risk_teacher_exact: float  # σ²/2
    risk_teacher: np.ndarray
    risk_population: np.ndarray
    population_spread: np.ndarray
    risk_optimum: np.ndarray
    risk_trained: np.ndarray
    approximation: np.ndarray
    estimation: np.ndarray
    optimization: np.ndarray
    excess: np.ndarray
    approximation_se: np.ndarray
    objective_gap: np.ndarray
    gap: np.ndarray  # [W, N, T] proven bound on J(ĥ_opt(m)) − width-m optimum
    certified: np.ndarray  # [W, N, T] gap ≤ certify_tol · J
    from_convex: np.ndarray  # [W, N, T] ĥ_opt(m) is the convex program's network (else the best seed)
    convex_width: np.ndarray  # [N, T] units of the convex program's network
    estimation_objective: np.ndarray
    population_gap: np.ndarray
    population_certified: np.ndarray  # [W, P]
    population_from_convex: np.ndarray  # [W, P]
    population_risk: np.ndarray  # [W, P] ½ mean (h_opt − g*)² on its own noiseless sample
    config: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "risk_teacher": self.risk_teacher_exact,
            "teacher_penalty": self.teacher_penalty,
            "certified_fraction": float(self.certified.mean()),
            "population_certified_fraction": float(self.population_certified.mean()),
            "objective_gap_min": float(self.objective_gap.min()),
            "risk_optimization_negative_fraction": float(np.mean(self.optimization < 0)),
        }
        for w, m in enumerate(self.widths):
            for i, n in enumerate(self.sizes):
                out[f"m={m},n={n}"] = {
                    "approximation": float(self.approximation[w, i].mean()),
                    "estimation": float(self.estimation[w, i].mean()),
                    "optimization": float(self.optimization[w, i].mean()),
                    "excess": float(self.excess[w, i].mean()),
                }
        return out


def _estimate(config: ErrorDecompositionConfig, context: StudyContext) -> Estimate:
    """Convex solves timed on one sample each; Adam steps timed over a few steps of `train_students`.

    The population solve is timed at min(population_size, 200) points and scaled by
    (population_size / 200)^2.3, the growth measured in 1-D (0.4 s at n = 100, 9 s at
    300, 72 s at 1,000 on a busy 2-core machine); the solve's rounds vary with the data.
    """
    U_t, a_t = teacher_network(config.d, config.hidden, config.teacher_seed)
    estimate = Estimate("study error-decomposition", [])
    probe = min(config.population_size, 200)
    X, g, _ = sample(U_t, a_t, probe, 0.0, seed=(config.seed, _POPULATION, 0))
    unit = best_seconds(lambda: relu2_optimum(X, g, config.lam), _CPU, repeats=1)
    scale = (config.population_size / probe) ** 2.3
    estimate.work.append(
        Work("population convex solves", config.population_draws, config.population_draws, unit * scale)
    )
    for n in config.sizes:
        X, _, y = sample(U_t, a_t, n, config.noise, seed=(config.seed, _TRAIN, n, 0))
        unit = best_seconds(lambda X=X, y=y: relu2_optimum(X, y, config.lam), _CPU, repeats=1)
        estimate.work.append(Work(f"n = {n}: training-set convex solves", config.draws, config.draws, unit))
    seeds = list(range(config.seeds))
    probe_steps = 20
    for m in config.widths:
        for n, count in [(config.population_size, config.population_draws)] + [(n, config.draws) for n in config.sizes]:
            X, _, y = sample(U_t, a_t, n, config.noise, seed=0)
            unit = best_seconds(
                lambda X=X, y=y, m=m: train_students(X, y, config.lam, m, seeds, probe_steps),
                _CPU,
                repeats=1,
            )
            steps = count * config.steps
            estimate.work.append(
                Work(f"m = {m}, n = {n}: Adam steps of {config.seeds} seeds", steps, steps, unit / probe_steps)
            )
    estimate.notes.append(
        "Risk evaluations on the fresh samples (a few matrix products of risk_size points) are not counted; "
        "population samples train Adam only at widths below the convex network's, so their runs are a bound."
    )
    return estimate


@register_study(
    "error-decomposition",
    "Approximation, estimation and optimization error of two-layer ReLU students of a teacher (certified ĥ_opt).",
    ErrorDecompositionConfig,
    quick=ErrorDecompositionConfig(
        widths=(1, 3, 32),
        sizes=(15, 30),
        draws=2,
        seeds=3,
        steps=1500,
        population_size=200,
        population_draws=2,
        risk_size=20_000,
        time_limit=300.0,
    ),
    full=ErrorDecompositionConfig(),
    estimate=_estimate,
    demo="Error decomposition: approximation, estimation and optimization error (Bottou & Bousquet 2007)",
)
def error_decomposition(config: ErrorDecompositionConfig, context: StudyContext) -> ErrorDecompositionResult:
    """Measure the three errors over widths and training sizes (see the module docstring)."""
    U_t, a_t = teacher_network(config.d, config.hidden, config.teacher_seed)
    device = context.device  # the pieces may be shipped to workers: not the context
    key = asdict(config)
    population: list[PopulationPoint] = context.sweep(
        "error-decomposition-population",
        key,
        config.population_draws,
        lambda p: _population_point(config, p, U_t, a_t, device),
    )
    grid = [(n, t) for n in config.sizes for t in range(config.draws)]
    points: list[TrainingPoint] = context.sweep(
        "error-decomposition-training",
        key,
        len(grid),
        lambda i: _training_point(config, grid[i][0], grid[i][1], U_t, a_t, population, device),
    )
    W, N, T, P = len(config.widths), len(config.sizes), config.draws, config.population_draws
    by = lambda name: np.stack([getattr(p, name) for p in points]).reshape(N, T, *np.shape(getattr(points[0], name)))  # noqa: E731
    move = lambda a: np.moveaxis(a, 2, 0)  # [N, T, W, …] → [W, N, T, …]  # noqa: E731
    risk_teacher = by("risk_teacher")
    risk_population_draws = move(by("risk_population"))  # [W, N, T, P]
    risk_population = risk_population_draws.mean(-1)
    risk_optimum = move(by("risk_optimum"))
    risk_trained = move(by("risk_trained"))
    # J_pop of each ĥ_opt on each population sample, against that sample's h_opt.
    estimation_objective = np.zeros((W, N, T, P))
    width = max(q.alpha.shape[1] for q in points)
    U_opt = move(
        np.stack([np.pad(q.U, ((0, 0), (0, width - q.U.shape[1]), (0, 0))) for q in points]).reshape(N, T, W, width, -1)
    )
    a_opt = move(
        np.stack([np.pad(q.alpha, ((0, 0), (0, width - q.alpha.shape[1]))) for q in points]).reshape(N, T, W, width)
    )
    for p, pop in enumerate(population):
        X, g, _ = sample(U_t, a_t, config.population_size, 0.0, seed=(config.seed, _POPULATION, pop.draw))
        for w in range(W):
            for i in range(N):
                for t in range(T):
                    j_opt = relu2_objective(U_opt[w, i, t], a_opt[w, i, t], X, g, config.lam)
                    estimation_objective[w, i, t, p] = j_opt - pop.objective[w]
    objective_optimum = move(by("objective_optimum"))
    penalty = config.lam * float(np.sum(np.abs(a_t) * np.linalg.norm(U_t, axis=1)))
    return ErrorDecompositionResult(
        widths=np.asarray(config.widths),
        sizes=np.asarray(config.sizes),
        noise=config.noise,
        lam=config.lam,
        hidden=config.hidden,
        teacher_penalty=penalty,
        risk_teacher_exact=0.5 * config.noise**2,
        risk_teacher=risk_teacher,
        risk_population=risk_population,
        population_spread=risk_population_draws.std(-1),
        risk_optimum=risk_optimum,
        risk_trained=risk_trained,
        approximation=risk_population - risk_teacher[None],
        estimation=risk_optimum - risk_population,
        optimization=risk_trained - risk_optimum[..., None],
        excess=risk_trained - risk_teacher[None, :, :, None],
        approximation_se=move(by("approximation_se")),
        objective_gap=move(by("objective_gap")),
        gap=move(by("gap")),
        certified=move(by("gap")) <= config.certify_tol * np.abs(objective_optimum),
        from_convex=move(by("from_convex")),
        convex_width=by("convex_width"),
        estimation_objective=estimation_objective,
        population_gap=np.stack([p.gap for p in population], 1),
        population_certified=np.stack([p.gap <= config.certify_tol * np.abs(p.objective) for p in population], 1),
        population_from_convex=np.stack([p.from_convex for p in population], 1),
        population_risk=np.stack([p.risk for p in population], 1),
        config=key,
    )
