"""``losslab exact …``: certified global optima of small networks, and SGD against them."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from losslab.cli.app import App, app
from losslab.cli.common import (
    BatchSizeOpt,
    DataOpt,
    DeviceOpt,
    DtypeOpt,
    EstimateOpt,
    ForceOpt,
    JsonOpt,
    LrOpt,
    OptimizerOpt,
    OutOpt,
    SeedOpt,
    Setup,
    command,
    config_from,
    emit_estimate,
    finish,
    open_run,
    progress_bar,
    stderr,
)
from losslab.cli.demo import demo_step
from losslab.data.set_splitting import SetSplittingInstance
from losslab.errors import UserError
from losslab.exact import (
    RELU2_CONFIG,
    PerceptronConfig,
    Relu2Config,
    ScalingConfig,
    ThreeNodeConfig,
    load_instance,
    mixed_instance,
    run_perceptron,
    run_relu2,
    run_scaling,
    run_three_node,
)
from losslab.exact.instances import parse_sizes
from losslab.exact.runner import estimate as estimate_exact
from losslab.exact.runner import relu2_targets

__all__ = [
    "exact_app",
    "perceptron_command",
    "relu2_command",
    "scaling_command",
    "three_node_command",
]

exact_app = App(
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
        return float(text)
    except ValueError:
        raise UserError(f"The '--weight-bound' option must be 'auto' or a number > 0. Got {text!r}.") from None


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


def _warned(summary: dict[str, Any], lines: list[str]) -> dict[str, Any]:
    if lines:
        summary["warnings"] = lines
    return summary


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
    estimate: EstimateOpt = False,
) -> None:
    """Is two-class data linearly separable? A max-margin unit, or a checked proof it is not."""
    config = PerceptronConfig(
        fewest_errors=fewest_errors, weight_bound=_weight_bound(weight_bound), time_limit=time_limit
    )
    if estimate:
        emit_estimate(estimate_exact(config), json_out)
        return
    dataset = Setup(data=data, seed=seed).dataset
    recorded = {"data": data, "seed": seed, **config.to_dict()}
    with open_run("exact perceptron", out, config=recorded, force=force, analysis=config) as run:
        result = run_perceptron(dataset, config)
        finish(run, {"perceptron": result}, result.summary(), json_out=json_out, title=f"exact perceptron on {data}")


def _instance(
    data: str | None, elements: int | None, subsets: int | None, seed: int, solvable: bool | None, size: str | None
) -> tuple[SetSplittingInstance, dict[str, Any]]:
    """The user's instance (--data), or a generated one; and how it was made, for run.json."""
    if data is not None:
        given = [f"--{k}" for k, v in (("elements", elements), ("subsets", subsets), ("size", size)) if v is not None]
        given += ["--solvable/--unsolvable"] if solvable is not None else []
        if given:
            raise UserError(
                f"--data gives the whole instance, so {', '.join(given)} cannot be used with it: drop one or the other."
            )
        return load_instance(data), {"data": data}
    kind = "random" if solvable is None else ("solvable" if solvable else "unsolvable")
    sizes = parse_sizes(size or "3")
    n, m = elements if elements is not None else 10, subsets if subsets is not None else 15
    made = {"elements": n, "subsets": m, "seed": seed, "kind": kind, "size": list(sizes)}
    return mixed_instance(n, m, sizes=sizes, seed=seed, kind=kind), made


