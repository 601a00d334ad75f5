"""``losslab surface`` and ``losslab interpolate``: loss-surface slices and the MLI curve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from losslab.cli.app import app
from losslab.cli.common import Options, command, config_from, emit_estimate, shared_options, stderr
from losslab.cli.demo import demo_step
from losslab.errors import check_choice
from losslab.objective.cost import Budget
from losslab.surface import InterpolateConfig, SurfaceConfig
from losslab.surface import estimate as estimate_surface
from losslab.surface import run as run_surface
from losslab.surface.run import setup_inputs

__all__ = ["interpolate_command", "surface_command"]

RangeOpt = tuple[float, float] | None
SplitOpt = Annotated[
    str,
    typer.Option("--split", help="train: the training split only; both: the training and the test split."),
]
_SPLITS = {"train": "train", "both": "test"}  # --split → the config's split ('test': the test split too)

ScaleOpt = Annotated[str, typer.Option("--scale", help="How figures draw the loss: auto | linear | log.")]
NoBudgetOpt = Annotated[
    bool,
    typer.Option(
        "--no-budget",
        help=f"Run a grid over the budget ({Budget().memory_gib:g} GiB of results, {Budget().hours:g} h predicted).",
    ),
]


def config_split(split: str, owner: str) -> str:
    """``--split train | both`` as the config's ``split``. ``test``, the former name of ``both``, still works
    and says so: it never meant the test split alone."""
    if split == "test":
        stderr.print("note: --split test computes train and test; write --split both.", markup=False)
        return "test"
    return _SPLITS[check_choice(split, "split", owner, _SPLITS)]


@app.command("surface")
@command
@shared_options("rows", "ray", "estimate")
def surface_command(
    opts: Options,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="digits, mnist1d, teacher, spirals, xor (key=value options allowed) or path/to/file.py:function. "
            "Default: the --dirs-from run's data, else digits.",
        ),
    ] = None,
    dirs: Annotated[str, typer.Option("--dirs", help="filter | layer | random | pca (with --pca-from).")] = "filter",
    steps: Annotated[int, typer.Option(help="Points per axis, both ends included.")] = 51,
    range_: Annotated[
        RangeOpt,
        typer.Option("--range", help="MIN MAX of a (and b). Default -1 1; for PCA axes the trajectory's extent."),
    ] = None,
    y_steps: Annotated[int | None, typer.Option(help="Points along b (default: --steps).")] = None,
    y_range: Annotated[RangeOpt, typer.Option(help="MIN MAX of b (default: --range).")] = None,
    split: SplitOpt = "train",
    pca_from: Annotated[
        Path | None,
        typer.Option("--pca-from", help="A train run: PCA of its trajectory; its snapshots are drawn."),
    ] = None,
    toward: Annotated[
        str | None,
        typer.Option(help="A checkpoint, train run or 'init': d₁ = that point − θ; d₂ from --dirs."),
    ] = None,
    dirs_from: Annotated[
        Path | None,
        typer.Option("--dirs-from", help="Reuse the directions and center of an earlier surface run."),
    ] = None,
    include_bias: Annotated[
        bool,
        typer.Option(help="Normalize biases and norm parameters (as whole vectors), not zero them."),
    ] = False,
    orthogonalize: Annotated[bool, typer.Option(help="Make d₂ orthogonal to d₁ (Gram–Schmidt).")] = False,
    line_only: Annotated[bool, typer.Option("--line", help="A 1-D slice along d₁ instead of a plane.")] = False,
    scale: ScaleOpt = "auto",
    rows_per_chunk: Annotated[
        int | None, typer.Option(help="Grid rows per resumable piece (default: ≈256 points).")
    ] = None,
    no_budget: NoBudgetOpt = False,
) -> None:
    """Loss (and accuracy) on a plane or line through θ: L(θ + a d₁ + b d₂); resumable."""
    from losslab.report.surface import VTS_NAME, loss_scale, write_vts

    config = config_from(
        SurfaceConfig,
        locals(),
        range=range_,
        split=config_split(split, "surface"),
        line=line_only,
        seed=opts.seed,
        budget=None if no_budget else Budget(),
    )
    with loss_scale(scale):  # validated now, before any work; it draws the report at the end
        setup = opts.setup(
            **setup_inputs(config, model=opts.model, data=data, checkpoint=opts.checkpoint, loss=opts.loss)
        )
        if opts.estimate:
            emit_estimate(estimate_surface(setup, config), opts.json_out, opts.ray)
            return
        run_config = {**setup.config(), **config.to_dict(), "scale": scale}
        with opts.open_run("surface", run_config, seeds={"directions": opts.seed}, analysis=config) as run:
            with opts.progress("surface") as update:
                result = run_surface(setup, config, store=run, executor=opts.executor, progress=update)
            name = "line" if line_only else "surface"
            shape = f"{len(result.alphas)} points" if line_only else f"{len(result.a)}×{len(result.b)}"
            title = f"loss {name} ({'/'.join(result.directions.kind)}, {shape}) of {setup.model_spec} on {setup.data}"
            if not line_only:  # the plane for ParaView, beside the figures
                write_vts(result, run.path / "figures" / VTS_NAME)
            opts.finish(run, {name: result}, result.summary(), title=title)


@app.command("interpolate")
@command
@shared_options("estimate", without=("checkpoint",))
def interpolate_command(
    to: Annotated[str, typer.Option("--to", help="The end point: a checkpoint (.pt) or a train run.")],
    from_: Annotated[
        str,
        typer.Option(
            "--from",
            help="The start: a checkpoint, a train run, or 'init' (the run's init.pt, "
            "else the model's seeded initialization).",
        ),
    ] = "init",
    *,
    opts: Options,
    steps: Annotated[int, typer.Option(help="Values of α, both ends included.")] = 51,
    range_: Annotated[tuple[float, float], typer.Option("--range", help="MIN MAX of α (0 is --from, 1 is --to).")] = (
        0.0,
        1.0,
    ),
    split: SplitOpt = "train",
    scale: ScaleOpt = "auto",
) -> None:
    """The loss along (1 − α) θ_from + α θ_to; from init, the MLI curve (Goodfellow et al. 2015)."""
    from losslab.report.surface import loss_scale

    config = InterpolateConfig(start=from_, end=to, steps=steps, range=range_, split=config_split(split, "interpolate"))
    with loss_scale(scale, "interpolate"):
        setup = opts.setup(checkpoint=to)
        if opts.estimate:
            emit_estimate(estimate_surface(setup, config), opts.json_out)
            return
        run_config = {**setup.config(), **config.to_dict(), "scale": scale}
        with opts.open_run("interpolate", run_config, analysis=config) as run:
            result = run_surface(setup, config)
            title = f"linear interpolation {from_} → {to} ({setup.model_spec} on {setup.data})"
            opts.finish(run, {"interpolation": result}, result.summary(), title=title)


def _demo(out: Path, force: bool, device: str, steps: int = 41) -> dict[str, Any]:
    """The options every demo step shares: beside the demo's train run, quiet JSON output."""
    return {"steps": steps, "out": out, "force": force, "device": device, "json_out": True}


@demo_step("surface", "Loss surface around the trained digits MLP (filter-normalized plane)")
def _demo_surface(out: Path, force: bool, device: str) -> None:
    surface_command(checkpoint=str(out.parent / "train"), dirs="filter", split="both", **_demo(out, force, device))


@demo_step("surface-pca", "Loss surface along the training trajectory (PCA plane, Li et al. 2018)")
def _demo_surface_pca(out: Path, force: bool, device: str) -> None:
    train_run = out.parent / "train"
    surface_command(checkpoint=str(train_run), dirs="pca", pca_from=train_run, **_demo(out, force, device))


@demo_step("interpolate", "Monotonic linear interpolation from initialization to the solution")
def _demo_interpolate(out: Path, force: bool, device: str) -> None:
    to = str(out.parent / "train")
    interpolate_command(to=to, from_="init", split="both", **_demo(out, force, device, steps=51))
