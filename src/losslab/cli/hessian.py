"""``losslab hessian``: eigenpairs with certificates, trace, density, saddle index, sharpness."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from losslab.cli.app import app
from losslab.cli.common import Options, command, config_from, emit_estimate, shared_options, stderr
from losslab.cli.demo import demo_step
from losslab.curvature.run import MATRICES, HessianConfig
from losslab.curvature.run import estimate as estimate_hessian
from losslab.curvature.run import run as run_hessian

__all__ = ["hessian_command"]


@app.command("hessian")
@command
@shared_options("rows", "ray", "estimate")
def hessian_command(
    opts: Options,
    top: Annotated[int, typer.Option(help="Largest eigenpairs to compute (with measured residuals).")] = 5,
    bottom: Annotated[int, typer.Option(help="Most negative eigenpairs (same Krylov space as --top).")] = 0,
    trace: Annotated[bool, typer.Option("--trace", help="Estimate the trace with an error bar.")] = False,
    density: Annotated[
        bool, typer.Option("--density", help="Spectral density by stochastic Lanczos quadrature.")
    ] = False,
    saddle: Annotated[
        bool,
        typer.Option(
            "--saddle",
            help="Saddle index: share and count of eigenvalues below -tau (implies --density, --bottom 5).",
        ),
    ] = False,
    sharp: Annotated[
        bool,
        typer.Option(
            "--sharpness",
            help="lambda_max, epsilon-sharpness, adaptive and average-case sharpness.",
        ),
    ] = False,
    matrix: Annotated[
        str,
        typer.Option("--matrix", help=f"{' | '.join(MATRICES)}: ggn is the generalized Gauss-Newton matrix (PSD)."),
    ] = "hessian",
    ggn: Annotated[bool, typer.Option("--ggn", hidden=True, help="Deprecated: --matrix ggn.")] = False,
    layers: Annotated[
        bool,
        typer.Option("--per-layer", help="lambda_max and trace of each layer's diagonal block."),
    ] = False,
    tol: Annotated[
        float,
        typer.Option(help="Relative residual target of the eigenpairs: |Hv - lv| <= tol*|H|."),
    ] = 1e-5,
    max_hvps: Annotated[
        int | None, typer.Option(help="Product budget of the eigenpair run (default 40k + 400).")
    ] = None,
    trace_method: Annotated[
        str,
        typer.Option(
            help="auto (Hutchinson, or Hutch++ where its sketch saves products) | hutchpp | hutchinson | xtrace."
        ),
    ] = "auto",
    trace_tol: Annotated[float, typer.Option(help="Stop the trace once its standard error <= this * |trace|.")] = 1e-2,
    trace_max_hvps: Annotated[int, typer.Option(help="Product budget of the trace.")] = 1000,
    starts: Annotated[int, typer.Option(help="Random starts of the density.")] = 4,
    steps: Annotated[int, typer.Option(help="Lanczos steps per density start.")] = 48,
    tau: Annotated[
        float | None,
        typer.Option(help="Saddle threshold: eigenvalues below -tau count (default 1e-3 * lambda_max)."),
    ] = None,
    eps: Annotated[float, typer.Option(help="Box size of epsilon-sharpness (Keskar et al. 2017).")] = 1e-3,
    rho: Annotated[float, typer.Option(help="Radius of adaptive sharpness (Kwon et al. 2021, l2).")] = 0.1,
    sigma: Annotated[float, typer.Option(help="Noise scale of average-case sharpness.")] = 0.01,
    subsamples: Annotated[
        int | None,
        typer.Option(
            help="With --rows: lambda_max and the trace on this many disjoint subsamples, mean +- std (default 3)."
        ),
    ] = None,
    compare_full: Annotated[
        bool, typer.Option("--compare-full", help="With --rows: lambda_max and the trace on all rows beside them.")
    ] = False,
    memory_gib: Annotated[
        float | None,
        typer.Option(
            "--memory-gib",
            help="GiB the products may hold (default 1). Room for the gradient graph of every row makes "
            "each product one backward pass; less rebuilds the graph per batch.",
        ),
    ] = None,
) -> None:
    """Curvature at a checkpoint: eigenpairs with residuals, trace, density, saddle, sharpness."""
    if ggn:
        stderr.print("losslab: warning: --ggn is deprecated; use --matrix ggn.", markup=False)
        matrix = "ggn"
    config = config_from(HessianConfig, locals(), sharpness=sharp, per_layer=layers, seed=opts.seed)
    setup = opts.setup()
    if opts.estimate:
        emit_estimate(estimate_hessian(setup, config), opts.json_out, opts.ray)
        return
    run_config = {**setup.config(), "hessian": config.to_dict()}
    with opts.open_run("hessian", run_config, seeds={"seed": opts.seed}, analysis=config) as run:
        with opts.progress("curvature") as update:
            result = run_hessian(setup, config, store=run, executor=opts.executor, progress=update)
        for line in result.warnings():
            stderr.print(f"losslab: warning: {line}", markup=False)
        title = f"{result.operator} of {setup.model_spec} on {setup.data}"
        opts.finish(run, result.results(), result.summary(), title=title)


@demo_step("hessian", "Hessian of the trained MLP: top-5 with residuals, trace, density, saddle index")
def _demo_hessian(out: Path, force: bool, device: str) -> None:
    hessian_command(
        checkpoint=str(out.parent / "train"),
        out=out,
        force=force,
        device=device,
        top=5,
        trace=True,
        density=True,
        saddle=True,
        json_out=True,
    )
