"""``losslab exact …``: certified global optima of small networks, and SGD against them."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from losslab.cli.app import app
from losslab.cli.common import (
    DataOpt,
    DeviceOpt,
    DtypeOpt,
    ForceOpt,
    JsonOpt,
    OutOpt,
    SeedOpt,
    Setup,
    command,
    finish,
    open_run,
    progress_bar,
    stderr,
)
from losslab.cli.demo import demo_step
from losslab.data import Dataset, set_splitting_instance
from losslab.errors import UserError, check_choice, check_float, check_int
from losslab.exact import (
    RELAXATION_CONFIG,
    RELU2_CONFIG,
    SWEEPS,
    certify_three_node,
    element_sizes,
    parse_patterns,
    perceptron,
    relu2_optimum,
    relu2_sgd_gap,
    subset_sizes,
    three_node_relaxation,
    three_node_scaling,
)
from losslab.train import TrainConfig

__all__ = [
    "exact_app",
    "perceptron_command",
    "relu2_command",
    "scaling_command",
    "three_node_command",
]

exact_app = typer.Typer(
    name="exact",
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Certified global optima of small networks (LP, MILP, convex program) and SGD against them.",
)
app.add_typer(exact_app, name="exact")

TimeLimitOpt = Annotated[
    float,
    typer.Option(
        "--time-limit",
        help="Seconds a solver may run before the command stops with its status (exit 2).",
    ),
]
WeightBoundOpt = Annotated[
    str,
    typer.Option(
        "--weight-bound",
        help="auto (a bound proven sufficient for 0/1 data) or a number M: weights are searched in [−M, M].",
    ),
]


def _weight_bound(text: str) -> float | str:
    if text in ("auto", "theorem"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"The '--weight-bound' option must be 'auto' or a number > 0. Got {text!r}.") from None
    return check_float(value, "weight_bound", "exact", low=0.0, low_open=True)


@contextmanager
def warning_lines(summary_warnings: list[str]) -> Iterator[None]:
    """Print each `UserWarning` raised inside as one ``losslab: warning:`` line on stderr.

    The lines are also appended to ``summary_warnings``, which the command puts in its
    summary, so ``--json`` carries them.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield
    for item in caught:
        if issubclass(item.category, UserWarning):
            warning_line(str(item.message), summary_warnings)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def warning_line(text: str, summary_warnings: list[str]) -> None:
    """One ``losslab: warning:`` line on stderr, recorded for the summary (once)."""
    if text not in summary_warnings:
        summary_warnings.append(text)
        stderr.print(f"losslab: warning: {text}", markup=False)