@exact_app.command("three-node")
@command
def three_node_command(
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help='Your instance: a JSON file {"elements": n, "subsets": [[0,1,2],[1,3],...]} '
            "or path/to/file.py:function / package.module:function returning (n, subsets).",
        ),
    ] = None,
    elements: Annotated[
        int | None, typer.Option("--elements", help="Ground set size n of a generated instance (default 10).")
    ] = None,
    subsets: Annotated[int | None, typer.Option("--subsets", help="Number of subsets m (default 15).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of a generated instance.")] = 0,
    solvable: Annotated[
        bool | None,
        typer.Option(
            "--solvable/--unsolvable",
            help="Plant a splitting, or an unsplittable core; neither: uniformly random subsets.",
        ),
    ] = None,
    size: Annotated[
        str | None,
        typer.Option("--size", help="Elements per subset, or several sizes to mix (2,3,4); default 3 (NP-complete)."),
    ] = None,
    fewest_errors: Annotated[
        bool,
        typer.Option("--fewest-errors", help="Also find the network with the fewest errors (a larger MILP)."),
    ] = False,
    relax_seeds: Annotated[
        int,
        typer.Option("--relax-seeds", help="Seeds of gradient descent on the sigmoid relaxation (0: skip)."),
    ] = 32,
    proof: Annotated[
        bool,
        typer.Option(
            "--proof/--no-proof", help="When no splitting exists, find and check a minimal unsplittable core."
        ),
    ] = True,
    weight_bound: WeightBoundOpt = "auto",
    time_limit: TimeLimitOpt = 60.0,
    device: DeviceOpt = "cpu",
    out: OutOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    estimate: EstimateOpt = False,
) -> None:
    """Train the Blum–Rivest 3-node network exactly on a set-splitting instance (yours or generated), and check it."""
    config = config_from(ThreeNodeConfig, locals(), weight_bound=_weight_bound(weight_bound))
    instance, made = _instance(data, elements, subsets, seed, solvable, size)
    if estimate:
        emit_estimate(estimate_exact(config, instance), json_out)
        return
    run_config = {"instance": made, **config.to_dict()}
    seeds = {"instance": seed} if data is None else {}
    with open_run(
        "exact three-node", out, config=run_config, force=force, seeds=seeds, device=device, analysis=config
    ) as run:
        result = run_three_node(instance, config)
        result.source = data or ""
        described = data if data is not None else f"{made['kind']}, seed {seed}"
        title = f"exact three-node: n = {instance.elements}, m = {instance.subset_count}, {described}"
        finish(run, {"three_node": result}, result.summary(), json_out=json_out, title=title)


def _ratios(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"The '--ratios' option must be positive numbers separated by commas. Got {text!r}.") from None


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
    estimate: EstimateOpt = False,
) -> None:
    """Time to certify the 3-node network vs instance size, until a budget runs out (resumable)."""
    config = config_from(ScalingConfig, locals(), ratios=_ratios(ratios))
    if estimate:
        emit_estimate(estimate_exact(config), json_out)
        return
    seed_list = list(range(seeds))
    seeds = {"seeds": seed_list}
    with open_run("exact scaling", out, config=config.to_dict(), force=force, seeds=seeds, analysis=config) as run:
        with progress_bar("certifying", not json_out) as update:
            result = run_scaling(None, config, store=run, progress=update)
        title = f"exact scaling: 3-node network, {sweep} sweep"
        finish(run, {"scaling": result}, result.summary(), json_out=json_out, title=title)


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
    optimizer: OptimizerOpt = RELU2_CONFIG.optimizer,
    lr: LrOpt = RELU2_CONFIG.lr,
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps.")] = RELU2_CONFIG.steps or 3000,
    batch_size: BatchSizeOpt = 0,
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
    estimate: EstimateOpt = False,
) -> None:
    """The certified optimum of a two-layer ReLU network with weight decay, and SGD's gap to it."""
    config = config_from(Relu2Config, locals())
    if estimate:
        emit_estimate(estimate_exact(config), json_out)
        return
    dataset = Setup(data=data, seed=seed, device=device, dtype=dtype).dataset
    _, _, targets = relu2_targets(dataset)  # refuses data relu2 cannot fit before a run directory exists
    run_config = {"data": data, "targets": targets, **config.to_dict()}
    seeds = {"patterns": seed, "sgd_first_seed": seed}
    where = {"device": device, "dtype": dtype}
    with open_run("exact relu2", out, config=run_config, force=force, seeds=seeds, analysis=config, **where) as run:
        lines: list[str] = []
        with progress_bar("relu2", not json_out) as update, warning_lines(lines):
            result = run_relu2(dataset, config, progress=update)
        if not result.certified and not any(result.reason in line for line in lines):
            warning_line(f"relu2: not certified: {result.reason}", lines)
        title = f"exact relu2 on {data} (λ = {lam:g}, patterns {patterns})"
        finish(run, {"relu2": result}, _warned(result.summary(), lines), json_out=json_out, title=title)


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