def _arrays(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    X, y = dataset.split("train")
    return X.flatten(1).double().numpy(), y.numpy()


@exact_app.command("perceptron")
@command
def perceptron_command(
    data: DataOpt = "xor",
    seed: SeedOpt = 0,
    out: OutOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    fewest_errors: Annotated[
        bool,
        typer.Option(
            "--fewest-errors/--no-fewest-errors",
            help="Also find the unit with the fewest errors (a MILP).",
        ),
    ] = True,
    weight_bound: WeightBoundOpt = "auto",
    time_limit: TimeLimitOpt = 60.0,
) -> None:
    """Is two-class data linearly separable? A max-margin unit, or a checked proof it is not."""
    check_float(time_limit, "time_limit", "exact perceptron", low=0.0, low_open=True)
    bound = _weight_bound(weight_bound)
    setup = Setup(data=data, seed=seed)
    X, y = _arrays(setup.dataset)
    config = {
        "data": data,
        "seed": seed,
        "fewest_errors": fewest_errors,
        "weight_bound": weight_bound,
        "time_limit": time_limit,
    }
    with open_run("exact perceptron", out, config=config, force=force, seeds={"seed": seed}) as run:
        result = perceptron(X, y, fewest=fewest_errors, weight_bound=bound, time_limit=time_limit)
        finish(
            run,
            {"perceptron": result},
            result.summary(),
            json_out=json_out,
            title=f"exact perceptron on {data}",
        )


@exact_app.command("three-node")
@command
def three_node_command(
    elements: Annotated[int, typer.Option("--elements", help="Ground set size n (the points live in {0,1}^n).")] = 10,
    subsets: Annotated[int, typer.Option("--subsets", help="Number of subsets m.")] = 15,
    seed: SeedOpt = 0,
    solvable: Annotated[
        bool | None,
        typer.Option(
            "--solvable/--unsolvable",
            help="Plant a splitting, or an unsplittable core; neither: uniformly random subsets.",
        ),
    ] = None,
    size: Annotated[int, typer.Option("--size", help="Elements per subset (3: NP-complete; 2: bipartiteness).")] = 3,
    fewest_errors: Annotated[
        bool,
        typer.Option("--fewest-errors", help="Also find the network with the fewest errors (a larger MILP)."),
    ] = False,
    relax_seeds: Annotated[
        int,
        typer.Option("--relax-seeds", help="Seeds of gradient descent on the sigmoid relaxation (0: skip)."),
    ] = 32,
    weight_bound: WeightBoundOpt = "auto",
    time_limit: TimeLimitOpt = 60.0,
    device: DeviceOpt = "cpu",
    out: OutOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train the Blum–Rivest 3-node network exactly on a set-splitting instance, and check it."""
    check_int(relax_seeds, "relax_seeds", "exact three-node", low=0)
    check_float(time_limit, "time_limit", "exact three-node", low=0.0, low_open=True)
    bound = _weight_bound(weight_bound)
    kind = "random" if solvable is None else ("solvable" if solvable else "unsolvable")
    Setup(device=device)  # validates the device
    instance = set_splitting_instance(elements, subsets, seed=seed, kind=kind, size=size)
    config = {
        "elements": elements,
        "subsets": subsets,
        "seed": seed,
        "kind": kind,
        "size": size,
        "fewest_errors": fewest_errors,
        "relax_seeds": relax_seeds,
        "weight_bound": weight_bound,
        "time_limit": time_limit,
        "relaxation": RELAXATION_CONFIG.to_dict() if relax_seeds else None,
    }
    with open_run("exact three-node", out, config=config, force=force, seeds={"instance": seed}, device=device) as run:
        result = certify_three_node(instance, fewest=fewest_errors, weight_bound=bound, time_limit=time_limit)
        if relax_seeds:
            X, y = instance.points()
            result.relaxation = three_node_relaxation(
                X, y, trainable=result.decision.trainable, seeds=relax_seeds, device=device
            )
        finish(
            run,
            {"three_node": result},
            result.summary(),
            json_out=json_out,
            title=f"exact three-node: n = {elements}, m = {subsets}, {kind}, seed {seed}",
        )


def _ratios(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise UserError(f"The '--ratios' option must be positive numbers separated by commas. Got {text!r}.")
    return values


@exact_app.command("scaling")
@command
def scaling_command(
    sweep: Annotated[
        str,
        typer.Option(
            "--sweep",
            help="elements: grow n at a fixed subsets/elements ratio; subsets: grow m at a fixed n.",
        ),
    ] = "elements",
    start: Annotated[int, typer.Option("--start", help="First n of the elements sweep.")] = 4,
    stop: Annotated[int, typer.Option("--stop", help="Last n of the elements sweep (if the budget lasts).")] = 200,
    ratio: Annotated[
        float,
        typer.Option(
            "--ratio",
            help="Subsets per element in the elements sweep (≈2 is "
            "near the splittability threshold of 3-element subsets).",
        ),
    ] = 2.0,
    elements: Annotated[int, typer.Option("--elements", help="n of the subsets sweep.")] = 12,
    ratios: Annotated[
        str, typer.Option("--ratios", help="Subsets per element in the subsets sweep.")
    ] = "0.5,1,1.5,2,2.5,3,4,6",
    seeds: Annotated[int, typer.Option("--seeds", help="Instances per size (seeds 0, 1, …).")] = 3,
    kind: Annotated[str, typer.Option("--kind", help="random | solvable | unsolvable.")] = "random",
    budget: Annotated[
        float,
        typer.Option(
            "--budget",
            help="Seconds for the whole study; it stops when they are spent and says so.",
        ),
    ] = 60.0,
    instance_time_limit: Annotated[
        float | None,
        typer.Option("--instance-time-limit", help="Seconds per instance (default: the budget left)."),
    ] = None,
    relax_seeds: Annotated[
        int,
        typer.Option(
            "--relax-seeds",
            help="Also train the sigmoid relaxation from this many seeds per instance "
            "(0: skip); its seconds count against the budget.",
        ),
    ] = 0,
    out: OutOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Time to certify the 3-node network vs instance size, until a budget runs out (resumable)."""
    check_choice(sweep, "sweep", "exact scaling", SWEEPS)
    check_int(seeds, "seeds", "exact scaling", low=1)
    check_int(start, "start", "exact scaling", low=3)
    check_int(stop, "stop", "exact scaling", low=start)
    check_float(ratio, "ratio", "exact scaling", low=0.0, low_open=True)
    check_float(budget, "budget", "exact scaling", low=0.0, low_open=True)
    check_int(relax_seeds, "relax_seeds", "exact scaling", low=0)
    sizes = element_sizes(start, stop, ratio) if sweep == "elements" else subset_sizes(elements, _ratios(ratios))
    seed_list = list(range(seeds))
    config = {
        "sweep": sweep,
        "sizes": sizes,
        "seeds": seed_list,
        "kind": kind,
        "budget": budget,
        "instance_time_limit": instance_time_limit,
        "relax_seeds": relax_seeds,
        "relaxation": RELAXATION_CONFIG.to_dict() if relax_seeds else None,
    }
    with open_run("exact scaling", out, config=config, force=force, seeds={"seeds": seed_list}) as run:
        chunks = run.chunks("scaling", config)
        with progress_bar("certifying", not json_out) as update:
            result = three_node_scaling(
                sizes,
                seeds=seed_list,
                kind=kind,
                sweep=sweep,
                budget_seconds=budget,
                instance_time_limit=instance_time_limit,
                relax_seeds=relax_seeds,
                chunks=chunks,
                progress=update,
            )
        finish(
            run,
            {"scaling": result},
            result.summary(),
            json_out=json_out,
            title=f"exact scaling: 3-node network, {sweep} sweep",
        )


def _targets(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, str]:
    X, y = _arrays(dataset)
    if dataset.task == "classification":
        if dataset.num_classes != 2 or not np.isin(y, (0, 1)).all():
            raise UserError(
                "relu2 fits one real output: give regression data with one target or two "
                "classes (fitted as ±1); "
                f"{dataset.name!r} has {dataset.num_classes} classes."
            )
        return X, 2.0 * y - 1.0, "two classes as targets ±1"
    if y.ndim == 2 and y.shape[1] != 1:
        raise UserError(f"relu2 fits one real output; {dataset.name!r} has {y.shape[1]} targets per point.")
    return X, y.reshape(-1).astype(np.float64), "regression targets"


@exact_app.command("relu2")
@command
def relu2_command(
    data: DataOpt = "spirals:n=40",
    lam: Annotated[float, typer.Option("--lam", help="Weight decay λ: (λ/2)(‖W₁‖² + ‖b₁‖² + ‖α‖²).")] = 1e-3,
    patterns: Annotated[
        str,
        typer.Option(
            "--patterns",
            help="all (every activation pattern: a certificate) or sampled:N (N Gaussian draws: an upper bound).",
        ),
    ] = "all",
    sgd_seeds: Annotated[
        int, typer.Option("--sgd-seeds", help="Seeds of gradient training to compare (0: skip).")
    ] = 32,
    width: Annotated[
        int | None,
        typer.Option(
            "--width",
            help="Hidden units for gradient training (default 2·m*, twice the optimum's width).",
        ),
    ] = None,
    optimizer: Annotated[str, typer.Option("--optimizer", help="gd | sgd | momentum | adam.")] = RELU2_CONFIG.optimizer,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = RELU2_CONFIG.lr,
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps.")] = RELU2_CONFIG.steps or 3000,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Rows per step; 0 = full batch.")] = 0,
    max_patterns: Annotated[
        int,
        typer.Option("--max-patterns", help="Refuse exact enumeration above this many patterns."),
    ] = 1_000_000,
    tol: Annotated[
        float, typer.Option("--tol", help="Certified once (upper − lower bound) ≤ tol · upper bound.")
    ] = 1e-6,
    time_limit: TimeLimitOpt = 300.0,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float64",
    out: OutOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """The certified optimum of a two-layer ReLU network with weight decay, and SGD's gap to it."""
    check_float(lam, "lam", "exact relu2", low=0.0, low_open=True)
    check_int(sgd_seeds, "sgd_seeds", "exact relu2", low=0)
    check_int(batch_size, "batch_size", "exact relu2", low=0)
    parse_patterns(patterns)
    setup = Setup(data=data, seed=seed, device=device, dtype=dtype)
    X, y, target = _targets(setup.dataset)
    train_config = TrainConfig(
        optimizer=optimizer,
        lr=lr,
        batch_size=batch_size or None,
        steps=steps,
        schedule=RELU2_CONFIG.schedule,
        record_every=max(1, steps // 12),
        weight_decay=lam,
    )
    config: dict[str, Any] = {
        "data": data,
        "lam": lam,
        "patterns": patterns,
        "targets": target,
        "sgd_seeds": sgd_seeds,
        "width": width,
        "train": train_config.to_dict(),
        "max_patterns": max_patterns,
        "tol": tol,
        "time_limit": time_limit,
        "seed": seed,
    }
    with open_run(
        "exact relu2",
        out,
        config=config,
        force=force,
        seeds={"patterns": seed, "sgd_first_seed": seed},
        device=device,
        dtype=dtype,
    ) as run:
        lines: list[str] = []
        with progress_bar("column generation", not json_out) as update, warning_lines(lines):
            result = relu2_optimum(
                X,
                y,
                lam,
                patterns=patterns,
                seed=seed,
                tol=tol,
                max_patterns=max_patterns,
                time_limit=time_limit,
                progress=update,
            )
        if not result.certified and not any(result.reason in line for line in lines):
            warning_line(f"relu2: not certified: {result.reason}", lines)
        if sgd_seeds:
            with progress_bar("gradient training", not json_out) as update:
                result.sgd = relu2_sgd_gap(
                    result,
                    seeds=sgd_seeds,
                    width=width,
                    config=train_config,
                    device=device,
                    dtype=dtype,
                    first_seed=seed,
                    progress=update,
                )
        summary = result.summary()
        if lines:
            summary["warnings"] = lines
        finish(
            run,
            {"relu2": result},
            summary,
            json_out=json_out,
            title=f"exact relu2 on {data} (λ = {lam:g}, patterns {patterns})",
        )


@demo_step(
    "exact",
    "Certified optimum of a two-layer ReLU network vs 8 seeds of gradient training (2-D spirals)",
)
def _demo_exact(out: Path, force: bool, device: str) -> None:
    relu2_command(
        data="spirals:n=40",
        lam=1e-2,
        patterns="all",
        sgd_seeds=8,
        steps=1500,
        out=out,
        force=force,
        device=device,
        json_out=True,
    )
